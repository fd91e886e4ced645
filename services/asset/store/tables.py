"""Typed table mappings of the ledger (schema ``asset``).

Queryable fields are columns; nested structures (permissions, addressables, function and task
inputs/outputs) are JSONB documents in the protobuf JSON form, so they stay readable and
filterable in SQL. A JSONB object keeps no key order: ``map_order`` keeps the declared order of a
row's maps (the messages' ``<map>_order`` fields). Every table carries the channel: a record is
visible only in its channel.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "asset"
Key = sa.String(36)
Name = sa.String(100)
Stamp = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    """Base of the ledger's tables."""

    metadata = sa.MetaData(naming_convention={"ix": "ix_%(table_name)s_%(column_0_N_name)s", "pk": "pk_%(table_name)s"})


class OrganizationRow(Base):
    """An organization registered in a channel."""

    __tablename__ = "organizations"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    id: Mapped[str] = mapped_column(Name, primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(2048), default="")
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)


class DataManagerRow(Base):
    """A dataset: opener, description and permissions."""

    __tablename__ = "data_managers"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    key: Mapped[str] = mapped_column(Key, primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    owner: Mapped[str] = mapped_column(Name)
    permissions: Mapped[dict] = mapped_column(JSONB)
    description: Mapped[dict] = mapped_column(JSONB)
    opener: Mapped[dict] = mapped_column(JSONB)
    type: Mapped[str] = mapped_column(sa.String(100), default="")
    logs_permission: Mapped[dict] = mapped_column(JSONB)
    metadata_: Mapped[dict] = mapped_column("metadata", JSONB, default=dict)
    # The declared order of each map field's keys ({"metadata": [...], ...}; JSONB objects keep none).
    map_order: Mapped[dict] = mapped_column(JSONB, default=dict)
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)


class DataSampleRow(Base):
    """A data sample, linked to one or more data managers of its owner."""

    __tablename__ = "data_samples"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    key: Mapped[str] = mapped_column(Key, primary_key=True)
    owner: Mapped[str] = mapped_column(Name)
    checksum: Mapped[str] = mapped_column(sa.String(64))
    data_manager_keys: Mapped[list[str]] = mapped_column(ARRAY(sa.String(36)))
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)


class FunctionRow(Base):
    """A function: archive, declared inputs and outputs, build status."""

    __tablename__ = "functions"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    key: Mapped[str] = mapped_column(Key, primary_key=True)
    name: Mapped[str] = mapped_column(Name)
    owner: Mapped[str] = mapped_column(Name)
    permissions: Mapped[dict] = mapped_column(JSONB)
    description: Mapped[dict] = mapped_column(JSONB)
    archive: Mapped[dict] = mapped_column(JSONB)
    image: Mapped[dict | None] = mapped_column(JSONB, nullable=True)
    inputs: Mapped[dict] = mapped_column(JSONB)
    outputs: Mapped[dict] = mapped_column(JSONB)
    status: Mapped[int] = mapped_column(sa.SmallInteger)
    metadata_: Mapped[dict] = mapped_column("metadata", JSONB, default=dict)
    # The declared order of each map field's keys ({"metadata": [...], ...}; JSONB objects keep none).
    map_order: Mapped[dict] = mapped_column(JSONB, default=dict)
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)


class ComputePlanRow(Base):
    """A compute plan, with its task counters maintained on every task change."""

    __tablename__ = "compute_plans"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    key: Mapped[str] = mapped_column(Key, primary_key=True)
    owner: Mapped[str] = mapped_column(Name)
    name: Mapped[str] = mapped_column(Name)
    tag: Mapped[str] = mapped_column(Name, default="")
    creator: Mapped[str] = mapped_column(sa.String(150), default="")
    metadata_: Mapped[dict] = mapped_column("metadata", JSONB, default=dict)
    # The declared order of each map field's keys ({"metadata": [...], ...}; JSONB objects keep none).
    map_order: Mapped[dict] = mapped_column(JSONB, default=dict)
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)
    cancelation_date: Mapped[dt.datetime | None] = mapped_column(Stamp, nullable=True)
    failure_date: Mapped[dt.datetime | None] = mapped_column(Stamp, nullable=True)
    failed_task_key: Mapped[str] = mapped_column(sa.String(36), default="")
    # Counters by task status (maintained, never recounted on read).
    task_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    waiting_builder_slot_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    building_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    waiting_parent_tasks_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    waiting_executor_slot_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    executing_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    done_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    canceled_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    status: Mapped[int] = mapped_column(sa.SmallInteger)
    start_date: Mapped[dt.datetime | None] = mapped_column(Stamp, nullable=True)
    end_date: Mapped[dt.datetime | None] = mapped_column(Stamp, nullable=True)


class ComputeTaskRow(Base):
    """A compute task."""

    __tablename__ = "compute_tasks"
    __table_args__ = (
        sa.Index("ix_compute_tasks_plan_status", "channel", "compute_plan_key", "status"),
        sa.Index("ix_compute_tasks_function_status", "channel", "function_key", "status"),
        sa.Index("ix_compute_tasks_worker_status", "channel", "worker", "status"),
    )

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    key: Mapped[str] = mapped_column(Key, primary_key=True)
    owner: Mapped[str] = mapped_column(Name)
    compute_plan_key: Mapped[str] = mapped_column(Key)
    function_key: Mapped[str] = mapped_column(Key)
    worker: Mapped[str] = mapped_column(Name)
    rank: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[int] = mapped_column(sa.SmallInteger)
    tag: Mapped[str] = mapped_column(Name, default="")
    metadata_: Mapped[dict] = mapped_column("metadata", JSONB, default=dict)
    # The declared order of each map field's keys ({"metadata": [...], ...}; JSONB objects keep none).
    map_order: Mapped[dict] = mapped_column(JSONB, default=dict)
    logs_permission: Mapped[dict] = mapped_column(JSONB)
    inputs: Mapped[list] = mapped_column(JSONB)
    outputs: Mapped[dict] = mapped_column(JSONB)
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)
    start_date: Mapped[dt.datetime | None] = mapped_column(Stamp, nullable=True)
    end_date: Mapped[dt.datetime | None] = mapped_column(Stamp, nullable=True)
    error_type: Mapped[int | None] = mapped_column(sa.SmallInteger, nullable=True)
    logs_address: Mapped[dict | None] = mapped_column(JSONB, nullable=True)
    # Registration order inside the channel, for stable ordering of equal creation dates.
    seq: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity())


class TaskParentRow(Base):
    """Edge parent → child, for fast cascades."""

    __tablename__ = "task_parents"
    __table_args__ = (sa.Index("ix_task_parents_parent", "channel", "parent_key"),)

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    child_key: Mapped[str] = mapped_column(Key, primary_key=True)
    parent_key: Mapped[str] = mapped_column(Key, primary_key=True)
    position: Mapped[int] = mapped_column(sa.Integer)


class ModelRow(Base):
    """A model produced by a task output; ``address`` is null once disabled."""

    __tablename__ = "models"
    __table_args__ = (sa.Index("ix_models_task", "channel", "compute_task_key"),)

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    key: Mapped[str] = mapped_column(Key, primary_key=True)
    compute_task_key: Mapped[str] = mapped_column(Key)
    identifier: Mapped[str] = mapped_column(Name)
    address: Mapped[dict | None] = mapped_column(JSONB, nullable=True)
    permissions: Mapped[dict] = mapped_column(JSONB)
    owner: Mapped[str] = mapped_column(Name)
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)


class PerformanceRow(Base):
    """A performance value produced by a task output."""

    __tablename__ = "performances"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    compute_task_key: Mapped[str] = mapped_column(Key, primary_key=True)
    identifier: Mapped[str] = mapped_column(Name, primary_key=True)
    value: Mapped[float] = mapped_column(sa.Float)
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)


class FailureReportRow(Base):
    """Why a task or a function build failed."""

    __tablename__ = "failure_reports"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    asset_key: Mapped[str] = mapped_column(Key, primary_key=True)
    asset_type: Mapped[int] = mapped_column(sa.SmallInteger)
    error_type: Mapped[int] = mapped_column(sa.SmallInteger)
    logs_address: Mapped[dict | None] = mapped_column(JSONB, nullable=True)
    owner: Mapped[str] = mapped_column(Name)
    creation_date: Mapped[dt.datetime] = mapped_column(Stamp)


class OutputAssetRow(Base):
    """Link from a task output to an asset registered under it (idempotent by primary key)."""

    __tablename__ = "output_assets"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    compute_task_key: Mapped[str] = mapped_column(Key, primary_key=True)
    identifier: Mapped[str] = mapped_column(Name, primary_key=True)
    asset_key: Mapped[str] = mapped_column(sa.String(140), primary_key=True)
    asset_kind: Mapped[int] = mapped_column(sa.SmallInteger)
    position: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity())


class ProfilingStepRow(Base):
    """Duration of one step of a task or of a function build."""

    __tablename__ = "profiling_steps"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    asset_key: Mapped[str] = mapped_column(Key, primary_key=True)
    step: Mapped[str] = mapped_column(Name, primary_key=True)
    duration: Mapped[int] = mapped_column(sa.BigInteger)
    # Recording order: an asset's steps are listed as they were taken (Substra's rundown order).
    position: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity())


class ChannelPositionRow(Base):
    """The last event position of each channel; updating it serializes event writers per channel."""

    __tablename__ = "channel_positions"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    position: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class EventRow(Base):
    """The ordered event log: one row per event, the asset snapshot in protobuf JSON form."""

    __tablename__ = "events"
    __table_args__ = (
        sa.UniqueConstraint("id", name="uq_events_id"),
        sa.Index("ix_events_asset", "channel", "asset_key"),
    )

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    position: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    id: Mapped[str] = mapped_column(Key)
    asset_kind: Mapped[int] = mapped_column(sa.SmallInteger)
    asset_key: Mapped[str] = mapped_column(sa.String(140))
    event_kind: Mapped[int] = mapped_column(sa.SmallInteger)
    timestamp: Mapped[dt.datetime] = mapped_column(Stamp)
    asset: Mapped[dict] = mapped_column(JSONB)
    metadata_: Mapped[dict] = mapped_column("metadata", JSONB, default=dict)


class RelayCursorRow(Base):
    """How far the outbox relay has published each channel to JetStream."""

    __tablename__ = "relay_cursors"

    channel: Mapped[str] = mapped_column(Name, primary_key=True)
    position: Mapped[int] = mapped_column(sa.BigInteger, default=0)
