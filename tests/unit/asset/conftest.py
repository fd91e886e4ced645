"""The ledger's rules on the in-memory store: a ``Ledger`` that runs domain calls as the gRPC server
does (one unit of work per call, ``commit`` at its end, everything undone when it raises), and
builders that register valid assets. No database, no network: each test takes milliseconds.

``Ledger`` takes its units of work from outside (``MemoryUnits`` here), so the same builders and
scenarios run on PostgreSQL too (``tests/integration/ledger/test_stores_agree.py``); its keys are
numbered, so two runs of one scenario register the same keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import datasets, functions, organizations, outputs, plans, tasks
from services.asset.domain.commit import commit
from services.asset.domain.common import Context
from services.asset.store.memory import MemoryLedger
from services.kit.identity import Caller

T = TypeVar("T")
ORG1, ORG2, ORG3 = "MyOrg1MSP", "MyOrg2MSP", "MyOrg3MSP"
CHANNEL = "mychannel"
START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

TRAIN_IO = {
    "inputs": {
        "opener": res.FunctionInput(kind=res.ASSET_DATA_MANAGER),
        "datasamples": res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True),
        "models": res.FunctionInput(kind=res.ASSET_MODEL, optional=True, multiple=True),
    },
    "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
}
# A model in (optional: roots need none), a model out: tasks of this function chain into any DAG.
CHAIN_IO = {
    "inputs": {"models": res.FunctionInput(kind=res.ASSET_MODEL, optional=True, multiple=True)},
    "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
}
AGGREGATE_IO = {
    "inputs": {"models": res.FunctionInput(kind=res.ASSET_MODEL, multiple=True)},
    "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
}
TEST_IO = {
    "inputs": {
        "opener": res.FunctionInput(kind=res.ASSET_DATA_MANAGER),
        "datasamples": res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True),
        "models": res.FunctionInput(kind=res.ASSET_MODEL),
    },
    "outputs": {"performance": res.FunctionOutput(kind=res.ASSET_PERFORMANCE)},
}


def new_key() -> str:
    return str(uuid.uuid4())


def address(kind: str = "file") -> res.Addressable:
    return res.Addressable(
        checksum=hashlib.sha256(new_key().encode()).hexdigest(),
        storage_address=f"http://storage.test/{kind}/{new_key()}/",
    )


def public() -> res.NewPermissions:
    return res.NewPermissions(public=True)


def private(*orgs: str) -> res.NewPermissions:
    return res.NewPermissions(public=False, authorized_ids=list(orgs))


def from_parent(parent_key: str, identifier: str = "models", output: str = "model") -> tasks.NewTaskInput:
    return tasks.NewTaskInput(identifier=identifier, parent_task_key=parent_key, parent_task_output_identifier=output)


class Units(Protocol):
    """Where a ``Ledger`` runs its units of work."""

    def write(self, caller: Caller, now: dt.datetime, work: Callable[[Context], T]) -> T: ...
    def read(self, caller: Caller, now: dt.datetime, work: Callable[[Context], T]) -> T: ...
    def events(self, channel: str) -> list[ev.Event]: ...


class MemoryUnits:
    """Units of work on a :class:`MemoryLedger`, as the server runs them on PostgreSQL."""

    def __init__(self) -> None:
        self.memory = MemoryLedger()

    def write(self, caller: Caller, now: dt.datetime, work: Callable[[Context], T]) -> T:
        """The rules, then ``commit``; nothing kept if either raises."""
        with self.memory.transaction():
            ctx = Context(caller=caller, now=now, store=self.memory.store(caller.channel))
            result = work(ctx)
            commit(ctx)
        return result

    def read(self, caller: Caller, now: dt.datetime, work: Callable[[Context], T]) -> T:
        return work(Context(caller=caller, now=now, store=self.memory.store(caller.channel)))

    def events(self, channel: str) -> list[ev.Event]:
        return self.memory.events(channel)


class Ledger:
    """The rules over one ledger, called as organizations of one channel."""

    def __init__(self, units: Units | None = None, channel: str = CHANNEL) -> None:
        self.units = units or MemoryUnits()
        self.channel = channel
        self.now = START
        self._keys = 0

    # units of work
    def write(self, org: str, work: Callable[[Context], T]) -> T:
        return self.units.write(Caller(org, self.channel), self.now, work)

    def read(self, org: str, work: Callable[[Context], T]) -> T:
        return self.units.read(Caller(org, self.channel), self.now, work)

    def later(self, seconds: float) -> None:
        """Move the ledger's clock forward."""
        self.now += dt.timedelta(seconds=seconds)

    def events(self) -> list[ev.Event]:
        return self.units.events(self.channel)

    def task(self, key: str) -> res.ComputeTask:
        return self.read(ORG1, lambda ctx: tasks.get_task(ctx, key))

    def status(self, key: str) -> int:
        return self.task(key).status

    def plan(self, key: str) -> res.ComputePlan:
        return self.read(ORG1, lambda ctx: plans.get_plan(ctx, key))

    def key(self) -> str:
        """The next numbered key."""
        self._keys += 1
        return str(uuid.UUID(int=self._keys))

    def address(self, kind: str = "file") -> res.Addressable:
        key = self.key()
        return res.Addressable(
            checksum=hashlib.sha256(key.encode()).hexdigest(), storage_address=f"http://storage.test/{kind}/{key}/"
        )

    # builders
    def join(self, *orgs: str) -> None:
        for org in orgs:
            url = f"http://{org.lower()}.test"
            self.write(org, lambda ctx, url=url: organizations.register(ctx, url))

    def data_manager(self, owner: str = ORG1, permissions=None, logs=None) -> res.DataManager:
        new = datasets.NewDataManager(
            key=self.key(),
            name="dataset",
            description=self.address("description"),
            opener=self.address("opener"),
            type="csv",
            permissions=permissions or public(),
            logs_permission=logs or public(),
        )
        return self.write(owner, lambda ctx: datasets.register_data_manager(ctx, new))

    def samples(self, manager: res.DataManager, n: int = 1) -> list[res.DataSample]:
        new = [
            datasets.NewDataSample(key=self.key(), data_manager_keys=[manager.key], checksum=self.address().checksum)
            for _ in range(n)
        ]
        return self.write(manager.owner, lambda ctx: datasets.register_data_samples(ctx, new))

    def function(self, owner: str = ORG1, io=None, permissions=None, built: bool = True) -> res.Function:
        io = io or CHAIN_IO
        new = functions.NewFunction(
            key=self.key(),
            name="function",
            description=self.address("description"),
            archive=self.address("archive"),
            permissions=permissions or public(),
            inputs=io["inputs"],
            outputs=io["outputs"],
        )
        function = self.write(owner, lambda ctx: functions.register_function(ctx, new))
        if built:
            self.function_action(owner, function.key, res.FUNCTION_ACTION_BUILDING)
            self.function_action(owner, function.key, res.FUNCTION_ACTION_READY)
        return function

    def function_action(self, org: str, key: str, action: int) -> None:
        self.write(org, lambda ctx: functions.apply_action(ctx, key, action))

    def compute_plan(self, owner: str = ORG1) -> res.ComputePlan:
        return self.write(owner, lambda ctx: plans.register_plan(ctx, plans.NewPlan(key=self.key(), name="plan")))

    def new_task(
        self, plan: res.ComputePlan, function: res.Function, inputs=(), worker: str = ORG1, **outputs
    ) -> tasks.NewTask:
        """A task whose outputs default to the function's, public and not transient."""
        return tasks.NewTask(
            key=self.key(),
            compute_plan_key=plan.key,
            function_key=function.key,
            worker=worker,
            inputs=list(inputs),
            outputs={name: outputs.get(name) or tasks.NewTaskOutput(permissions=public()) for name in function.outputs},
        )

    def register(self, owner: str, *new: tasks.NewTask) -> list[res.ComputeTask]:
        return self.write(owner, lambda ctx: tasks.register_tasks(ctx, list(new)))

    def add_task(self, plan: res.ComputePlan, function: res.Function, inputs=(), worker: str = ORG1, **out):
        """Register one task of ``plan`` (owned by the plan's owner); its stored form."""
        return self.register(plan.owner, self.new_task(plan, function, inputs, worker, **out))[0]

    def act(self, org: str, key: str, action: int) -> None:
        self.write(org, lambda ctx: tasks.apply_action(ctx, key, action))

    def produce(self, task: res.ComputeTask, identifier: str = "model") -> res.Model:
        """Register one model under an output of an executing task, as its worker."""
        model = outputs.NewModel(self.key(), task.key, identifier, self.address("model"))
        return self.write(task.worker, lambda ctx: outputs.register_models(ctx, [model]))[0]

    def run(self, task: res.ComputeTask, model: bool = True) -> None:
        """Drive a task as its worker does: EXECUTING, a model, DONE."""
        self.act(task.worker, task.key, res.TASK_ACTION_EXECUTING)
        if model:
            self.produce(task)
        self.act(task.worker, task.key, res.TASK_ACTION_DONE)


@pytest.fixture
def ledger() -> Ledger:
    """A fresh ledger with three organizations in ``mychannel``."""
    ledger = Ledger()
    ledger.join(ORG1, ORG2, ORG3)
    return ledger
