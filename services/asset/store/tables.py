"""Typed table mappings. Rows map explicitly to domain objects; no protobuf blobs in columns."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "asset"


class Base(DeclarativeBase):
    """Base of the ledger's tables."""

    metadata = sa.MetaData(naming_convention={"ix": "ix_%(table_name)s_%(column_0_N_name)s", "pk": "pk_%(table_name)s"})


class OrganizationRow(Base):
    """An organization registered in a channel."""

    __tablename__ = "organizations"

    channel: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(2048), default="")
    creation_date: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
