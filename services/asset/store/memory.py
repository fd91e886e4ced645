"""The ledger's store in memory: the domain's ``Store`` protocol without a database, for rule tests.

It keeps what the PostgreSQL store keeps and answers as it does (``sql.SqlStore``): every channel is
apart; reads return fresh messages; each ``update_*`` writes only the columns the SQL one writes;
lists come in registration order (the SQL ``seq``) and a task's models in the order their output
links were made; a duplicate primary key fails; ``for_update`` has nothing to lock. A
``transaction()`` puts everything back as it was when the work inside it raises, as a rollback would.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

M = TypeVar("M", bound=Message)
FINAL_STATUSES = (res.STATUS_DONE, res.STATUS_CANCELED, res.STATUS_FAILED)
# The columns of a function that ``update_function`` writes (all but the key and creation date).
FUNCTION_COLUMNS = (
    "name",
    "owner",
    "permissions",
    "description",
    "archive",
    "image",
    "inputs",
    "outputs",
    "status",
    "metadata",
    "metadata_order",
    "inputs_order",
    "outputs_order",
)
# Task fields that are columns of their own and change after registration.
TASK_COLUMNS = ("status", "start_date", "end_date", "error_type", "logs_address")
# Plan fields computed when a plan is read, never stored.
PLAN_READ_TIME = ("estimated_end_date", "duration")


class DuplicateKey(Exception):
    """A row with this primary key exists (PostgreSQL's unique violation)."""


def _copy(message: M) -> M:
    out = type(message)()
    out.CopyFrom(message)
    return out


def _set_columns(target: Message, source: Message, names: Iterable[str]) -> None:
    """Overwrite the fields ``names`` of ``target`` with those of ``source``, and no other."""
    names = set(names)
    changes = _copy(source)
    for descriptor in changes.DESCRIPTOR.fields:
        if descriptor.name not in names:
            changes.ClearField(descriptor.name)
    for name in names:
        target.ClearField(name)
    target.MergeFrom(changes)


@dataclass
class _Channel:
    """The rows of one channel; dicts keep insertion order, which stands for the SQL ``seq``."""

    organizations: dict[str, res.Organization] = field(default_factory=dict)
    data_managers: dict[str, res.DataManager] = field(default_factory=dict)
    data_samples: dict[str, res.DataSample] = field(default_factory=dict)
    functions: dict[str, res.Function] = field(default_factory=dict)
    plans: dict[str, res.ComputePlan] = field(default_factory=dict)
    tasks: dict[str, res.ComputeTask] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)  # child → parents, in input order
    children: dict[str, list[str]] = field(default_factory=dict)  # parent → children, in registration order
    models: dict[str, res.Model] = field(default_factory=dict)
    performances: dict[tuple[str, str], res.Performance] = field(default_factory=dict)
    # (task, identifier, asset key) → (asset kind, position): the output-asset links.
    output_assets: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    failure_reports: dict[str, res.FailureReport] = field(default_factory=dict)
    profiling_steps: dict[tuple[str, str], int] = field(default_factory=dict)
    events: list[ev.Event] = field(default_factory=list)


class MemoryLedger:
    """Every channel's rows, and the stores that reach them."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._positions = itertools.count(1)  # the links' identity column, shared by channels like in SQL

    def store(self, channel: str) -> MemoryStore:
        """The ``Store`` of the rules, scoped to ``channel``."""
        return MemoryStore(self, channel)

    def channel(self, name: str) -> _Channel:
        """The rows of ``name`` (created empty on first use)."""
        return self._channels.setdefault(name, _Channel())

    def events(self, channel: str) -> list[ev.Event]:
        """The channel's event log, in position order (copies)."""
        return [_copy(e) for e in self.channel(channel).events]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Keep what the block wrote if it ends normally; put everything back if it raises."""
        saved = copy.deepcopy(self._channels)
        try:
            yield
        except BaseException:
            self._channels = saved
            raise

    def next_position(self) -> int:
        return next(self._positions)


class MemoryStore:
    """The ``Store`` of the rules over a :class:`MemoryLedger`, scoped to one channel."""

    def __init__(self, ledger: MemoryLedger, channel: str) -> None:
        self._ledger = ledger
        self.channel = channel

    @property
    def _rows(self) -> _Channel:
        return self._ledger.channel(self.channel)

    @staticmethod
    def _insert(table: dict, key, value) -> None:
        if key in table:
            raise DuplicateKey(f"{key!r} already exists")
        table[key] = value

    # organizations
    def organization_ids(self) -> set[str]:
        return set(self._rows.organizations)

    def add_organization(self, organization: res.Organization) -> None:
        self._insert(self._rows.organizations, organization.id, _copy(organization))

    # data managers and samples
    def _sample_keys_of(self, manager_key: str) -> list[str]:
        linked = [s for s in self._rows.data_samples.values() if manager_key in s.data_manager_keys]
        linked.sort(key=lambda s: (s.creation_date.ToDatetime(), s.key))
        return [s.key for s in linked]

    def get_data_managers(self, keys: Iterable[str], *, with_samples: bool = False) -> dict[str, res.DataManager]:
        found = {}
        for key in dict.fromkeys(keys):
            if key in self._rows.data_managers:
                manager = _copy(self._rows.data_managers[key])
                if with_samples:
                    manager.data_sample_keys.extend(self._sample_keys_of(key))
                found[key] = manager
        return found

    def add_data_manager(self, manager: res.DataManager) -> None:
        stored = _copy(manager)
        stored.ClearField("data_sample_keys")  # links live on the samples
        self._insert(self._rows.data_managers, manager.key, stored)

    def update_data_manager(self, manager: res.DataManager) -> None:
        if manager.key in self._rows.data_managers:
            self._rows.data_managers[manager.key].name = manager.name

    def get_data_samples(self, keys: Iterable[str]) -> dict[str, res.DataSample]:
        rows = self._rows.data_samples
        return {key: _copy(rows[key]) for key in dict.fromkeys(keys) if key in rows}

    def add_data_samples(self, samples: list[res.DataSample]) -> None:
        for sample in samples:
            self._insert(self._rows.data_samples, sample.key, _copy(sample))

    def update_data_sample(self, sample: res.DataSample) -> None:
        if sample.key in self._rows.data_samples:
            _set_columns(self._rows.data_samples[sample.key], sample, ["data_manager_keys"])

    # functions
    def get_functions(self, keys: Iterable[str]) -> dict[str, res.Function]:
        rows = self._rows.functions
        return {key: _copy(rows[key]) for key in dict.fromkeys(keys) if key in rows}

    def add_function(self, function: res.Function) -> None:
        self._insert(self._rows.functions, function.key, _copy(function))

    def update_function(self, function: res.Function) -> None:
        if function.key in self._rows.functions:
            _set_columns(self._rows.functions[function.key], function, FUNCTION_COLUMNS)

    # plans
    def get_plan(self, key: str, *, for_update: bool = False) -> res.ComputePlan | None:
        plan = self._rows.plans.get(key)
        return None if plan is None else _copy(plan)

    def _stored_plan(self, plan: res.ComputePlan) -> res.ComputePlan:
        stored = _copy(plan)
        for name in PLAN_READ_TIME:
            stored.ClearField(name)
        return stored

    def add_plan(self, plan: res.ComputePlan) -> None:
        self._insert(self._rows.plans, plan.key, self._stored_plan(plan))

    def update_plan(self, plan: res.ComputePlan) -> None:
        if plan.key in self._rows.plans:
            stored = self._stored_plan(plan)
            self._rows.plans[plan.key] = stored

    # tasks
    def _task(self, stored: res.ComputeTask) -> res.ComputeTask:
        """A task as the SQL store reads it: its function embedded, its duration computed."""
        task = _copy(stored)
        if task.HasField("start_date") and task.HasField("end_date"):
            elapsed = task.end_date.ToDatetime() - task.start_date.ToDatetime()
            task.duration = int(elapsed.total_seconds())
        function = self._rows.functions.get(task.function_key)
        if function is not None:
            task.function.CopyFrom(function)
        return task

    def get_tasks(self, keys: Iterable[str]) -> dict[str, res.ComputeTask]:
        rows = self._rows.tasks
        return {key: self._task(rows[key]) for key in dict.fromkeys(keys) if key in rows}

    def existing_task_keys(self, keys: Iterable[str]) -> set[str]:
        return {key for key in keys if key in self._rows.tasks}

    def add_tasks(self, tasks: list[res.ComputeTask]) -> None:
        for task in tasks:
            stored = _copy(task)
            for name in ("function", "duration"):
                stored.ClearField(name)
            self._insert(self._rows.tasks, task.key, stored)
            parents = list(
                dict.fromkeys(
                    i.parent_task_output.parent_task_key
                    for i in task.inputs
                    if i.WhichOneof("ref") == "parent_task_output"
                )
            )
            self._rows.parents[task.key] = parents
            for parent in parents:
                self._rows.children.setdefault(parent, []).append(task.key)

    def update_tasks(self, tasks: Sequence[res.ComputeTask]) -> None:
        for task in tasks:
            if task.key in self._rows.tasks:
                _set_columns(self._rows.tasks[task.key], task, TASK_COLUMNS)

    def children(self, parent_key: str) -> list[res.ComputeTask]:
        order = list(self._rows.tasks)
        keys = sorted(self._rows.children.get(parent_key, []), key=order.index)
        return [self._task(self._rows.tasks[key]) for key in keys]

    def parents_done(self, child_key: str) -> bool:
        tasks = self._rows.tasks
        return all(
            tasks[parent].status == res.STATUS_DONE
            for parent in self._rows.parents.get(child_key, [])
            if parent in tasks
        )

    def tasks_of_plan(self, plan_key: str, *, non_final: bool = False) -> list[res.ComputeTask]:
        return [
            self._task(t)
            for t in self._rows.tasks.values()
            if t.compute_plan_key == plan_key and not (non_final and t.status in FINAL_STATUSES)
        ]

    def tasks_of_function(self, function_key: str, statuses: Iterable[int]) -> list[res.ComputeTask]:
        wanted = set(statuses)
        return [
            self._task(t) for t in self._rows.tasks.values() if t.function_key == function_key and t.status in wanted
        ]

    def function_has_tasks(self, function_key: str, statuses: Iterable[int]) -> bool:
        wanted = set(statuses)
        return any(t.function_key == function_key and t.status in wanted for t in self._rows.tasks.values())

    # models, performances, links
    def get_models(self, keys: Iterable[str]) -> dict[str, res.Model]:
        rows = self._rows.models
        return {key: _copy(rows[key]) for key in dict.fromkeys(keys) if key in rows}

    def models_of_output(self, task_key: str, identifier: str) -> list[res.Model]:
        """Like the SQL join: the task output's models that have a link, in the order of the links."""
        found = []
        links = sorted(self._rows.output_assets.items(), key=lambda item: item[1][1])
        for (_task_key, _identifier, asset_key), _link in links:
            model = self._rows.models.get(asset_key)
            if (
                model is not None
                and model.compute_task_key == task_key
                and model.compute_task_output_identifier == identifier
            ):
                found.append(_copy(model))
        return found

    def models_of_outputs(self, outputs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[res.Model]]:
        return {output: self.models_of_output(*output) for output in dict.fromkeys(outputs)}

    def add_models(self, models: list[res.Model]) -> None:
        for model in models:
            self._insert(self._rows.models, model.key, _copy(model))

    def disable_model(self, model: res.Model) -> None:
        if model.key in self._rows.models:
            self._rows.models[model.key].ClearField("address")

    def get_performance(self, task_key: str, identifier: str) -> res.Performance | None:
        found = self._rows.performances.get((task_key, identifier))
        return None if found is None else _copy(found)

    def add_performance(self, performance: res.Performance) -> None:
        key = (performance.compute_task_key, performance.compute_task_output_identifier)
        self._insert(self._rows.performances, key, _copy(performance))

    def add_output_assets(self, links: Sequence[res.ComputeTaskOutputAsset]) -> list[bool]:
        added = []
        for link in links:
            key = (link.compute_task_key, link.compute_task_output_identifier, link.asset_key)
            added.append(key not in self._rows.output_assets)
            if added[-1]:
                self._rows.output_assets[key] = (link.asset_kind, self._ledger.next_position())
        return added

    # failure reports, profiling
    def get_failure_report(self, asset_key: str) -> res.FailureReport | None:
        found = self._rows.failure_reports.get(asset_key)
        return None if found is None else _copy(found)

    def add_failure_report(self, report: res.FailureReport) -> None:
        self._insert(self._rows.failure_reports, report.asset_key, _copy(report))

    def add_profiling_step(self, step: res.ProfilingStep) -> bool:
        key = (step.asset_key, step.step)
        if key in self._rows.profiling_steps:
            return False
        self._rows.profiling_steps[key] = step.duration
        return True

    def add_profiling_steps(self, steps: list[res.ProfilingStep]) -> None:
        for step in steps:
            self.add_profiling_step(step)

    # events
    def append_events(self, events: list[ev.Event]) -> None:
        """Positions follow the channel's last one, as the SQL store gives them."""
        log = self._rows.events
        last = log[-1].position if log else 0
        for offset, event in enumerate(events, start=1):
            event.position = last + offset
            log.append(_copy(event))
