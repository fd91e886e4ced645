"""add profiling_steps.position: an asset's steps are listed in the order they were recorded (Substra's
order: prepare_inputs before task_execution, build_image before save_function), not by name

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "profiling_steps", sa.Column("position", sa.BigInteger(), sa.Identity(always=False), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("profiling_steps", "position")
