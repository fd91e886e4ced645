"""The follower reads both forms of the ledger's subscription messages: batches, and the single event an older
ledger (one that does not know ``batched``) still sends during a rolling upgrade."""

from __future__ import annotations

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import events_pb2 as ev

from services.event.follower import events_of


def _event(position: int) -> ev.Event:
    return ev.Event(id=f"e{position}", channel="c", position=position)


def test_a_batch_is_read_in_order():
    reply = api.SubscribeEventsResponse(events=[_event(3), _event(4), _event(5)])
    assert [e.position for e in events_of(reply)] == [3, 4, 5]


def test_a_single_event_from_a_ledger_that_does_not_batch_is_not_lost():
    assert [e.position for e in events_of(api.SubscribeEventsResponse(event=_event(7)))] == [7]


def test_an_empty_message_carries_nothing():
    assert list(events_of(api.SubscribeEventsResponse())) == []
