"""Users and tokens in the gateway's schema, and their declarative provisioning.

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
import sqlalchemy as sa
from sqlalchemy import orm

from gateway.tables import TokenRow, UserRow
from gateway.upstreams import Principal
from services.kit.db import UnitOfWork

log = logging.getLogger("tessera.gateway.users")

ROLES = ("ADMIN", "USER")
IMPLICIT, API = "implicit", "api"
_PROVISION_LOCK = 0x7E55E4A  # advisory lock: replicas starting together provision one after the other


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


@dataclass(frozen=True)
class Token:
    """A token's public description (never its value)."""

    id: str
    kind: str
    note: str
    created_at: dt.datetime
    expires_at: dt.datetime | None

    def describe(self) -> dict:
        """The JSON of /active-api-tokens/."""
        data = {
            "id": self.id,
            "expires_at": _iso(self.expires_at),
            "created_at": _iso(self.created_at),
        }
        if self.kind == API:
            data["note"] = self.note
        return data


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


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
    """The users and tokens of the gateway's schema."""

    def __init__(self, engine: sa.Engine, hasher: argon2.PasswordHasher | None = None) -> None:
        self._uow = UnitOfWork(engine)
        self._hasher = hasher or argon2.PasswordHasher()
        # Verifying against this keeps an unknown user name as slow as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))

    # ------------------------------------------------------------------------------- provisioning
    def provision_sync(self, entries: Iterable[UserEntry]) -> dict[str, int]:
        """Make the users table equal to ``entries``; counts of created, updated, removed users."""
        wanted = {entry.username: entry for entry in entries}

        def work(session: orm.Session) -> dict[str, int]:
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PROVISION_LOCK})
            counts = {"created": 0, "updated": 0, "removed": 0}
            existing = {row.username: row for row in session.scalars(sa.select(UserRow))}
            moment = now()
            for name, row in existing.items():
                if name not in wanted:
                    session.delete(row)
                    counts["removed"] += 1
            for name, entry in wanted.items():
                row = existing.get(name)
                if row is None:
                    session.add(
                        UserRow(
                            username=name,
                            password_hash=self._hasher.hash(entry.password),
                            role=entry.role,
                            channel=entry.channel,
                            created_at=moment,
                            updated_at=moment,
                        )
                    )
                    counts["created"] += 1
                    continue
                changed = False
                if not self._verify(row.password_hash, entry.password):
                    row.password_hash = self._hasher.hash(entry.password)
                    session.execute(sa.delete(TokenRow).where(TokenRow.user_id == row.id))
                    changed = True
                if (row.role, row.channel) != (entry.role, entry.channel):
                    row.role, row.channel = entry.role, entry.channel
                    changed = True
                if changed:
                    row.updated_at = moment
                    counts["updated"] += 1
            return counts

        counts = self._uow.run_sync(work)
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
    def _login(self, username: str, password: str, lifetime: dt.timedelta) -> tuple[Token, str] | None:
        row = self._uow.run_sync(lambda s: _user_by_name(s, username))
        if row is None:
            self._verify(self._dummy_hash, password)
            return None
        if not self._verify(row.password_hash, password):
            return None
        if self._hasher.check_needs_rehash(row.password_hash):
            rehashed = self._hasher.hash(password)
            self._uow.run_sync(
                lambda s: s.execute(sa.update(UserRow).where(UserRow.id == row.id).values(password_hash=rehashed))
            )
        moment = now()

        def purge(session: orm.Session) -> None:
            session.execute(
                sa.delete(TokenRow).where(
                    TokenRow.user_id == row.id, TokenRow.expires_at.is_not(None), TokenRow.expires_at <= moment
                )
            )

        self._uow.run_sync(purge)
        return self.create_token_sync(row.id, IMPLICIT, moment + lifetime)

    async def login(self, username: str, password: str, lifetime: dt.timedelta) -> tuple[Token, str] | None:
        """A new implicit token for valid credentials, or None."""
        return await asyncio.to_thread(self._login, username, password, lifetime)

    # ------------------------------------------------------------------------------------- tokens
    def create_token_sync(
        self, user_id: int, kind: str, expires_at: dt.datetime | None, note: str = ""
    ) -> tuple[Token, str]:
        """A new token of ``user_id`` and its value (shown once)."""
        raw = secrets.token_hex(20)
        row = TokenRow(
            id=str(uuid.uuid4()),
            user_id=user_id,
            token_hash=token_hash(raw),
            kind=kind,
            note=note,
            created_at=now(),
            expires_at=expires_at,
        )
        self._uow.run_sync(lambda session: session.add(row))
        return _token(row), raw

    async def create_token(
        self, user_id: int, kind: str, expires_at: dt.datetime | None, note: str = ""
    ) -> tuple[Token, str]:
        """:meth:`create_token_sync` in a worker thread."""
        return await asyncio.to_thread(self.create_token_sync, user_id, kind, expires_at, note)

    async def resolve(self, raw: str) -> tuple[Principal, dt.datetime | None] | None:
        """The user behind a token value and the token's expiry, or None."""

        def work(session: orm.Session):
            found = session.execute(
                sa.select(TokenRow, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.token_hash == token_hash(raw))
            ).first()
            if found is None:
                return None
            token, user = found
            principal = Principal(user.id, user.username, user.role, user.channel, token.id)
            return principal, token.expires_at

        return await self._uow.run(work)

    async def tokens(self, user_id: int) -> list[Token]:
        """Every unexpired token of a user, oldest first."""

        def work(session: orm.Session) -> list[Token]:
            rows = session.scalars(
                sa.select(TokenRow)
                .where(
                    TokenRow.user_id == user_id,
                    sa.or_(TokenRow.expires_at.is_(None), TokenRow.expires_at > now()),
                )
                .order_by(TokenRow.created_at)
            )
            return [_token(row) for row in rows]

        return await self._uow.run(work)

    async def delete_token(self, user_id: int, token_id: str) -> bool:
        """Delete one of the user's tokens; False when it has no such token."""

        def work(session: orm.Session) -> bool:
            result = session.execute(sa.delete(TokenRow).where(TokenRow.user_id == user_id, TokenRow.id == token_id))
            return result.rowcount > 0

        return await self._uow.run(work)


def _user_by_name(session: orm.Session, username: str) -> UserRow | None:
    return session.scalars(sa.select(UserRow).where(UserRow.username == username)).first()


def _token(row: TokenRow) -> Token:
    return Token(row.id, row.kind, row.note, row.created_at, row.expires_at)
