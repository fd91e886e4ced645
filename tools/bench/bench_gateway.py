"""Gateway benchmark: the Substra REST API against the direct gRPC call, in the same run.

Runs a real ledger (``python -m services.asset``) and a real gateway (``python -m gateway``) as
separate processes on an embedded PostgreSQL, logs in as a provisioned user, and measures over
loopback, each scenario once through the gateway (HTTP/JSON, keep-alive, ``Authorization: Token``)
and once straight to the ledger (gRPC, the organization's credential):

1. ``GET /task/{key}/`` ↔ ``GetTask``: p50/p99 of sequential calls, and requests/s with
   ``--clients`` concurrent clients;
2. one filtered page of 100 tasks (plan, worker, status, rank) ↔ ``ListTasks``;
3. bulk creation of 500 tasks, ``POST /task/bulk_create/`` with the SDK's JSON ↔ ``RegisterTasks``.

Both paths alternate call by call (batch by batch for the bulk creation), so they share the database's
state and the machine's load; the gateway's overhead is the difference of the medians (and their ratio).
Usage: ``python -m tools.bench gateway [--small] [--clients N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.kit.client import sync_channel
from services.kit.db import ensure_database
from services.kit.identity import DEFAULT_CHANNEL, OrgCredentials
from tools.bench.bench_ledger import percentile, ready_function
from tools.devnet.credentials import write_org_credentials
from tools.devnet.embedded import EmbeddedPostgres, free_port, stop_process, wait_for_port

ORG = "BenchOrgMSP"
SECRET = "a-benchmark-secret-of-the-required-32-characters-or-more"
USER, PASSWORD = "bench-admin", "bench-password"
CHANNEL = DEFAULT_CHANNEL
REPO = Path(__file__).resolve().parents[2]
BATCH = 500
MS = 1000.0


def _task_specs(plan_key: str, function_key: str, n: int, width: int = 10) -> list[dict]:
    """Tasks as the SDK sends them to /task/bulk_create/ (ten parallel chains)."""
    keys = [str(uuid.uuid4()) for _ in range(n)]
    tasks = []
    for i, key in enumerate(keys):
        inputs = []
        if i >= width:
            inputs.append(
                {
                    "identifier": "models",
                    "asset_key": None,
                    "parent_task_key": keys[i - width],
                    "parent_task_output_identifier": "model",
                }
            )
        tasks.append(
            {
                "key": key,
                "tag": None,
                "compute_plan_key": plan_key,
                "metadata": {"index": str(i)},
                "function_key": function_key,
                "worker": ORG,
                "rank": None,
                "inputs": inputs,
                "outputs": {"model": {"permissions": {"public": True, "authorized_ids": []}, "transient": False}},
            }
        )
    return tasks


def _grpc_tasks(specs: list[dict]) -> list[api.NewComputeTask]:
    from google.protobuf import json_format

    return [json_format.ParseDict(spec, api.NewComputeTask()) for spec in specs]


def _alternate(first: Callable[[], object], second: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    """Times of ``n`` calls of each, alternated so both see the same conditions."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for call, bucket in ((first, times[0]), (second, times[1])):
            t0 = time.perf_counter()
            call()
            bucket.append(time.perf_counter() - t0)
    return times


def _throughput(make_call: Callable[[], Callable[[], object]], clients: int, per_client: int) -> float:
    """Requests per second of ``clients`` threads, each making ``per_client`` calls."""
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        call = make_call()
        call()  # connect
        barrier.wait()
        for _ in range(per_client):
            call()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return clients * per_client / (time.perf_counter() - started)


def run(small: bool, clients: int) -> dict:
    """Start the servers, run the scenarios, return the figures."""
    sequential = 100 if small else 1000
    batches = 3 if small else 10
    pages = 20 if small else 100
    per_client = 50 if small else 300
    with tempfile.TemporaryDirectory(prefix="tessera-bench-gw-") as tmp:
        folder = Path(tmp)
        postgres = EmbeddedPostgres(folder / "pg", free_port())
        postgres.start()
        ensure_database(postgres.url("ledger"))
        ensure_database(postgres.url("org"))
        credentials = write_org_credentials(folder / "credentials", {ORG: SECRET})
        (folder / "users.json").write_text(
            json.dumps({"users": [{"username": USER, "password": PASSWORD, "role": "ADMIN", "channel": CHANNEL}]})
        )
        grpc_port, http_port = free_port(), free_port()
        common = {
            **os.environ,
            **credentials.env(),
            "TESSERA_CHANNELS": f"{CHANNEL}={ORG}",
            "TESSERA_LOG_LEVEL": "WARNING",
        }
        ledger_env = {
            **common,
            "TESSERA_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
            "TESSERA_DATABASE_URL": postgres.url("ledger"),
        }
        gateway_env = {
            **common,
            "TESSERA_HTTP_ADDR": f"127.0.0.1:{http_port}",
            "TESSERA_DATABASE_URL": postgres.url("org"),
            **credentials.env(ORG),
            "TESSERA_ORG_ID": ORG,
            "ASSET_ADDR": f"127.0.0.1:{grpc_port}",
            "TESSERA_USERS_FILE": str(folder / "users.json"),
        }
        ledger = subprocess.Popen([sys.executable, "-m", "services.asset"], cwd=REPO, env=ledger_env)
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, env=gateway_env)
        try:
            wait_for_port("127.0.0.1", grpc_port, 60, ledger)
            wait_for_port("127.0.0.1", http_port, 60, gateway)
            stub = api_grpc.AssetServiceStub(sync_channel(f"127.0.0.1:{grpc_port}", OrgCredentials(ORG, SECRET)))
            stub.RegisterOrganization(api.RegisterOrganizationRequest())
            function_key = ready_function(stub)
            base = f"http://127.0.0.1:{http_port}"
            token = httpx.post(f"{base}/api-token-auth/", data={"username": USER, "password": PASSWORD}).json()
            headers = {"Authorization": f"Token {token['token']}", "Accept": "application/json;version=0.0"}
            http = httpx.Client(base_url=base, headers=headers, timeout=120)
            results: dict = {"sequential": sequential, "clients": clients, "per_client": per_client}

            # 3. bulk creation first: it also makes the tasks the reads use. Both paths alternate batch by
            # batch (two plans), so that they share the database's state and the machine's load.
            def bulk_run() -> tuple[str, list[float], list[float], list[str]]:
                plans = [str(uuid.uuid4()), str(uuid.uuid4())]
                for plan_key in plans:
                    stub.RegisterComputePlan(api.RegisterComputePlanRequest(key=plan_key, name="bench"))
                via_http = _task_specs(plans[0], function_key, BATCH * batches)
                via_grpc = _task_specs(plans[1], function_key, BATCH * batches)
                http_times, grpc_times = [], []
                for start in range(0, BATCH * batches, BATCH):
                    batch = via_http[start : start + BATCH]
                    t0 = time.perf_counter()
                    response = http.post("/task/bulk_create/", json={"tasks": batch})
                    http_times.append(time.perf_counter() - t0)
                    assert response.status_code == 200 and len(response.json()) == BATCH, response.text[:300]
                    request = api.RegisterTasksRequest(tasks=_grpc_tasks(via_grpc[start : start + BATCH]))
                    t0 = time.perf_counter()
                    reply = stub.RegisterTasks(request)
                    grpc_times.append(time.perf_counter() - t0)
                    assert len(reply.tasks) == BATCH
                return plans[0], http_times, grpc_times, [s["key"] for s in via_http]

            bulk_run()  # warm-up of both paths
            plan_key, results["bulk_http"], results["bulk_grpc"], task_keys = bulk_run()

            # 1. one task by key.
            key = task_keys[BATCH // 2]
            for _ in range(50):  # warm-up
                http.get(f"/task/{key}/")
                stub.GetTask(api.GetTaskRequest(key=key))
            results["get_http"], results["get_grpc"] = _alternate(
                lambda: http.get(f"/task/{key}/").raise_for_status(),
                lambda: stub.GetTask(api.GetTaskRequest(key=key)),
                sequential,
            )

            def http_caller():
                client = httpx.Client(base_url=base, headers=headers, timeout=120)
                return lambda: client.get(f"/task/{key}/").raise_for_status()

            def grpc_caller():
                own = api_grpc.AssetServiceStub(sync_channel(f"127.0.0.1:{grpc_port}", OrgCredentials(ORG, SECRET)))
                return lambda: own.GetTask(api.GetTaskRequest(key=key))

            results["rps_http"] = _throughput(http_caller, clients, per_client)
            results["rps_grpc"] = _throughput(grpc_caller, clients, per_client)

            # 2. one filtered page of 100 tasks.
            params = {
                "compute_plan_key": plan_key,
                "worker": ORG,
                "status": "STATUS_WAITING_FOR_PARENT_TASKS",
                "rank": "1,2,3,4,5,6,7,8,9,10",
                "page_size": "100",
                "ordering": "-creation_date",
            }
            listing = api.ListTasksRequest(
                compute_plan_key=[plan_key],
                worker=[ORG],
                status=[res.STATUS_WAITING_FOR_PARENT_TASKS],
                rank=list(range(1, 11)),
                page_size=100,
                ordering="-creation_date",
            )
            assert len(http.get("/task/", params=params).json()["results"]) == 100
            assert len(stub.ListTasks(listing).tasks) == 100
            results["list_http"], results["list_grpc"] = _alternate(
                lambda: http.get("/task/", params=params).raise_for_status(), lambda: stub.ListTasks(listing), pages
            )
            return results
        finally:
            stop_process(gateway)
            stop_process(ledger)
            postgres.stop()


def report(results: dict) -> str:
    """The figures as a markdown table."""
    lines = [
        "| scenario | path | calls | p50 (ms) | p99 (ms) | gateway overhead at p50 |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("get", "GET /task/{key}/ ↔ GetTask"),
        ("list", "filtered page of 100 tasks ↔ ListTasks"),
        ("bulk", f"bulk_create of {BATCH} tasks ↔ RegisterTasks"),
    ):
        http, grpc_ = results[f"{name}_http"], results[f"{name}_grpc"]
        p50_http, p50_grpc = statistics.median(http), statistics.median(grpc_)
        overhead = f"+{(p50_http - p50_grpc) * MS:.2f} ms ({p50_http / p50_grpc:.2f}x)"
        lines.append(
            f"| {label} | gateway (HTTP) | {len(http)} | {p50_http * MS:.2f} | {percentile(http, 0.99) * MS:.2f} | "
            f"{overhead} |"
        )
        lines.append(
            f"| {label} | ledger (gRPC) | {len(grpc_)} | {p50_grpc * MS:.2f} | {percentile(grpc_, 0.99) * MS:.2f} | |"
        )
    lines.append("")
    lines.append(
        f"Throughput of GET task with {results['clients']} concurrent clients ({results['per_client']} calls each): "
        f"gateway {results['rps_http']:.0f} requests/s, direct gRPC {results['rps_grpc']:.0f} calls/s."
    )
    bulk_http = statistics.median(results["bulk_http"])
    lines.append(f"Bulk creation through the gateway: {BATCH / bulk_http:.0f} tasks/s at the median batch.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``python -m tools.bench gateway``."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench gateway")
    parser.add_argument("--small", action="store_true", help="fewer calls, for a quick check")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the throughput run")
    args = parser.parse_args(argv)
    print(report(run(args.small, args.clients)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
