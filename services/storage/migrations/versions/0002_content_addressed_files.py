"""Content-addressed blobs, disabled files, one file per kind and asset, data sample checksums.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("digest", sa.String(64), nullable=False, server_default=""))
    op.add_column("files", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("files", sa.Column("directory_checksum", sa.String(64), nullable=False, server_default=""))
    op.create_index(
        "ix_files_kind_asset_key",
        "files",
        ["kind", "asset_key"],
        unique=True,
        postgresql_where=sa.text("asset_key <> ''"),
    )
    op.create_index("ix_files_digest", "files", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_files_digest", "files")
    op.drop_index("ix_files_kind_asset_key", "files")
    op.drop_column("files", "directory_checksum")
    op.drop_column("files", "disabled")
    op.drop_column("files", "digest")
