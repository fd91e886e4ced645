"""Building blocks shared by the ledger's rules: validation, permissions, the unit-of-work context.

The rules use the generated protobuf messages as plain value types (they carry data only); they
never import grpc or sqlalchemy. Persistence is reached through :class:`Store`, implemented in
``services.asset.store``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from google.protobuf import timestamp_pb2
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.kit.errors import FieldViolation, InvalidArgument, NotFound
from services.kit.identity import Caller

T = TypeVar("T")
MAX_NAME = 100
MAX_METADATA = 100
TAG_KEY = "__tag__"


# ---------------------------------------------------------------------------------------------- validation
class Violations:
    """Collects every field violation of a request, then raises them together."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, path: str, description: str) -> None:
        """Record one violation."""
        self.items.append(FieldViolation(path, description))

    def raise_if_any(self) -> None:
        """Raise INVALID_ARGUMENT naming every violation, if any."""
        if self.items:
            first = self.items[0]
            suffix = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise InvalidArgument(f"{first.field}: {first.description}{suffix}", violations=self.items)

    def key(self, path: str, value: str) -> str:
        """A UUID key, normalized to lowercase; returns the input unchanged when invalid."""
        try:
            return str(uuid.UUID(value))
        except (ValueError, AttributeError, TypeError):
            self.add(path, "must be a UUID")
            return value

    def name(self, path: str, value: str) -> None:
        """A name of 1 to 100 characters."""
        if not 1 <= len(value) <= MAX_NAME:
            self.add(path, f"must be 1 to {MAX_NAME} characters")

    def metadata(self, path: str, metadata: dict[str, str], *, allow_tag: bool = False) -> None:
        """Keys and values of at most 100 characters; no ``__`` in keys (reserved)."""
        for k, v in metadata.items():
            if not k or len(k) > MAX_METADATA:
                self.add(f"{path}[{k}]", f"keys must be 1 to {MAX_METADATA} characters")
            if len(v) > MAX_METADATA:
                self.add(f"{path}[{k}]", f"values must be at most {MAX_METADATA} characters")
            if "__" in k and not (allow_tag and k == TAG_KEY):
                self.add(f"{path}[{k}]", "keys may not contain '__'")

    def addressable(self, path: str, value: res.Addressable, *, required: bool = True) -> None:
        """sha256 hex checksum and an absolute URL."""
        if not value.checksum and not value.storage_address:
            if required:
                self.add(path, "is required")
            return
        checksum = value.checksum
        if len(checksum) != 64 or any(c not in "0123456789abcdef" for c in checksum):
            self.add(f"{path}.checksum", "must be 64 lowercase hex characters (sha256)")
        if not value.storage_address.startswith(("http://", "https://")):
            self.add(f"{path}.storage_address", "must be an absolute http(s) URL")


def in_declared_order(mapping: Mapping[str, T], order: Iterable[str]) -> dict[str, T]:
    """``mapping`` as a dict in the order its keys were declared: ``order`` first (a request's
    ``<map>_order``: a protobuf map has no order of its own), then any key it does not list, sorted.
    The result never depends on a map's iteration order, which differs from one process to another."""
    listed = [k for k in dict.fromkeys(order) if k in mapping]
    seen = set(listed)
    return {k: mapping[k] for k in [*listed, *sorted(k for k in mapping if k not in seen)]}


def validate_key(path: str, value: str) -> str:
    """A single key argument: its normalized form, or INVALID_ARGUMENT."""
    violations = Violations()
    key = violations.key(path, value)
    violations.raise_if_any()
    return key


def get_one(key: str, what: str, fetch: Callable[[list[str]], dict[str, T]]) -> T:
    """The record ``key`` names (validated as a UUID), read with ``fetch``; NOT_FOUND naming ``what`` if none."""
    key = validate_key("key", key)
    found = fetch([key])
    if key not in found:
        raise NotFound(f"{what} {key} not found")
    return found[key]


# --------------------------------------------------------------------------------------------- permissions
def make_permission(new: res.NewPermissions, owner: str) -> res.Permission:
    """The stored form of a permission: the owner is always authorized, ids are sorted and unique."""
    ids = sorted({*new.authorized_ids, owner})
    return res.Permission(public=new.public, authorized_ids=ids)


def make_permissions(new: res.NewPermissions, owner: str) -> res.Permissions:
    """``process`` and ``download`` are the same permission, as in Substra."""
    permission = make_permission(new, owner)
    return res.Permissions(process=permission, download=permission)


INVALID_PERMISSION = "invalid permission input values"
"""Substra's words for a permission naming an unknown organization (clients match on them)."""


def check_authorized_ids(violations: Violations, path: str, new: res.NewPermissions, known: set[str]) -> None:
    """Every authorized id must be a registered organization of the channel."""
    for i, org in enumerate(new.authorized_ids):
        if org not in known:
            violations.add(
                f"{path}.authorized_ids[{i}]", f"{INVALID_PERMISSION}: {org!r} is not an organization of this channel"
            )


def allows(permission: res.Permission, org: str) -> bool:
    """Public, or ``org`` among the authorized ids."""
    return permission.public or org in permission.authorized_ids


def union(a: res.Permission, b: res.Permission) -> res.Permission:
    """Public if either is; otherwise the union of the ids."""
    if a.public or b.public:
        return res.Permission(public=True, authorized_ids=sorted({*a.authorized_ids, *b.authorized_ids}))
    return res.Permission(public=False, authorized_ids=sorted({*a.authorized_ids, *b.authorized_ids}))


# ------------------------------------------------------------------------------------------------- context
def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf timestamp, or None."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


_ASSET_FIELDS = {
    res.ASSET_ORGANIZATION: "organization",
    res.ASSET_DATA_MANAGER: "data_manager",
    res.ASSET_DATA_SAMPLE: "data_sample",
    res.ASSET_FUNCTION: "function",
    res.ASSET_COMPUTE_PLAN: "compute_plan",
    res.ASSET_COMPUTE_TASK: "compute_task",
    res.ASSET_MODEL: "model",
    res.ASSET_PERFORMANCE: "performance",
    res.ASSET_FAILURE_REPORT: "failure_report",
    res.ASSET_COMPUTE_TASK_OUTPUT_ASSET: "compute_task_output_asset",
    res.ASSET_PROFILING_STEP: "profiling_step",
}


def subject_token(asset_kind: int) -> str:
    """``compute_task`` for ASSET_COMPUTE_TASK: the last token of the event's NATS subject."""
    return _ASSET_FIELDS[asset_kind]


@dataclass
class Context:
    """One unit of work of the ledger: who calls, when, the store, and the events to append."""

    caller: Caller
    now: dt.datetime
    store: Store
    events: list[ev.Event] = field(default_factory=list)
    # Plans locked for update in this unit of work, and those whose row must be written back.
    plans: dict[str, res.ComputePlan] = field(default_factory=dict)
    dirty_plans: set[str] = field(default_factory=set)
    # The build failure being registered, copied onto the tasks it fails.
    build_failure: res.FailureReport | None = None
    # The caller's trace context (W3C headers as strings), stamped on every event of the unit.
    trace_context: dict[str, str] = field(default_factory=dict)

    @property
    def channel(self) -> str:
        """The channel the call acts in."""
        return self.caller.channel

    @property
    def org(self) -> str:
        """The calling organization."""
        return self.caller.org_id

    def emit(
        self,
        asset_kind: int,
        asset_key: str,
        event_kind: int,
        asset: Any,
        reason: str = "",
        *,
        status_change: tuple[int, int] | None = None,
        **metadata: str,
    ) -> None:
        """Queue an event carrying a snapshot of ``asset``; positions are given at commit.
        ``status_change`` is (previous, current) when the change moved the asset's status."""
        event = ev.Event(
            id=str(uuid.uuid4()),
            channel=self.channel,
            asset_kind=asset_kind,
            asset_key=asset_key,
            event_kind=event_kind,
            timestamp=timestamp(self.now),
        )
        getattr(event, _ASSET_FIELDS[asset_kind]).CopyFrom(asset)
        if reason:
            event.metadata["reason"] = reason
        event.metadata.update(metadata)
        if status_change is not None:
            event.status_change.previous, event.status_change.current = status_change
        event.trace_context.update(self.trace_context)
        self.events.append(event)


class Store(Protocol):
    """Persistence the rules need, scoped to one channel: ``services.asset.store.sql.SqlStore`` on
    PostgreSQL, ``services.asset.store.memory.MemoryStore`` in memory (unit tests).

    ``get_*`` of several keys return the found ones by key, as fresh messages: changing one changes
    nothing stored until the matching ``update_*``, which writes only the fields that may change.
    ``for_update`` locks the row until the end of the unit of work. ``update_tasks`` writes several tasks in as
    few statements as their written values allow (one for tasks a cascade moves alike). ``add_output_assets``
    (per link, in order) and ``add_profiling_step`` return False when the row already existed (and change nothing);
    ``add_profiling_steps`` keeps the steps already recorded as they were.
    ``append_events`` gives the events their positions (strictly increasing per channel)."""

    def organization_ids(self) -> set[str]: ...
    def add_organization(self, organization: res.Organization) -> None: ...
    def get_data_managers(self, keys: Iterable[str], *, with_samples: bool = False) -> dict[str, res.DataManager]: ...
    def add_data_manager(self, manager: res.DataManager) -> None: ...
    def update_data_manager(self, manager: res.DataManager) -> None: ...
    def get_data_samples(self, keys: Iterable[str]) -> dict[str, res.DataSample]: ...
    def add_data_samples(self, samples: list[res.DataSample]) -> None: ...
    def update_data_sample(self, sample: res.DataSample) -> None: ...
    def get_functions(self, keys: Iterable[str]) -> dict[str, res.Function]: ...
    def add_function(self, function: res.Function) -> None: ...
    def update_function(self, function: res.Function) -> None: ...
    def get_plan(self, key: str, *, for_update: bool = False) -> res.ComputePlan | None: ...
    def add_plan(self, plan: res.ComputePlan) -> None: ...
    def update_plan(self, plan: res.ComputePlan) -> None: ...
    def get_tasks(self, keys: Iterable[str]) -> dict[str, res.ComputeTask]: ...
    def existing_task_keys(self, keys: Iterable[str]) -> set[str]: ...
    def add_tasks(self, tasks: list[res.ComputeTask]) -> None: ...
    def update_tasks(self, tasks: Sequence[res.ComputeTask]) -> None: ...
    def children(self, parent_key: str) -> list[res.ComputeTask]: ...
    def parents_done(self, child_key: str) -> bool: ...
    def tasks_of_plan(self, plan_key: str, *, non_final: bool = False) -> list[res.ComputeTask]: ...
    def tasks_of_function(self, function_key: str, statuses: Iterable[int]) -> list[res.ComputeTask]: ...
    def function_has_tasks(self, function_key: str, statuses: Iterable[int]) -> bool: ...
    def get_models(self, keys: Iterable[str]) -> dict[str, res.Model]: ...
    def models_of_output(self, task_key: str, identifier: str) -> list[res.Model]: ...
    def models_of_outputs(self, outputs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[res.Model]]: ...
    def add_models(self, models: list[res.Model]) -> None: ...
    def disable_model(self, model: res.Model) -> None: ...
    def get_performance(self, task_key: str, identifier: str) -> res.Performance | None: ...
    def add_performance(self, performance: res.Performance) -> None: ...
    def add_output_assets(self, links: Sequence[res.ComputeTaskOutputAsset]) -> list[bool]: ...
    def get_failure_report(self, asset_key: str) -> res.FailureReport | None: ...
    def add_failure_report(self, report: res.FailureReport) -> None: ...
    def add_profiling_step(self, step: res.ProfilingStep) -> bool: ...
    def add_profiling_steps(self, steps: list[res.ProfilingStep]) -> None: ...
    def append_events(self, events: list[ev.Event]) -> None: ...
