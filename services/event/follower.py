"""Follow the ledger's event stream of each channel from a stored cursor.

For every event, in the ledger's order: let the dispatcher act on it, then keep it in the
organization's feed and move the cursor. The feed is written behind the dispatch, in one transaction
for all the events handled meanwhile, so a burst (one ledger transaction's events) costs one write and
the next event's dispatch never waits for it. A crash before the write repeats those events on
restart, which is harmless (feed rows are keyed by position, decisions are idempotent). The ledger's
``SubscribeEvents`` is the source: gap-free and ordered per channel by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import grpc
import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy.dialects.postgresql import insert
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.asset.v1 import events_pb2 as ev

from services.event.dispatcher import Dispatcher
from services.event.tables import CursorRow, FeedEventRow
from services.kit.db import UnitOfWork
from services.kit.hub import Hub

log = logging.getLogger("tessera.event.follow")
CONSUMER = "follower"


def load_cursor(session, channel: str) -> int:
    """The last position handled in ``channel`` (0: none)."""
    row = session.get(CursorRow, (CONSUMER, channel))
    return 0 if row is None else row.position


def save_cursor(session, channel: str, position: int) -> None:
    """Remember that every event up to ``position`` was handled."""
    session.execute(
        insert(CursorRow)
        .values(consumer=CONSUMER, channel=channel, position=position)
        .on_conflict_do_update(index_elements=[CursorRow.consumer, CursorRow.channel], set_={"position": position})
    )


def store_event(session, event: ev.Event) -> None:
    """Keep ``event`` in the feed (a replayed event is already there)."""
    session.execute(
        insert(FeedEventRow)
        .values(
            channel=event.channel,
            position=event.position,
            id=event.id,
            asset_kind=event.asset_kind,
            asset_key=event.asset_key,
            event_kind=event.event_kind,
            timestamp=event.timestamp.ToDatetime(dt.UTC),
            event=json_format.MessageToDict(event, preserving_proto_field_name=True),
        )
        .on_conflict_do_nothing()
    )


def reset(session, channel: str) -> None:
    """Replay from the start: the next follower run handles the whole history again."""
    session.execute(sa.delete(CursorRow).where(CursorRow.consumer == CONSUMER, CursorRow.channel == channel))


class Follower:
    """One background task per channel, reconnecting forever."""

    def __init__(
        self,
        uow: UnitOfWork,
        channel: str,
        ledger: asset_grpc.AssetServiceStub,
        dispatcher: Dispatcher,
        hub: Hub | None = None,
        retry_seconds: float = 1.0,
        address: str = "",
    ) -> None:
        self._uow = uow
        self.channel = channel
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._hub = hub
        self._address = address
        self._registered = False
        self._retry = retry_seconds
        self._task: asyncio.Task | None = None
        self.position = 0

    def start(self) -> None:
        """Follow in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name=f"follow-{self.channel}")

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("ledger stream interrupted (%s); reconnecting", exc.code().name)
            except Exception:
                log.exception("event handling failed; resuming from the cursor")
            await asyncio.sleep(self._retry)

    async def _register(self) -> None:
        """Register this organization in the channel, once (as Substra backends do at start)."""
        try:
            await self._ledger.RegisterOrganization(asset_api.RegisterOrganizationRequest(address=self._address))
            log.info("registered in channel %s", self.channel)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        self._registered = True

    async def _follow(self) -> None:
        if not self._registered:
            await self._register()
        self.position = await self._uow.run(lambda s: load_cursor(s, self.channel))
        handled: asyncio.Queue[ev.Event] = asyncio.Queue()
        writer = asyncio.create_task(self._write_feed(handled), name=f"feed-{self.channel}")
        try:
            stream = self._ledger.SubscribeEvents(asset_api.SubscribeEventsRequest(after_position=self.position))
            async for reply in stream:
                if writer.done():
                    writer.result()  # the feed could not be written: raise it here, resume from the cursor
                event = reply.event
                decisions = await self._dispatcher.handle(event)
                if decisions:
                    log.info(
                        "event %s %s → %s",
                        event.position,
                        ev.EventKind.Name(event.event_kind),
                        ", ".join(f"{d.action} {d.key}" for d in decisions),
                    )
                handled.put_nowait(event)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write_feed(self, handled: asyncio.Queue) -> None:
        """Keep handled events in the feed and move the cursor, off the dispatch path: every event
        handled meanwhile goes in one transaction (a burst of a transaction's events, one write)."""
        while True:
            batch = [await handled.get()]
            while not handled.empty():
                batch.append(handled.get_nowait())

            def write(session, events=batch):
                for event in events:
                    store_event(session, event)
                save_cursor(session, self.channel, events[-1].position)

            await self._uow.run(write)
            self.position = batch[-1].position
            if self._hub is not None:
                await self._hub.notify()
