"""The news feed (domain §7.7): plans created, started and ended, and data managers created.

Which feed events are news is a query (``services.event.store``); this module says what a news item of
such an event looks like, and which plan statuses are endings (``important_news_only``).
"""

from __future__ import annotations

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.event.v1 import news_feed_pb2

PLAN_ENDINGS = (res.PLAN_STATUS_DONE, res.PLAN_STATUS_FAILED, res.PLAN_STATUS_CANCELED)
"""Plan statuses that end a plan: the only news kept by ``important_news_only``."""

DATA_MANAGER_CREATED = "CREATED"


def news_item(event: ev.Event) -> news_feed_pb2.NewsFeedItem:
    """The news item of a plan event (its status at that moment) or of a data manager's creation."""
    item = news_feed_pb2.NewsFeedItem(asset_kind=event.asset_kind, asset_key=event.asset_key, timestamp=event.timestamp)
    if event.WhichOneof("asset") == "compute_plan":
        plan = event.compute_plan
        item.name = plan.name
        item.status = res.ComputePlanStatus.Name(plan.status)
        if plan.failed_task_key:
            item.detail["first_failed_task_key"] = plan.failed_task_key
    else:
        item.name = event.data_manager.name
        item.status = DATA_MANAGER_CREATED
    return item
