"""Execution benchmark: a chain of trivial tasks and a two-organization federated plan, run for real
on a Tessera network and, in the same run, in the substra SDK's own local mode.

Starts a two-organization :class:`tools.devnet.network.Network` in a temporary directory (its own
embedded PostgreSQL and NATS, every service a separate process, two execution slots per compute),
registers through the real ``substra`` SDK at each organization's gateway a dataset per organization
(two data samples of a few numpy rows) and five substratools functions, then runs:

1. a chain of 50 tasks of a trivial function, each consuming the previous task's model (on MyOrg1MSP);
2. a 10-round plan: per round, train on each organization (from the previous round's aggregate),
   aggregate both models on MyOrg1MSP, predict on each organization's held-out sample, score each
   prediction (a performance output): 7 tasks per round.

Wall time runs from ``add_compute_plan`` to the plan's last DONE, as the ledger stamped it (the ledger is
polled every 0.2 s to notice the end; the polling's delay is not counted).
The user-function time of a task is the ``task_execution`` profiling step compute records (the
subprocess from spawn to exit, interpreter start included); the orchestration overhead per task is
``(wall - sum of task_execution) / tasks``, and per critical-path task ``(wall - task_execution along
the longest path) / its length`` (the meaningful one when tasks run in parallel). The same plans, with
the same functions and data, then run through ``substra.Client(backend_type="subprocess")``, which
executes each task synchronously as a subprocess of the SDK's interpreter inside ``add_compute_plan``;
the ratio is Tessera's wall time over the local mode's. The CPU time of every process (services,
PostgreSQL, NATS, tasks) is sampled around each run, to show what the cores were busy with.

Usage: ``python -m tools.bench execution [--small] [--chain N] [--rounds N] [--slots N] [--state-dir DIR]``;
with ``--fedavg [--orgs N]``, the substrafl FedAvg scenario of :mod:`tools.bench.fedavg` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.kit.client import sync_channel
from tools.devnet.network import Network

os.environ.setdefault("TQDM_DISABLE", "1")  # the local mode's progress bars (tqdm reads it when imported)

import substra
from substra.sdk import schemas

from tools.samples import flassets

POLL = 0.2
TIMEOUT = 1800.0

# The sample functions and opener shared with the tests: the model is a mean vector; ``step`` is the
# chain's trivial function (the previous model plus one).
OPENER = flassets.OPENER
_write = flassets.write
_archive = flassets.function_archive


# --------------------------------------------------------------------------------------- assets
@dataclass
class Assets:
    """What one SDK client registered: organizations, datasets, samples and functions by name."""

    orgs: list[str]
    datasets: dict[str, str] = field(default_factory=dict)
    samples: dict[str, dict[str, str]] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)


def _signatures() -> dict:
    model = schemas.AssetKind.model
    data_in = [
        schemas.FunctionInputSpec(
            identifier="opener", kind=schemas.AssetKind.data_manager, multiple=False, optional=False
        ),
        schemas.FunctionInputSpec(
            identifier="datasamples", kind=schemas.AssetKind.data_sample, multiple=True, optional=False
        ),
    ]
    models_in = [schemas.FunctionInputSpec(identifier="models", kind=model, multiple=True, optional=True)]
    model_out = [schemas.FunctionOutputSpec(identifier="model", kind=model, multiple=False)]
    return {
        "step": (models_in, model_out),
        "train": (data_in + models_in, model_out),
        "aggregate": (
            [schemas.FunctionInputSpec(identifier="models", kind=model, multiple=True, optional=False)],
            model_out,
        ),
        "predict": (
            [*data_in, schemas.FunctionInputSpec(identifier="models", kind=model, multiple=False, optional=False)],
            [schemas.FunctionOutputSpec(identifier="predictions", kind=model, multiple=False)],
        ),
        "score": (
            [schemas.FunctionInputSpec(identifier="predictions", kind=model, multiple=False, optional=False)],
            [schemas.FunctionOutputSpec(identifier="performance", kind=schemas.AssetKind.performance, multiple=False)],
        ),
    }


def register_assets(clients: list, folder: Path) -> Assets:
    """A dataset with a train and a test sample per organization (each through its own client), and
    the functions (through the first client). Everything public: the plans mix both organizations."""
    public = schemas.Permissions(public=True, authorized_ids=[])
    orgs = [c.organization_info().organization_id for c in clients]
    assets = Assets(orgs=orgs)
    rng = np.random.default_rng(5)
    for index, (client, org) in enumerate(zip(clients, orgs, strict=True)):
        base = folder / org
        assets.datasets[org] = client.add_dataset(
            schemas.DatasetSpec(
                name=f"bench-{org}",
                data_opener=_write(base / "opener.py", OPENER),
                description=_write(base / "description.md", f"# {org}\n"),
                permissions=public,
                logs_permission=public,
            )
        )
        assets.samples[org] = {}
        for name in ("train", "test"):
            rows = rng.normal(index + 1, 1.0, (8, 3))
            text = "\n".join(",".join(f"{x:.6f}" for x in row) for row in rows) + "\n"
            path = _write(base / name / "data.csv", text).parent
            assets.samples[org][name] = client.add_data_sample(
                schemas.DataSampleSpec(path=path, data_manager_keys=[assets.datasets[org]])
            )
    for name, (inputs, outputs) in _signatures().items():
        assets.functions[name] = clients[0].add_function(
            schemas.FunctionSpec(
                name=f"bench-{name}",
                description=_write(folder / "functions" / f"{name}.md", f"# {name}\n"),
                file=_write(folder / "functions" / f"{name}.tar.gz", _archive(name)),
                permissions=public,
                inputs=inputs,
                outputs=outputs,
            )
        )
    return assets


# ---------------------------------------------------------------------------------------- plans
@dataclass
class PlanSpec:
    """A plan to submit, with its dependency graph (task key -> parent task keys)."""

    name: str
    spec: schemas.ComputePlanSpec
    parents: dict[str, list[str]]

    @property
    def tasks(self) -> int:
        return len(self.parents)

    def critical_path(self, weight: dict[str, float] | None = None) -> tuple[int, float, list[str]]:
        """The longest path in tasks (ties broken by the largest total ``weight``): its length, weight, keys."""
        weight = weight or {}
        best: dict[str, tuple[int, float, list[str]]] = {}
        for key in self.parents:  # tasks are listed parents first
            before = max((best[p] for p in self.parents[key]), default=(0, 0.0, []), key=lambda b: b[:2])
            best[key] = (before[0] + 1, before[1] + weight.get(key, 0.0), [*before[2], key])
        return max(best.values(), key=lambda b: b[:2])


def _task(function: str, worker: str, inputs: list, output: str) -> schemas.ComputePlanTaskSpec:
    return schemas.ComputePlanTaskSpec(
        task_id=str(uuid.uuid4()),
        function_key=function,
        worker=worker,
        inputs=inputs,
        outputs={
            output: schemas.ComputeTaskOutputSpec(permissions=schemas.Permissions(public=True, authorized_ids=[]))
        },
    )


def _parent(identifier: str, task, output: str):
    return schemas.InputRef(identifier=identifier, parent_task_key=task.task_id, parent_task_output_identifier=output)


def _data(assets: Assets, org: str, sample: str) -> list:
    return [
        schemas.InputRef(identifier="opener", asset_key=assets.datasets[org]),
        schemas.InputRef(identifier="datasamples", asset_key=assets.samples[org][sample]),
    ]


def chain_plan(assets: Assets, n: int) -> PlanSpec:
    """``n`` tasks of ``step`` on the first organization, each consuming the previous model."""
    tasks, parents = [], {}
    for i in range(n):
        inputs = [_parent("models", tasks[-1], "model")] if i else []
        task = _task(assets.functions["step"], assets.orgs[0], inputs, "model")
        parents[task.task_id] = [tasks[-1].task_id] if i else []
        tasks.append(task)
    spec = schemas.ComputePlanSpec(key=str(uuid.uuid4()), name=f"bench-chain-{n}", tasks=tasks)
    return PlanSpec(f"chain of {n}", spec, parents)


def federated_plan(assets: Assets, rounds: int) -> PlanSpec:
    """Per round: train on each organization, aggregate on the first, predict and score on each."""
    tasks, parents = [], {}
    f, orgs = assets.functions, assets.orgs

    def add(task, *deps):
        parents[task.task_id] = [d.task_id for d in deps]
        tasks.append(task)
        return task

    aggregate = None
    for _ in range(rounds):
        trains = []
        for org in orgs:
            inputs = _data(assets, org, "train") + ([_parent("models", aggregate, "model")] if aggregate else [])
            trains.append(add(_task(f["train"], org, inputs, "model"), *([aggregate] if aggregate else [])))
        inputs = [_parent("models", t, "model") for t in trains]
        aggregate = add(_task(f["aggregate"], orgs[0], inputs, "model"), *trains)
        for org in orgs:
            inputs = [*_data(assets, org, "test"), _parent("models", aggregate, "model")]
            predict = add(_task(f["predict"], org, inputs, "predictions"), aggregate)
            add(_task(f["score"], org, [_parent("predictions", predict, "predictions")], "performance"), predict)
    spec = schemas.ComputePlanSpec(key=str(uuid.uuid4()), name=f"bench-fl-{rounds}", tasks=tasks)
    return PlanSpec(f"{rounds}-round plan, 2 orgs", spec, parents)


# ------------------------------------------------------------------------------------- Tessera
@dataclass
class TesseraRun:
    """One plan run on the network, with what the ledger recorded about it."""

    plan: PlanSpec
    register: float  # seconds in add_compute_plan
    wall: float  # add_compute_plan to the last DONE (ledger timestamp)
    steps: dict[str, dict[str, float]]  # task key -> profiling step -> seconds
    tasks: dict[str, res.ComputeTask]
    cpu: dict[str, float]  # CPU seconds by component during the run


def _own(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _reaped(process) -> float:
    times = process.cpu_times()
    return times.children_user + times.children_system


class SandboxCpu:
    """CPU seconds of what compute starts: runners and their task children, seen while they live.

    A sandbox's processes are not all reaped by compute: when a sandbox's first process ends, the kernel
    kills and reaps the rest, and their time reaches no parent. So each process is read while it lives, its
    own time plus its reaped children's (a runner's ended tasks), and its last reading is kept; poll often
    (:meth:`poll`) to lose at most one poll interval of a process that ends. ``bwrap`` processes count their
    own time only (what they reap is a runner, read on its own)."""

    def __init__(self, every: float = 1.0) -> None:
        self._seen: dict[tuple[int, float], float] = {}
        self._every = every  # reading every process is not free: the benchmark's own CPU counts too
        self._last = float("-inf")

    def poll(self, network: Network | None, force: bool = False) -> float:
        """Read every live process under each compute (at most every ``every`` seconds unless ``force``);
        the CPU seconds of all processes seen so far."""
        import psutil

        if not force and time.monotonic() - self._last < self._every:
            return sum(self._seen.values())
        self._last = time.monotonic()
        computes = {spec.process.pid for spec in (network.services if network else ()) if spec.name == "compute"}
        children: dict[int, list] = {}
        for process in psutil.process_iter(["ppid"]):  # one pass over /proc for every compute
            children.setdefault(process.info["ppid"], []).append(process)
        below = [child for pid in computes for child in children.get(pid, [])]
        while below:
            process = below.pop()
            below += children.get(process.pid, [])
            with contextlib.suppress(psutil.Error):
                seconds = _own(process) + (0.0 if process.name() == "bwrap" else _reaped(process))
                key = (process.pid, process.create_time())
                self._seen[key] = max(self._seen.get(key, 0.0), seconds)
        return sum(self._seen.values())


SANDBOXES = SandboxCpu()


def cpu_snapshot(network: Network | None) -> dict[str, float]:
    """CPU seconds used so far by each component: the services by kind (every organization summed), the
    tasks (compute's sandboxes, their runners and task children: :class:`SandboxCpu`), PostgreSQL
    (postmaster and backends), NATS and this process."""
    import psutil

    me = psutil.Process()
    out = {"this process (SDK, polling)": _own(me), "local-mode tasks": _reaped(me)}
    if network is None:
        return out
    for spec in network.services:
        process = psutil.Process(spec.process.pid)
        name = "ledger" if spec.name == "asset" else spec.name
        out[name] = out.get(name, 0.0) + _own(process)
    out["tasks (user functions)"] = SANDBOXES.poll(network, force=True)
    postmaster = psutil.Process(network.postgres.process.pid)
    out["postgresql"] = _own(postmaster) + _reaped(postmaster)
    for child in postmaster.children():
        with contextlib.suppress(psutil.Error):
            out["postgresql"] += _own(child)
    out["nats"] = _own(psutil.Process(network.nats.process.pid))
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


class Ledger:
    """The first organization's view of the ledger over gRPC (polling and profiling)."""

    def __init__(self, network: Network) -> None:
        org = network.organizations[0].id
        self.creds = network.org_credentials(org)
        self.stub = api_grpc.AssetServiceStub(sync_channel(network.services[0].addr, self.creds))

    def wait_done(
        self, key: str, network: Network | None = None, on_poll: Callable[[res.ComputePlan], None] | None = None
    ) -> res.ComputePlan:
        """Poll the plan until it is DONE (its last reading), calling ``on_poll`` with each reading."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            SANDBOXES.poll(network)  # the tasks' CPU, read while their processes live
            plan = self.stub.GetComputePlan(api.GetComputePlanRequest(key=key)).compute_plan
            if on_poll is not None:
                on_poll(plan)
            if plan.status == res.PLAN_STATUS_DONE:
                return plan
            if plan.status in (res.PLAN_STATUS_FAILED, res.PLAN_STATUS_CANCELED):
                raise RuntimeError(f"plan {key} ended {res.ComputePlanStatus.Name(plan.status)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"plan {key} not done in {TIMEOUT} s")
            time.sleep(POLL)

    def steps(self, keys: set[str]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {key: {} for key in keys}
        page = 1
        while True:
            reply = self.stub.ListProfilingSteps(api.ListProfilingStepsRequest(page_size=10000, page=page))
            for step in reply.profiling_steps:
                if step.asset_key in out:
                    out[step.asset_key][step.step] = step.duration / 1e6
            if page * 10000 >= reply.total_size:
                return out
            page += 1

    def tasks(self, plan_key: str) -> dict[str, res.ComputeTask]:
        reply = self.stub.ListTasks(api.ListTasksRequest(compute_plan_key=[plan_key], page_size=1000))
        return {t.key: t for t in reply.tasks}


def run_tessera(client, ledger: Ledger, plan: PlanSpec, network: Network) -> TesseraRun:
    cpu = cpu_snapshot(network)
    started, clock = time.perf_counter(), time.time()
    client.add_compute_plan(plan.spec)
    registered = time.perf_counter()
    ledger.wait_done(plan.spec.key, network)
    cpu = cpu_delta(cpu, cpu_snapshot(network))
    steps = ledger.steps(set(plan.parents))
    tasks = ledger.tasks(plan.spec.key)
    # Up to the last DONE as the ledger stamped it (same machine, same clock): the polling that notices it
    # (every POLL seconds) is not the plan's time.
    wall = max(_seconds(t.end_date) for t in tasks.values()) - clock
    return TesseraRun(plan, registered - started, wall, steps, tasks, cpu)


# ---------------------------------------------------------------------------------- local mode
@contextlib.contextmanager
def _cwd(path: Path):
    """The SDK's local mode works in ``./local-worker``: keep it out of the repository."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_local(client, plan: PlanSpec) -> tuple[float, dict[str, float]]:
    cpu = cpu_snapshot(None)
    started = time.perf_counter()
    created = client.add_compute_plan(plan.spec)  # executes every task before returning
    wall = time.perf_counter() - started
    cpu = cpu_delta(cpu, cpu_snapshot(None))
    done = client.get_compute_plan(created.key)
    if str(getattr(done.status, "value", done.status)) != "PLAN_STATUS_DONE":
        raise RuntimeError(f"local plan ended {done.status}")
    return wall, cpu


# -------------------------------------------------------------------------------------- driver
@contextlib.contextmanager
def remote_clients(state_dir: Path | None, orgs: int, extra_env: dict | None = None, timeout: float = 180):
    """A dev network of ``orgs`` organizations in a temporary folder (or ``state_dir``, kept after the run:
    the services' logs, sandboxes, databases), every organization registered; yields the folder, the
    network and an SDK client logged in at each organization's gateway."""
    log = lambda message: print(f"  [network] {message}", file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="tessera-bench-exec-") as tmp:
        folder = Path(tmp)
        if state_dir is not None:
            folder = state_dir.resolve()
            folder.mkdir(parents=True, exist_ok=True)
        network = Network(folder / "network", orgs=orgs, log=log, extra_env=extra_env or {})
        network.plan()
        remote: list = []
        try:
            network.start(timeout=timeout)  # returns once every organization is registered
            remote = [
                substra.Client(url=o.gateway, backend_type="remote", username=o.username, password=o.password)
                for o in network.organizations
            ]
            yield folder, network, remote
        finally:
            for client in remote:
                with contextlib.suppress(Exception):
                    client.logout()
            network.stop()


def run(chain: int, rounds: int, slots: int, state_dir: Path | None = None) -> dict:
    slots_env = {"compute": {"TESSERA_EXECUTION_SLOTS": str(slots)}}
    with remote_clients(state_dir, 2, slots_env) as (folder, network, remote):
        assets = register_assets(remote, folder / "remote")
        for key in assets.functions.values():
            remote[0].wait_function(key, timeout=300, polling_period=POLL)
        ledger = Ledger(network)
        with _cwd(folder):
            local = [substra.Client(backend_type="subprocess") for _ in network.organizations]
            local_assets = register_assets(local, folder / "local")

        results: dict = {"slots": slots, "runs": []}
        for make, size in ((chain_plan, chain), (federated_plan, rounds)):
            plan = make(assets, size)
            print(f"  running {plan.name} on the network ({plan.tasks} tasks)", file=sys.stderr, flush=True)
            ours = run_tessera(remote[0], ledger, plan, network)
            print(f"  running {plan.name} in local mode", file=sys.stderr, flush=True)
            with _cwd(folder):
                theirs = run_local(local[0], make(local_assets, size))
            results["runs"].append((ours, theirs))
        return results


# -------------------------------------------------------------------------------------- report
def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def _chain_orchestration(run: TesseraRun) -> list[float]:
    """For a plan whose tasks form one chain: per task after the first, the time between its parent's DONE and
    its own DONE that is not its user function (empty for other plans)."""
    parents = run.plan.parents
    if any(len(p) > 1 for p in parents.values()) or sum(1 for p in parents.values() if not p) != 1:
        return []
    gaps = []
    for key, (parent, *_) in ((k, p) for k, p in parents.items() if p):
        done, before = _seconds(run.tasks[key].end_date), _seconds(run.tasks[parent].end_date)
        gaps.append(done - before - run.steps[key].get("task_execution", 0.0))
    return gaps


def _seconds(ts) -> float:
    return ts.seconds + ts.nanos / 1e9


CPU_ROWS = (
    "tasks (user functions)",
    "ledger",
    "event",
    "compute",
    "storage",
    "gateway",
    "postgresql",
    "nats",
    "this process (SDK, polling)",
)


def report(results: dict) -> str:
    """The figures as markdown tables."""
    runs = results["runs"]
    lines = [
        f"Two organizations, {results['slots']} execution slots each; wall time from add_compute_plan to the last "
        "DONE (ledger timestamp).",
        "",
        "| plan | tasks | critical path (tasks) | Tessera wall (s) | wall / critical-path task (s) "
        "| Σ user function (s) | overhead per task (s) | local mode wall (s) | Tessera / local |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ours, (local, _) in runs:
        total = sum(s.get("task_execution", 0.0) for s in ours.steps.values())
        length, _, _ = ours.plan.critical_path()
        n = ours.plan.tasks
        lines.append(
            f"| {ours.plan.name} | {n} | {length} | {ours.wall:.1f} | {ours.wall / length:.2f} | {total:.1f} | "
            f"{(ours.wall - total) / n:.2f} | {local:.1f} | **{ours.wall / local:.2f}x** |"
        )
    lines += [
        "",
        "Per task, means over each plan (profiling steps recorded by compute, in seconds; ledger timestamps):",
        "",
        "| plan | registration (s) | ready → EXECUTING | download_function | prepare_inputs | task_execution "
        "| save_outputs | rest of EXECUTING → DONE | overhead per critical-path task (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ours, _ in runs:
        tasks, steps = ours.tasks, ours.steps
        waits, rests = [], []
        for key, parents in ours.plan.parents.items():
            task = tasks[key]
            # A task is ready once its last parent is DONE.
            if parents:
                waits.append(_seconds(task.start_date) - max(_seconds(tasks[p].end_date) for p in parents))
            rests.append(_seconds(task.end_date) - _seconds(task.start_date) - sum(steps[key].values()))
        means = {
            name: _mean([s.get(name, 0.0) for s in steps.values()])
            for name in ("download_function", "prepare_inputs", "task_execution", "save_outputs")
        }
        execution = {k: s.get("task_execution", 0.0) for k, s in steps.items()}
        length, on_path, _ = ours.plan.critical_path(execution)
        lines.append(
            f"| {ours.plan.name} | {ours.register:.2f} | {_mean(waits):.3f} | {means['download_function']:.3f} | "
            f"{means['prepare_inputs']:.3f} | {means['task_execution']:.3f} | {means['save_outputs']:.3f} | "
            f"{_mean(rests):.3f} | {(ours.wall - on_path) / length:.2f} |"
        )
    for ours, _ in runs:
        gaps = _chain_orchestration(ours)
        if gaps:
            lines += [
                "",
                f"{ours.plan.name}: orchestration per task (the interval between a task's DONE and the next one's, "
                f"less the next one's task_execution): p50 {statistics.median(gaps) * 1000:.0f} ms, "
                f"mean {_mean(gaps) * 1000:.0f} ms over {len(gaps)} tasks.",
            ]
    cores = os.cpu_count() or 1
    header = " | ".join(f"{ours.plan.name}: Tessera | local mode" for ours, _ in runs)
    lines += [
        "",
        f"CPU seconds used during each run, by component ({cores} cores):",
        "",
        f"| component | {header} |",
        "|---|" + "---|---|" * len(runs),
    ]
    for row in CPU_ROWS:
        cells = []
        for ours, (_, local_cpu) in runs:
            cells.append(f"{ours.cpu.get(row, 0.0):.1f}")
            if row == "tasks (user functions)":
                cells.append(f"{local_cpu['local-mode tasks']:.1f}")
            elif row == "this process (SDK, polling)":
                cells.append(f"{local_cpu[row]:.1f}")
            else:
                cells.append("-")
        lines.append(f"| {row} | {' | '.join(cells)} |")
    totals, per_task, capacity = [], [], []
    for ours, (local, local_cpu) in runs:
        ours_total, local_total = sum(ours.cpu.values()), sum(local_cpu.values())
        totals += [f"{ours_total:.1f}", f"{local_total:.1f}"]
        n = ours.plan.tasks
        per_task += [
            f"{(ours_total - ours.cpu['tasks (user functions)']) / n:.3f}",
            f"{(local_total - local_cpu['local-mode tasks']) / n:.3f}",
        ]
        capacity += [f"{ours.wall * cores:.1f}", f"{local * cores:.1f}"]
    lines += [
        f"| **total** | {' | '.join(totals)} |",
        f"| all but the tasks, per task | {' | '.join(per_task)} |",
        f"| available (wall x {cores} cores) | {' | '.join(capacity)} |",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``python -m tools.bench execution``."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench execution")
    parser.add_argument("--small", action="store_true", help="a chain of 10 and 3 rounds, for a quick check")
    parser.add_argument("--chain", type=int, default=None, help="tasks in the chain (default 50)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the federated plan (default 10)")
    parser.add_argument("--slots", type=int, default=2, help="TESSERA_EXECUTION_SLOTS of each compute")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep the network's files and logs here")
    parser.add_argument("--fedavg", action="store_true", help="instead: the substrafl FedAvg scenario")
    parser.add_argument("--orgs", type=int, default=10, help="organizations of the FedAvg experiment (default 10)")
    parser.add_argument(
        "--statements", action="store_true", help="with --fedavg: count SQL statements per task (slows PostgreSQL)"
    )
    args = parser.parse_args(argv)
    chain = args.chain or (10 if args.small else 50)
    rounds = args.rounds or (3 if args.small else 10)
    started = time.perf_counter()
    if args.fedavg:
        from tools.bench import fedavg  # substrafl is loaded only for this scenario

        print(fedavg.run(args.orgs, rounds, args.state_dir, args.statements), flush=True)
    else:
        print(report(run(chain, rounds, args.slots, args.state_dir)), flush=True)
    print(f"\n(benchmark run: {time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
