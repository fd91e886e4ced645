"""Following objects (task pods, build Jobs) with the API's watch, in a thread of its own.

A :class:`Follower` lists what its label selector matches, then watches from the listing's
resourceVersion; when the watch ends (its server-side timeout) it goes on from the last version seen
(bookmarks keep it fresh), and when that version has expired (410) or the connection broke it lists
again, reporting as deleted what disappeared meanwhile. Every change reaches the event loop as
``on_change(type, object)`` with the object as the API's JSON: ``ADDED``, ``MODIFIED``, ``DELETED``,
or ``LISTED`` for what a listing found. Nothing is polled: between changes the thread waits on
the open watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("tessera.compute.kubernetes")

LISTED = "LISTED"
DELETED = "DELETED"


class Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class Follower:
    """Follows the objects ``list_call`` returns for ``selector`` in ``namespace``."""

    def __init__(
        self,
        list_call: Callable,
        namespace: str,
        selector: str,
        on_change: Callable[[str, dict], None],
        *,
        loop: asyncio.AbstractEventLoop,
        name: str,
        watch_seconds: int = 240,
    ) -> None:
        self._list = list_call
        self._namespace = namespace
        self._selector = selector
        self._on_change = on_change
        self._loop = loop
        self._name = name
        self._watch_seconds = watch_seconds
        self._stopped = threading.Event()
        self._response = None
        self._thread: threading.Thread | None = None
        self.synced = asyncio.Event()  # set once the first listing has been delivered

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop following (the open watch is cut at once)."""
        self._stopped.set()
        response = self._response
        if response is not None:
            shutdown = getattr(response, "shutdown", None)  # urllib3 >= 2.3: unblocks a pending read
            if shutdown is not None:
                with contextlib.suppress(Exception):  # closing anyway
                    shutdown()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    # ----------------------------------------------------------------------------- the thread
    def _deliver(self, kind: str, obj: dict | None) -> None:
        def deliver() -> None:
            if obj is None:
                self.synced.set()
            else:
                self._on_change(kind, obj)

        try:
            self._loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop has closed: nobody listens any more
            self._stopped.set()

    def _run(self) -> None:
        known: dict[str, dict] = {}
        while not self._stopped.is_set():
            try:
                version = self._relist(known)
                while not self._stopped.is_set():
                    version = self._watch(version, known)
            except Expired:
                continue
            except Exception as exc:  # noqa: BLE001 - the API away, a broken connection: list again
                if self._stopped.is_set():
                    break
                log.warning("watching %s failed (%s); listing again", self._name, exc)
                self._stopped.wait(1.0)

    def _relist(self, known: dict[str, dict]) -> str:
        response = self._list(
            self._namespace, label_selector=self._selector, _preload_content=False, _request_timeout=(10, 60)
        )
        listed = json.loads(response.data)
        found = {item["metadata"]["name"]: item for item in listed.get("items") or []}
        for name, last in known.items():
            if name not in found:
                self._deliver(DELETED, last)
        known.clear()
        known.update(found)
        for item in found.values():
            self._deliver(LISTED, item)
        self._deliver(LISTED, None)
        return listed["metadata"]["resourceVersion"]

    def _watch(self, version: str, known: dict[str, dict]) -> str:
        """One watch request, until the server ends it; the last resourceVersion seen."""
        try:
            response = self._list(
                self._namespace,
                label_selector=self._selector,
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_seconds,
                _preload_content=False,
                _request_timeout=(10, self._watch_seconds + 30),
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Expired from exc
            raise
        self._response = response
        try:
            for line in iter_resp_lines(response):
                if self._stopped.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                if kind == DELETED:
                    known.pop(name, None)
                else:
                    known[name] = obj
                self._deliver(kind, obj)
        finally:
            self._response = None
            response.release_conn()
        return version


class Board:
    """The last change the follower reported of each object something waits on (event-loop side).

    Only followed names are kept, so the board stays as small as the work in hand. A waiter follows a
    name *before* it reads or creates the object, so no change is missed, and matches changes by the
    object's uid, so a deleted predecessor of the same name is never taken for its object.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, dict]] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def follow(self, name: str) -> None:
        self._changed.setdefault(name, asyncio.Event())

    def unfollow(self, name: str) -> None:
        self._changed.pop(name, None)
        self._seen.pop(name, None)

    def on_change(self, kind: str, obj: dict) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        changed = self._changed.get(name)
        if changed is not None:
            self._seen[name] = (kind, obj)
            changed.set()

    def seen(self, name: str, uid: str) -> tuple[str, dict] | None:
        """The last change of the object ``name`` with ``uid`` (None when none was seen)."""
        entry = self._seen.get(name)
        if entry is not None and (entry[1].get("metadata") or {}).get("uid") == uid:
            return entry
        return None

    def wake(self, name: str) -> None:
        """Wake whoever waits on ``name`` (its own state changed: canceled, detached)."""
        changed = self._changed.get(name)
        if changed is not None:
            changed.set()

    def settle(self, name: str) -> None:
        """Call before reading the state: a change arriving after it wakes :meth:`changed`."""
        self._changed[name].clear()

    async def changed(self, name: str, timeout: float) -> None:
        """Wait until ``name`` changes or ``timeout`` passes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed[name].wait(), max(0.0, timeout))
