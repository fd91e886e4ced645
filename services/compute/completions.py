"""Finished tasks whose outcome the ledger has not recorded yet, kept until it has.

Once a task's outputs are stored, its CompleteTask request is kept here (in memory) before it is sent.
If the call fails (the ledger restarting, partitioned, or this process stopping), the request is written
to disk at once; the work message goes back to the queue, and the next delivery (or the next process)
sends the kept request instead of running the task again: a task is never executed twice because a call
failed after its work was done. CompleteTask is idempotent: a request the ledger already recorded is
refused as settled, and the record is dropped.

A call that succeeds (every call but a rare one) leaves nothing on disk: no file made, synced and
deleted per task. What that gives up is a crash of this process during the call itself (a few
milliseconds): the task is then EXECUTING here in the ledger, and the restarted worker runs it again,
as it does any task it was running when it died (its outputs are registered once, by the attempt
that completes).
"""

from __future__ import annotations

import os
from pathlib import Path

from tessera.asset.v1 import asset_service_pb2 as api

from services.compute.domain.places import Places


class Completions:
    """The kept CompleteTask requests; on disk, one file per task: the channel's name on the first line
    (channel names are single-line identifiers), then the serialized request."""

    def __init__(self, places: Places) -> None:
        self._places = places
        self._pending: dict[str, tuple[str, bytes]] = {}  # task key → (channel, request), not written yet

    def keep(self, channel: str, request: api.CompleteTaskRequest) -> None:
        """Keep the request as it is now, before it is sent (:meth:`persist` it when the call fails)."""
        self._pending[request.task_key] = (channel, request.SerializeToString())

    def persist(self, task_key: str) -> None:
        """Write the kept request durably (temporary file, fsync, rename): its call failed."""
        pending = self._pending.get(task_key)
        if pending is None:
            return
        channel, body = pending
        path = self._places.completion(task_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(channel.encode() + b"\n" + body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)

    def kept(self, task_key: str) -> tuple[str, api.CompleteTaskRequest] | None:
        """The channel and request kept for ``task_key``, if any."""
        pending = self._pending.get(task_key)
        if pending is not None:
            channel, body = pending
            return channel, api.CompleteTaskRequest.FromString(body)
        path: Path = self._places.completion(task_key)
        try:
            channel_bytes, _, body = path.read_bytes().partition(b"\n")
        except FileNotFoundError:
            return None
        return channel_bytes.decode(), api.CompleteTaskRequest.FromString(body)

    def drop(self, task_key: str) -> None:
        """The ledger has the outcome: forget the request."""
        self._pending.pop(task_key, None)
        self._places.completion(task_key).unlink(missing_ok=True)
