"""Tables of the storage service (schema ``storage``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "storage"


class Base(DeclarativeBase):
    """Base of storage's tables."""


class FileRow(Base):
    """One stored file: what it is, whose it is, and the content-addressed blob holding it.

    Rows are never deleted: deleting a file removes its bytes and sets ``disabled``, so that later
    downloads answer GONE rather than NOT_FOUND and the asset's file cannot be uploaded again.
    """

    __tablename__ = "files"
    __table_args__ = (
        # At most one file per kind and asset (files uploaded without an asset have an empty key).
        sa.Index(
            "ix_files_kind_asset_key",
            "kind",
            "asset_key",
            unique=True,
            postgresql_where=sa.text("asset_key <> ''"),
        ),
        sa.Index("ix_files_digest", "digest"),
    )

    file_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    """The FileKind value name, e.g. ``FILE_KIND_MODEL``."""
    asset_key: Mapped[str] = mapped_column(sa.String(100), default="", index=True)
    checksum: Mapped[str] = mapped_column(sa.String(64))
    """sha256 of the bytes followed by the salt (the ledger's checksum)."""
    size: Mapped[int] = mapped_column(sa.BigInteger)
    owner: Mapped[str] = mapped_column(sa.String(100))
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    creation_date: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    digest: Mapped[str] = mapped_column(sa.String(64), server_default="")
    """sha256 of the bytes alone: the name of the blob holding them."""
    disabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    directory_checksum: Mapped[str] = mapped_column(sa.String(64), server_default="")
    """Data samples: the directory hash of the archive's content."""
