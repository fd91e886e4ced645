"""The JetStream kit on a real NATS server."""

import asyncio
import uuid

from opentelemetry import trace

from services.kit import nats as kit_nats
from services.kit import telemetry


def test_streams_and_consumers_are_declared_idempotently_and_duplicates_dropped(nats_server):
    async def scenario():
        connection = await kit_nats.connect(nats_server.url, "test")
        js = connection.jetstream()
        name = f"S{uuid.uuid4().hex[:8]}"
        subject = f"{name.lower()}.events.>"
        await kit_nats.ensure_stream(js, name, [subject])
        await kit_nats.ensure_stream(js, name, [subject])  # second declaration is a no-op
        for _ in range(2):  # the same message id twice: JetStream keeps one
            await js.publish(f"{name.lower()}.events.a", b"payload", headers={"Nats-Msg-Id": "event-1"})
        await js.publish(f"{name.lower()}.events.b", b"other", headers={"Nats-Msg-Id": "event-2"})
        info = await js.stream_info(name)
        assert info.state.messages == 2

        await kit_nats.ensure_consumer(js, name, "worker", f"{name.lower()}.events.a")
        await kit_nats.ensure_consumer(js, name, "worker", f"{name.lower()}.events.a")
        subscription = await js.pull_subscribe_bind("worker", stream=name)
        messages = await subscription.fetch(10, timeout=2)
        assert [m.data for m in messages] == [b"payload"]
        for message in messages:
            await message.ack()
        await connection.drain()

    asyncio.run(scenario())


def test_a_work_queue_stream_forgets_acknowledged_messages(nats_server):
    async def scenario():
        connection = await kit_nats.connect(nats_server.url, "test")
        js = connection.jetstream()
        name = f"W{uuid.uuid4().hex[:8]}"
        await kit_nats.ensure_stream(js, name, [f"{name.lower()}.>"], work_queue=True)
        await kit_nats.ensure_consumer(js, name, "compute", f"{name.lower()}.run")
        await js.publish(f"{name.lower()}.run", b"task")
        subscription = await js.pull_subscribe_bind("compute", stream=name)
        (message,) = await subscription.fetch(1, timeout=2)
        await message.ack_sync()
        info = await js.stream_info(name)
        assert info.state.messages == 0
        await connection.drain()

    asyncio.run(scenario())


def test_trace_context_crosses_a_message_in_its_headers(nats_server):
    """A consumer's span continues the publisher's trace, as the child of the publishing span."""
    telemetry.configure_tracing("tests")
    tracer = telemetry.tracer("tests")

    async def scenario():
        connection = await kit_nats.connect(nats_server.url, "test")
        js = connection.jetstream()
        name = f"T{uuid.uuid4().hex[:8]}"
        await kit_nats.ensure_stream(js, name, [f"{name.lower()}.>"])
        with tracer.start_as_current_span("publish") as publishing:
            headers = telemetry.trace_carrier({"Nats-Msg-Id": "m-1"})
            await js.publish(f"{name.lower()}.a", b"work", headers=headers)
        subscription = await js.pull_subscribe(f"{name.lower()}.a", durable="reader", stream=name)
        (message,) = await subscription.fetch(1, timeout=2)
        with tracer.start_as_current_span("consume", context=telemetry.context_from(message.headers)) as span:
            consuming = span
        await subscription.unsubscribe()
        await connection.close()
        return publishing, consuming, message.headers

    publishing, consuming, headers = asyncio.run(scenario())
    assert headers["Nats-Msg-Id"] == "m-1"
    assert consuming.get_span_context().trace_id == publishing.get_span_context().trace_id
    assert consuming.parent.span_id == publishing.get_span_context().span_id


def test_without_a_span_no_trace_context_is_sent_and_none_is_read():
    assert telemetry.trace_carrier({"Nats-Msg-Id": "m"}) == {"Nats-Msg-Id": "m"}
    assert trace.get_current_span(telemetry.context_from(None)).get_span_context().is_valid is False
