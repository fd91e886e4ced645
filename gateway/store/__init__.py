"""What the users and tokens rules (:mod:`gateway.users`) need from persistence.

:class:`UserStore` is the protocol, spoken in the plain records below; :class:`gateway.store.sql.SqlUserStore`
implements it on the ``gateway`` schema (:mod:`gateway.store.tables`), one instance per transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

IMPLICIT, API = "implicit", "api"
# Where a user comes from: the declarative users file (which then owns it) or the /users/ API.
FILE, CREATED_BY_API = "file", "api"


@dataclass(frozen=True)
class User:
    """A user of this organization's gateway."""

    id: int
    username: str
    password_hash: str
    role: str
    channel: str
    source: str = FILE


@dataclass(frozen=True)
class Token:
    """A token's public description (never its value): ``implicit`` (a login's) or ``api`` (named)."""

    id: str
    kind: str
    note: str
    created_at: dt.datetime
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class Session:
    """A web frontend login: the family of its rotating refresh tokens, and what its access tokens name."""

    id: str
    user_id: int
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class RefreshToken:
    """One refresh token of a session, kept as its hash; ``used_at`` is set when it is rotated."""

    token_hash: str
    session_id: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None = None


class UserStore(Protocol):
    """The users and tokens of one transaction."""

    def lock_users(self) -> None:
        """Wait until no other transaction provisions users; held until this one ends."""

    def users(self) -> list[User]:
        """Every user."""

    def user_by_name(self, username: str) -> User | None:
        """The user called ``username``, if any."""

    def user_by_id(self, user_id: int) -> User | None:
        """The user with this id, if any."""

    def add_user(
        self, username: str, password_hash: str, role: str, channel: str, moment: dt.datetime, source: str = FILE
    ) -> None:
        """Create a user."""

    def update_user(
        self, user_id: int, password_hash: str, role: str, channel: str, moment: dt.datetime, source: str = FILE
    ) -> None:
        """Replace a user's password hash, role, channel and source (the users file's sync)."""

    def set_role(self, user_id: int, role: str, moment: dt.datetime) -> None:
        """Replace a user's role only."""

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace a user's password hash only (a rehash, or a new password)."""

    def remove_user(self, user_id: int) -> None:
        """Delete a user and its tokens."""

    def add_token(self, user_id: int, token: Token, token_hash: str) -> None:
        """Store a new token of ``user_id`` as its hash."""

    def token_by_hash(self, token_hash: str) -> tuple[User, Token] | None:
        """The token with this hash and its user, if any."""

    def tokens(self, user_id: int, valid_at: dt.datetime) -> list[Token]:
        """The user's tokens that have not expired at ``valid_at``, oldest first."""

    def delete_tokens(self, user_id: int, *, expired_at: dt.datetime | None = None) -> None:
        """Delete every token of the user, or with ``expired_at`` only those expired by then."""

    def delete_token(self, user_id: int, token_id: str) -> bool:
        """Delete one token of the user; False when it has no such token."""

    # ------------------------------------------------------------------ web sessions (frontend)
    def add_session(self, session: Session) -> None:
        """Store a new session."""

    def session_with_user(self, session_id: str) -> tuple[Session, User] | None:
        """The session and its user, if the session exists."""

    def extend_session(self, session_id: str, expires_at: dt.datetime) -> None:
        """Move a session's end (its newest refresh token's expiry)."""

    def delete_session(self, session_id: str) -> None:
        """Delete a session and its refresh tokens (its access tokens stop working)."""

    def delete_sessions(self, user_id: int, *, expired_at: dt.datetime | None = None) -> None:
        """Delete every session of the user, or with ``expired_at`` only those ended by then."""

    def add_refresh_token(self, token: RefreshToken) -> None:
        """Store a new refresh token (its hash)."""

    def refresh_token_for_update(self, token_hash: str) -> RefreshToken | None:
        """The refresh token with this hash, locked until the transaction ends, if any."""

    def mark_refresh_token_used(self, token_hash: str, moment: dt.datetime) -> None:
        """Record that a refresh token was rotated at ``moment``."""

    def purge_refresh_tokens(self, session_id: str, expired_at: dt.datetime) -> None:
        """Delete the session's refresh tokens expired by ``expired_at``."""
