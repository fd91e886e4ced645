"""The event service's store on PostgreSQL (``Store``): events are kept whole, as the ledger serialized
them (protobuf bytes: the JSON form cost most of the service's CPU), beside the columns the lists filter on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg2.extras import execute_values
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.event.v1 import event_service_pb2 as api

from services.event.domain.feed import PLAN_ENDINGS, news_item
from services.event.store.tables import CursorRow, FeedEventRow
from services.kit.errors import InvalidArgument
from services.kit.pagination import Page, paginate

FOLLOWER = "follower"  # the consumer whose cursors these are
FEED_PAGE = 500  # feed rows per INSERT statement


def _event(row: FeedEventRow) -> ev.Event:
    return ev.Event.FromString(row.body)


def _moment(request, field: str) -> dt.datetime:
    value: Timestamp = getattr(request, field)
    try:
        return value.ToDatetime(dt.UTC)
    except ValueError:  # seconds or nanos out of the Timestamp range
        raise InvalidArgument.on(field, "is not a valid timestamp") from None


FEED = FeedEventRow.__table__
CURSORS = CursorRow.__table__
FEED_COLUMNS = (
    "channel",
    "position",
    "id",
    "asset_kind",
    "asset_key",
    "event_kind",
    "timestamp",
    "body",
    "status_change",
    "plan_status",
)
# Every row of a batch in one multi-row INSERT, written by the driver (psycopg2's execute_values, its values
# adapted in C): the feed is the event service's hottest write (ten organizations store every event), and
# SQLAlchemy's own multi-row path costs its caller ~1.6 times as much CPU for the same rows (tools/bench feed).
ADD_TO_FEED = f"INSERT INTO {FEED.name} ({', '.join(FEED_COLUMNS)}) VALUES %s ON CONFLICT DO NOTHING"
ASYNCHRONOUS_COMMIT = sa.text("SET LOCAL synchronous_commit TO OFF")
SAVE_CURSOR = (
    insert(CURSORS)
    .values(consumer=sa.bindparam("consumer"), channel=sa.bindparam("channel"), position=sa.bindparam("position"))
    .on_conflict_do_update(
        index_elements=[CURSORS.c.consumer, CURSORS.c.channel], set_={"position": sa.bindparam("position")}
    )
)


def feed_row(event: ev.Event) -> tuple:
    """The feed's row of ``event``, its values in the order of :data:`FEED_COLUMNS`."""
    return (
        event.channel,
        event.position,
        event.id,
        event.asset_kind,
        event.asset_key,
        event.event_kind,
        event.timestamp.ToDatetime(dt.UTC),
        event.SerializeToString(),
        event.HasField("status_change"),
        event.compute_plan.status if event.WhichOneof("asset") == "compute_plan" else None,
    )


class SqlStore:
    """:class:`services.event.store.Store` on one transaction's session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def load_cursor(self, channel: str) -> int:
        row = self._session.get(CursorRow, (FOLLOWER, channel))
        return 0 if row is None else row.position

    def save_cursor(self, channel: str, position: int) -> None:
        # The transaction's commit does not wait for its WAL on disk (see the protocol's description).
        self._session.execute(ASYNCHRONOUS_COMMIT)
        self._session.execute(SAVE_CURSOR, {"consumer": FOLLOWER, "channel": channel, "position": position})

    def add_to_feed(self, events: Iterable[ev.Event]) -> None:
        rows = [feed_row(event) for event in events]
        if rows:  # on the session's connection: in its transaction, with the cursor it commits with
            cursor = self._session.connection().connection.cursor()
            try:
                execute_values(cursor, ADD_TO_FEED, rows, page_size=FEED_PAGE)
            finally:
                cursor.close()

    def list_events(self, channel: str, request: api.ListEventsRequest) -> Page:
        t = FeedEventRow
        query = sa.select(t).where(t.channel == channel)
        if request.asset_kind:
            query = query.where(t.asset_kind == request.asset_kind)
        if request.asset_key:
            query = query.where(t.asset_key == request.asset_key)
        if request.event_kind:
            query = query.where(t.event_kind == request.event_kind)
        return paginate(self._session, request, query.order_by(t.position), _event)

    def events_after(self, channel: str, position: int, limit: int) -> list[ev.Event]:
        t = FeedEventRow
        rows = self._session.scalars(
            sa.select(t).where(t.channel == channel, t.position > position).order_by(t.position).limit(limit)
        )
        return [_event(row) for row in rows]

    def news_feed(self, channel: str, request: api.ListNewsFeedRequest) -> Page:
        """Plans created, plans whose status moved (started, ended: the events with a ``status_change``),
        data managers created; with ``important_news_only``, plan endings only."""
        t = FeedEventRow
        plan_news = sa.and_(
            t.asset_kind == res.ASSET_COMPUTE_PLAN,
            sa.or_(t.event_kind == ev.EVENT_ASSET_CREATED, t.status_change),
        )
        if request.important_news_only:
            condition = sa.and_(plan_news, t.plan_status.in_(PLAN_ENDINGS))
        else:
            dataset_news = sa.and_(t.asset_kind == res.ASSET_DATA_MANAGER, t.event_kind == ev.EVENT_ASSET_CREATED)
            condition = sa.or_(plan_news, dataset_news)
        query = sa.select(t).where(t.channel == channel, condition)
        if request.HasField("timestamp_after"):
            query = query.where(t.timestamp >= _moment(request, "timestamp_after"))
        if request.HasField("timestamp_before"):
            query = query.where(t.timestamp <= _moment(request, "timestamp_before"))
        return paginate(self._session, request, query.order_by(t.position.desc()), lambda row: news_item(_event(row)))
