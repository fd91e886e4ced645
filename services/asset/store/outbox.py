"""The events table read as an outbox: how far each channel goes, and how far the relay has published."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from tessera.asset.v1 import events_pb2 as ev

from services.asset.store import sql
from services.asset.store.tables import ChannelPositionRow, RelayCursorRow


class Outbox:
    """What the relay reads and writes, across every channel."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def heads(self) -> dict[str, int]:
        """The last event position of each channel that has events: the channels' position rows, which
        every append moves in its own transaction (a scan of the events would grow with the log)."""
        rows = sa.select(ChannelPositionRow.channel, ChannelPositionRow.position)
        query = rows.where(ChannelPositionRow.position > 0)
        return dict(self.session.execute(query).all())

    def cursors(self) -> dict[str, int]:
        """The last position the relay saved as published, per channel."""
        return dict(self.session.execute(sa.select(RelayCursorRow.channel, RelayCursorRow.position)).all())

    def events_after(self, channel: str, position: int, limit: int) -> list[ev.Event]:
        """Up to ``limit`` events of ``channel`` after ``position``, in order."""
        return sql.events_after(self.session, channel, position, limit)

    def save_cursor(self, channel: str, position: int) -> None:
        """Record that ``channel`` is published up to ``position``."""
        self.session.execute(
            pg_insert(RelayCursorRow)
            .values(channel=channel, position=position)
            .on_conflict_do_update(index_elements=[RelayCursorRow.channel], set_={"position": position})
        )
