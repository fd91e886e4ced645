"""Load benchmark: reading tasks of a 100,000-task network, one client and 20 at once, through the gateway
and straight to the ledger, side by side.

Starts a one-organization :class:`tools.devnet.network.Network` (every service a process; compute's worker
off, so that no task runs) and registers through the ledger 1,000 plans of 100 tasks in batches, as
``tools.bench ledger`` does (ten parallel chains per plan, on MyOrg1MSP), waits for the event service to
have stored every event, then measures:

1. one client: ``GET /task/{key}/`` at the gateway, alternated call by call with the ledger's ``GetTask``,
   each on a task drawn at random among all of them;
2. 20 concurrent clients for a fixed time, each repeating what an SDK user browsing tasks does: list a
   plan's tasks (``GET /task/?compute_plan_key=…``, the SDK's request: one page of 100) then read one task;
   and the same load straight to the ledger (``ListTasks`` and ``GetTask`` over gRPC), the two alternated in
   five windows each, with the CPU seconds each process used.

The HTTP clients send what the SDK sends (keep-alive, ``Authorization: Token``). Prints p50/p99 per call
and requests/s. Target (issue 14): ``GET /task/{key}/`` p99 ≤ 20 ms from a single client at 100,000 tasks.
Usage: ``python -m tools.bench load [--small] [--plans N] [--clients N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.event.v1 import event_service_pb2 as event_api
from tessera.event.v1 import event_service_pb2_grpc as event_grpc

from services.kit.client import sync_channel
from tools.bench.bench_execution import Ledger, cpu_delta, cpu_snapshot
from tools.bench.bench_gateway import _alternate
from tools.bench.bench_ledger import percentile, ready_function, register_plan
from tools.devnet.network import Network

PLAN_SIZE = 100
MS = 1000.0
TARGET_P99_MS = 20.0
WINDOWS = 5  # the concurrent runs alternate gateway and ledger in this many windows each


def _catch_up(network: Network, ledger: Ledger, timeout: float = 1800.0) -> float:
    """Wait until the event service has stored as many events as the ledger wrote; seconds waited."""
    org = network.organizations[0]
    events = event_grpc.EventServiceStub(sync_channel(org.event, ledger.creds))
    written = ledger.stub.QueryEvents(api.QueryEventsRequest(page_size=1)).total_size
    started = time.monotonic()
    while events.ListEvents(event_api.ListEventsRequest(page_size=1)).total_size < written:
        if time.monotonic() - started > timeout:
            raise TimeoutError("the event service did not catch up with the ledger")
        time.sleep(1.0)
    return time.monotonic() - started


def _concurrent(
    network: Network, make_client: Callable[[], Callable[[str, str], None]], plans, keys, clients, seconds
) -> dict:
    """``clients`` threads, each listing a random plan's tasks then reading a random task, for ``seconds``;
    the calls' times, requests/s and the CPU seconds each process used meanwhile."""
    times: dict[str, list[float]] = {"list": [], "get": []}
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop = threading.Event()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        call = make_client()
        call("get", keys[0])  # connect, log in
        mine: dict[str, list[float]] = {"list": [], "get": []}
        barrier.wait()
        while not stop.is_set():
            for kind, target in (("list", rng.choice(plans)), ("get", rng.choice(keys))):
                t0 = time.perf_counter()
                call(kind, target)
                mine[kind].append(time.perf_counter() - t0)
        with lock:
            for kind in times:
                times[kind] += mine[kind]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    cpu = cpu_snapshot(network)
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = cpu_delta(cpu, cpu_snapshot(network))
    return {**times, "rps": (len(times["list"]) + len(times["get"])) / wall, "cpu": cpu, "wall": wall}


def run(plans: int, clients: int, seconds: float, sequential: int) -> dict:
    log = lambda message: print(f"  [network] {message}", file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="tessera-bench-load-") as tmp:
        network = Network(
            Path(tmp) / "network", orgs=1, log=log, extra_env={"compute": {"TESSERA_WORKER_ENABLED": "false"}}
        )
        network.plan()
        try:
            network.start(timeout=180)
            ledger = Ledger(network)
            org = network.organizations[0]
            function_key = ready_function(ledger.stub)
            plan_keys, task_keys = [], []
            started = time.perf_counter()
            for i in range(plans):
                plan_key, keys, _, _ = register_plan(ledger.stub, function_key, PLAN_SIZE, worker=org.id)
                plan_keys.append(plan_key)
                task_keys += keys
                if (i + 1) % 100 == 0:
                    print(f"  {len(task_keys)} tasks registered", file=sys.stderr, flush=True)
            results: dict = {"tasks": len(task_keys), "register": time.perf_counter() - started}
            results["catch_up"] = _catch_up(network, ledger)
            print(f"  event service caught up in {results['catch_up']:.0f} s", file=sys.stderr, flush=True)

            token = httpx.post(
                f"{org.gateway}/api-token-auth/", data={"username": org.username, "password": org.password}
            ).json()["token"]
            headers = {"Authorization": f"Token {token}", "Accept": "application/json;version=0.0"}
            http = httpx.Client(base_url=org.gateway, headers=headers, timeout=120)

            # 1. one client, a random task each call, both paths alternated.
            rng = random.Random(14)
            drawn = [rng.choice(task_keys) for _ in range(sequential)]
            for key in drawn[:50]:  # warm-up
                http.get(f"/task/{key}/").raise_for_status()
                ledger.stub.GetTask(api.GetTaskRequest(key=key))
            gets = iter(drawn), iter(drawn)
            results["get_http"], results["get_grpc"] = _alternate(
                lambda: http.get(f"/task/{next(gets[0])}/").raise_for_status(),
                lambda: ledger.stub.GetTask(api.GetTaskRequest(key=next(gets[1]))),
                sequential,
            )

            # 2. concurrent SDK-like clients, then the same load on the ledger.
            def http_client() -> Callable[[str, str], None]:
                own = httpx.Client(base_url=org.gateway, headers=headers, timeout=120)

                def call(kind: str, target: str) -> None:
                    if kind == "list":
                        page = own.get("/task/", params={"compute_plan_key": target})
                        page.raise_for_status()
                        assert len(page.json()["results"]) == PLAN_SIZE
                    else:
                        own.get(f"/task/{target}/").raise_for_status()

                return call

            def grpc_client() -> Callable[[str, str], None]:
                own = api_grpc.AssetServiceStub(sync_channel(network.services[0].addr, ledger.creds))

                def call(kind: str, target: str) -> None:
                    if kind == "list":
                        own.ListTasks(api.ListTasksRequest(compute_plan_key=[target], page_size=PLAN_SIZE))
                    else:
                        own.GetTask(api.GetTaskRequest(key=target))

                return call

            # Alternated in windows, so that both paths see the machine's other load alike.
            results["clients"], results["seconds"] = clients, seconds
            windows: dict[str, list[dict]] = {"http": [], "grpc": []}
            for _ in range(WINDOWS):
                for path, make in (("http", http_client), ("grpc", grpc_client)):
                    window = _concurrent(network, make, plan_keys, task_keys, clients, seconds / WINDOWS)
                    windows[path].append(window)
            for path, runs in windows.items():
                results[path] = {
                    "list": [t for w in runs for t in w["list"]],
                    "get": [t for w in runs for t in w["get"]],
                    "rps": sum(len(w["list"]) + len(w["get"]) for w in runs) / sum(w["wall"] for w in runs),
                    "cpu": {name: sum(w["cpu"].get(name, 0.0) for w in runs) for name in runs[0]["cpu"]},
                }
            return results
        finally:
            network.stop()


def _row(label: str, path: str, times: list[float], extra: str = "") -> str:
    return (
        f"| {label} | {path} | {len(times)} | {statistics.median(times) * MS:.2f} | "
        f"{percentile(times, 0.99) * MS:.2f} | {extra} |"
    )


def report(results: dict) -> str:
    """The figures as markdown tables."""
    n, clients = results["tasks"], results["clients"]
    p99 = percentile(results["get_http"], 0.99) * MS
    verdict = "met" if p99 <= TARGET_P99_MS else "**missed**"
    lines = [
        f"{n} tasks ({n // PLAN_SIZE} plans of {PLAN_SIZE}) registered in {results['register']:.0f} s; "
        f"the event service caught up {results['catch_up']:.0f} s later.",
        "",
        "| scenario | path | calls | p50 (ms) | p99 (ms) | requests/s |",
        "|---|---|---|---|---|---|",
        _row("one client: a random task by key", "gateway GET /task/{key}/", results["get_http"]),
        _row("one client: a random task by key", "ledger GetTask", results["get_grpc"]),
    ]
    for path, label in (("http", "gateway"), ("grpc", "ledger")):
        load = results[path]
        what = ("GET /task/?compute_plan_key=…", "GET /task/{key}/") if path == "http" else ("ListTasks", "GetTask")
        scenario = f"{clients} clients, {results['seconds']:.0f} s"
        lines.append(_row(f"{scenario}: a plan's {PLAN_SIZE} tasks", f"{label} {what[0]}", load["list"]))
        lines.append(_row(f"{scenario}: a task by key", f"{label} {what[1]}", load["get"], f"{load['rps']:.0f}"))
    lines += [
        "",
        f"CPU seconds per process over each path's {results['seconds']:.0f} s of load (2 cores, shared):",
        "",
        "| process | through the gateway | straight to the ledger |",
        "|---|---|---|",
    ]
    for name in ("gateway", "ledger", "postgresql", "event", "this process (SDK, polling)"):
        label = "the clients (this process)" if name.startswith("this process") else name
        http, grpc_ = results["http"]["cpu"].get(name, 0.0), results["grpc"]["cpu"].get(name, 0.0)
        lines.append(f"| {label} | {http:.1f} | {grpc_:.1f} |")
    lines += ["", f"Target GET /task/{{key}}/ p99 ≤ {TARGET_P99_MS:.0f} ms from one client: {p99:.2f} ms, {verdict}."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``python -m tools.bench load``."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench load")
    parser.add_argument("--small", action="store_true", help="5,000 tasks and 5 s of load, for a quick check")
    parser.add_argument("--plans", type=int, default=None, help=f"plans of {PLAN_SIZE} tasks (default 1000)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--seconds", type=float, default=None, help="duration of each concurrent run (default 30)")
    args = parser.parse_args(argv)
    plans = args.plans or (50 if args.small else 1000)
    seconds = args.seconds or (5.0 if args.small else 30.0)
    started = time.perf_counter()
    print(report(run(plans, args.clients, seconds, 200 if args.small else 1000)), flush=True)
    print(f"\n(benchmark run: {time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
