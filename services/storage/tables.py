"""Tables of the storage service (schema ``storage``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "storage"


class Base(DeclarativeBase):
    """Base of storage's tables."""


class FileRow(Base):
    """One stored file: what it is, whose it is, and the content-addressed blob holding it."""

    __tablename__ = "files"

    file_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    asset_key: Mapped[str] = mapped_column(sa.String(100), default="", index=True)
    checksum: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    owner: Mapped[str] = mapped_column(sa.String(100))
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    creation_date: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
