"""drop compute_plans.done_seconds (never written nor read: the estimated end date derives from task dates)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_column("compute_plans", "done_seconds")


def downgrade() -> None:
    op.add_column("compute_plans", sa.Column("done_seconds", sa.Float(), nullable=False, server_default="0"))
