"""Work published to JetStream: one message per event and kind (``Nats-Msg-Id``), carrying the trace
context of the span that handled the event (``traceparent``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from opentelemetry import trace
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2

from services.event.dispatcher import Decision, Dispatcher
from services.event.domain.dispatch import DispatchRules
from services.kit import nats as kit_nats
from services.kit import subjects
from tests.integration.event.conftest import SPANS
from tests.integration.ledger.conftest import (
    data_inputs,
    make_data_manager,
    make_function,
    make_plan,
    make_samples,
    task_spec,
)


async def _messages(js, subject: str, count: int, timeout: float = 10.0) -> list:
    """The messages on ``subject`` of the WORK stream, once at least ``count`` arrived (left unacknowledged)."""
    durable = f"t{uuid.uuid4().hex[:8]}"
    await kit_nats.ensure_consumer(js, subjects.WORK_STREAM, durable, subject, ack_wait_seconds=60)
    subscription = await js.pull_subscribe_bind(durable, stream=subjects.WORK_STREAM)
    found, deadline = [], time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            found += await subscription.fetch(100, timeout=0.5)
    with contextlib.suppress(TimeoutError):  # anything more: a duplicate that should have been dropped
        found += await subscription.fetch(100, timeout=0.5)
    await subscription.unsubscribe()
    await js.delete_consumer(subjects.WORK_STREAM, durable)
    return found


def _trace_id(headers: dict[str, str]) -> int:
    version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
    return int(trace_id, 16)


def _dispatch_span(event_id: str):
    (span,) = [s for s in SPANS.get_finished_spans() if s.attributes.get("tessera.event.id") == event_id]
    return span


def test_the_follower_publishes_build_and_run_work_with_the_event_id_and_trace_context(world, nats_server):
    shared, _ = world.channels
    ledger = world.ledger(world.org1, shared)
    waiting = make_function(ledger, ready=False)
    manager = make_data_manager(ledger)
    plan = make_plan(ledger)
    spec = task_spec(plan.key, make_function(ledger), data_inputs(manager.key, make_samples(ledger, manager.key)))
    spec.worker = world.org1
    (task,) = ledger.RegisterTasks(asset_api.RegisterTasksRequest(tasks=[spec])).tasks
    assert task.status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT

    def event_of(key: str) -> ev.Event:
        return ledger.QueryEvents(asset_api.QueryEventsRequest(asset_key=key, page_size=10)).events[0]

    async def scenario():
        connection = await kit_nats.connect(nats_server.url, "test")
        js = connection.jetstream()
        builds = await _messages(js, subjects.work_subject(world.org1, "build"), 1)
        runs = await _messages(js, subjects.work_subject(world.org1, "run"), 1)
        await connection.close()
        return builds, runs

    builds, runs = asyncio.run(scenario())
    (build,) = [m for m in builds if work_pb2.BuildFunction.FromString(m.data).function_key == waiting.key]
    (run,) = [m for m in runs if work_pb2.RunTask.FromString(m.data).compute_task_key == task.key]
    for message, key, kind in ((build, waiting.key, "build"), (run, task.key, "run")):
        event = event_of(key)
        assert message.headers["Nats-Msg-Id"] == f"{world.org1}:{event.id}:{kind}"
        assert _trace_id(message.headers) == _dispatch_span(event.id).context.trace_id
    assert work_pb2.RunTask.FromString(run.data).event_id == event_of(task.key).id


def test_a_replayed_event_publishes_nothing_new_while_a_new_event_does(nats_server, tracing):
    org = f"EvDedup{uuid.uuid4().hex[:8]}"
    ready = res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    task = res.ComputeTask(key=str(uuid.uuid4()), compute_plan_key=str(uuid.uuid4()), worker=org, status=ready)
    # An update (a task made ready by its parents): a creation would also ask for a runner (the prepare work).
    first = ev.Event(id=str(uuid.uuid4()), event_kind=ev.EVENT_ASSET_UPDATED, asset_key=task.key, compute_task=task)
    requeued = ev.Event(id=str(uuid.uuid4()), event_kind=ev.EVENT_ASSET_UPDATED, asset_key=task.key, compute_task=task)

    async def scenario():
        connection = await kit_nats.connect(nats_server.url, "test")
        js = connection.jetstream()
        await kit_nats.ensure_stream(js, subjects.WORK.name, list(subjects.WORK.subjects), work_queue=True)
        dispatcher = Dispatcher(DispatchRules(org, "c"), ledger=None, compute=None, js=js)
        decisions = [await dispatcher.handle(first), await dispatcher.handle(first)]
        restarted = Dispatcher(DispatchRules(org, "c"), ledger=None, compute=None, js=js)
        decisions.append(await restarted.handle(first))  # the cursor was lost: the history is replayed
        once = await _messages(js, subjects.work_subject(org, "run"), 1)
        decisions.append(await restarted.handle(requeued))
        twice = await _messages(js, subjects.work_subject(org, "run"), 2)
        await connection.close()
        return decisions, once, twice

    decisions, once, twice = asyncio.run(scenario())
    assert decisions == [[Decision("run", task.key)]] * 4  # each publication is acknowledged by JetStream
    assert [m.headers["Nats-Msg-Id"] for m in once] == [f"{org}:{first.id}:run"]
    assert [m.headers["Nats-Msg-Id"] for m in twice] == [f"{org}:{first.id}:run", f"{org}:{requeued.id}:run"]
    spans = [s for s in SPANS.get_finished_spans() if s.attributes.get("tessera.event.id") == first.id]
    assert _trace_id(once[0].headers) == spans[0].context.trace_id  # the first publication's span
    assert trace.get_current_span().get_span_context().is_valid is False  # no span leaks out of handle


def test_each_organization_gets_its_own_teardown_of_a_plan(nats_server, tracing):
    """The WORK stream drops a message whose Nats-Msg-Id it has seen, whatever its subject: both organizations'
    teardowns asked by one plan event must both be kept (a shared id once dropped the second one)."""
    orgs = [f"EvTeardown{uuid.uuid4().hex[:8]}" for _ in range(2)]
    plan = res.ComputePlan(key=str(uuid.uuid4()), status=res.PLAN_STATUS_DONE)
    ended = ev.Event(id=str(uuid.uuid4()), event_kind=ev.EVENT_ASSET_UPDATED, asset_key=plan.key, compute_plan=plan)

    async def scenario():
        connection = await kit_nats.connect(nats_server.url, "test")
        js = connection.jetstream()
        await kit_nats.ensure_stream(js, subjects.WORK.name, list(subjects.WORK.subjects), work_queue=True)
        for org in orgs:
            await Dispatcher(DispatchRules(org, "c"), ledger=None, compute=None, js=js).handle(ended)
        received = [await _messages(js, subjects.work_subject(org, "teardown"), 1) for org in orgs]
        await connection.close()
        return received

    for messages in asyncio.run(scenario()):
        (message,) = messages
        assert work_pb2.Teardown.FromString(message.data).compute_plan_key == plan.key
