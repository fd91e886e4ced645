"""Consumer cursors.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cursors",
        sa.Column("consumer", sa.String(50), nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("consumer", "channel"),
    )


def downgrade() -> None:
    op.drop_table("cursors")
