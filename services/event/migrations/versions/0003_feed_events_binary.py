"""The feed keeps each event as the ledger serialized it (protobuf bytes) instead of its JSON form.

Writing the JSON form was most of the event service's CPU (every organization keeps every event of
the channel); the news feed's two JSON lookups become columns of their own.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from google.protobuf import json_format
from sqlalchemy.dialects import postgresql
from tessera.asset.v1 import events_pb2 as ev

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BATCH = 500
FEED = sa.table(
    "feed_events",
    sa.column("channel", sa.String),
    sa.column("position", sa.BigInteger),
    sa.column("event", postgresql.JSONB),
    sa.column("body", sa.LargeBinary),
    sa.column("status_change", sa.Boolean),
    sa.column("plan_status", sa.SmallInteger),
)


def _rows(conn, column):
    """Every row's key and ``column``, a batch at a time, in the feed's order."""
    after = ("", -1)
    while True:
        rows = conn.execute(
            sa.select(FEED.c.channel, FEED.c.position, column)
            .where(sa.tuple_(FEED.c.channel, FEED.c.position) > sa.tuple_(*after))
            .order_by(FEED.c.channel, FEED.c.position)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        yield rows
        after = (rows[-1][0], rows[-1][1])


def _key(channel, position):
    return sa.and_(FEED.c.channel == channel, FEED.c.position == position)


def upgrade() -> None:
    op.add_column("feed_events", sa.Column("body", sa.LargeBinary, nullable=True))
    op.add_column("feed_events", sa.Column("status_change", sa.Boolean, nullable=True))
    op.add_column("feed_events", sa.Column("plan_status", sa.SmallInteger, nullable=True))
    conn = op.get_bind()
    for rows in _rows(conn, FEED.c.event):
        for channel, position, document in rows:
            event = json_format.ParseDict(document, ev.Event(), ignore_unknown_fields=True)
            plan = event.compute_plan.status if event.WhichOneof("asset") == "compute_plan" else None
            conn.execute(
                FEED.update()
                .where(_key(channel, position))
                .values(body=event.SerializeToString(), status_change=event.HasField("status_change"), plan_status=plan)
            )
    op.alter_column("feed_events", "body", nullable=False)
    op.alter_column("feed_events", "status_change", nullable=False)
    op.drop_column("feed_events", "event")


def downgrade() -> None:
    op.add_column("feed_events", sa.Column("event", postgresql.JSONB, nullable=True))
    conn = op.get_bind()
    for rows in _rows(conn, FEED.c.body):
        for channel, position, body in rows:
            document = json_format.MessageToDict(ev.Event.FromString(body), preserving_proto_field_name=True)
            conn.execute(FEED.update().where(_key(channel, position)).values(event=document))
    op.alter_column("feed_events", "event", nullable=False)
    op.drop_column("feed_events", "plan_status")
    op.drop_column("feed_events", "status_change")
    op.drop_column("feed_events", "body")
