"""The organization's feed of ledger events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_events",
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("asset_kind", sa.SmallInteger, nullable=False),
        sa.Column("asset_key", sa.String(140), nullable=False),
        sa.Column("event_kind", sa.SmallInteger, nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", postgresql.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("channel", "position"),
    )
    op.create_index("ix_feed_events_asset", "feed_events", ["channel", "asset_key"])
    op.create_index("ix_feed_events_kind", "feed_events", ["channel", "asset_kind", "timestamp"])


def downgrade() -> None:
    op.drop_table("feed_events")
