"""What a ledger event asks of this organization: the dispatcher's decisions.

The rules read the event (and what earlier events told about tasks); ``services.event.dispatcher``
carries the decisions out against the ledger, compute, storage and JetStream. Replaying an event yields
the same decisions, and each is harmless the second time: a work message's id is made of the event id and
the work kind, so JetStream drops a re-publication inside its duplicate window, and compute decides from
the ledger's current state anyway (a task already running, done or canceled is not run again).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf.message import Message
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2

FINAL = frozenset({res.STATUS_DONE, res.STATUS_FAILED, res.STATUS_CANCELED})
PLAN_ENDED = frozenset({res.PLAN_STATUS_DONE, res.PLAN_STATUS_FAILED, res.PLAN_STATUS_CANCELED})
KNOWN_TASKS = 50_000  # tasks whose outputs are remembered (a few hundred bytes each)
PREPARED_KEPT = 10_000  # (plan, function) pairs whose runner was asked for, remembered to ask once
PEER_OUTPUTS_KEPT = 10_000  # task outputs whose models other organizations registered, remembered as hints
WAITING_FOR_PARENTS = frozenset(
    {res.STATUS_WAITING_FOR_BUILDER_SLOT, res.STATUS_BUILDING, res.STATUS_WAITING_FOR_PARENT_TASKS}
)
"""A task in these is not ready: a peer's model it reads may be fetched ahead (once ready, its run message
names the models)."""
UNSTARTED = frozenset(
    {
        res.STATUS_WAITING_FOR_BUILDER_SLOT,
        res.STATUS_BUILDING,
        res.STATUS_WAITING_FOR_PARENT_TASKS,
        res.STATUS_WAITING_FOR_EXECUTOR_SLOT,
    }
)


def message_id(org: str, event_id: str, kind: str) -> str:
    """The ``Nats-Msg-Id`` of the ``kind`` work an event asks of ``org``: the same on every replay of the event,
    another for another organization (the WORK stream deduplicates across its subjects)."""
    return f"{org}:{event_id}:{kind}"


@dataclass(frozen=True)
class Work:
    """Publish ``message`` on ``work.<org>.<kind>`` with ``message_id`` as its ``Nats-Msg-Id``."""

    kind: str  # build, run, teardown or prepare
    key: str  # the asset the work is about
    message: Message
    message_id: str


@dataclass(frozen=True)
class BuildIfWaiting:
    """Publish the build ``work`` if the ledger still shows the function waiting for its build: an event
    replayed after the build asks nothing."""

    work: Work


@dataclass(frozen=True)
class CancelRun:
    """Ask compute to stop the run of a canceled task, if it runs one."""

    task_key: str
    reason: str


@dataclass(frozen=True)
class FetchModel:
    """Ask compute to fetch a peer's new model now: tasks of this organization waiting for their parents read it."""

    model: res.Model


@dataclass(frozen=True)
class DeleteModel:
    """Delete a disabled model's file from this organization's storage (Substra does the same)."""

    model_key: str


@dataclass(frozen=True, order=True)
class OutputRef:
    """One output of a task."""

    task_key: str
    identifier: str


@dataclass(frozen=True)
class ReleaseInputs:
    """A task is final: the transient outputs it read may be disabled (domain §2.5), those this
    organization computed. The ledger refuses while another consumer still needs one, which is fine."""

    task_key: str
    parents: tuple[OutputRef, ...]


Action = Work | BuildIfWaiting | CancelRun | FetchModel | DeleteModel | ReleaseInputs


@dataclass(frozen=True)
class TaskOutputs:
    """Who runs a task and which of its outputs are transient: fixed when the task is registered."""

    worker: str
    transient: frozenset[str]

    @classmethod
    def of(cls, task: res.ComputeTask) -> TaskOutputs:
        return cls(task.worker, frozenset(name for name, out in task.outputs.items() if out.transient))


class KnownTasks:
    """The :class:`TaskOutputs` of the tasks seen last (every event of a task tells them), so that a
    consumer's end need not read its parents from the ledger again."""

    def __init__(self, capacity: int = KNOWN_TASKS) -> None:
        self._capacity = capacity
        self._tasks: OrderedDict[str, TaskOutputs] = OrderedDict()

    def remember(self, task: res.ComputeTask) -> None:
        """Keep what ``task`` tells; the least recently seen task is forgotten past the capacity."""
        self._tasks[task.key] = TaskOutputs.of(task)
        self._tasks.move_to_end(task.key)
        while len(self._tasks) > self._capacity:
            self._tasks.popitem(last=False)

    def get(self, key: str) -> TaskOutputs | None:
        """What is known of task ``key``, or None."""
        return self._tasks.get(key)

    def __len__(self) -> int:
        return len(self._tasks)


class PeerModels:
    """The models other organizations registered lately, by the task output that produced them: a run
    message names those its task reads, so that compute fetches them while the ledger starts the task (a
    hint: the models of this organization are in compute's cache already, and StartTask's answer decides)."""

    def __init__(self, org: str, capacity: int = PEER_OUTPUTS_KEPT) -> None:
        self._org = org
        self._capacity = capacity
        self._outputs: OrderedDict[tuple[str, str], dict[str, res.Model]] = OrderedDict()

    def remember(self, model: res.Model) -> None:
        """Keep a model another organization registered; the oldest output is forgotten past the capacity."""
        if model.owner == self._org:
            return
        output = (model.compute_task_key, model.compute_task_output_identifier)
        self._outputs.setdefault(output, {})[model.key] = model  # keyed: a replayed event adds nothing
        self._outputs.move_to_end(output)
        while len(self._outputs) > self._capacity:
            self._outputs.popitem(last=False)

    def read_by(self, task: res.ComputeTask) -> list[res.Model]:
        """The remembered models of other organizations among the inputs of ``task``, in input order."""
        found: list[res.Model] = []
        for item in task.inputs:
            if item.WhichOneof("ref") == "parent_task_output":
                ref = item.parent_task_output
                found += self._outputs.get((ref.parent_task_key, ref.output_identifier), {}).values()
        return found


class WaitingReaders:
    """This organization's tasks not started yet, by the task outputs they read: a peer's model registered under
    one of those outputs can be fetched before its reader starts (an aggregation's inputs, as trainings end)."""

    def __init__(self, capacity: int = PEER_OUTPUTS_KEPT) -> None:
        self._capacity = capacity
        self._readers: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()

    def update(self, task: res.ComputeTask, waiting: bool) -> None:
        """Count ``task`` among the readers of its parents' outputs while ``waiting``, and no more after."""
        for item in task.inputs:
            if item.WhichOneof("ref") != "parent_task_output":
                continue
            output = (item.parent_task_output.parent_task_key, item.parent_task_output.output_identifier)
            if waiting:
                self._readers.setdefault(output, {})[task.key] = task.compute_plan_key
                self._readers.move_to_end(output)
            elif output in self._readers:
                self._readers[output].pop(task.key, None)
                if not self._readers[output]:
                    del self._readers[output]
        while len(self._readers) > self._capacity:
            self._readers.popitem(last=False)

    def of(self, model: res.Model) -> dict[str, str]:
        """The waiting tasks that read ``model``'s output: task key -> plan key."""
        return dict(self._readers.get((model.compute_task_key, model.compute_task_output_identifier), {}))

    def still_waiting(self, action: FetchModel) -> tuple[str, str] | None:
        """A reader of ``action``'s model that still waits for its parents, as (task key, plan key); None when an
        event after the model's made every reader ready (their run messages name the model)."""
        readers = self.of(action.model)
        return min(readers.items()) if readers else None


class DispatchRules:
    """The decisions for one organization in one channel (``channel`` "" is the one open channel)."""

    def __init__(self, org: str, channel: str, known: KnownTasks | None = None) -> None:
        self.org = org
        self.channel = channel
        self.known = known if known is not None else KnownTasks()
        self.peer_models = PeerModels(org)
        self.waiting_readers = WaitingReaders()
        self._prepared: OrderedDict[tuple[str, str], None] = OrderedDict()

    def decide(self, event: ev.Event) -> list[Action]:
        """What ``event`` asks of this organization, in the order to carry it out."""
        kind = event.WhichOneof("asset")
        if kind == "function" and event.function.owner == self.org:
            key = event.function.key
            message = work_pb2.BuildFunction(function_key=key, channel=self.channel, event_id=event.id)
            return [BuildIfWaiting(self._work("build", key, message, event))]
        if kind == "compute_task":
            return self._task(event, event.compute_task)
        if kind == "model" and event.event_kind == ev.EVENT_ASSET_CREATED:
            self.peer_models.remember(event.model)
            return self._fetch_ahead(event.model)
        if kind == "model" and event.event_kind == ev.EVENT_ASSET_DISABLED and event.model.owner == self.org:
            return [DeleteModel(event.model.key)]
        if kind == "compute_plan" and event.compute_plan.status in PLAN_ENDED:
            message = work_pb2.Teardown(compute_plan_key=event.asset_key, channel=self.channel, event_id=event.id)
            return [self._work("teardown", event.asset_key, message, event)]
        return []

    @staticmethod
    def needs_build(function: res.Function) -> bool:
        """Whether a function, as the ledger shows it now, still waits for its build."""
        return function.status == res.FUNCTION_STATUS_WAITING

    def unknown_parents(self, action: ReleaseInputs) -> list[str]:
        """The parents of ``action`` whose outputs must be read from the ledger first."""
        return sorted({ref.task_key for ref in action.parents if self.known.get(ref.task_key) is None})

    def to_disable(self, action: ReleaseInputs) -> list[OutputRef]:
        """The inputs of ``action`` that are transient outputs computed by this organization."""
        found = []
        for ref in action.parents:
            parent = self.known.get(ref.task_key)
            if parent is not None and parent.worker == self.org and ref.identifier in parent.transient:
                found.append(ref)
        return found

    def _prepare(self, event: ev.Event, task: res.ComputeTask) -> list[Action]:
        """Ask for a runner of the task's function for its plan, once per pair: its first task registered here
        gets it ready while the plan's first tasks run (one message per pair, however many tasks follow)."""
        pair = (task.compute_plan_key, task.function_key)
        if pair in self._prepared:
            return []
        self._prepared[pair] = None
        while len(self._prepared) > PREPARED_KEPT:
            self._prepared.popitem(last=False)
        message = work_pb2.PrepareRunner(
            compute_plan_key=pair[0], function_key=pair[1], channel=self.channel, event_id=event.id
        )
        return [Work("prepare", f"{pair[0]}:{pair[1]}", message, f"{self.org}:prepare:{pair[0]}:{pair[1]}")]

    def _work(self, kind: str, key: str, message: Message, event: ev.Event) -> Work:
        return Work(kind, key, message, message_id(self.org, event.id, kind))

    def _fetch_ahead(self, model: res.Model) -> list[Action]:
        """A peer's new model that a task of this organization, not started yet, reads: fetch it now."""
        if model.owner == self.org or not model.HasField("address"):
            return []
        return [FetchModel(model)] if self.waiting_readers.of(model) else []

    def _task(self, event: ev.Event, task: res.ComputeTask) -> list[Action]:
        self.known.remember(task)
        if task.worker == self.org:
            self.waiting_readers.update(task, waiting=task.status in WAITING_FOR_PARENTS)
        actions: list[Action] = []
        if task.worker == self.org and event.event_kind == ev.EVENT_ASSET_CREATED and task.status in UNSTARTED:
            actions += self._prepare(event, task)
        if task.worker == self.org and task.status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT:
            # Queued from the event alone: compute's StartTask decides on the current state (a task that
            # moved on is refused, one of a canceled or failed plan is canceled).
            message = work_pb2.RunTask(
                compute_task_key=task.key,
                compute_plan_key=task.compute_plan_key,
                channel=self.channel,
                event_id=event.id,
                peer_models=self.peer_models.read_by(task),
            )
            actions.append(self._work("run", task.key, message, event))
        if task.worker == self.org and task.status == res.STATUS_CANCELED:
            actions.append(CancelRun(task.key, event.metadata.get("reason", "")))
        if event.event_kind == ev.EVENT_ASSET_UPDATED and task.status in FINAL:
            parents = sorted(
                {
                    OutputRef(i.parent_task_output.parent_task_key, i.parent_task_output.output_identifier)
                    for i in task.inputs
                    if i.WhichOneof("ref") == "parent_task_output"
                }
            )
            if parents:
                actions.append(ReleaseInputs(task.key, tuple(parents)))
        return actions
