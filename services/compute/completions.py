"""Finished tasks whose outcome the ledger has not recorded yet, kept on disk until it has.

Once a task's outputs are stored, its CompleteTask request is written here before it is sent. If the
ledger cannot be reached (restarting, partitioned), the work message goes back to the queue, and the
next delivery (or the next process, after a crash) sends the kept request instead of running the task
again: a task is never executed twice because a call failed after its work was done. CompleteTask is
idempotent: a request the ledger already recorded is refused as settled, and the record is dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

from tessera.asset.v1 import asset_service_pb2 as api

from services.compute.domain.places import Places


class Completions:
    """The kept CompleteTask requests, one file per task: the channel's name on the first line (channel
    names are single-line identifiers), then the serialized request."""

    def __init__(self, places: Places) -> None:
        self._places = places

    def keep(self, channel: str, request: api.CompleteTaskRequest) -> None:
        """Write the request durably (temporary file, fsync, rename) before it is sent."""
        path = self._places.completion(request.task_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(channel.encode() + b"\n" + request.SerializeToString())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)

    def kept(self, task_key: str) -> tuple[str, api.CompleteTaskRequest] | None:
        """The channel and request kept for ``task_key``, if any."""
        path: Path = self._places.completion(task_key)
        try:
            channel, _, body = path.read_bytes().partition(b"\n")
        except FileNotFoundError:
            return None
        return channel.decode(), api.CompleteTaskRequest.FromString(body)

    def drop(self, task_key: str) -> None:
        """The ledger has the outcome: forget the request."""
        self._places.completion(task_key).unlink(missing_ok=True)
