"""Users and tokens: the rules, over a :class:`~gateway.store.UserStore`.

* Passwords are hashed with argon2id (memory-hard; ``argon2-cffi`` defaults), verified in a worker
  thread so a login never blocks the event loop, and rehashed when the parameters change.
* Tokens are 40 random hex characters, like DRF's; only their SHA-256 is stored. A login makes an
  *implicit* token that expires (24 h by default) and purges the user's expired ones; *api* tokens
  are named and may never expire.
* :meth:`Accounts.provision` makes the users table equal to the users file (the account operator's
  declarative sync, domain §6.5): missing users are created, existing ones updated (a new password
  revokes their tokens), users absent from the file are removed with their tokens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import argon2

from gateway.store import IMPLICIT, Token, UserStore
from gateway.upstreams import Principal
from services.kit.db import UnitOfWork

log = logging.getLogger("tessera.gateway.users")

ROLES = ("ADMIN", "USER")


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
    """The rules of users and tokens; each operation is one transaction of ``transactions``."""

    def __init__(self, transactions: UnitOfWork[UserStore], hasher: argon2.PasswordHasher | None = None) -> None:
        self._transactions = transactions
        self._hasher = hasher or argon2.PasswordHasher()
        # Verifying against this keeps an unknown user name as slow as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))

    # ------------------------------------------------------------------------------- provisioning
    def provision_sync(self, entries: Iterable[UserEntry]) -> dict[str, int]:
        """Make the users table equal to ``entries``; counts of created, updated, removed users."""
        wanted = {entry.username: entry for entry in entries}

        def work(store: UserStore) -> dict[str, int]:
            store.lock_users()
            counts = {"created": 0, "updated": 0, "removed": 0}
            existing = {user.username: user for user in store.users()}
            moment = now()
            for name, user in existing.items():
                if name not in wanted:
                    store.remove_user(user.id)
                    counts["removed"] += 1
            for name, entry in wanted.items():
                user = existing.get(name)
                if user is None:
                    store.add_user(name, self._hasher.hash(entry.password), entry.role, entry.channel, moment)
                    counts["created"] += 1
                    continue
                password_hash = user.password_hash
                new_password = not self._verify(password_hash, entry.password)
                if new_password:
                    password_hash = self._hasher.hash(entry.password)
                    store.delete_tokens(user.id)
                if new_password or (user.role, user.channel) != (entry.role, entry.channel):
                    store.update_user(user.id, password_hash, entry.role, entry.channel, moment)
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
    def login_sync(self, username: str, password: str, lifetime: dt.timedelta) -> tuple[Token, str] | None:
        """A new implicit token for valid credentials (the user's expired tokens purged), or None."""
        user = self._transactions.run_sync(lambda store: store.user_by_name(username))
        if user is None:
            self._verify(self._dummy_hash, password)
            return None
        if not self._verify(user.password_hash, password):
            return None
        rehashed = self._hasher.hash(password) if self._hasher.check_needs_rehash(user.password_hash) else None
        moment = now()
        token, raw = _new_token(IMPLICIT, moment, moment + lifetime)

        def work(store: UserStore) -> None:
            if rehashed is not None:
                store.set_password_hash(user.id, rehashed)
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


def _new_token(kind: str, created_at: dt.datetime, expires_at: dt.datetime | None, note: str = "") -> tuple[Token, str]:
    return Token(str(uuid.uuid4()), kind, note, created_at, expires_at), secrets.token_hex(20)
