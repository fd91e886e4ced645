"""gRPC handlers of the event service: the organization's feed and news feed."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from google.protobuf import json_format
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.event.v1 import event_service_pb2 as api
from tessera.event.v1 import event_service_pb2_grpc as api_grpc
from tessera.event.v1 import news_feed_pb2

from services.event.tables import FeedEventRow
from services.kit.db import UnitOfWork
from services.kit.hub import Hub
from services.kit.identity import current_caller
from services.kit.pagination import paginate

REPLAY_BATCH = 100
PLAN_ENDINGS = ("PLAN_STATUS_DONE", "PLAN_STATUS_FAILED", "PLAN_STATUS_CANCELED")


def _event(row: FeedEventRow) -> ev.Event:
    return json_format.ParseDict(row.event, ev.Event())


def news_item(event: ev.Event) -> news_feed_pb2.NewsFeedItem:
    """A news item from a plan or data manager event (domain §7.7)."""
    kind = event.WhichOneof("asset")
    item = news_feed_pb2.NewsFeedItem(asset_kind=event.asset_kind, asset_key=event.asset_key, timestamp=event.timestamp)
    if kind == "compute_plan":
        plan = event.compute_plan
        item.name = plan.name
        item.status = res.ComputePlanStatus.Name(plan.status)
        if plan.failed_task_key:
            item.detail["first_failed_task_key"] = plan.failed_task_key
    else:
        item.name = event.data_manager.name
        item.status = "CREATED"
    return item


class EventService(api_grpc.EventServiceServicer):
    """The organization's feed, as followed from the ledger."""

    def __init__(self, reads: UnitOfWork, hub: Hub) -> None:
        self._reads = reads
        self._hub = hub

    async def ListEvents(self, request, context):
        channel = current_caller().channel
        t = FeedEventRow

        def run(session):
            query = sa.select(t).where(t.channel == channel)
            if request.asset_kind:
                query = query.where(t.asset_kind == request.asset_kind)
            if request.asset_key:
                query = query.where(t.asset_key == request.asset_key)
            if request.event_kind:
                query = query.where(t.event_kind == request.event_kind)
            return paginate(session, request, query.order_by(t.position), _event)

        page = await self._reads.run(run)
        return api.ListEventsResponse(
            events=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def SubscribeEvents(self, request, context):
        """The feed after the cursor, then live, in the ledger's order."""
        channel = current_caller().channel
        position = request.after_position
        while True:
            seen = self._hub.generation
            rows = await self._reads.run(
                lambda s, after=position: s.scalars(
                    sa.select(FeedEventRow)
                    .where(FeedEventRow.channel == channel, FeedEventRow.position > after)
                    .order_by(FeedEventRow.position)
                    .limit(REPLAY_BATCH)
                ).all()
            )
            for row in rows:
                yield api.SubscribeEventsResponse(event=_event(row))
                position = row.position
            if len(rows) < REPLAY_BATCH:
                await self._hub.wait(seen, timeout=1.0)

    async def ListNewsFeed(self, request, context):
        """Plans created, started and ended, and datasets created, newest first."""
        channel = current_caller().channel
        t = FeedEventRow
        plan_status = t.event["compute_plan"]["status"].astext

        def run(session):
            plan_news = sa.and_(
                t.asset_kind == res.ASSET_COMPUTE_PLAN,
                sa.or_(t.event_kind == ev.EVENT_ASSET_CREATED, t.event.has_key("status_change")),
            )
            if request.important_news_only:
                condition = sa.and_(plan_news, plan_status.in_(PLAN_ENDINGS))
            else:
                dataset_news = sa.and_(t.asset_kind == res.ASSET_DATA_MANAGER, t.event_kind == ev.EVENT_ASSET_CREATED)
                condition = sa.or_(plan_news, dataset_news)
            query = sa.select(t).where(t.channel == channel, condition)
            if request.HasField("timestamp_after"):
                query = query.where(t.timestamp >= request.timestamp_after.ToDatetime(dt.UTC))
            if request.HasField("timestamp_before"):
                query = query.where(t.timestamp <= request.timestamp_before.ToDatetime(dt.UTC))
            return paginate(session, request, query.order_by(t.position.desc()), lambda row: news_item(_event(row)))

        page = await self._reads.run(run)
        return api.ListNewsFeedResponse(
            items=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )
