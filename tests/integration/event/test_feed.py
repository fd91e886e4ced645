"""The event service follows the ledger: it registers its organization in each of its channels, keeps
the channel's events in its feed, and serves the news feed from them."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import resources_pb2 as res
from tessera.event.v1 import event_service_pb2 as api

from tests.integration.ledger.conftest import (
    data_inputs,
    make_data_manager,
    make_function,
    make_plan,
    make_samples,
    run_task,
    task_spec,
)

ENDINGS = {"PLAN_STATUS_DONE", "PLAN_STATUS_FAILED", "PLAN_STATUS_CANCELED"}


def _news(world, channel: str, **filters) -> list[tuple[str, str]]:
    items, page = [], 1
    while True:
        reply = world.events(channel).ListNewsFeed(api.ListNewsFeedRequest(page=page, page_size=4, **filters))
        items += [(item.asset_key, item.status) for item in reply.items]
        if not reply.next_page_token:
            return items
        page += 1


def test_the_organization_is_registered_in_every_channel_it_follows(world):
    for channel in world.channels:
        deadline = time.monotonic() + 10
        while True:
            orgs = world.ledger(world.org1, channel).ListOrganizations(asset_api.ListOrganizationsRequest())
            addresses = {org.id: org.address for org in orgs.organizations}
            if world.org1 in addresses or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert addresses[world.org1] == world.public_url


def test_the_news_feed_shows_plans_created_started_ended_and_datasets_created(world):
    shared, own = world.channels
    ledger = world.ledger(world.org1, shared)
    manager = make_data_manager(ledger, name="shared data")
    function = make_function(ledger)
    plan = make_plan(ledger, name="runs")
    (task,) = ledger.RegisterTasks(
        asset_api.RegisterTasksRequest(
            tasks=[task_spec(plan.key, function, data_inputs(manager.key, make_samples(ledger, manager.key)))]
        )
    ).tasks
    run_task(ledger, task.key)
    ledger.UpdateComputePlan(asset_api.UpdateComputePlanRequest(key=plan.key, name="renamed"))  # no news
    canceled = make_plan(ledger, name="stopped")
    ledger.CancelComputePlan(asset_api.CancelComputePlanRequest(key=canceled.key))
    elsewhere = make_data_manager(world.ledger(world.org1, own), name="own data")
    world.caught_up(shared)
    world.caught_up(own)

    mine = {manager.key, plan.key, canceled.key, elsewhere.key}
    news = [item for item in _news(world, shared) if item[0] in mine]
    assert news == [  # newest first
        (canceled.key, "PLAN_STATUS_CANCELED"),
        (canceled.key, "PLAN_STATUS_CREATED"),
        (plan.key, "PLAN_STATUS_DONE"),
        (plan.key, "PLAN_STATUS_DOING"),
        (plan.key, "PLAN_STATUS_CREATED"),
        (manager.key, "CREATED"),
    ]
    assert [item for item in _news(world, own) if item[0] in mine] == [(elsewhere.key, "CREATED")]

    important = _news(world, shared, important_news_only=True)
    assert {status for _, status in important} <= ENDINGS
    assert [item for item in important if item[0] in mine] == [
        (canceled.key, "PLAN_STATUS_CANCELED"),
        (plan.key, "PLAN_STATUS_DONE"),
    ]
    future = Timestamp(seconds=int(time.time()) + 3600)
    assert _news(world, shared, timestamp_after=future) == []
    assert [item for item in _news(world, shared, timestamp_before=future) if item[0] in mine] == news


def test_the_feed_keeps_every_event_of_the_channel_in_the_ledgers_order(world):
    shared, _ = world.channels
    ledger = world.ledger(world.org1, shared)
    manager = make_data_manager(ledger)
    world.caught_up(shared)
    expected = ledger.QueryEvents(asset_api.QueryEventsRequest(page_size=1000)).events
    feed = world.events(shared).ListEvents(api.ListEventsRequest(page_size=1000)).events
    assert list(feed) == list(expected)
    only = world.events(shared).ListEvents(api.ListEventsRequest(asset_key=manager.key)).events
    assert [(e.asset_key, e.asset_kind) for e in only] == [(manager.key, res.ASSET_DATA_MANAGER)]
