"""The :class:`~gateway.store.UserStore` on PostgreSQL (schema ``gateway``), over one transaction's session."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import orm

from gateway.store import FILE, RefreshToken, Session, Token, User
from gateway.store.tables import RefreshTokenRow, SessionRow, TokenRow, UserRow

# Advisory lock key: replicas starting together provision users one after the other.
_PROVISION_LOCK = 0x7E55E4A


class SqlUserStore:
    """Users, tokens and web sessions in the ``users``, ``tokens``, ``sessions`` and ``refresh_tokens`` tables."""

    def __init__(self, session: orm.Session) -> None:
        self._session = session

    def lock_users(self) -> None:
        self._session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PROVISION_LOCK})

    def users(self) -> list[User]:
        return [_user(row) for row in self._session.scalars(sa.select(UserRow).order_by(UserRow.id))]

    def user_by_name(self, username: str) -> User | None:
        row = self._session.scalars(sa.select(UserRow).where(UserRow.username == username)).first()
        return _user(row) if row is not None else None

    def user_by_id(self, user_id: int) -> User | None:
        row = self._session.get(UserRow, user_id)
        return _user(row) if row is not None else None

    def add_user(
        self, username: str, password_hash: str, role: str, channel: str, moment: dt.datetime, source: str = FILE
    ) -> None:
        self._session.add(
            UserRow(
                username=username,
                password_hash=password_hash,
                role=role,
                channel=channel,
                created_at=moment,
                updated_at=moment,
                source=source,
            )
        )
        self._session.flush()

    def update_user(
        self, user_id: int, password_hash: str, role: str, channel: str, moment: dt.datetime, source: str = FILE
    ) -> None:
        self._session.execute(
            sa.update(UserRow)
            .where(UserRow.id == user_id)
            .values(password_hash=password_hash, role=role, channel=channel, updated_at=moment, source=source)
        )

    def set_role(self, user_id: int, role: str, moment: dt.datetime) -> None:
        self._session.execute(sa.update(UserRow).where(UserRow.id == user_id).values(role=role, updated_at=moment))

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

    # ------------------------------------------------------------------------------ web sessions
    def add_session(self, session: Session) -> None:
        self._session.add(
            SessionRow(
                id=session.id, user_id=session.user_id, created_at=session.created_at, expires_at=session.expires_at
            )
        )
        self._session.flush()

    def session_with_user(self, session_id: str) -> tuple[Session, User] | None:
        found = self._session.execute(
            sa.select(SessionRow, UserRow)
            .join(UserRow, UserRow.id == SessionRow.user_id)
            .where(SessionRow.id == session_id)
        ).first()
        if found is None:
            return None
        session, user = found
        return Session(session.id, session.user_id, session.created_at, session.expires_at), _user(user)

    def extend_session(self, session_id: str, expires_at: dt.datetime) -> None:
        self._session.execute(sa.update(SessionRow).where(SessionRow.id == session_id).values(expires_at=expires_at))

    def delete_session(self, session_id: str) -> None:
        # Its refresh tokens go with it (ON DELETE CASCADE).
        self._session.execute(sa.delete(SessionRow).where(SessionRow.id == session_id))

    def delete_sessions(self, user_id: int, *, expired_at: dt.datetime | None = None) -> None:
        query = sa.delete(SessionRow).where(SessionRow.user_id == user_id)
        if expired_at is not None:
            query = query.where(SessionRow.expires_at <= expired_at)
        self._session.execute(query)

    def add_refresh_token(self, token: RefreshToken) -> None:
        self._session.add(
            RefreshTokenRow(
                token_hash=token.token_hash,
                session_id=token.session_id,
                created_at=token.created_at,
                expires_at=token.expires_at,
                used_at=token.used_at,
            )
        )

    def refresh_token_for_update(self, token_hash: str) -> RefreshToken | None:
        row = self._session.scalars(
            sa.select(RefreshTokenRow).where(RefreshTokenRow.token_hash == token_hash).with_for_update()
        ).first()
        if row is None:
            return None
        return RefreshToken(row.token_hash, row.session_id, row.created_at, row.expires_at, row.used_at)

    def mark_refresh_token_used(self, token_hash: str, moment: dt.datetime) -> None:
        self._session.execute(
            sa.update(RefreshTokenRow).where(RefreshTokenRow.token_hash == token_hash).values(used_at=moment)
        )

    def purge_refresh_tokens(self, session_id: str, expired_at: dt.datetime) -> None:
        self._session.execute(
            sa.delete(RefreshTokenRow).where(
                RefreshTokenRow.session_id == session_id, RefreshTokenRow.expires_at <= expired_at
            )
        )


def _user(row: UserRow) -> User:
    return User(row.id, row.username, row.password_hash, row.role, row.channel, row.source)


def _token(row: TokenRow) -> Token:
    return Token(row.id, row.kind, row.note, row.created_at, row.expires_at)
