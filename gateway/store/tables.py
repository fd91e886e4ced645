"""Tables of the gateway (schema ``gateway``): its users, their API tokens and their web sessions.

Passwords are argon2 hashes; API and refresh tokens are stored as their SHA-256 only, so a database
dump grants nothing (access tokens are signed with a key kept outside the database).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "gateway"


class Base(DeclarativeBase):
    """Base of the gateway's tables."""


class UserRow(Base):
    """A user of this organization's gateway."""

    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("username", name="uq_users_username"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(150))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(20))
    channel: Mapped[str] = mapped_column(sa.String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    source: Mapped[str] = mapped_column(sa.String(8), default="file", server_default="file")


class TokenRow(Base):
    """A bearer token: ``implicit`` (from a login, expiring) or ``api`` (named, optional expiry)."""

    __tablename__ = "tokens"
    __table_args__ = (sa.UniqueConstraint("token_hash", name="uq_tokens_token_hash"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    note: Mapped[str] = mapped_column(sa.String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class SessionRow(Base):
    """A web frontend login; deleting it revokes its refresh tokens and its access tokens."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class RefreshTokenRow(Base):
    """A refresh token of a session, by its SHA-256; ``used_at`` once rotated (kept to detect a replay)."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
