"""Failures, cancellation, crashes and replays: nothing is stranded, nothing runs twice."""

from __future__ import annotations

import itertools
import time
import uuid

import grpc
import numpy as np
import psycopg2
import pytest
from sqlalchemy.engine import make_url
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import compute_service_pb2 as compute_api
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc
from tessera.event.v1 import event_service_pb2 as event_api
from tessera.event.v1 import event_service_pb2_grpc as event_grpc
from tessera.storage.v1 import storage_pb2

from services.kit.client import sync_channel
from tests.execution.conftest import download, orgs_of, wait_for, wait_function_ready, wait_plan_final
from tools.samples import flassets

DATA_IN = {
    "opener": res.FunctionInput(kind=res.ASSET_DATA_MANAGER),
    "datasamples": res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True),
}
MODELS_IN = {"models": res.FunctionInput(kind=res.ASSET_MODEL, optional=True, multiple=True)}
MODEL_OUT = {"model": res.FunctionOutput(kind=res.ASSET_MODEL)}
PUBLIC = res.NewPermissions(public=True)


def _chain(plan, function_keys, dm, samples) -> list[api.NewComputeTask]:
    """Tasks on the same data, each consuming the previous one's model."""
    tasks, previous = [], None
    for function_key in function_keys:
        inputs = [api.NewComputeTaskInput(identifier="opener", asset_key=dm)]
        inputs += [api.NewComputeTaskInput(identifier="datasamples", asset_key=s) for s in samples]
        if previous:
            inputs.append(
                api.NewComputeTaskInput(
                    identifier="models", parent_task_key=previous, parent_task_output_identifier="model"
                )
            )
        task = api.NewComputeTask(
            key=str(uuid.uuid4()), compute_plan_key=plan, function_key=function_key, inputs=inputs
        )
        task.outputs["model"].CopyFrom(api.NewComputeTaskOutput(permissions=PUBLIC))
        tasks.append(task)
        previous = task.key
    return tasks


@pytest.fixture(scope="module")
def setup(orgs):
    org1 = orgs[0]
    dm, samples = org1.dataset([np.ones((3, 3)), np.zeros((2, 3))], PUBLIC)
    io = {**DATA_IN, **MODELS_IN}
    functions = {name: org1.function(name, io, MODEL_OUT) for name in ("train", "explode", "sleep", "nap")}
    for key in functions.values():
        assert wait_function_ready(org1, key).status == res.FUNCTION_STATUS_READY
    return org1, dm, samples, functions


def _plan(org, tasks) -> str:
    key = tasks[0].compute_plan_key
    org.ledger.RegisterComputePlan(api.RegisterComputePlanRequest(key=key, name="p"))
    org.ledger.RegisterTasks(api.RegisterTasksRequest(tasks=tasks))
    return key


def _task(org, key) -> res.ComputeTask:
    return org.ledger.GetTask(api.GetTaskRequest(key=key)).task


def test_a_failing_function_fails_the_task_with_its_traceback_and_strands_nothing(setup):
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    tasks = _chain(plan, [f["train"], f["explode"], f["train"], f["train"]], dm, samples)
    _plan(org1, tasks)
    final = wait_plan_final(org1, plan)
    assert final.status == res.PLAN_STATUS_FAILED and final.failed_task_key == tasks[1].key
    failed = _task(org1, tasks[1].key)
    assert failed.status == res.STATUS_FAILED and failed.error_type == res.EXECUTION_ERROR
    assert failed.logs_address.storage_address.endswith(f"/logs/{failed.key}/file/")
    logs = download(org1.storage, storage_pb2.FILE_KIND_LOGS, failed.key).decode()
    assert "RuntimeError: this function fails on purpose" in logs and "Traceback" in logs
    assert [_task(org1, t.key).status for t in tasks] == [
        res.STATUS_DONE,
        res.STATUS_FAILED,
        res.STATUS_CANCELED,
        res.STATUS_CANCELED,
    ]


def test_a_broken_build_fails_with_build_error_and_its_tasks_end(setup, orgs):
    org1, dm, samples, f = setup
    broken = flassets.function_archive(
        "train",
        dockerfile='FROM python:3.11\nRUN pip install -r requirements.txt\nENTRYPOINT ["python3", "function.py", '
        '"--function-name", "train"]\n',
    )
    key = org1.function("broken", {**DATA_IN, **MODELS_IN}, MODEL_OUT, archive=broken)
    plan = str(uuid.uuid4())
    tasks = _chain(plan, [key, f["train"]], dm, samples)
    _plan(org1, tasks)
    function = wait_function_ready(org1, key)
    assert function.status == res.FUNCTION_STATUS_FAILED
    report = org1.ledger.GetFailureReport(api.GetFailureReportRequest(asset_key=key)).failure_report
    assert report.error_type == res.BUILD_ERROR
    logs = download(org1.storage, storage_pb2.FILE_KIND_LOGS, key).decode()
    assert "requirements.txt" in logs
    final = wait_plan_final(org1, plan)
    assert final.status == res.PLAN_STATUS_FAILED
    first, second = (_task(org1, t.key) for t in tasks)
    assert first.status == res.STATUS_FAILED and first.error_type == res.BUILD_ERROR
    assert second.status == res.STATUS_CANCELED


def _compute_stub(network, org):
    creds = next(o.creds for o in orgs_of(network) if o.id == org)
    addr = next(o.compute for o in network.organizations if o.id == org)
    return compute_grpc.ComputeServiceStub(sync_channel(addr, creds))


def test_cancel_stops_a_running_task_promptly(setup, network):
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    (task,) = _chain(plan, [f["sleep"]], dm, samples)
    _plan(org1, [task])
    compute = _compute_stub(network, org1.id)
    wait_for(
        lambda: any(
            t.compute_task_key == task.key and t.step == "task_execution"
            for t in compute.GetStatus(compute_api.GetStatusRequest()).running_tasks
        ),
        what="the task to run",
    )
    org1.ledger.CancelComputePlan(api.CancelComputePlanRequest(key=plan))
    wait_for(
        lambda: not compute.GetStatus(compute_api.GetStatusRequest()).running_tasks, timeout=20, what="the task to stop"
    )
    assert _task(org1, task.key).status == res.STATUS_CANCELED
    assert wait_plan_final(org1, plan).status == res.PLAN_STATUS_CANCELED


def _done_events(org, key) -> int:
    events = org.ledger.QueryEvents(api.QueryEventsRequest(asset_key=key, page_size=1000)).events
    return sum(
        1 for e in events if e.WhichOneof("asset") == "compute_task" and e.compute_task.status == res.STATUS_DONE
    )


def test_killing_compute_mid_task_still_completes_each_task_once(setup, network):
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    tasks = _chain(plan, [f["nap"], f["nap"], f["train"]], dm, samples)
    _plan(org1, tasks)
    wait_for(lambda: _task(org1, tasks[0].key).status == res.STATUS_EXECUTING, what="the first task to start")
    compute = network.service("compute", org1.id)
    network.restart(compute, kill=True)
    # The restarted worker learns from the ledger what it was executing and runs it again at once, without
    # waiting for the work message's redelivery.
    wait_for(
        lambda: f"task {tasks[0].key} was executing when this worker stopped" in network.log_path(compute).read_text(),
        timeout=30,
        what="the restarted compute to resume the task",
    )
    final = wait_plan_final(org1, plan)
    assert final.status == res.PLAN_STATUS_DONE
    assert [_done_events(org1, t.key) for t in tasks] == [1, 1, 1]
    # The restarted task registered one model, not two.
    outputs = org1.ledger.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=tasks[0].key)).assets
    assert len(outputs) == 1


def test_a_task_that_finished_while_the_ledger_was_down_is_reported_not_run_again(setup, network):
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    tasks = _chain(plan, [f["nap"]], dm, samples)
    _plan(org1, tasks)
    key = tasks[0].key
    wait_for(lambda: _task(org1, key).status == res.STATUS_EXECUTING, what="the task to start")
    ledger, compute = network.service("asset"), network.service("compute", org1.id)
    ledger.process.kill()  # the ledger crashes while the task runs, and stays down until it has finished
    ledger.process.wait()
    kept = network.state_dir / "compute" / org1.id / "completions" / key
    try:
        wait_for(kept.exists, timeout=60, what="the finished task's completion to be kept")
        # ... and the attempt that finished it has given up reaching the ledger (its message goes back).
        wait_for(
            lambda: "run work failed; it will be redelivered" in network.log_path(compute).read_text(),
            timeout=60,
            what="the run to give up on the ledger",
        )
    finally:
        network.restart(ledger)  # started again, and healthy
    final = wait_plan_final(org1, plan)
    assert final.status == res.PLAN_STATUS_DONE
    assert _done_events(org1, key) == 1
    log = network.log_path(compute).read_text()
    assert f"task {key} finished earlier: reporting its kept completion" in log
    assert log.count(f"task {key}: executing") == 1  # executed once, reported twice
    assert not kept.exists()


def test_a_completion_starts_the_workers_next_task_without_its_event(setup, network):
    """CompleteTask starts the tasks of the worker that became ready (as many as it has free slots) in the
    same transaction, and compute runs them at once: the chain goes on while the event service that queues
    work from the events is down, and without the reconciler re-queuing anything."""
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    tasks = _chain(plan, [f["nap"], f["train"], f["train"]], dm, samples)
    _plan(org1, tasks)
    wait_for(lambda: _task(org1, tasks[0].key).status == res.STATUS_EXECUTING, what="the first task to start")
    compute, event = network.service("compute", org1.id), network.service("event", org1.id)
    seen = len(network.log_path(compute).read_text())
    event.process.kill()
    event.process.wait()
    try:
        final = wait_plan_final(org1, plan)
    finally:
        network.restart(event)
    assert final.status == res.PLAN_STATUS_DONE
    assert [_done_events(org1, t.key) for t in tasks] == [1, 1, 1]
    log = network.log_path(compute).read_text()[seen:]
    assert "re-queued" not in log
    assert [log.count(f"task {t.key}: executing") for t in tasks[1:]] == [1, 1]
    # The train function's runner was made ready for the plan while its first task still waited for its parent.
    assert f"runner of function {f['train']} prepared for plan {plan}" in network.log_path(compute).read_text()
    # Each next task became EXECUTING in its parent's completion: one transaction, one timestamp.
    ran = [_task(org1, t.key) for t in tasks]
    assert [child.start_date == parent.end_date for parent, child in itertools.pairwise(ran)] == [True, True]


def _publish_run_twice_over(network, org, task_key: str, plan: str, copies: int) -> None:
    """Put ``copies`` extra RunTask messages for ``task_key`` on the organization's work queue at once,
    each with its own message id (so that JetStream keeps them all): what a re-queue by the reconciler
    and a redelivery look like to the workers, here all together."""
    import asyncio

    from tessera.compute.v1 import work_pb2

    from services.kit import nats as kit_nats
    from services.kit import subjects
    from tools.devnet.network import CHANNEL

    message = work_pb2.RunTask(compute_task_key=task_key, compute_plan_key=plan, channel=CHANNEL)

    async def publish() -> None:
        connection = await kit_nats.connect(network.nats.url, "test-duplicates")
        try:
            js = connection.jetstream()
            await asyncio.gather(
                *(
                    js.publish(
                        subjects.work_subject(org.id, "run"),
                        message.SerializeToString(),
                        headers={"Nats-Msg-Id": f"test-duplicate:{task_key}:{copy}"},
                    )
                    for copy in range(copies)
                )
            )
        finally:
            await connection.close()

    asyncio.run(publish())


def test_a_task_delivered_many_times_at_once_runs_once(setup, network):
    """Every slot that receives a copy of a task's work while another slot handles it must leave it alone:
    a second run would register the task's output twice (refused) and fail a task that succeeded."""
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    tasks = _chain(plan, [f["train"], f["train"]], dm, samples)
    _plan(org1, tasks)
    _publish_run_twice_over(network, org1, tasks[0].key, plan, copies=24)
    final = wait_plan_final(org1, plan)
    assert final.status == res.PLAN_STATUS_DONE, final
    assert [_done_events(org1, t.key) for t in tasks] == [1, 1]
    for task in tasks:
        outputs = org1.ledger.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=task.key)).assets
        assert len(outputs) == 1


def test_replaying_the_event_history_from_zero_changes_nothing(setup, network):
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    tasks = _chain(plan, [f["train"], f["train"]], dm, samples)
    _plan(org1, tasks)
    assert wait_plan_final(org1, plan).status == res.PLAN_STATUS_DONE
    head = org1.ledger.QueryEvents(api.QueryEventsRequest(page_size=1, descending=True)).events[0].position
    event_service = network.service("event", org1.id)
    url = make_url(event_service.env["TESSERA_DATABASE_URL"])
    connection = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    with connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM event.cursors")
    connection.close()
    network.restart(event_service)
    # The event service reads the whole history again (its feed catches up to the head)...

    from tests.execution.conftest import orgs_of

    creds = next(o.creds for o in orgs_of(network) if o.id == org1.id)
    feed = event_grpc.EventServiceStub(sync_channel(event_service.addr, creds))
    wait_for(
        lambda: feed.ListEvents(event_api.ListEventsRequest(page_size=1)).total_size >= head,
        what="the replay to reach the head",
    )
    time.sleep(3)  # long enough for any (wrong) work it queued to start
    # ...and the ledger saw no new transition: nothing was built or run again.
    new = org1.ledger.QueryEvents(api.QueryEventsRequest(after_position=head, page_size=100)).events
    assert [e for e in new if e.asset_kind in (res.ASSET_COMPUTE_TASK, res.ASSET_FUNCTION)] == []


def test_transient_outputs_are_disabled_once_their_consumers_end(setup):
    org1, dm, samples, f = setup
    plan = str(uuid.uuid4())
    first, second = _chain(plan, [f["train"], f["train"]], dm, samples)
    first.outputs["model"].transient = True
    _plan(org1, [first, second])
    assert wait_plan_final(org1, plan).status == res.PLAN_STATUS_DONE

    def output_model(task_key):
        (asset,) = org1.ledger.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=task_key)).assets
        return asset.model

    disabled = wait_for(
        lambda: (m := output_model(first.key)) and not m.HasField("address") and m, what="the transient model disabled"
    )
    events = org1.ledger.QueryEvents(api.QueryEventsRequest(asset_key=disabled.key, page_size=10)).events
    assert [e.event_kind for e in events][-1] == ev.EVENT_ASSET_DISABLED
    # Its bytes are gone from the owner's storage (410 at the gateway); the last model stays.
    wait_for(
        lambda: (
            grpc_code_of(download, org1.storage, storage_pb2.FILE_KIND_MODEL, disabled.key)
            == grpc.StatusCode.FAILED_PRECONDITION
        ),
        what="the model's file disabled",
    )
    kept = output_model(second.key)
    assert kept.HasField("address") and download(org1.storage, storage_pb2.FILE_KIND_MODEL, kept.key)


def grpc_code_of(call, *args):
    try:
        call(*args)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
