"""The NATS work consumer: one durable pull consumer per kind of work (``work.<org>.build | run |
teardown``) on the WORK stream, each message handled with explicit acknowledgement.

A message is acknowledged once its handler returns (the outcome is in the ledger); a handler that
raises gets it redelivered after ``ack_wait / 2``, and a message whose work takes long (or waits for a
slot) is kept alive with in-progress heartbeats every ``ack_wait / 3``. Each kind has its own slots: a
consumer fetches a message only when one of its kind's slots is free, without holding it while the
fetch waits, so that the run consumer never waits behind idle build or teardown fetches, nor offered
work behind an idle fetch. Each message is handled in a span that continues the trace
its headers carry (the event service's, itself continuing the ledger call that asked for the work).

Work can also be *offered* without a message (compute learned of it first, from the ledger's answer to
a completion): it runs in a slot of its kind like a message, and a failure is only logged, since its
message follows anyway (and the reconciler re-queues a task that is left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from services.kit import nats as kit_nats
from services.kit import subjects, telemetry

log = logging.getLogger("tessera.compute.consumer")
tracer = telemetry.tracer("tessera.compute")
Handler = Callable[[bytes], Awaitable[None]]


class WorkConsumer:
    """Feeds one organization's work messages to their handlers."""

    def __init__(
        self,
        js: JetStreamContext,
        org_id: str,
        handlers: dict[str, Handler],
        limits: dict[str, int],
        *,
        ack_wait: float,
        max_ack_pending: int,
    ) -> None:
        self._js = js
        self._org = org_id
        self._handlers = handlers
        self._limits = {kind: asyncio.Semaphore(limit) for kind, limit in limits.items()}
        self._ack_wait = ack_wait
        self._max_ack_pending = max_ack_pending
        self._loops: list[asyncio.Task] = []
        self._in_hand: set[asyncio.Task] = set()
        self._subscriptions: list = []

    def durable(self, kind: str) -> str:
        """Durable consumer name of this organization for ``kind`` work."""
        return f"compute-{self._org}-{kind}".replace(".", "_")

    async def start(self) -> None:
        """Declare the consumers and start fetching."""
        for kind in self._handlers:
            await kit_nats.ensure_consumer(
                self._js,
                subjects.WORK_STREAM,
                self.durable(kind),
                subjects.work_subject(self._org, kind),
                ack_wait_seconds=self._ack_wait,
                max_ack_pending=self._max_ack_pending,
            )
        for kind in self._handlers:
            self._loops.append(asyncio.create_task(self._consume(kind), name=f"consume-{kind}"))

    async def stop(self) -> None:
        """Stop fetching and drop the messages in hand (they will be redelivered)."""
        tasks = [*self._loops, *self._in_hand]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for subscription in self._subscriptions:  # so that the connection drains at once
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _consume(self, kind: str) -> None:
        subscription = await self._js.pull_subscribe_bind(self.durable(kind), stream=subjects.WORK_STREAM)
        self._subscriptions.append(subscription)
        limit = self._limits[kind]
        while True:
            # Fetch only when a slot is free, but do not hold it while the fetch waits on the network: offered
            # work (a task a completion here just started) must not wait behind an idle fetch. A message that
            # finds its slot taken meanwhile waits in hand for the next one (its heartbeats keep it).
            async with limit:
                pass
            try:
                messages = await subscription.fetch(1, timeout=1.0)
            except TimeoutError:
                continue
            except Exception:
                log.warning("fetching %s work failed; retrying", kind, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            task = asyncio.create_task(self._handle(kind, messages[0]))
            self._in_hand.add(task)
            task.add_done_callback(self._in_hand.discard)

    def offer(self, kind: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()``, ``kind`` work that came without a message, as soon as a slot of its kind is free."""
        task = asyncio.create_task(self._handle_offered(kind, work))
        self._in_hand.add(task)
        task.add_done_callback(self._in_hand.discard)

    async def _handle_offered(self, kind: str, work: Callable[[], Awaitable[None]]) -> None:
        async with self._limits[kind]:
            try:
                with tracer.start_as_current_span(f"compute.{kind}.offered"):
                    await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("offered %s work failed; its message will bring it back", kind, exc_info=True)

    async def _handle(self, kind: str, message) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(message))
        parent = telemetry.context_from(message.headers)
        try:
            async with self._limits[kind]:
                with tracer.start_as_current_span(f"compute.{kind}", context=parent, kind=SpanKind.CONSUMER):
                    await self._handlers[kind](message.data)
            await message.ack()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s work failed; it will be redelivered", kind)
            with contextlib.suppress(Exception):
                await message.nak(delay=self._ack_wait / 2)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, message) -> None:
        while True:
            await asyncio.sleep(max(1.0, self._ack_wait / 3))
            with contextlib.suppress(Exception):
                await message.in_progress()
