"""add map_order to data_managers, functions, compute_plans and compute_tasks: the declared order of
each map's keys (a JSONB object keeps none); rows written before have none and read in sorted order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("data_managers", "functions", "compute_plans", "compute_tasks")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("map_order", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")))
        op.alter_column(table, "map_order", server_default=None)


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "map_order")
