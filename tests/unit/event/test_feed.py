"""The news feed's items, and what the follower records of the events it handled."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.event.domain.feed import news_item
from services.event.domain.follow import feed_write

WHEN = Timestamp(seconds=1_800_000_000)


def test_a_plan_event_is_news_of_the_plan_at_that_status():
    plan = res.ComputePlan(key="p", name="federated", status=res.PLAN_STATUS_DOING)
    item = news_item(ev.Event(asset_kind=res.ASSET_COMPUTE_PLAN, asset_key="p", timestamp=WHEN, compute_plan=plan))
    assert (item.asset_kind, item.asset_key, item.name, item.status) == (
        res.ASSET_COMPUTE_PLAN,
        "p",
        "federated",
        "PLAN_STATUS_DOING",
    )
    assert item.timestamp == WHEN and dict(item.detail) == {}


def test_a_failed_plan_names_its_first_failed_task():
    plan = res.ComputePlan(key="p", name="n", status=res.PLAN_STATUS_FAILED, failed_task_key="t")
    item = news_item(ev.Event(asset_kind=res.ASSET_COMPUTE_PLAN, asset_key="p", compute_plan=plan))
    assert item.status == "PLAN_STATUS_FAILED" and dict(item.detail) == {"first_failed_task_key": "t"}


def test_a_data_manager_event_is_news_of_its_creation():
    manager = res.DataManager(key="d", name="images")
    item = news_item(ev.Event(asset_kind=res.ASSET_DATA_MANAGER, asset_key="d", timestamp=WHEN, data_manager=manager))
    assert (item.asset_kind, item.asset_key, item.name, item.status, item.timestamp) == (
        res.ASSET_DATA_MANAGER,
        "d",
        "images",
        "CREATED",
        WHEN,
    )


def test_the_follower_keeps_every_handled_event_and_moves_its_cursor_forward_only():
    handled = [ev.Event(position=p) for p in (7, 8, 9)]
    write = feed_write(handled, cursor=6)
    assert [e.position for e in write.events] == [7, 8, 9] and write.position == 9
    assert feed_write([ev.Event(position=3)], cursor=9).position == 9
