"""What the follower records of the events it handled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tessera.asset.v1 import events_pb2 as ev


@dataclass(frozen=True)
class FeedWrite:
    """One write of the follower: events for the organization's feed and where the cursor moves."""

    events: tuple[ev.Event, ...]
    position: int


def feed_write(handled: Sequence[ev.Event], cursor: int) -> FeedWrite:
    """Every handled event joins the feed (events of any kind, in the ledger's order), and the cursor
    moves to the furthest position handled; never backwards, so a replayed batch cannot rewind it."""
    return FeedWrite(tuple(handled), max([cursor, *(event.position for event in handled)]))
