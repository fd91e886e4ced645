"""The ledger's store on PostgreSQL: the domain's ``Store`` protocol, scoped to one channel.

Rows map explicitly to the protobuf value types the rules use; nested parts go through the
protobuf JSON form (JSONB columns), never as serialized blobs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain.common import timestamp
from services.asset.store.tables import (
    ChannelPositionRow,
    ComputePlanRow,
    ComputeTaskRow,
    DataManagerRow,
    DataSampleRow,
    EventRow,
    FailureReportRow,
    FunctionRow,
    ModelRow,
    OrganizationRow,
    OutputAssetRow,
    PerformanceRow,
    ProfilingStepRow,
    TaskParentRow,
)
from services.kit import protojson

M = TypeVar("M", bound=Message)
FINAL_STATUSES = (res.STATUS_DONE, res.STATUS_CANCELED, res.STATUS_FAILED)


def as_dict(message: Message) -> dict:
    """The protobuf JSON form of ``message`` with field names as declared."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def as_message(cls: type[M], data: Any) -> M:
    """Parse the protobuf JSON form back."""
    return protojson.parse(cls, data)


stamp = timestamp  # a protobuf timestamp from a column value, or None


def rows_of(row_class) -> sa.Select:
    """A Core SELECT of every column of ``row_class``'s table, each labelled with its attribute name: its rows
    read like the mapped objects (``row.metadata_``), without the ORM's per-row loading. The ledger's hot reads
    use these, with conditions on the table's own columns (an ORM attribute in a condition brings the ORM back)."""
    return sa.select(*[column.label(name) for name, column in sa.inspect(row_class).columns.items()])


def _by_keys(row_class) -> sa.Select:
    table = row_class.__table__
    return rows_of(row_class).where(
        table.c.channel == sa.bindparam("channel"), table.c.key.in_(sa.bindparam("keys", expanding=True))
    )


# Statements built once (building one costs about as much as running it).
TASKS = ComputeTaskRow.__table__
PARENTS = TaskParentRow.__table__
MODELS = ModelRow.__table__
OUTPUT_ASSETS = OutputAssetRow.__table__
ADD_OUTPUT_ASSETS = (
    pg_insert(OUTPUT_ASSETS)
    .on_conflict_do_nothing()
    .returning(OUTPUT_ASSETS.c.compute_task_key, OUTPUT_ASSETS.c.identifier, OUTPUT_ASSETS.c.asset_key)
)
BY_KEYS = {
    row_class: _by_keys(row_class)
    for row_class in (DataManagerRow, DataSampleRow, FunctionRow, ComputePlanRow, ComputeTaskRow, ModelRow)
}
PLAN_FOR_UPDATE = BY_KEYS[ComputePlanRow].with_for_update()
PARENTS_NOT_DONE = (
    sa.select(sa.func.count())
    .select_from(PARENTS)
    .join(TASKS, sa.and_(TASKS.c.channel == PARENTS.c.channel, TASKS.c.key == PARENTS.c.parent_key))
    .where(
        PARENTS.c.channel == sa.bindparam("channel"),
        PARENTS.c.child_key == sa.bindparam("child"),
        TASKS.c.status != res.STATUS_DONE,
    )
)
_CHILD_PARENTS, _PARENT = PARENTS.alias("child_parents"), TASKS.alias("parent")
CHILDREN = (
    rows_of(ComputeTaskRow)
    .add_columns(
        # How many of each child's parents are not DONE, read with it: the DONE cascade asks it of each child.
        sa.select(sa.func.count())
        .select_from(_CHILD_PARENTS)
        .join(
            _PARENT,
            sa.and_(_PARENT.c.channel == _CHILD_PARENTS.c.channel, _PARENT.c.key == _CHILD_PARENTS.c.parent_key),
        )
        .where(
            _CHILD_PARENTS.c.channel == TASKS.c.channel,
            _CHILD_PARENTS.c.child_key == TASKS.c.key,
            _PARENT.c.status != res.STATUS_DONE,
        )
        .scalar_subquery()
        .label("parents_not_done")
    )
    .join(PARENTS, sa.and_(PARENTS.c.channel == TASKS.c.channel, PARENTS.c.child_key == TASKS.c.key))
    .where(PARENTS.c.channel == sa.bindparam("channel"), PARENTS.c.parent_key == sa.bindparam("parent"))
    .order_by(TASKS.c.seq)
)
UPDATE_TASKS = (
    sa.update(TASKS)
    .where(TASKS.c.channel == sa.bindparam("w_channel"), TASKS.c.key.in_(sa.bindparam("w_keys", expanding=True)))
    .values(
        status=sa.bindparam("status"),
        start_date=sa.bindparam("start_date"),
        end_date=sa.bindparam("end_date"),
        error_type=sa.bindparam("error_type"),
        logs_address=sa.bindparam("logs_address", type_=TASKS.c.logs_address.type),
    )
)
POSITIONS = ChannelPositionRow.__table__
NEXT_POSITIONS = (
    pg_insert(POSITIONS)
    .values(channel=sa.bindparam("channel"), position=sa.bindparam("count"))
    .on_conflict_do_update(
        index_elements=[POSITIONS.c.channel], set_={"position": POSITIONS.c.position + sa.bindparam("count")}
    )
    .returning(POSITIONS.c.position)
)
PERFORMANCES = PerformanceRow.__table__
PROFILING = ProfilingStepRow.__table__
# Executed with a list of rows: RETURNING makes them multi-row INSERTs (without it, an ON CONFLICT clause sends
# one statement per row).
ADD_PROFILING_STEPS = pg_insert(PROFILING).on_conflict_do_nothing().returning(PROFILING.c.step)
ADD_PERFORMANCE = sa.insert(PERFORMANCES)
PERFORMANCE = rows_of(PerformanceRow).where(
    PERFORMANCES.c.channel == sa.bindparam("channel"),
    PERFORMANCES.c.compute_task_key == sa.bindparam("task"),
    PERFORMANCES.c.identifier == sa.bindparam("identifier"),
)
_LINKED_MODELS = rows_of(ModelRow).join(
    OUTPUT_ASSETS, sa.and_(OUTPUT_ASSETS.c.channel == MODELS.c.channel, OUTPUT_ASSETS.c.asset_key == MODELS.c.key)
)
"""Models with their output link, in the links' order (a model is an output's once linked)."""
MODELS_OF_OUTPUT = _LINKED_MODELS.where(
    MODELS.c.channel == sa.bindparam("channel"),
    MODELS.c.compute_task_key == sa.bindparam("task"),
    MODELS.c.identifier == sa.bindparam("identifier"),
).order_by(OUTPUT_ASSETS.c.position)
MODELS_OF_OUTPUTS = _LINKED_MODELS.where(
    MODELS.c.channel == sa.bindparam("channel"),
    sa.tuple_(MODELS.c.compute_task_key, MODELS.c.identifier).in_(sa.bindparam("outputs", expanding=True)),
).order_by(OUTPUT_ASSETS.c.position)


def when(message: Message, field: str) -> dt.datetime | None:
    """A datetime column value from a timestamp field, or None when unset."""
    return getattr(message, field).ToDatetime(dt.UTC) if message.HasField(field) else None


# ------------------------------------------------------------------------------------ row ⇄ message
def map_order(message: Message, *maps: str) -> dict[str, list[str]]:
    """The ``map_order`` column of a message: the declared key order of each of its ``maps``."""
    return {name: list(getattr(message, f"{name}_order")) for name in maps}


def _set_order(message: M, stored: dict | None) -> M:
    """Put a row's ``map_order`` back into the message's ``<map>_order`` fields."""
    for name, keys in (stored or {}).items():
        getattr(message, f"{name}_order").extend(keys)
    return message


def organization(row: OrganizationRow) -> res.Organization:
    """Row to message."""
    return res.Organization(id=row.id, address=row.address, creation_date=stamp(row.creation_date))


def data_manager(row: DataManagerRow, sample_keys: list[str] | None = None) -> res.DataManager:
    """Row to message."""
    message = res.DataManager(
        key=row.key,
        name=row.name,
        owner=row.owner,
        permissions=as_message(res.Permissions, row.permissions),
        description=as_message(res.Addressable, row.description),
        opener=as_message(res.Addressable, row.opener),
        type=row.type,
        logs_permission=as_message(res.Permission, row.logs_permission),
        metadata=row.metadata_,
        creation_date=stamp(row.creation_date),
        data_sample_keys=sample_keys or [],
    )
    return _set_order(message, row.map_order)


def data_sample(row: DataSampleRow) -> res.DataSample:
    """Row to message."""
    return res.DataSample(
        key=row.key,
        data_manager_keys=row.data_manager_keys,
        owner=row.owner,
        checksum=row.checksum,
        creation_date=stamp(row.creation_date),
    )


def function(row: FunctionRow) -> res.Function:
    """Row to message."""
    message = res.Function(
        key=row.key,
        name=row.name,
        description=as_message(res.Addressable, row.description),
        archive=as_message(res.Addressable, row.archive),
        permissions=as_message(res.Permissions, row.permissions),
        owner=row.owner,
        creation_date=stamp(row.creation_date),
        metadata=row.metadata_,
        status=row.status,
    )
    for name, spec in row.inputs.items():
        message.inputs[name].CopyFrom(as_message(res.FunctionInput, spec))
    for name, spec in row.outputs.items():
        message.outputs[name].CopyFrom(as_message(res.FunctionOutput, spec))
    if row.image:
        message.image.CopyFrom(as_message(res.Addressable, row.image))
    return _set_order(message, row.map_order)


PLAN_COUNTERS = (
    "task_count",
    "waiting_builder_slot_count",
    "building_count",
    "waiting_parent_tasks_count",
    "waiting_executor_slot_count",
    "executing_count",
    "done_count",
    "canceled_count",
    "failed_count",
)
PLAN_DATES = ("cancelation_date", "failure_date", "start_date", "end_date")
PLAN_WRITTEN = ("name", "failed_task_key", "status", *PLAN_COUNTERS, *PLAN_DATES)
"""What an update writes: the rest of a plan never changes."""
PLANS = ComputePlanRow.__table__
UPDATE_PLAN = (
    sa.update(PLANS)
    .where(PLANS.c.channel == sa.bindparam("w_channel"), PLANS.c.key == sa.bindparam("w_key"))
    .values({name: sa.bindparam(name) for name in PLAN_WRITTEN})
)


def plan(row: ComputePlanRow) -> res.ComputePlan:
    """Row to message (derived read-time fields are filled by the domain)."""
    message = res.ComputePlan(
        key=row.key,
        owner=row.owner,
        tag=row.tag,
        name=row.name,
        metadata=row.metadata_,
        creation_date=stamp(row.creation_date),
        status=row.status,
        failed_task_key=row.failed_task_key,
        creator=row.creator,
        **{name: getattr(row, name) for name in PLAN_COUNTERS},
    )
    for name in PLAN_DATES:
        value = getattr(row, name)
        if value is not None:
            getattr(message, name).CopyFrom(stamp(value))
    return _set_order(message, row.map_order)


def plan_values(message: res.ComputePlan) -> dict[str, Any]:
    """Message to column values."""
    return {
        "key": message.key,
        "owner": message.owner,
        "tag": message.tag,
        "creator": message.creator,
        "metadata_": dict(message.metadata),
        "map_order": map_order(message, "metadata"),
        "creation_date": when(message, "creation_date"),
        **plan_written_values(message),
    }


def plan_written_values(message: res.ComputePlan) -> dict[str, Any]:
    """The column values an update writes (:data:`PLAN_WRITTEN`)."""
    values = {
        "name": message.name,
        "failed_task_key": message.failed_task_key,
        "status": message.status,
        **{name: getattr(message, name) for name in PLAN_COUNTERS},
    }
    values.update({name: when(message, name) for name in PLAN_DATES})
    return values


def task(row: ComputeTaskRow, functions: dict[str, res.Function] | None = None) -> res.ComputeTask:
    """Row to message, with the function embedded when known."""
    message = res.ComputeTask(
        key=row.key,
        owner=row.owner,
        compute_plan_key=row.compute_plan_key,
        function_key=row.function_key,
        rank=row.rank,
        status=row.status,
        worker=row.worker,
        creation_date=stamp(row.creation_date),
        metadata=row.metadata_,
        logs_permission=as_message(res.Permission, row.logs_permission),
        inputs=[as_message(res.ComputeTaskInput, i) for i in row.inputs],
        tag=row.tag,
    )
    for name, spec in row.outputs.items():
        message.outputs[name].CopyFrom(as_message(res.ComputeTaskOutput, spec))
    if row.start_date is not None:
        message.start_date.CopyFrom(stamp(row.start_date))
    if row.end_date is not None:
        message.end_date.CopyFrom(stamp(row.end_date))
    if row.start_date is not None and row.end_date is not None:
        message.duration = int((row.end_date - row.start_date).total_seconds())
    if row.error_type is not None:
        message.error_type = row.error_type
    if row.logs_address:
        message.logs_address.CopyFrom(as_message(res.Addressable, row.logs_address))
    if functions and row.function_key in functions:
        message.function.CopyFrom(functions[row.function_key])
    return _set_order(message, row.map_order)


def task_values(message: res.ComputeTask) -> dict[str, Any]:
    """Message to column values."""
    return {
        "key": message.key,
        "owner": message.owner,
        "compute_plan_key": message.compute_plan_key,
        "function_key": message.function_key,
        "worker": message.worker,
        "rank": message.rank,
        "tag": message.tag,
        "metadata_": dict(message.metadata),
        "map_order": map_order(message, "metadata", "outputs"),
        "logs_permission": as_dict(message.logs_permission),
        "inputs": [as_dict(i) for i in message.inputs],
        "outputs": {name: as_dict(o) for name, o in message.outputs.items()},
        "creation_date": when(message, "creation_date"),
        **task_written_values(message),
    }


def task_written_values(message: res.ComputeTask) -> dict[str, Any]:
    """The column values a transition writes: the rest of a task never changes."""
    return {
        "status": message.status,
        "start_date": when(message, "start_date"),
        "end_date": when(message, "end_date"),
        "error_type": message.error_type if message.HasField("error_type") else None,
        "logs_address": as_dict(message.logs_address) if message.HasField("logs_address") else None,
    }


def model(row: ModelRow) -> res.Model:
    """Row to message."""
    message = res.Model(
        key=row.key,
        compute_task_key=row.compute_task_key,
        compute_task_output_identifier=row.identifier,
        permissions=as_message(res.Permissions, row.permissions),
        owner=row.owner,
        creation_date=stamp(row.creation_date),
    )
    if row.address:
        message.address.CopyFrom(as_message(res.Addressable, row.address))
    return message


def performance(row: PerformanceRow) -> res.Performance:
    """Row to message."""
    return res.Performance(
        compute_task_key=row.compute_task_key,
        compute_task_output_identifier=row.identifier,
        performance_value=row.value,
        creation_date=stamp(row.creation_date),
    )


def failure_report(row: FailureReportRow) -> res.FailureReport:
    """Row to message."""
    message = res.FailureReport(
        asset_key=row.asset_key,
        asset_type=row.asset_type,
        error_type=row.error_type,
        creation_date=stamp(row.creation_date),
        owner=row.owner,
    )
    if row.logs_address:
        message.logs_address.CopyFrom(as_message(res.Addressable, row.logs_address))
    return message


def event(row: EventRow) -> ev.Event:
    """Row to message."""
    return as_message(ev.Event, row.asset)


def events_after(session: Session, channel: str, position: int, limit: int) -> list[ev.Event]:
    """Up to ``limit`` events of ``channel`` after ``position``, in position order."""
    rows = session.scalars(
        sa.select(EventRow)
        .where(EventRow.channel == channel, EventRow.position > position)
        .order_by(EventRow.position)
        .limit(limit)
    )
    return [event(row) for row in rows]


# ------------------------------------------------------------------------------------------- store
class SqlStore:
    """The ``Store`` of the rules, on one session and one channel."""

    def __init__(self, session: Session, channel: str) -> None:
        self.session = session
        self.channel = channel
        self._functions: dict[str, res.Function] = {}
        self._task_cache: dict[str, res.ComputeTask] = {}  # as this transaction last read them
        self._parents_not_done: dict[str, int] = {}  # per child, as the last children read counted them
        self._unwritten: dict[str, dict[str, Any]] = {}  # task transitions not sent yet (see update_tasks)
        self._committing_writes = False

    def _by_keys(self, row_class, keys: Iterable[str]) -> sa.Result:
        return self.session.execute(BY_KEYS[row_class], {"channel": self.channel, "keys": list(keys)})

    # organizations
    def organization_ids(self) -> set[str]:
        return set(self.session.scalars(sa.select(OrganizationRow.id).where(OrganizationRow.channel == self.channel)))

    def add_organization(self, org: res.Organization) -> None:
        self.session.add(
            OrganizationRow(
                channel=self.channel, id=org.id, address=org.address, creation_date=when(org, "creation_date")
            )
        )
        self.session.flush()

    # data managers and samples
    def sample_keys_of(self, manager_keys: list[str]) -> dict[str, list[str]]:
        """Keys of the samples linked to each data manager."""
        if not manager_keys:
            return {}
        rows = self.session.execute(
            sa.select(DataSampleRow.key, DataSampleRow.data_manager_keys)
            .where(
                DataSampleRow.channel == self.channel,
                DataSampleRow.data_manager_keys.overlap(sa.cast(manager_keys, DataSampleRow.data_manager_keys.type)),
            )
            .order_by(DataSampleRow.creation_date, DataSampleRow.key)
        )
        linked: dict[str, list[str]] = {k: [] for k in manager_keys}
        for key, managers in rows:
            for manager in managers:
                if manager in linked:
                    linked[manager].append(key)
        return linked

    def get_data_managers(self, keys: Iterable[str], *, with_samples: bool = False) -> dict[str, res.DataManager]:
        keys = list(keys)
        if not keys:
            return {}
        rows = list(self._by_keys(DataManagerRow, keys))
        samples = self.sample_keys_of([r.key for r in rows]) if with_samples else {}
        return {row.key: data_manager(row, samples.get(row.key)) for row in rows}

    def add_data_manager(self, manager: res.DataManager) -> None:
        self.session.add(
            DataManagerRow(
                channel=self.channel,
                key=manager.key,
                name=manager.name,
                owner=manager.owner,
                permissions=as_dict(manager.permissions),
                description=as_dict(manager.description),
                opener=as_dict(manager.opener),
                type=manager.type,
                logs_permission=as_dict(manager.logs_permission),
                metadata_=dict(manager.metadata),
                map_order=map_order(manager, "metadata"),
                creation_date=when(manager, "creation_date"),
            )
        )
        self.session.flush()

    def update_data_manager(self, manager: res.DataManager) -> None:
        self.session.execute(
            sa.update(DataManagerRow)
            .where(DataManagerRow.channel == self.channel, DataManagerRow.key == manager.key)
            .values(name=manager.name)
        )

    def get_data_samples(self, keys: Iterable[str]) -> dict[str, res.DataSample]:
        keys = list(keys)
        if not keys:
            return {}
        return {row.key: data_sample(row) for row in self._by_keys(DataSampleRow, keys)}

    def add_data_samples(self, samples: list[res.DataSample]) -> None:
        self.session.execute(
            sa.insert(DataSampleRow),
            [
                {
                    "channel": self.channel,
                    "key": s.key,
                    "owner": s.owner,
                    "checksum": s.checksum,
                    "data_manager_keys": list(s.data_manager_keys),
                    "creation_date": when(s, "creation_date"),
                }
                for s in samples
            ],
        )

    def update_data_sample(self, sample: res.DataSample) -> None:
        self.session.execute(
            sa.update(DataSampleRow)
            .where(DataSampleRow.channel == self.channel, DataSampleRow.key == sample.key)
            .values(data_manager_keys=list(sample.data_manager_keys))
        )

    # functions
    def get_functions(self, keys: Iterable[str]) -> dict[str, res.Function]:
        keys = set(keys)
        missing = keys - set(self._functions)
        if missing:
            for row in self._by_keys(FunctionRow, missing):
                self._functions[row.key] = function(row)
        return {k: _copy(self._functions[k]) for k in keys if k in self._functions}

    def _function_values(self, f: res.Function) -> dict[str, Any]:
        return {
            "name": f.name,
            "owner": f.owner,
            "permissions": as_dict(f.permissions),
            "description": as_dict(f.description),
            "archive": as_dict(f.archive),
            "image": as_dict(f.image) if f.HasField("image") else None,
            "inputs": {k: as_dict(v) for k, v in f.inputs.items()},
            "outputs": {k: as_dict(v) for k, v in f.outputs.items()},
            "status": f.status,
            "metadata_": dict(f.metadata),
            "map_order": map_order(f, "metadata", "inputs", "outputs"),
        }

    def add_function(self, f: res.Function) -> None:
        self.session.add(
            FunctionRow(
                channel=self.channel, key=f.key, creation_date=when(f, "creation_date"), **self._function_values(f)
            )
        )
        self.session.flush()
        self._functions[f.key] = _copy(f)

    def update_function(self, f: res.Function) -> None:
        self.session.execute(
            sa.update(FunctionRow)
            .where(FunctionRow.channel == self.channel, FunctionRow.key == f.key)
            .values(**self._function_values(f))
        )
        self._functions[f.key] = _copy(f)

    # plans
    def get_plan(self, key: str, *, for_update: bool = False) -> res.ComputePlan | None:
        query = PLAN_FOR_UPDATE if for_update else BY_KEYS[ComputePlanRow]
        row = self.session.execute(query, {"channel": self.channel, "keys": [key]}).first()
        return None if row is None else plan(row)

    def add_plan(self, message: res.ComputePlan) -> None:
        self.session.execute(sa.insert(ComputePlanRow).values(channel=self.channel, **plan_values(message)))

    def update_plan(self, message: res.ComputePlan) -> None:
        self.session.execute(
            UPDATE_PLAN, {"w_channel": self.channel, "w_key": message.key, **plan_written_values(message)}
        )

    # tasks
    def _tasks(self, query, params: dict | None = None, *, unwritten_first: bool = True) -> list[res.ComputeTask]:
        if unwritten_first:
            self._write_tasks()
        return self._loaded(list(self.session.execute(query, params or {})))

    def _loaded(self, rows: list) -> list[res.ComputeTask]:
        functions = self.get_functions({row.function_key for row in rows})
        found = [task(row, functions) for row in rows]
        self._task_cache.update((t.key, _copy(t)) for t in found)
        return found

    def get_tasks(self, keys: Iterable[str]) -> dict[str, res.ComputeTask]:
        """Tasks by key, read once per transaction until written (only this store writes them), so the
        rules may look a task up as often as they like."""
        keys = list(keys)
        missing = [key for key in keys if key not in self._task_cache]
        if missing:  # rows of tasks with no kept transition read the same before and after it is sent
            kept = not self._unwritten.keys().isdisjoint(missing)
            self._tasks(BY_KEYS[ComputeTaskRow], {"channel": self.channel, "keys": missing}, unwritten_first=kept)
        return {key: _copy(self._task_cache[key]) for key in keys if key in self._task_cache}

    def existing_task_keys(self, keys: Iterable[str]) -> set[str]:
        self._write_tasks()
        return set(
            self.session.scalars(
                sa.select(ComputeTaskRow.key).where(
                    ComputeTaskRow.channel == self.channel, ComputeTaskRow.key.in_(list(keys))
                )
            )
        )

    def add_tasks(self, tasks: list[res.ComputeTask]) -> None:
        self.session.execute(sa.insert(ComputeTaskRow), [{"channel": self.channel, **task_values(t)} for t in tasks])
        edges = []
        for t in tasks:
            parents = dict.fromkeys(
                i.parent_task_output.parent_task_key for i in t.inputs if i.WhichOneof("ref") == "parent_task_output"
            )
            edges += [
                {"channel": self.channel, "child_key": t.key, "parent_key": p, "position": n}
                for n, p in enumerate(parents)
            ]
        if edges:
            self.session.execute(sa.insert(TaskParentRow), edges)

    def update_tasks(self, messages: Sequence[res.ComputeTask]) -> None:
        """Kept, and sent when the transaction next reads tasks or commits: the transitions of a group (the
        starts of a round's trainings, written the same values at the same instant) then travel together. The
        rules read tasks through this store's cache, which is updated at once."""
        if not self._committing_writes:  # the session (one per unit of work) sends them before it commits
            sa.event.listen(self.session, "before_commit", lambda _session: self._write_tasks())
            self._committing_writes = True
        for message in messages:
            values = self._unwritten[message.key] = task_written_values(message)
            self._written(message, values)

    def _write_tasks(self) -> None:
        """Send the kept transitions, one statement per set of equal written values."""
        if not self._unwritten:
            return
        alike: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for key, values in self._unwritten.items():
            same = alike.setdefault(json.dumps(values, default=str, sort_keys=True), (values, []))
            same[1].append(key)
        self._unwritten = {}
        for values, keys in alike.values():
            self.session.execute(UPDATE_TASKS, {"w_channel": self.channel, "w_keys": keys, **values})

    def _written(self, message: res.ComputeTask, values: dict[str, Any]) -> None:
        """The caches after ``message``'s transition fields (``values``) were written."""
        if message.status == res.STATUS_DONE:
            self._parents_not_done.clear()  # counted before this task was DONE
        stored = self._task_cache.get(message.key)
        if stored is not None:  # kept as a read would now find it: the written fields, the duration derived
            for name in ("start_date", "end_date", "logs_address", "error_type", "duration"):
                stored.ClearField(name)
            stored.status = message.status
            if message.HasField("error_type"):
                stored.error_type = message.error_type
            for name in ("start_date", "end_date", "logs_address"):
                if message.HasField(name):
                    getattr(stored, name).CopyFrom(getattr(message, name))
            if values["start_date"] is not None and values["end_date"] is not None:
                stored.duration = int((values["end_date"] - values["start_date"]).total_seconds())

    def children(self, parent_key: str) -> list[res.ComputeTask]:
        self._write_tasks()
        rows = list(self.session.execute(CHILDREN, {"channel": self.channel, "parent": parent_key}))
        self._parents_not_done.update((row.key, row.parents_not_done) for row in rows)
        return self._loaded(rows)

    def parents_done(self, child_key: str) -> bool:
        """Counted with the children read last, unless a task became DONE since."""
        not_done = self._parents_not_done.get(child_key)
        if not_done is None:
            self._write_tasks()
            not_done = self.session.scalar(PARENTS_NOT_DONE, {"channel": self.channel, "child": child_key})
        return not_done == 0

    def tasks_of_plan(self, plan_key: str, *, non_final: bool = False) -> list[res.ComputeTask]:
        query = rows_of(ComputeTaskRow).where(TASKS.c.channel == self.channel, TASKS.c.compute_plan_key == plan_key)
        if non_final:
            query = query.where(TASKS.c.status.not_in(FINAL_STATUSES))
        return self._tasks(query.order_by(TASKS.c.seq))

    def tasks_of_function(self, function_key: str, statuses: Iterable[int]) -> list[res.ComputeTask]:
        return self._tasks(
            rows_of(ComputeTaskRow)
            .where(
                TASKS.c.channel == self.channel,
                TASKS.c.function_key == function_key,
                TASKS.c.status.in_(list(statuses)),
            )
            .order_by(TASKS.c.seq)
        )

    def function_has_tasks(self, function_key: str, statuses: Iterable[int]) -> bool:
        self._write_tasks()
        t = ComputeTaskRow
        found = sa.select(t.key).where(
            t.channel == self.channel, t.function_key == function_key, t.status.in_(list(statuses))
        )
        return self.session.scalar(found.limit(1)) is not None

    # models, performances, links
    def get_models(self, keys: Iterable[str]) -> dict[str, res.Model]:
        keys = list(keys)
        if not keys:
            return {}
        return {row.key: model(row) for row in self._by_keys(ModelRow, keys)}

    def models_of_output(self, task_key: str, identifier: str) -> list[res.Model]:
        rows = self.session.execute(
            MODELS_OF_OUTPUT, {"channel": self.channel, "task": task_key, "identifier": identifier}
        )
        return [model(row) for row in rows]

    def models_of_outputs(self, outputs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[res.Model]]:
        """The models of several task outputs in one query (an aggregation reads one output per parent)."""
        found: dict[tuple[str, str], list[res.Model]] = {output: [] for output in outputs}
        if found:
            rows = self.session.execute(MODELS_OF_OUTPUTS, {"channel": self.channel, "outputs": list(found)})
            for row in rows:
                found[(row.compute_task_key, row.identifier)].append(model(row))
        return found

    def add_models(self, models: list[res.Model]) -> None:
        self.session.execute(
            sa.insert(MODELS),
            [
                {
                    "channel": self.channel,
                    "key": m.key,
                    "compute_task_key": m.compute_task_key,
                    "identifier": m.compute_task_output_identifier,
                    "address": as_dict(m.address) if m.HasField("address") else None,
                    "permissions": as_dict(m.permissions),
                    "owner": m.owner,
                    "creation_date": when(m, "creation_date"),
                }
                for m in models
            ],
        )

    def disable_model(self, m: res.Model) -> None:
        self.session.execute(
            sa.update(ModelRow).where(ModelRow.channel == self.channel, ModelRow.key == m.key).values(address=None)
        )

    def get_performance(self, task_key: str, identifier: str) -> res.Performance | None:
        row = self.session.execute(
            PERFORMANCE, {"channel": self.channel, "task": task_key, "identifier": identifier}
        ).first()
        return None if row is None else performance(row)

    def add_performance(self, p: res.Performance) -> None:
        self.session.execute(
            ADD_PERFORMANCE,
            {
                "channel": self.channel,
                "compute_task_key": p.compute_task_key,
                "identifier": p.compute_task_output_identifier,
                "value": p.performance_value,
                "creation_date": when(p, "creation_date"),
            },
        )

    def add_output_assets(self, links: Sequence[res.ComputeTaskOutputAsset]) -> list[bool]:
        if not links:
            return []
        rows = [
            {
                "channel": self.channel,
                "compute_task_key": link.compute_task_key,
                "identifier": link.compute_task_output_identifier,
                "asset_key": link.asset_key,
                "asset_kind": link.asset_kind,
            }
            for link in links
        ]
        # One multi-row VALUES: PostgreSQL numbers the rows' positions in the order they are listed.
        inserted = {tuple(row) for row in self.session.execute(ADD_OUTPUT_ASSETS.values(rows))}
        return [(r["compute_task_key"], r["identifier"], r["asset_key"]) in inserted for r in rows]

    # failure reports, profiling
    def get_failure_report(self, asset_key: str) -> res.FailureReport | None:
        row = self.session.get(FailureReportRow, (self.channel, asset_key))
        return None if row is None else failure_report(row)

    def add_failure_report(self, report: res.FailureReport) -> None:
        self.session.add(
            FailureReportRow(
                channel=self.channel,
                asset_key=report.asset_key,
                asset_type=report.asset_type,
                error_type=report.error_type,
                logs_address=as_dict(report.logs_address) if report.HasField("logs_address") else None,
                owner=report.owner,
                creation_date=when(report, "creation_date"),
            )
        )
        self.session.flush()

    def add_profiling_step(self, step: res.ProfilingStep) -> bool:
        inserted = self.session.execute(
            pg_insert(ProfilingStepRow)
            .values(channel=self.channel, asset_key=step.asset_key, step=step.step, duration=step.duration)
            .on_conflict_do_nothing()
            .returning(ProfilingStepRow.duration)
        ).first()
        return inserted is not None

    def add_profiling_steps(self, steps: list[res.ProfilingStep]) -> None:
        if steps:
            rows = [
                {"channel": self.channel, "asset_key": s.asset_key, "step": s.step, "duration": s.duration}
                for s in steps
            ]
            self.session.execute(ADD_PROFILING_STEPS, rows)

    # events
    def append_events(self, events: list[ev.Event]) -> None:
        """Give the events their positions and write them. Taking the channel's position row at the
        end of the transaction keeps positions in commit order while holding the lock briefly."""
        if not events:
            return
        last = self.session.scalar(NEXT_POSITIONS, {"channel": self.channel, "count": len(events)})
        first = last - len(events) + 1
        rows = []
        for offset, event_message in enumerate(events):
            event_message.position = first + offset
            rows.append(
                {
                    "channel": self.channel,
                    "position": event_message.position,
                    "id": event_message.id,
                    "asset_kind": event_message.asset_kind,
                    "asset_key": event_message.asset_key,
                    "event_kind": event_message.event_kind,
                    "timestamp": when(event_message, "timestamp"),
                    "asset": as_dict(event_message),
                    "metadata": dict(event_message.metadata),
                }
            )
        self.session.execute(sa.insert(EventRow.__table__), rows)


def _copy(message: M) -> M:
    out = type(message)()
    out.CopyFrom(message)
    return out
