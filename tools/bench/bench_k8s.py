"""Kubernetes executor benchmark: how long a task waits for its pod, and how long compute takes to report a pod
that ended, beside the local executor's equivalent figures, in one run (issue 12).

Starts the test control plane (``tools.k8s.cluster.Cluster``: etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, kwok for the node) and a two-organization dev network (``tools.devnet.network.Network``,
every service a process, its own PostgreSQL and NATS) in which MyOrg1MSP's compute runs its tasks as pods
(``TESSERA_EXECUTOR=kubernetes``, authenticated as the compute chart's ServiceAccount, work folder shared as a
hostPath) and MyOrg2MSP's in local jails. kwok runs no container: the tests' stand-in for a kubelet's container
runtime (``tests/k8s/stand_in.py``) runs each Running pod's command in a bubblewrap jail and lets kwok end the pod
with its exit code; a pod's "container" is therefore a fresh interpreter per task (the local executor keeps a
warm runner per plan and function). Then, after a short warm-up chain on each organization:

1. a chain of N tasks (default 50) of a trivial function on MyOrg1MSP (Kubernetes), each reading the previous model;
2. the same chain on MyOrg2MSP (local executor).

A chain runs one task at a time, so no task waits for a slot: every figure is one task's own latency.
Per task, from the ledger's events (their timestamps are the ledger's clock, the same machine's):
READY is the event showing it WAITING_FOR_EXECUTOR_SLOT, EXECUTING and DONE the events showing those statuses.
For MyOrg1MSP's pods, a watch of the namespace in this process records when each pod is first seen Running and
Succeeded (``time.time()``; the watch's delivery, a few milliseconds, is included). For the local executor,
"runner finish" is EXECUTING plus compute's profiling steps up to the end of ``task_execution`` (download_function,
prepare_inputs, task_execution); it comes out a few milliseconds early (StartTask's answer travels to compute after
the ledger stamped EXECUTING), so runner finish → DONE is slightly over-counted. The same estimate is given for the
Kubernetes executor as a cross-check of the watch's figure.

Usage: ``python -m tools.bench k8s [--tasks N] [--warmup N] [--slots N] [--state-dir DIR]``.
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
from dataclasses import dataclass, field
from pathlib import Path

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from tools.bench import bench_execution
from tools.devnet.network import KubernetesTarget, Network, org_name
from tools.k8s import build
from tools.k8s.pods import PodWatch

os.environ.setdefault("TQDM_DISABLE", "1")

POLL = 0.2
TIMEOUT = 900.0
READY, EXECUTING, DONE = res.STATUS_WAITING_FOR_EXECUTOR_SLOT, res.STATUS_EXECUTING, res.STATUS_DONE
BEFORE_FINISH = ("download_function", "prepare_inputs", "task_execution")


# ------------------------------------------------------------------------------------------ pods
class PodClock(PodWatch):
    """When each of one organization's task pods was first seen Running and Succeeded (a watch, not polling)."""

    def __init__(self, cluster, namespace: str, selector: str) -> None:
        super().__init__(cluster, namespace, selector, self._record)
        self.seen: dict[str, dict[str, float]] = {}  # pod name -> phase -> time.time()

    def _record(self, kind: str, pod) -> None:
        now = time.time()
        phases = self.seen.setdefault(pod.metadata.name, {})
        phases.setdefault("ADDED", now)
        if pod.status and pod.status.phase:
            phases.setdefault(pod.status.phase, now)


# ---------------------------------------------------------------------------------------- ledger
def _seconds(ts) -> float:
    return ts.seconds + ts.nanos / 1e9


class Ledger(bench_execution.Ledger):
    """MyOrg1MSP's view of the ledger over gRPC: plan status (the execution benchmark's), task events, profiling."""

    def statuses(self, task_key: str) -> dict[int, float]:
        """When the task was first seen in each status (the ledger's timestamps of its events)."""
        events = self.stub.QueryEvents(api.QueryEventsRequest(asset_key=task_key, page_size=1000)).events
        found: dict[int, float] = {}
        for event in events:
            if event.WhichOneof("asset") == "compute_task":
                found.setdefault(event.compute_task.status, _seconds(event.timestamp))
        return found


# ----------------------------------------------------------------------------------------- plans
@dataclass
class Chain:
    """One chain's run: its tasks in order and what was measured about each."""

    worker: str
    keys: list[str]
    wall: float = 0.0
    statuses: dict[str, dict[int, float]] = field(default_factory=dict)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)
    pods: dict[str, dict[str, float]] = field(default_factory=dict)


def run_chain(sdk, ledger: Ledger, function: str, worker: str, n: int, clock: PodClock | None) -> Chain:
    from substra.sdk import schemas

    public = schemas.Permissions(public=True, authorized_ids=[])
    tasks = []
    for i in range(n):
        inputs = []
        if i:
            inputs = [
                schemas.InputRef(
                    identifier="models", parent_task_key=tasks[-1].task_id, parent_task_output_identifier="model"
                )
            ]
        tasks.append(
            schemas.ComputePlanTaskSpec(
                task_id=str(uuid.uuid4()),
                function_key=function,
                worker=worker,
                inputs=inputs,
                outputs={"model": schemas.ComputeTaskOutputSpec(permissions=public)},
            )
        )
    spec = schemas.ComputePlanSpec(key=str(uuid.uuid4()), name=f"bench-k8s-chain-{worker}-{n}", tasks=tasks)
    chain = Chain(worker, [t.task_id for t in tasks])
    started = time.perf_counter()
    sdk.add_compute_plan(spec)
    ledger.wait_done(spec.key)
    chain.wall = time.perf_counter() - started
    chain.statuses = {key: ledger.statuses(key) for key in chain.keys}
    chain.steps = ledger.steps(set(chain.keys))
    if clock is not None:
        from services.compute.kubernetes import specs

        time.sleep(1)  # the watch's last changes
        chain.pods = {key: dict(clock.seen.get(specs.pod_name(key), {})) for key in chain.keys}
    return chain


# ---------------------------------------------------------------------------------------- figures
def _quantiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 (inclusive method: with 50 values, p99 lies between the two largest)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


def figures(chain: Chain) -> dict[str, list[float]]:
    """Per-task latencies in seconds, by figure name."""
    out: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        out.setdefault(name, []).append(value)

    for key in chain.keys:
        status, steps, pod = chain.statuses[key], chain.steps.get(key, {}), chain.pods.get(key, {})
        ready, executing, done = status[READY], status[EXECUTING], status[DONE]
        finish = executing + sum(steps.get(step, 0.0) for step in BEFORE_FINISH)
        add("ready_executing", executing - ready)
        add("finish_done", done - finish)
        add("ready_done", done - ready)
        add("before_execution", steps.get("download_function", 0.0) + steps.get("prepare_inputs", 0.0))
        for step in (*BEFORE_FINISH, "save_outputs"):
            add(step, steps.get(step, 0.0))
        if "Running" in pod:
            add("ready_running", pod["Running"] - ready)
            add("executing_created", pod["ADDED"] - executing)
            add("created_running", pod["Running"] - pod["ADDED"])
        if "Running" in pod and "Succeeded" in pod:
            add("running_succeeded", pod["Succeeded"] - pod["Running"])
        if "Succeeded" in pod:
            add("succeeded_done", done - pod["Succeeded"])
    return out


def _cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    p50, p99 = _quantiles(values)
    return f"{p50 * 1000:.0f} / {p99 * 1000:.0f}"


ROWS = (
    # (label, Kubernetes figure, local figure)
    ("**READY → pod Running** (k8s) / READY → EXECUTING (local)", "ready_running", "ready_executing"),
    ("**pod Succeeded → DONE** (k8s) / runner finish → DONE (local)", "succeeded_done", "finish_done"),
    ("READY → EXECUTING (StartTask)", "ready_executing", "ready_executing"),
    ("`download_function` + `prepare_inputs` steps", "before_execution", "before_execution"),
    ("EXECUTING → pod created (those steps, staging, the create call)", "executing_created", None),
    ("pod created → Running (scheduler, kwok)", "created_running", None),
    ("pod Running → Succeeded (the container) / task_execution (local)", "running_succeeded", "task_execution"),
    ("`task_execution` step (compute's wait on the executor)", "task_execution", "task_execution"),
    ("executor done → DONE, from the profiling steps", "finish_done", "finish_done"),
    ("`save_outputs` step", "save_outputs", "save_outputs"),
    ("READY → DONE", "ready_done", "ready_done"),
)


def report(k8s: Chain, local: Chain, slots: int) -> str:
    ours, theirs = figures(k8s), figures(local)
    n = len(k8s.keys)
    seen = len(ours.get("ready_running", []))
    lines = [
        f"Chains of {n} tasks, one task at a time; {slots} execution slots per compute. "
        f"Milliseconds, p50 / p99 over the {n} tasks of each chain.",
        "",
        "| per task (ms, p50 / p99) | Kubernetes executor (MyOrg1MSP) | local executor (MyOrg2MSP) |",
        "|---|---|---|",
    ]
    for label, mine, other in ROWS:
        lines.append(f"| {label} | {_cell(ours.get(mine))} | {_cell(theirs.get(other)) if other else '-'} |")
    lines += [
        f"| chain wall time (s) | {k8s.wall:.1f} | {local.wall:.1f} |",
        "",
        f"(pods seen Running by the watch: {seen} of {n}; Succeeded: {len(ours.get('succeeded_done', []))} of {n})",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- driver
def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def run(tasks: int, warmup: int, slots: int, state_dir: Path | None) -> tuple[Chain, Chain]:
    import substra

    from tests.k8s.stand_in import StandIn  # kwok runs no container: the tests' stand-in plays them
    from tests.k8s.test_executor import _apply_rbac  # the compute chart's RBAC, rendered by helm
    from tools.bench.bench_execution import register_assets
    from tools.k8s.cluster import Cluster

    def log(message: str) -> None:
        print(f"  [bench] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="tessera-bench-k8s-") as tmp:
        folder = Path(tmp) if state_dir is None else state_dir.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        log("starting the control plane")
        with Cluster(folder / "k8s") as cluster, cluster.api_client() as admin:
            namespace = cluster.new_namespace("bench")
            kubeconfig = _apply_rbac(cluster, admin, namespace, folder / "rbac")
            org1 = org_name(1)
            from services.compute.kubernetes import specs

            selector = specs.task_selector(org1)
            (folder / "containers").mkdir(exist_ok=True)
            with StandIn(cluster, namespace, folder / "containers"), PodClock(cluster, namespace, selector) as clock:
                network = Network(
                    folder / "network",
                    orgs=2,
                    log=lambda message: log(f"network: {message}"),
                    extra_env={"compute": {"TESSERA_EXECUTION_SLOTS": str(slots)}},
                    kubernetes={org1: KubernetesTarget(str(kubeconfig), namespace)},
                )
                network.plan()
                clients: list = []
                try:
                    network.start(timeout=180)
                    ledger = Ledger(network)
                    clients = [
                        substra.Client(url=o.gateway, backend_type="remote", username=o.username, password=o.password)
                        for o in network.organizations
                    ]
                    assets = register_assets(clients, folder / "assets")
                    for key in assets.functions.values():  # MyOrg1MSP builds each image as a Kaniko Job
                        clients[0].wait_function(key, timeout=300, polling_period=POLL)
                    step = assets.functions["step"]
                    for org in assets.orgs:
                        log(f"warm-up: a chain of {warmup} on {org}")
                        run_chain(clients[0], ledger, step, org, warmup, None)
                    log(f"a chain of {tasks} on {assets.orgs[0]} (Kubernetes executor)")
                    k8s = run_chain(clients[0], ledger, step, assets.orgs[0], tasks, clock)
                    log(f"a chain of {tasks} on {assets.orgs[1]} (local executor)")
                    local = run_chain(clients[0], ledger, step, assets.orgs[1], tasks, None)
                    return k8s, local
                finally:
                    for sdk in clients:
                        with contextlib.suppress(Exception):
                            sdk.logout()
                    network.stop()


def main(argv: list[str]) -> int:
    """Entry point of ``python -m tools.bench k8s``."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench k8s")
    parser.add_argument("--tasks", type=int, default=50, help="tasks in each chain (default 50)")
    parser.add_argument("--warmup", type=int, default=2, help="tasks of the warm-up chain on each organization")
    parser.add_argument("--slots", type=int, default=2, help="TESSERA_EXECUTION_SLOTS of each compute")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep the cluster's and network's files here")
    args = parser.parse_args(argv)
    if build.installed() is None:
        print(f"skipped: the Kubernetes test binaries are not built in {build.home()} (`make k8s-tools`)", flush=True)
        return 0
    started = time.perf_counter()
    k8s, local = run(args.tasks, args.warmup, args.slots, args.state_dir)
    print(report(k8s, local, args.slots), flush=True)
    print(f"\n(benchmark run: {time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
