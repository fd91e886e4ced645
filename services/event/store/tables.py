"""Tables of the event service (schema ``event``)."""

from __future__ import annotations

import datetime as dt

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


class FeedEventRow(Base):
    """The organization's copy of a ledger event (its feed), in the ledger's order: the event whole, as
    the ledger serialized it (``body``), beside the columns the lists filter on."""

    __tablename__ = "feed_events"
    __table_args__ = (
        sa.Index("ix_feed_events_asset", "channel", "asset_key"),
        sa.Index("ix_feed_events_kind", "channel", "asset_kind", "timestamp"),
    )

    channel: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    position: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(36))
    asset_kind: Mapped[int] = mapped_column(sa.SmallInteger)
    asset_key: Mapped[str] = mapped_column(sa.String(140))
    event_kind: Mapped[int] = mapped_column(sa.SmallInteger)
    timestamp: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # What the news feed filters on: the event moved a status; the status of the plan it carries, if any.
    status_change: Mapped[bool] = mapped_column(sa.Boolean)
    plan_status: Mapped[int | None] = mapped_column(sa.SmallInteger, nullable=True)
