"""Web frontend sessions: signed access tokens and rotating, revocable refresh tokens (contract §2).

A login opens a *session* (a row) and returns an access token and a refresh token:

* the **access token** is a signed JWT (:mod:`gateway.webtokens`) naming the user, its role and the
  session (``sid``). It is checked on every call: signature, expiry and organization first, then
  the database: the session must still exist (logout, a replayed refresh token, a new password or
  the user's removal delete it) and the user's role must still be the one the token names (a
  demoted user's token stops working; a refresh issues one with the new role).
* the **refresh token** is 32 random bytes, stored as its SHA-256. Each use *rotates* it: it is
  marked used and a new one is issued in the same session (its family). A used token presented
  again is a replay, a sign that it was stolen: the whole session is deleted, so the thief's and
  the user's tokens stop working together. One exception, ``reuse_grace``: a token presented again
  within seconds of its rotation gets a sibling instead, because a page that receives several 401s
  at once sends one refresh per request with the same cookie (the frontend's retry does).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from gateway.store import RefreshToken, Session, UserStore
from gateway.upstreams import Principal
from gateway.users import Accounts, now
from gateway.webtokens import Signer
from services.kit.db import UnitOfWork

log = logging.getLogger("tessera.gateway.sessions")

# The fields of the access token the login and refresh answers show (Substra's simplejwt payload).
PUBLIC_CLAIMS = ("token_type", "exp", "iat", "jti", "user_id")


class SessionRefused(Exception):
    """A refresh token or an access token that does not (or no longer) stand for a live session."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Issued:
    """What a login or a refresh hands the browser."""

    access: str
    claims: dict[str, Any]
    refresh: str
    access_expires: dt.datetime
    refresh_expires: dt.datetime

    def public_claims(self) -> dict[str, Any]:
        """The answer's body: the access token's type, expiry, issue time, id and user."""
        return {name: self.claims[name] for name in PUBLIC_CLAIMS}


def refresh_hash(raw: str) -> str:
    """What the database keeps of a refresh token."""
    return hashlib.sha256(raw.encode()).hexdigest()


class Sessions:
    """Logins, refreshes and logouts of the web frontend, and the check of its access tokens."""

    def __init__(
        self,
        transactions: UnitOfWork[UserStore],
        accounts: Accounts,
        signer: Signer,
        access_lifetime: dt.timedelta,
        refresh_lifetime: dt.timedelta,
        reuse_grace: dt.timedelta,
    ) -> None:
        self._transactions = transactions
        self._accounts = accounts
        self._signer = signer
        self._access_lifetime = access_lifetime
        self._refresh_lifetime = refresh_lifetime
        self._reuse_grace = reuse_grace

    # ---------------------------------------------------------------------------------- issuing
    def _issue(self, store: UserStore, session_id: str, user_id: int, role: str, moment: dt.datetime) -> Issued:
        raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        refresh_expires = moment + self._refresh_lifetime
        store.add_refresh_token(RefreshToken(refresh_hash(raw), session_id, moment, refresh_expires))
        store.extend_session(session_id, refresh_expires)
        access_expires = moment + self._access_lifetime
        claims = {
            "token_type": "access",
            "exp": int(access_expires.timestamp()),
            "iat": int(moment.timestamp()),
            "jti": uuid.uuid4().hex,
            "user_id": user_id,
            "sid": session_id,
            "role": role,
        }
        return Issued(self._signer.access_token(claims), claims, raw, access_expires, refresh_expires)

    def login_sync(self, username: str, password: str) -> Issued | None:
        """A new session for valid credentials (the user's ended sessions purged), or None."""
        user = self._accounts.authenticate_sync(username, password)
        if user is None:
            return None
        moment = now()

        def work(store: UserStore) -> Issued:
            store.delete_sessions(user.id, expired_at=moment)
            session = Session(str(uuid.uuid4()), user.id, moment, moment + self._refresh_lifetime)
            store.add_session(session)
            return self._issue(store, session.id, user.id, user.role, moment)

        return self._transactions.run_sync(work)

    async def login(self, username: str, password: str) -> Issued | None:
        """:meth:`login_sync` in a worker thread (argon2 is slow on purpose)."""
        return await asyncio.to_thread(self.login_sync, username, password)

    async def refresh(self, raw: str) -> Issued:
        """Rotate a refresh token: new access and refresh tokens; :class:`SessionRefused` otherwise."""
        moment = now()

        def work(store: UserStore) -> Issued | str:
            token = store.refresh_token_for_update(refresh_hash(raw))
            if token is None:  # never issued, or its session ended (logout, replay, user removed)
                return "The refresh token is invalid or revoked"
            if token.expires_at <= moment:
                return "The refresh token is expired"
            if token.used_at is not None and moment - token.used_at > self._reuse_grace:
                store.delete_session(token.session_id)
                log.warning("a rotated refresh token was replayed: session revoked",
                            extra={"fields": {"session": token.session_id}})  # fmt: skip
                return "The refresh token was already used: the session is revoked"
            found = store.session_with_user(token.session_id)
            if found is None:
                return "The refresh token is invalid or revoked"
            _, user = found
            if token.used_at is None:
                store.mark_refresh_token_used(token.token_hash, moment)
            store.purge_refresh_tokens(token.session_id, moment)
            return self._issue(store, token.session_id, user.id, user.role, moment)

        if not raw or len(raw) > 256:
            raise SessionRefused("The refresh token is missing")
        outcome = await self._transactions.run(work)
        if isinstance(outcome, str):  # refused after committing what the refusal changed (a revocation)
            raise SessionRefused(outcome)
        return outcome

    async def logout(self, raw: str) -> None:
        """End the session of a refresh token (unknown tokens are ignored)."""
        if not raw or len(raw) > 256:
            return

        def work(store: UserStore) -> None:
            token = store.refresh_token_for_update(refresh_hash(raw))
            if token is not None:
                store.delete_session(token.session_id)

        await self._transactions.run(work)

    # --------------------------------------------------------------------------------- checking
    async def principal(self, claims: dict[str, Any]) -> Principal:
        """The user a verified access token acts for, if its session is alive and its role current."""
        session_id, user_id = claims.get("sid"), claims.get("user_id")
        if not isinstance(session_id, str) or not isinstance(user_id, int):
            raise SessionRefused("The token is invalid")
        found = await self._transactions.run(lambda store: store.session_with_user(session_id))
        if found is None:
            raise SessionRefused("The session has ended: log in again")
        _, user = found
        if user.id != user_id:
            raise SessionRefused("The token is invalid")
        if user.role != claims.get("role"):
            raise SessionRefused("The user's role changed: refresh the token")
        return Principal(user.id, user.username, user.role, user.channel)
