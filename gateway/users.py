"""Users and tokens: the rules, over a :class:`~gateway.store.UserStore`.

* Passwords are hashed with argon2id (memory-hard; ``argon2-cffi`` defaults), verified in a worker
  thread so a login never blocks the event loop, and rehashed when the parameters change.
* Tokens are 40 random hex characters, like DRF's; only their SHA-256 is stored. A login makes an
  *implicit* token that expires (24 h by default) and purges the user's expired ones; *api* tokens
  are named and may never expire.
* :meth:`Accounts.provision` applies the users file (the account operator's declarative sync, domain
  §6.5) to the users it owns: missing ones are created, existing ones updated (a new password revokes
  their tokens and sessions), file users absent from the file are removed. A user of the file is
  owned by the file, even one first created through the API (the file wins, docs/adr/0012).
* Users created through ``/users/`` persist beside them; the rules of contract §3 are here: only an
  ADMIN manages users, within its channel; no one deletes itself; a channel never loses its last
  ADMIN; the file's users are changed by changing the file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import argon2

from gateway.store import CREATED_BY_API, FILE, IMPLICIT, Token, User, UserStore
from gateway.upstreams import Principal
from gateway.webtokens import Signer, TokenRefused
from services.kit.db import UnitOfWork

log = logging.getLogger("tessera.gateway.users")

ROLES = ("ADMIN", "USER")
ADMIN = "ADMIN"
# Django's user name rule (letters, digits and @.+-_), which Substra's users follow.
USERNAME = re.compile(r"^[\w.@+-]{1,150}$")
PASSWORD_MIN, PASSWORD_MAX = 12, 256
RESET_LIFETIME = dt.timedelta(days=7)  # as Substra's reset tokens


class Refused(Exception):
    """A request the rules refuse; the subclass says how (the HTTP layer maps it to a status)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(Refused):
    """Malformed or unacceptable input."""


class Forbidden(Refused):
    """The actor may not do this."""


class Missing(Refused):
    """No such user (in the actor's channel)."""


class Conflict(Refused):
    """The request contradicts the current state (a duplicate, the last admin, a file-managed user)."""


class BadToken(Refused):
    """A password reset token that is not valid for this user now."""


def check_password(password: object, username: str) -> str:
    """``password`` if acceptable for a new password of ``username``; :class:`Invalid` otherwise."""
    if not isinstance(password, str) or not password:
        raise Invalid("password: this field is required")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(f"password: must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")
    if password.casefold() == username.casefold():
        raise Invalid("password: must differ from the user name")
    return password


def now() -> dt.datetime:
    """Current UTC time."""
    return dt.datetime.now(dt.UTC)


def token_hash(raw: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class UserEntry:
    """One user of the users file."""

    username: str
    password: str
    role: str = "ADMIN"
    channel: str = ""


def parse_users_file(path: str) -> list[UserEntry]:
    """The users of a JSON file ``{"users": [...]}`` or of the operator's ``name password channel`` lines."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except ValueError:
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split()
            if len(parts) not in (2, 3):
                raise ValueError(f"{path}:{number}: expected 'name password [channel]'") from None
            entries.append(UserEntry(parts[0], parts[1], "ADMIN", parts[2] if len(parts) == 3 else ""))
        return _checked(entries, path)
    items = data.get("users") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected {{'users': [...]}}")
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("username"), str):
            raise ValueError(f"{path}: users[{i}] needs a username")
        entries.append(
            UserEntry(
                username=item["username"],
                password=str(item.get("password", "")),
                role=str(item.get("role") or "ADMIN").upper(),
                channel=str(item.get("channel") or ""),
            )
        )
    return _checked(entries, path)


def _checked(entries: list[UserEntry], path: str) -> list[UserEntry]:
    names = set()
    for entry in entries:
        if not 1 <= len(entry.username) <= 150:
            raise ValueError(f"{path}: user names must be 1 to 150 characters")
        if not entry.password:
            raise ValueError(f"{path}: user {entry.username} has no password")
        if entry.role not in ROLES:
            raise ValueError(f"{path}: user {entry.username}: role must be one of {', '.join(ROLES)}")
        if entry.username in names:
            raise ValueError(f"{path}: user {entry.username} appears twice")
        names.add(entry.username)
    return entries


class Accounts:
    """The rules of users and tokens; each operation is one transaction of ``transactions``.

    ``signer`` signs password reset tokens (only the ``/users/`` routes need it)."""

    def __init__(
        self,
        transactions: UnitOfWork[UserStore],
        hasher: argon2.PasswordHasher | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._transactions = transactions
        self._hasher = hasher or argon2.PasswordHasher()
        self._signer = signer
        # Verifying against this keeps an unknown user name as slow as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))

    # ------------------------------------------------------------------------------- provisioning
    def provision_sync(self, entries: Iterable[UserEntry]) -> dict[str, int]:
        """Make the file's users equal to ``entries``, leaving the API's users alone unless the file names
        them; counts of created, updated, removed users."""
        wanted = {entry.username: entry for entry in entries}

        def work(store: UserStore) -> dict[str, int]:
            store.lock_users()
            counts = {"created": 0, "updated": 0, "removed": 0}
            existing = {user.username: user for user in store.users()}
            moment = now()
            for name, user in existing.items():
                if name not in wanted and user.source == FILE:
                    store.remove_user(user.id)
                    counts["removed"] += 1
            for name, entry in wanted.items():
                user = existing.get(name)
                if user is None:
                    store.add_user(name, self._hasher.hash(entry.password), entry.role, entry.channel, moment, FILE)
                    counts["created"] += 1
                    continue
                if user.source != FILE:
                    log.warning("the users file takes over user %s, created through the API", name)
                password_hash = user.password_hash
                new_password = not self._verify(password_hash, entry.password)
                if new_password:
                    password_hash = self._hasher.hash(entry.password)
                    store.delete_tokens(user.id)
                    store.delete_sessions(user.id)
                if new_password or (user.role, user.channel, user.source) != (entry.role, entry.channel, FILE):
                    store.update_user(user.id, password_hash, entry.role, entry.channel, moment, FILE)
                    counts["updated"] += 1
            return counts

        counts = self._transactions.run_sync(work)
        log.info("users provisioned", extra={"fields": counts})
        return counts

    async def provision(self, entries: Iterable[UserEntry]) -> dict[str, int]:
        """:meth:`provision_sync` in a worker thread."""
        return await asyncio.to_thread(self.provision_sync, list(entries))

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    # ------------------------------------------------------------------------------------- logins
    def authenticate_sync(self, username: str, password: str) -> User | None:
        """The user these credentials prove, or None (as slowly for an unknown name as for a wrong
        password); a hash made with older parameters is replaced."""
        user = self._transactions.run_sync(lambda store: _by_name(store, username))
        if user is None:
            self._verify(self._dummy_hash, password)
            return None
        if not self._verify(user.password_hash, password):
            return None
        if self._hasher.check_needs_rehash(user.password_hash):
            rehashed = self._hasher.hash(password)
            self._transactions.run_sync(lambda store: store.set_password_hash(user.id, rehashed))
        return user

    def login_sync(self, username: str, password: str, lifetime: dt.timedelta) -> tuple[Token, str] | None:
        """A new implicit token for valid credentials (the user's expired tokens purged), or None."""
        user = self.authenticate_sync(username, password)
        if user is None:
            return None
        moment = now()
        token, raw = _new_token(IMPLICIT, moment, moment + lifetime)

        def work(store: UserStore) -> None:
            store.delete_tokens(user.id, expired_at=moment)
            store.add_token(user.id, token, token_hash(raw))

        self._transactions.run_sync(work)
        return token, raw

    async def login(self, username: str, password: str, lifetime: dt.timedelta) -> tuple[Token, str] | None:
        """:meth:`login_sync` in a worker thread."""
        return await asyncio.to_thread(self.login_sync, username, password, lifetime)

    # ------------------------------------------------------------------------------------- tokens
    async def create_token(
        self, user_id: int, kind: str, expires_at: dt.datetime | None, note: str = ""
    ) -> tuple[Token, str]:
        """A new token of ``user_id`` and its value (shown once)."""
        token, raw = _new_token(kind, now(), expires_at, note)
        await self._transactions.run(lambda store: store.add_token(user_id, token, token_hash(raw)))
        return token, raw

    async def resolve(self, raw: str) -> tuple[Principal, dt.datetime | None] | None:
        """The user behind a token value and the token's expiry, or None."""
        found = await self._transactions.run(lambda store: store.token_by_hash(token_hash(raw)))
        if found is None:
            return None
        user, token = found
        return Principal(user.id, user.username, user.role, user.channel, token.id), token.expires_at

    async def tokens(self, user_id: int) -> list[Token]:
        """Every unexpired token of a user, oldest first."""
        return await self._transactions.run(lambda store: store.tokens(user_id, now()))

    async def delete_token(self, user_id: int, token_id: str) -> bool:
        """Delete one of the user's tokens; False when it has no such token."""
        return await self._transactions.run(lambda store: store.delete_token(user_id, token_id))

    # ------------------------------------------------------------------------- users through the API
    async def list_users(self, actor: Principal) -> list[User]:
        """The users of the actor's channel, by name."""
        users = await self._transactions.run(lambda store: store.users())
        return sorted((u for u in users if u.channel == actor.channel), key=lambda u: u.username)

    async def get_user(self, actor: Principal, username: str) -> User:
        """A user of the actor's channel; :class:`Missing` otherwise."""
        return _in_channel(await self._user(username), actor)

    async def _user(self, username: str) -> User | None:
        return await self._transactions.run(lambda store: _by_name(store, username))

    def create_user_sync(self, actor: Principal, username: object, password: object, role: object) -> User:
        """A new user of the actor's channel, owned by the API."""
        _require_admin(actor)
        if not isinstance(username, str) or not USERNAME.match(username):
            raise Invalid("username: 1 to 150 letters, digits or @.+-_ characters")
        role = _check_role(role or "USER")
        password_hash = self._hasher.hash(check_password(password, username))

        def work(store: UserStore) -> User:
            store.lock_users()
            if store.user_by_name(username) is not None:
                raise Conflict("Username already exists")
            store.add_user(username, password_hash, role, actor.channel, now(), CREATED_BY_API)
            return store.user_by_name(username)

        return self._transactions.run_sync(work)

    async def set_role(self, actor: Principal, username: str, role: object) -> User:
        """Change a user's role; the channel's last ADMIN may not become a USER."""
        _require_admin(actor)
        role = _check_role(role)

        def work(store: UserStore) -> User:
            store.lock_users()
            user = _api_managed(_in_channel(_by_name(store, username), actor))
            if user.role == ADMIN and role != ADMIN:
                _keep_an_admin(store, user)
            if role != user.role:
                store.set_role(user.id, role, now())
            return store.user_by_id(user.id)

        return await self._transactions.run(work)

    async def delete_user(self, actor: Principal, username: str) -> User:
        """Delete a user with its tokens and sessions: not oneself, not the channel's last ADMIN."""
        _require_admin(actor)

        def work(store: UserStore) -> User:
            store.lock_users()
            user = _in_channel(_by_name(store, username), actor)
            if user.id == actor.user_id:
                raise Conflict("You cannot delete your own account")
            _api_managed(user)
            if user.role == ADMIN:
                _keep_an_admin(store, user)
            store.remove_user(user.id)
            return user

        return await self._transactions.run(work)

    async def reset_token(self, actor: Principal, username: str) -> str:
        """A token letting ``username`` set a new password once, within :data:`RESET_LIFETIME`."""
        _require_admin(actor)
        user = _api_managed(await self.get_user(actor, username))
        expires = int((now() + RESET_LIFETIME).timestamp())
        return self._reset_signer().reset_token(user.username, user.password_hash, expires)

    async def check_reset_token(self, username: str, token: object) -> User:
        """The user a valid reset token is for; :class:`BadToken` otherwise (an unknown user too)."""
        user = await self._user(username)
        self._check_reset(user, username, token)
        return user

    def _check_reset(self, user: User | None, username: str, token: object) -> None:
        if user is None or user.source != CREATED_BY_API or not isinstance(token, str):
            raise BadToken("The token is invalid")
        try:
            self._reset_signer().verify_reset(token, username, user.password_hash)
        except TokenRefused as exc:
            raise BadToken(exc.detail) from None

    def set_password_sync(self, username: str, token: object, password: object) -> User:
        """Set a new password with a reset token; every token and session of the user is revoked."""
        new_hash = self._hasher.hash(check_password(password, username))

        def work(store: UserStore) -> User:
            store.lock_users()
            user = _by_name(store, username)
            self._check_reset(user, username, token)
            store.set_password_hash(user.id, new_hash)
            store.delete_tokens(user.id)
            store.delete_sessions(user.id)
            return store.user_by_id(user.id)

        return self._transactions.run_sync(work)

    def _reset_signer(self) -> Signer:
        if self._signer is None:
            raise RuntimeError("password resets need a signer")
        return self._signer


def _by_name(store: UserStore, username: str) -> User | None:
    # A name no user can have (too long, a NUL PostgreSQL refuses in text) names no one.
    if not 1 <= len(username) <= 150 or "\x00" in username:
        return None
    return store.user_by_name(username)


def _require_admin(actor: Principal) -> None:
    if actor.role != ADMIN:
        raise Forbidden("You do not have permission to perform this action.")


def _check_role(role: object) -> str:
    if not isinstance(role, str) or role.upper() not in ROLES:
        raise Invalid(f"role: must be one of {', '.join(ROLES)}")
    return role.upper()


def _in_channel(user: User | None, actor: Principal) -> User:
    # Users of other channels are not shown: as unknown ones, a 404.
    if user is None or user.channel != actor.channel:
        raise Missing("User not found")
    return user


def _api_managed(user: User) -> User:
    if user.source == FILE:
        raise Conflict(f"User {user.username} is managed by the users file (TESSERA_USERS_FILE): change it there")
    return user


def _keep_an_admin(store: UserStore, leaving: User) -> None:
    admins = [u for u in store.users() if u.channel == leaving.channel and u.role == ADMIN and u.id != leaving.id]
    if not admins:
        raise Conflict(f"{leaving.username} is the last ADMIN of channel {leaving.channel!r}")


def _new_token(kind: str, created_at: dt.datetime, expires_at: dt.datetime | None, note: str = "") -> tuple[Token, str]:
    return Token(str(uuid.uuid4()), kind, note, created_at, expires_at), secrets.token_hex(20)
