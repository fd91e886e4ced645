"""The ledger's memory of the events it committed lately, which live subscriptions read first."""

from __future__ import annotations

from tessera.asset.v1 import events_pb2 as ev

from services.asset.events import RecentEvents, event_batches


def _events(channel: str, *positions: int) -> list[ev.Event]:
    return [ev.Event(channel=channel, position=p, id=f"{channel}-{p}") for p in positions]


def test_a_run_without_holes_is_answered_from_the_reader_s_position():
    recent = RecentEvents()
    recent.add(_events("a", 5, 6, 7))
    recent.add(_events("b", 1))
    assert [e.position for e in recent.after("a", 4, 10)] == [5, 6, 7]
    assert [e.position for e in recent.after("a", 5, 1)] == [6]
    assert recent.after("a", 7, 10) is None  # nothing newer: the database decides
    assert [e.id for e in recent.after("b", 0, 10)] == ["b-1"]


def test_a_hole_or_an_evicted_position_sends_the_reader_to_the_database():
    recent = RecentEvents(capacity=3)
    recent.add(_events("a", 9))  # 8 was written by another process, or is not added yet
    assert recent.after("a", 7, 10) is None
    recent.add(_events("a", 8))
    assert [e.position for e in recent.after("a", 7, 10)] == [8, 9]
    recent.add(_events("a", 10, 11))  # the oldest kept, 9, is forgotten past the capacity
    assert [e.position for e in recent.after("a", 7, 10)] == [8]
    assert recent.after("a", 8, 10) is None
    assert [e.position for e in recent.after("a", 9, 10)] == [10, 11]


def test_batches_of_a_subscription_stay_under_their_byte_limit_and_keep_the_order():
    events = [
        ev.Event(channel="a", position=p, asset_key="k" * size) for p, size in enumerate([10, 10, 10, 500, 10], 1)
    ]
    limit = events[0].ByteSize() * 2  # two small events fit; the large one exceeds the limit alone
    runs = list(event_batches(events, limit))
    assert [[e.position for e in run] for run in runs] == [[1, 2], [3], [4], [5]]
    assert all(sum(e.ByteSize() for e in run) <= limit for run in runs if len(run) > 1)
    assert list(event_batches([], limit)) == []
