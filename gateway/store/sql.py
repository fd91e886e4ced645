"""The :class:`~gateway.store.UserStore` on PostgreSQL (schema ``gateway``), over one transaction's session."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from gateway.store import Token, User
from gateway.store.tables import TokenRow, UserRow

# Advisory lock key: replicas starting together provision users one after the other.
_PROVISION_LOCK = 0x7E55E4A


class SqlUserStore:
    """Users and tokens in the ``users`` and ``tokens`` tables."""

    def __init__(self, session: orm.Session) -> None:
        self._session = session

    def lock_users(self) -> None:
        self._session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PROVISION_LOCK})

    def users(self) -> list[User]:
        return [_user(row) for row in self._session.scalars(sa.select(UserRow).order_by(UserRow.id))]

    def user_by_name(self, username: str) -> User | None:
        row = self._session.scalars(sa.select(UserRow).where(UserRow.username == username)).first()
        return _user(row) if row is not None else None

    def add_user(self, username: str, password_hash: str, role: str, channel: str, moment: dt.datetime) -> None:
        self._session.add(
            UserRow(
                username=username,
                password_hash=password_hash,
                role=role,
                channel=channel,
                created_at=moment,
                updated_at=moment,
            )
        )

    def update_user(self, user_id: int, password_hash: str, role: str, channel: str, moment: dt.datetime) -> None:
        self._session.execute(
            sa.update(UserRow)
            .where(UserRow.id == user_id)
            .values(password_hash=password_hash, role=role, channel=channel, updated_at=moment)
        )

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self._session.execute(sa.update(UserRow).where(UserRow.id == user_id).values(password_hash=password_hash))

    def remove_user(self, user_id: int) -> None:
        # The tokens go with it (ON DELETE CASCADE).
        self._session.execute(sa.delete(UserRow).where(UserRow.id == user_id))

    def add_token(self, user_id: int, token: Token, token_hash: str) -> None:
        self._session.add(
            TokenRow(
                id=token.id,
                user_id=user_id,
                token_hash=token_hash,
                kind=token.kind,
                note=token.note,
                created_at=token.created_at,
                expires_at=token.expires_at,
            )
        )

    def token_by_hash(self, token_hash: str) -> tuple[User, Token] | None:
        found = self._session.execute(
            sa.select(TokenRow, UserRow)
            .join(UserRow, UserRow.id == TokenRow.user_id)
            .where(TokenRow.token_hash == token_hash)
        ).first()
        if found is None:
            return None
        token, user = found
        return _user(user), _token(token)

    def tokens(self, user_id: int, valid_at: dt.datetime) -> list[Token]:
        rows = self._session.scalars(
            sa.select(TokenRow)
            .where(
                TokenRow.user_id == user_id,
                sa.or_(TokenRow.expires_at.is_(None), TokenRow.expires_at > valid_at),
            )
            .order_by(TokenRow.created_at)
        )
        return [_token(row) for row in rows]

    def delete_tokens(self, user_id: int, *, expired_at: dt.datetime | None = None) -> None:
        query = sa.delete(TokenRow).where(TokenRow.user_id == user_id)
        if expired_at is not None:
            query = query.where(TokenRow.expires_at.is_not(None), TokenRow.expires_at <= expired_at)
        self._session.execute(query)

    def delete_token(self, user_id: int, token_id: str) -> bool:
        result = self._session.execute(sa.delete(TokenRow).where(TokenRow.user_id == user_id, TokenRow.id == token_id))
        return result.rowcount > 0


def _user(row: UserRow) -> User:
    return User(row.id, row.username, row.password_hash, row.role, row.channel)


def _token(row: TokenRow) -> Token:
    return Token(row.id, row.kind, row.note, row.created_at, row.expires_at)
