"""Follow the ledger's event stream of one channel from a stored cursor.

First the organization registers itself in the channel (the event service is the one place that does:
it is the organization's member of the channel it follows); a refusal because it is already registered
is success, and an unreachable ledger is retried. Then, for every event in the ledger's order: let the
dispatcher act on it, then keep it in the organization's feed and move the cursor. The feed is written
behind the dispatch, in one transaction for all the events handled meanwhile (gathered for up to
``feed_linger`` seconds after the first), so a burst (one ledger transaction's events, or a federated round's
many) costs one write and the next event's dispatch never waits for it. A crash before
the write repeats those events on restart, which is harmless (feed rows are keyed by position,
decisions are idempotent). The ledger's ``SubscribeEvents`` is the source: gap-free and ordered per
channel by construction, in batches (one message for the events ready at once, not one per event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import grpc
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.asset.v1 import events_pb2 as ev

from services.event.dispatcher import Dispatcher
from services.event.domain.follow import feed_write
from services.event.store import Store
from services.kit import background
from services.kit.db import UnitOfWork
from services.kit.hub import Hub

log = logging.getLogger("tessera.event.follow")
FEED_LINGER = 0.5  # seconds the feed writer gathers events after the first (the feed lags by as much)


def events_of(reply: asset_api.SubscribeEventsResponse) -> Sequence[ev.Event]:
    """The events of one message of the subscription: its batch, or its single event when the ledger sends
    one per message (a ledger older than ``batched``, during a rolling upgrade, ignores the request field)."""
    if reply.events:
        return reply.events
    return [reply.event] if reply.HasField("event") else []


class Follower:
    """One background task for one channel, reconnecting forever."""

    def __init__(
        self,
        uow: UnitOfWork[Store],
        channel: str,
        ledger: asset_grpc.AssetServiceStub,
        dispatcher: Dispatcher,
        *,
        hub: Hub,
        address: str,
        retry_seconds: float = 1.0,
        feed_linger: float = FEED_LINGER,
        hold_seconds: float = 0.0,
    ) -> None:
        self._uow = uow
        self.channel = channel
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._hub = hub
        self._address = address
        self._registered = False
        self._retry = retry_seconds
        self._linger = feed_linger
        self._hold_ms = max(0, round(hold_seconds * 1000))
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Follow in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name=f"follow-{self.channel}")

    async def stop(self) -> None:
        """Stop following."""
        await background.cancel(self._task)

    async def _run(self) -> None:
        while True:
            try:
                if not self._registered:
                    await self._register()
                await self._follow()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("ledger call failed (%s); retrying", exc.code().name)
            except Exception:
                log.exception("event handling failed; resuming from the cursor")
            await asyncio.sleep(self._retry)

    async def _register(self) -> None:
        """Register this organization in the channel (as Substra backends do at start)."""
        try:
            await self._ledger.RegisterOrganization(asset_api.RegisterOrganizationRequest(address=self._address))
            log.info("registered in channel %s", self.channel)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        self._registered = True

    async def _follow(self) -> None:
        cursor = await self._uow.run(lambda store: store.load_cursor(self.channel))
        handled: asyncio.Queue[ev.Event] = asyncio.Queue()
        writer = asyncio.create_task(self._write_feed(handled, cursor), name=f"feed-{self.channel}")
        try:
            stream = self._ledger.SubscribeEvents(
                asset_api.SubscribeEventsRequest(after_position=cursor, batched=True, hold_milliseconds=self._hold_ms)
            )
            async for reply in stream:
                for event in events_of(reply):
                    if writer.done():
                        writer.result()  # the feed could not be written: raise it here, resume from the cursor
                    decisions = await self._dispatcher.handle(event)
                    if decisions:
                        log.info(
                            "event %s %s → %s",
                            event.position,
                            ev.EventKind.Name(event.event_kind),
                            ", ".join(f"{d.action} {d.key}" for d in decisions),
                        )
                    handled.put_nowait(event)
                fetched = await self._dispatcher.flush()
                if fetched:
                    log.info("early fetches → %s", ", ".join(f"{d.action} {d.key}" for d in fetched))
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write_feed(self, handled: asyncio.Queue, cursor: int) -> None:
        """Keep handled events in the feed and move the cursor, off the dispatch path: every event
        handled meanwhile goes in one transaction (a burst of a transaction's events, one write)."""
        while True:
            batch = [await handled.get()]
            if self._linger:
                await asyncio.sleep(self._linger)  # the events that follow join this write
            while not handled.empty():
                batch.append(handled.get_nowait())
            write = feed_write(batch, cursor)

            def save(store: Store, write=write) -> None:
                store.add_to_feed(write.events)
                store.save_cursor(self.channel, write.position)

            await self._uow.run(save)
            cursor = write.position
            await self._hub.notify()
