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


# One statement per batch, its parameters one set per row (the row's key as b_channel, b_position).
UPDATE = FEED.update().where(FEED.c.channel == sa.bindparam("b_channel"), FEED.c.position == sa.bindparam("b_position"))


def upgrade() -> None:
    op.add_column("feed_events", sa.Column("body", sa.LargeBinary, nullable=True))
    op.add_column("feed_events", sa.Column("status_change", sa.Boolean, nullable=True))
    op.add_column("feed_events", sa.Column("plan_status", sa.SmallInteger, nullable=True))
    conn = op.get_bind()
    for rows in _rows(conn, FEED.c.event):
        values = []
        for channel, position, document in rows:
            event = json_format.ParseDict(document, ev.Event(), ignore_unknown_fields=True)
            values.append(
                {
                    "b_channel": channel,
                    "b_position": position,
                    "body": event.SerializeToString(),
                    "status_change": event.HasField("status_change"),
                    "plan_status": event.compute_plan.status if event.WhichOneof("asset") == "compute_plan" else None,
                }
            )
        conn.execute(UPDATE, values)
    op.alter_column("feed_events", "body", nullable=False)
    op.alter_column("feed_events", "status_change", nullable=False)
    op.drop_column("feed_events", "event")


def downgrade() -> None:
    op.add_column("feed_events", sa.Column("event", postgresql.JSONB, nullable=True))
    conn = op.get_bind()
    for rows in _rows(conn, FEED.c.body):
        values = [
            {
                "b_channel": channel,
                "b_position": position,
                "event": json_format.MessageToDict(ev.Event.FromString(body), preserving_proto_field_name=True),
            }
            for channel, position, body in rows
        ]
        conn.execute(UPDATE, values)
    op.alter_column("feed_events", "event", nullable=False)
    op.drop_column("feed_events", "plan_status")
    op.drop_column("feed_events", "status_change")
    op.drop_column("feed_events", "body")
