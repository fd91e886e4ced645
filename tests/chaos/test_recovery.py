"""A plan runs while one process of the network is killed with SIGKILL; the supervisor restarts it.

For each process (the ledger, each service of MyOrg1MSP, NATS, PostgreSQL), a two-round, two-organization
plan is submitted through the SDK, the process is killed once a first task is DONE, and the plan must
still end DONE with every task DONE once (in the ledger and in each organization's event history), one
model per model output, one performance per score, and every model file matching its ledger checksum.
The times from the kill to the process serving again, to the next task DONE and to the plan DONE are
recorded (``chaos-recovery.json`` and the run's summary), not asserted.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections import Counter
from urllib.parse import urlparse

import grpc
import psycopg2
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.event.v1 import event_service_pb2 as event_api

from tests.chaos.conftest import RECOVERIES, ChaosNetwork
from tools.bench.bench_execution import federated_plan
from tools.devnet.network import ServiceSpec, check_health

ROUNDS = 2
TIMEOUT = 150.0
VICTIMS = [
    "asset",
    "MyOrg1MSP/storage",
    "MyOrg1MSP/compute",
    "MyOrg1MSP/event",
    "MyOrg1MSP/gateway",
    "nats",
    "postgres",
]

pytestmark = pytest.mark.slow


def _serving(description: dict, label: str) -> bool:
    """The process behind ``label`` answers: health SERVING, 200 on /healthz, or a connection."""
    if label in ("nats", "postgres"):
        url = urlparse(description[label].replace("postgresql+psycopg2", "postgresql"))
        try:
            if label == "nats":
                socket.create_connection((url.hostname, url.port), timeout=1).close()
            else:
                psycopg2.connect(host=url.hostname, port=url.port, user="postgres", connect_timeout=1).close()
            return True
        except (OSError, psycopg2.OperationalError):
            return False
    org, _, name = label.rpartition("/")
    if not org:
        return check_health(ServiceSpec(name, "", "", description["asset"], {}))
    endpoints = next(o for o in description["organizations"] if o["id"] == org)
    addr = urlparse(endpoints["gateway"]).netloc if name == "gateway" else endpoints[name]
    return check_health(ServiceSpec(name, org, "", addr, {}, http=name == "gateway"))


def _call(method, request, metadata):
    """A ledger call, or None while the ledger (or what it needs) is down."""
    try:
        return method(request, metadata=metadata, timeout=5)
    except grpc.RpcError:
        return None


def _tasks(chaos: ChaosNetwork, plan_key: str, status: int, worker: str = "") -> list | None:
    """The plan's tasks in ``status`` (on ``worker``), or None while the ledger does not answer."""
    request = api.ListTasksRequest(compute_plan_key=[plan_key], status=[status], page_size=1000)
    if worker:
        request.worker.append(worker)
    reply = _call(chaos.ledger().ListTasks, request, chaos.metadata("MyOrg1MSP"))
    return None if reply is None else [t.key for t in reply.tasks]


def _done(chaos: ChaosNetwork, plan_key: str) -> int:
    return len(_tasks(chaos, plan_key, res.STATUS_DONE) or [])


def _executions(logs: dict[str, str], task_key: str) -> int:
    """How many times the computes started the task's function (what they log each time)."""
    return sum(text.count(f"task {task_key}: executing") for name, text in logs.items() if name.endswith("compute"))


def _plan_status(chaos: ChaosNetwork, plan_key: str) -> int | None:
    reply = _call(chaos.ledger().GetComputePlan, api.GetComputePlanRequest(key=plan_key), chaos.metadata("MyOrg1MSP"))
    return None if reply is None else reply.compute_plan.status


def _done_events(events) -> int:
    return sum(1 for e in events if e.status_change.current == res.STATUS_DONE)


@pytest.mark.parametrize("victim", VICTIMS)
def test_a_plan_ends_done_while_a_process_is_killed(chaos: ChaosNetwork, victim, tmp_path):
    plan = federated_plan(chaos.assets, ROUNDS)
    key = plan.spec.key
    chaos.client.add_compute_plan(plan.spec)
    # Killed mid-plan: a task DONE, and one running on MyOrg1MSP (whose services are the victims).
    deadline = time.monotonic() + TIMEOUT
    while True:
        running = _tasks(chaos, key, res.STATUS_EXECUTING, "MyOrg1MSP")
        if running and _done(chaos, key):
            break
        assert time.monotonic() < deadline, "the plan never had a task DONE and one running on MyOrg1MSP"
        time.sleep(0.05)

    errors_before = {name: text.count("unhandled error") for name, text in chaos.service_logs().items()}
    before = _done(chaos, key)
    killed_pid = chaos.pid(victim)
    os.kill(killed_pid, signal.SIGKILL)
    killed = time.monotonic()
    # Only a task compute was running when it was killed may run again. One may have started between the
    # reading above and the kill (compute starts the next ready tasks in the transaction that completes
    # one); with compute dead, the ledger still shows it EXECUTING.
    again = set()
    if victim == "MyOrg1MSP/compute":
        again = set(running) | set(_tasks(chaos, key, res.STATUS_EXECUTING, "MyOrg1MSP") or [])
    serving_again = next_done = None
    while True:
        now = time.monotonic()
        assert now < killed + TIMEOUT, f"plan not DONE {TIMEOUT} s after the kill; see {chaos.state / 'logs'}"
        if serving_again is None:
            description = chaos.description()
            if description["processes"][victim] != killed_pid and _serving(description, victim):
                serving_again = now - killed
        if next_done is None and _done(chaos, key) > before:
            next_done = now - killed
        status = _plan_status(chaos, key)
        assert status not in (res.PLAN_STATUS_FAILED, res.PLAN_STATUS_CANCELED), res.ComputePlanStatus.Name(status)
        if status == res.PLAN_STATUS_DONE and serving_again is not None:
            break
        time.sleep(0.2)
    RECOVERIES.append(
        {
            "process": victim,
            "tasks": plan.tasks,
            "done_before_kill": before,
            "executing_at_kill": len(running),
            "serving_again_s": round(serving_again, 2),
            "next_task_done_s": None if next_done is None else round(next_done, 2),
            "plan_done_s": round(time.monotonic() - killed, 2),
        }
    )
    assert f"{victim} exited with status -9; restarting" in chaos.supervisor_log()
    # No call failed with an internal error (a 500 at the gateway) while the process was away.
    logs = chaos.service_logs()
    assert {name: text.count("unhandled error") for name, text in logs.items()} == errors_before

    # Each task ran once; only a task compute was running when it was killed runs again.
    for task_key in plan.parents:
        assert 1 <= _executions(logs, task_key) <= (2 if task_key in again else 1), task_key

    ledger, metadata = chaos.ledger(), chaos.metadata("MyOrg1MSP")
    tasks = ledger.ListTasks(api.ListTasksRequest(compute_plan_key=[key], page_size=1000), metadata=metadata).tasks
    assert {t.key: res.ComputeTaskStatus.Name(t.status) for t in tasks} == dict.fromkeys(plan.parents, "STATUS_DONE")

    # Each task reached DONE once: in the ledger's log and in each organization's received events.
    for task_key in plan.parents:
        query = api.QueryEventsRequest(asset_kind=res.ASSET_COMPUTE_TASK, asset_key=task_key, page_size=1000)
        assert _done_events(ledger.QueryEvents(query, metadata=metadata).events) == 1, task_key
    for org in chaos.description()["organizations"]:
        stub, org_metadata = chaos.event(org), chaos.metadata(org["id"])
        for task_key in plan.parents:
            request = event_api.ListEventsRequest(asset_kind=res.ASSET_COMPUTE_TASK, asset_key=task_key, page_size=1000)
            received = 0
            while time.monotonic() < killed + TIMEOUT:  # the event service follows the ledger a moment behind
                received = _done_events(stub.ListEvents(request, metadata=org_metadata).events)
                if received:
                    break
                time.sleep(0.2)
            assert received == 1, (org["id"], task_key)

    # One model per model output, one performance per score, every model file as the ledger recorded it.
    expected = {(t.task_id, name) for t in plan.spec.tasks for name in t.outputs if name != "performance"}
    models = ledger.ListModels(
        api.ListModelsRequest(compute_task_key=list(plan.parents), page_size=1000), metadata=metadata
    ).models
    assert Counter((m.compute_task_key, m.compute_task_output_identifier) for m in models) == dict.fromkeys(expected, 1)
    performances = ledger.ListPerformances(
        api.ListPerformancesRequest(compute_plan_key=[key], page_size=1000), metadata=metadata
    ).performances
    scores = {t.task_id for t in plan.spec.tasks if "performance" in t.outputs}
    assert sorted(p.compute_task_key for p in performances) == sorted(scores)
    for model in models:
        folder = tmp_path / model.key
        folder.mkdir()
        data = chaos.client.download_model(model.key, folder).read_bytes()
        checksum = hashlib.sha256(data + model.compute_task_key.encode()).hexdigest()
        assert checksum == model.address.checksum, model.key
