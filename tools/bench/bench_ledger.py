"""Ledger benchmark: task registration, a filtered task page, and a chain driven to DONE.

Runs a real ledger process (``python -m services.asset``) on an embedded PostgreSQL and NATS and
calls it over loopback gRPC as an organization would:

1. register plans of 1,000 and 10,000 tasks in batches of 500 (ten parallel chains: each task
   consumes the model of the task ten before it, so most parents come from earlier batches);
2. list one filtered page of 100 tasks of the 10,000-task plan (worker, status and rank filters);
3. drive every task of a 1,000-task chain through EXECUTING → DONE (each DONE releases the next), one
   ``ApplyTaskAction`` per transition;
4. run another such chain as compute does: ``StartTask`` on the first task, then one ``CompleteTask`` per
   task (a model, two profiling steps) that also starts the next (``start_ready=1``): the ledger's share
   of a chain task's critical path.

Prints time per task, p50/p99 per call, and the 10k/1k cost ratio of registration.
Usage: ``make bench`` or ``python -m tools.bench ledger [--small]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.kit.client import sync_channel
from services.kit.db import ensure_database
from services.kit.identity import OrgCredentials
from tools.devnet.credentials import write_org_credentials
from tools.devnet.embedded import EmbeddedNats, EmbeddedPostgres, free_port, stop_process, wait_for_port

ORG = "BenchOrgMSP"
SECRET = "a-benchmark-secret-of-the-required-32-characters-or-more"
REPO = Path(__file__).resolve().parents[2]
WIDTH = 10  # parallel chains in the registered plans
BATCH = 500


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _addressable() -> res.Addressable:
    return res.Addressable(checksum="0" * 64, storage_address="http://bench.test/file/")


def ready_function(stub) -> str:
    """A public function, taken through its build to READY by hand (no compute involved)."""
    key = str(uuid.uuid4())
    stub.RegisterFunction(
        api.RegisterFunctionRequest(
            key=key,
            name="bench",
            description=_addressable(),
            archive=_addressable(),
            permissions=res.NewPermissions(public=True),
            inputs={"models": res.FunctionInput(kind=res.ASSET_MODEL, optional=True, multiple=True)},
            outputs={"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
        )
    )
    for action in (res.FUNCTION_ACTION_BUILDING, res.FUNCTION_ACTION_READY):
        stub.ApplyFunctionAction(api.ApplyFunctionActionRequest(function_key=key, action=action))
    return key


def _tasks(plan_key: str, function_key: str, n: int, width: int, worker: str) -> list[api.NewComputeTask]:
    keys = [str(uuid.uuid4()) for _ in range(n)]
    tasks = []
    for i, key in enumerate(keys):
        inputs = []
        if i >= width:
            inputs.append(
                api.NewComputeTaskInput(
                    identifier="models", parent_task_key=keys[i - width], parent_task_output_identifier="model"
                )
            )
        task = api.NewComputeTask(
            key=key, compute_plan_key=plan_key, function_key=function_key, worker=worker, inputs=inputs
        )
        task.outputs["model"].CopyFrom(api.NewComputeTaskOutput(permissions=res.NewPermissions(public=True)))
        task.metadata["index"] = str(i)
        tasks.append(task)
    return tasks


def register_plan(
    stub, function_key: str, n: int, width: int = WIDTH, worker: str = ORG
) -> tuple[str, list[str], float, list[float]]:
    """Register an ``n``-task plan on ``worker`` in batches; returns its key, task keys, wall time and
    per-call times."""
    plan_key = str(uuid.uuid4())
    stub.RegisterComputePlan(api.RegisterComputePlanRequest(key=plan_key, name=f"bench-{n}"))
    tasks = _tasks(plan_key, function_key, n, width, worker)
    calls = []
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        t0 = time.perf_counter()
        stub.RegisterTasks(api.RegisterTasksRequest(tasks=tasks[start : start + BATCH]))
        calls.append(time.perf_counter() - t0)
    return plan_key, [t.key for t in tasks], time.perf_counter() - started, calls


def worker_chain(stub, function_key: str, n: int) -> dict:
    """Scenario 4: a chain run through the worker's calls, each completion starting the next task."""
    _, keys, _, _ = register_plan(stub, function_key, n, width=1)
    times = []
    started = time.perf_counter()
    stub.StartTask(api.StartTaskRequest(task_key=keys[0]))
    for i, key in enumerate(keys):
        request = api.CompleteTaskRequest(task_key=key, start_ready=1)
        request.models.append(
            api.NewModel(
                key=str(uuid.uuid4()),
                compute_task_key=key,
                compute_task_output_identifier="model",
                address=_addressable(),
            )
        )
        request.profiling_steps.extend(
            [
                api.TaskProfilingStep(step="task_execution", duration=1000),
                api.TaskProfilingStep(step="save_outputs", duration=100),
            ]
        )
        t0 = time.perf_counter()
        answer = stub.CompleteTask(request)
        times.append(time.perf_counter() - t0)
        if i + 1 < n:
            assert [s.task.key for s in answer.started] == [keys[i + 1]], "the completion did not start the next task"
    return {"n": n, "wall": time.perf_counter() - started, "calls": times}


def run(small: bool) -> dict:
    """Start the servers, run the scenarios, return the figures."""
    sizes = (100, 1000) if small else (1000, 10000)
    chain = 100 if small else 1000
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        folder = Path(tmp)
        postgres = EmbeddedPostgres(folder / "pg", free_port())
        nats = EmbeddedNats(folder / "nats", free_port())
        postgres.start()
        nats.start()
        ensure_database(postgres.url("bench"))
        credentials = write_org_credentials(folder / "credentials", {ORG: SECRET})
        port = free_port()
        env = {
            **os.environ,
            "TESSERA_GRPC_ADDR": f"127.0.0.1:{port}",
            "TESSERA_DATABASE_URL": postgres.url("bench"),
            "TESSERA_NATS_URL": nats.url,
            **credentials.env(),
            "TESSERA_LOG_LEVEL": "WARNING",
        }
        ledger = subprocess.Popen([sys.executable, "-m", "services.asset"], cwd=REPO, env=env)
        try:
            wait_for_port("127.0.0.1", port, 60, ledger)
            stub = api_grpc.AssetServiceStub(sync_channel(f"127.0.0.1:{port}", OrgCredentials(ORG, SECRET)))
            stub.RegisterOrganization(api.RegisterOrganizationRequest())
            function_key = ready_function(stub)
            register_plan(stub, function_key, 200)  # warm-up: connections, caches
            results: dict = {"sizes": sizes}
            for n in sizes:
                key, _, wall, calls = register_plan(stub, function_key, n)
                results[n] = {"plan": key, "wall": wall, "calls": calls}
            big_plan = results[sizes[1]]["plan"]

            list_times = []
            for i in range(30):
                t0 = time.perf_counter()
                page = stub.ListTasks(
                    api.ListTasksRequest(
                        compute_plan_key=[big_plan],
                        worker=[ORG],
                        status=[res.STATUS_WAITING_FOR_PARENT_TASKS],
                        rank=[i % 50 + 1],
                        page_size=100,
                        ordering="-creation_date",
                    )
                )
                list_times.append(time.perf_counter() - t0)
                assert len(page.tasks) <= 100
            results["list"] = list_times

            _, chain_keys, _, _ = register_plan(stub, function_key, chain, width=1)
            action_times = []
            started = time.perf_counter()
            for key in chain_keys:
                for action in (res.TASK_ACTION_EXECUTING, res.TASK_ACTION_DONE):
                    t0 = time.perf_counter()
                    stub.ApplyTaskAction(api.ApplyTaskActionRequest(task_key=key, action=action))
                    action_times.append(time.perf_counter() - t0)
            results["chain"] = {"n": chain, "wall": time.perf_counter() - started, "calls": action_times}
            results["worker"] = worker_chain(stub, function_key, chain)
            return results
        finally:
            stop_process(ledger)
            nats.stop()
            postgres.stop()


def report(results: dict) -> str:
    """The figures as a markdown table."""
    small, big = results["sizes"]
    ms = 1000.0
    lines = [
        "| scenario | tasks | wall (s) | per task (ms) | p50 per call (ms) | p99 per call (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for n in (small, big):
        r = results[n]
        lines.append(
            f"| register plan, batches of {BATCH} | {n} | {r['wall']:.2f} | {r['wall'] / n * ms:.3f} | "
            f"{statistics.median(r['calls']) * ms:.1f} | {percentile(r['calls'], 0.99) * ms:.1f} |"
        )
    lt = results["list"]
    lines.append(
        f"| list 100 tasks of the {big}-task plan (filtered) | 100 | - | - | "
        f"{statistics.median(lt) * ms:.1f} | {percentile(lt, 0.99) * ms:.1f} |"
    )
    c = results["chain"]
    lines.append(
        f"| chain EXECUTING→DONE, one call per action | {c['n']} | {c['wall']:.2f} | {c['wall'] / c['n'] * ms:.3f} | "
        f"{statistics.median(c['calls']) * ms:.1f} | {percentile(c['calls'], 0.99) * ms:.1f} |"
    )
    w = results["worker"]
    lines.append(
        f"| chain as compute runs it, one CompleteTask per task (starting the next) | {w['n']} | {w['wall']:.2f} | "
        f"{w['wall'] / w['n'] * ms:.3f} | {statistics.median(w['calls']) * ms:.1f} | "
        f"{percentile(w['calls'], 0.99) * ms:.1f} |"
    )
    per_task_ratio = (results[big]["wall"] / big) / (results[small]["wall"] / small)
    lines.append("")
    lines.append(
        f"Registration cost ratio {big}/{small} tasks: {results[big]['wall'] / results[small]['wall']:.2f}x "
        f"for {big // small}x the tasks (per-task time ratio {per_task_ratio:.2f}; 1.00 = linear)."
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``python -m tools.bench ledger``."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench ledger")
    parser.add_argument("--small", action="store_true", help="10x smaller, for a quick check")
    args = parser.parse_args(argv)
    print(report(run(args.small)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
