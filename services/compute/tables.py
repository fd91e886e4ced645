"""Tables of the compute service (schema ``compute``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "compute"


class Base(DeclarativeBase):
    """Base of compute's tables."""


class ExecutionRow(Base):
    """One attempt at building a function or running a task on this organization."""

    __tablename__ = "executions"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(20))  # build or run
    asset_key: Mapped[str] = mapped_column(sa.String(100), index=True)
    state: Mapped[str] = mapped_column(sa.String(20))
    started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
