"""The event service's store: what the follower and the handlers need (:class:`Store`), implemented on
PostgreSQL by ``services.event.store.sql.SqlStore`` over the tables of ``tables.py`` (schema ``event``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from tessera.asset.v1 import events_pb2 as ev
from tessera.event.v1 import event_service_pb2 as api

from services.kit.pagination import Page


class Store(Protocol):
    """Cursors and the organization's feed of ledger events, per channel."""

    def load_cursor(self, channel: str) -> int:
        """The last position the follower handled in ``channel`` (0: none)."""
        ...

    def save_cursor(self, channel: str, position: int) -> None:
        """Remember that every event of ``channel`` up to ``position`` was handled. The transaction that
        does it commits without waiting for the disk: what a database crash loses of it is replayed
        from the ledger, and handling an event again is harmless."""
        ...

    def add_to_feed(self, events: Iterable[ev.Event]) -> None:
        """Keep ``events`` in the feed of their channel (an event already there is left as it is)."""
        ...

    def list_events(self, channel: str, request: api.ListEventsRequest) -> Page:
        """One page of the feed's events, filtered as ``request`` asks, in position order."""
        ...

    def events_after(self, channel: str, position: int, limit: int) -> list[ev.Event]:
        """Up to ``limit`` events of the feed after ``position``, in position order."""
        ...

    def news_feed(self, channel: str, request: api.ListNewsFeedRequest) -> Page:
        """One page of news items (``NewsFeedItem``), newest first."""
        ...
