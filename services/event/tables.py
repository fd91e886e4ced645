"""Tables of the event service (schema ``event``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "event"


class Base(DeclarativeBase):
    """Base of the event service's tables."""


class CursorRow(Base):
    """The last ledger event position a consumer of this organization has handled, per channel."""

    __tablename__ = "cursors"

    consumer: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    position: Mapped[int] = mapped_column(sa.BigInteger, default=0)
