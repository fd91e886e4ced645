"""What the users and tokens rules (:mod:`gateway.users`) need from persistence.

:class:`UserStore` is the protocol, spoken in the plain records below; :class:`gateway.store.sql.SqlUserStore`
implements it on the ``gateway`` schema (:mod:`gateway.store.tables`), one instance per transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

IMPLICIT, API = "implicit", "api"


@dataclass(frozen=True)
class User:
    """A user of this organization's gateway."""

    id: int
    username: str
    password_hash: str
    role: str
    channel: str


@dataclass(frozen=True)
class Token:
    """A token's public description (never its value): ``implicit`` (a login's) or ``api`` (named)."""

    id: str
    kind: str
    note: str
    created_at: dt.datetime
    expires_at: dt.datetime | None


class UserStore(Protocol):
    """The users and tokens of one transaction."""

    def lock_users(self) -> None:
        """Wait until no other transaction provisions users; held until this one ends."""

    def users(self) -> list[User]:
        """Every user."""

    def user_by_name(self, username: str) -> User | None:
        """The user called ``username``, if any."""

    def add_user(self, username: str, password_hash: str, role: str, channel: str, moment: dt.datetime) -> None:
        """Create a user."""

    def update_user(self, user_id: int, password_hash: str, role: str, channel: str, moment: dt.datetime) -> None:
        """Replace a user's password hash, role and channel."""

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace a user's password hash only (a rehash with new parameters)."""

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
