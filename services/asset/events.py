"""The event log's two outlets: live subscriptions (``SubscribeEvents``) and the JetStream relay.

Events are committed with their state change (the outbox is the ``events`` table itself). The
relay publishes them after commit, in position order, with the event id as ``Nats-Msg-Id`` so
JetStream drops a re-sent duplicate; on start it resumes after the last position found in the
stream itself (or its own cursor), so a relay killed at any point neither loses nor repeats an
event. The JetStream copy is for fan-out; the ledger remains the source of truth, and live readers
follow ``SubscribeEvents``: once woken by a commit, the relay lingers a moment so that one round
publishes the commits that follow (a task's start and end are two commits tens of milliseconds apart)
instead of reading the log once for each. It takes the events this process committed from
:class:`RecentEvents` (those of other processes, or evicted ones, from the database). Its own cursor is
saved at most every few seconds: the stream's last position is the one it resumes from, the cursor only a
floor should the stream lose it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from tessera.asset.v1 import events_pb2 as ev

from services.asset.domain.common import subject_token
from services.asset.store.repositories import Repositories
from services.kit import background, subjects
from services.kit.db import UnitOfWork
from services.kit.hub import Hub

log = logging.getLogger("tessera.asset.events")
POSITION_HEADER = "Tessera-Position"


BATCH_BYTES = 1 << 20
"""Most serialized bytes of events one batched ``SubscribeEvents`` message carries: far below the 8 MiB message
limit, whatever the events (a task with thousands of data samples is a large event)."""


MAX_HOLD_SECONDS = 10.0
"""The longest a subscriber may ask the ledger to hold events back (``SubscribeEventsRequest.hold_milliseconds``)."""


def wakes(event: ev.Event, org_id: str) -> bool:
    """Whether ``event`` may ask ``org_id`` to act, so that a subscription holding events back sends it at once:
    a task the organization works on, a function it owns, a model it owns or may process, and every compute
    plan's and organization's event. The rest (other organizations' tasks and models, performances, datasets)
    only feeds its history."""
    kind = event.WhichOneof("asset")
    if kind == "compute_task":
        return event.compute_task.worker == org_id
    if kind == "function":
        return event.function.owner == org_id
    if kind == "model":  # its owner, and whoever may read it (a task there may be waiting for it)
        process = event.model.permissions.process
        return event.model.owner == org_id or process.public or org_id in process.authorized_ids
    return kind in ("compute_plan", "organization")


def event_batches(events: Sequence[ev.Event], limit: int = BATCH_BYTES) -> Iterator[list[ev.Event]]:
    """``events`` cut, in order, into runs of at most ``limit`` serialized bytes; an event larger than
    ``limit`` goes alone."""
    run: list[ev.Event] = []
    size = 0
    for event in events:
        n = event.ByteSize()
        if run and size + n > limit:
            yield run
            run, size = [], 0
        run.append(event)
        size += n
    if run:
        yield run


class Relay:
    """Publishes committed events to ``ledger.events.<channel>.<asset_kind>``, in order, once."""

    def __init__(
        self,
        uow: UnitOfWork[Repositories],
        js: JetStreamContext,
        hub: Hub,
        recent: RecentEvents | None = None,
        batch: int = 500,
        poll: float = 1.0,
        linger: float = 0.2,
        save_every: float = 5.0,
    ):
        self._uow = uow
        self._js = js
        self._hub = hub
        self._recent = recent
        self._batch = batch
        self._poll = poll
        self._linger = linger
        self._save_every = save_every
        self._saved_at: dict[str, float] = {}
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.published = 0

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="event-relay")

    async def stop(self) -> None:
        """Stop after the message being published. The flag ends the loop even if a library swallows the
        cancellation (Python 3.11's ``asyncio.wait_for`` can, when its inner future completes meanwhile)."""
        self._stopping = True
        await background.cancel(self._task)

    async def _run(self) -> None:
        cursors: dict[str, int] = {}
        while not self._stopping:
            seen = self._hub.generation
            try:
                moved = await self.publish_pending(cursors)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay failed; retrying")
                cursors.clear()  # re-read positions from the stream after a failure
                await asyncio.sleep(self._poll)
                continue
            if not moved:
                await self._hub.wait(seen, self._poll)
                await asyncio.sleep(self._linger)

    async def _stream_position(self, channel: str) -> int:
        try:
            message = await self._js.get_last_msg(subjects.LEDGER_STREAM, subjects.ledger_wildcard(channel))
        except NotFoundError:
            return 0
        return int((message.headers or {}).get(POSITION_HEADER, 0))

    async def publish_pending(self, cursors: dict[str, int]) -> bool:
        """Publish one batch per channel with unpublished events; True if anything was sent."""
        heads = await self._uow.run(lambda repos: repos.outbox().heads())
        stored: dict[str, int] = {}
        if heads.keys() - cursors.keys():
            stored = await self._uow.run(lambda repos: repos.outbox().cursors())
        moved = False
        for channel, head in heads.items():
            if channel not in cursors:
                cursors[channel] = max(stored.get(channel, 0), await self._stream_position(channel))
            if head <= cursors[channel]:
                continue
            batch = await self._pending(channel, cursors[channel])
            for event in batch:
                await self._js.publish(
                    subjects.ledger_subject(channel, subject_token(event.asset_kind)),
                    event.SerializeToString(),
                    headers={"Nats-Msg-Id": event.id, POSITION_HEADER: str(event.position)},
                )
                cursors[channel] = event.position
                self.published += 1
            if time.monotonic() - self._saved_at.get(channel, -self._save_every) >= self._save_every:
                await self._uow.run(lambda repos, c=channel, p=cursors[channel]: repos.outbox().save_cursor(c, p))
                self._saved_at[channel] = time.monotonic()
            moved = True
        return moved

    async def _pending(self, channel: str, after: int) -> list[ev.Event]:
        """The next events of ``channel`` after ``after``: from memory when this process committed them."""
        kept = self._recent.after(channel, after, self._batch) if self._recent is not None else None
        if kept:
            return kept
        return await self._uow.run(lambda repos: repos.outbox().events_after(channel, after, self._batch))


class RecentEvents:
    """The events this process committed lately, per channel: live subscriptions read the tail of the
    log from here rather than from the database (a query and a decoding per commit and subscriber).

    Only a run that starts right after the reader's position and has no hole is answered; anything
    else (a position written by another process, one evicted, one whose writer has committed but not
    yet added it) is read from the database, which has every committed event. Positions are given
    under the channel's position lock and committed in that order, so a position missing here but
    present after it is already in the database."""

    def __init__(self, capacity: int = 5000) -> None:
        self._capacity = capacity
        self._channels: dict[str, OrderedDict[int, ev.Event]] = {}

    def add(self, events: list[ev.Event]) -> None:
        """Keep committed events (with their positions); the oldest go past the capacity."""
        for event in events:
            kept = self._channels.setdefault(event.channel, OrderedDict())
            kept[event.position] = event
            while len(kept) > self._capacity:
                kept.popitem(last=False)

    def after(self, channel: str, position: int, limit: int) -> list[ev.Event] | None:
        """Up to ``limit`` events of ``channel`` following ``position`` without a hole; None when the
        next one is not here (read the database then)."""
        kept = self._channels.get(channel, {})
        if position + 1 not in kept:
            return None
        found = []
        while position + 1 in kept and len(found) < limit:
            position += 1
            found.append(kept[position])
        return found


def decode(payload: bytes) -> ev.Event:
    """An event from its NATS payload."""
    return ev.Event.FromString(payload)
