"""Building functions: a ``work.<org>.build`` message → the function BUILDING, its code prepared,
its image recorded and READY, or its build failed with the logs. One build at a time per
organization, in submission order (Substra's builder).

For the local executor a function's "image" is its archive, unpacked and given an environment
(:mod:`services.compute.build`); the Kubernetes executor passes its own preparation (a Kaniko image
build, :mod:`services.compute.kubernetes.images`). Tasks on any worker prepare a function's code the
same way, through :meth:`Builds.code`, once per archive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2
from tessera.storage.v1 import storage_pb2

from services.compute import build
from services.compute.domain import builds
from services.compute.domain.builds import BuildError, BuildStep, FunctionCode
from services.compute.domain.errors import TRANSIENT
from services.compute.domain.places import Places
from services.compute.failures import FailureReports
from services.compute.files import Files
from services.compute.isolation import OneShot
from services.compute.ledger import Ledger
from services.kit.errors import DomainError

log = logging.getLogger("tessera.compute.builds")

Prepare = Callable[[res.Function, Path, Path], Awaitable[FunctionCode]]
"""Makes a fetched archive runnable: (function, archive, build log) → its code; BuildError on user mistakes."""


class Builds:
    """Builds this organization's functions and prepares any function's code for its tasks."""

    def __init__(
        self,
        org_id: str,
        places: Places,
        ledger: Ledger,
        files: Files,
        failures: FailureReports,
        jails: OneShot,
        timeout: float,
        prepare: Prepare | None = None,
    ) -> None:
        self._org = org_id
        self._places = places
        self._ledger = ledger
        self._files = files
        self._failures = failures
        self._jails = jails
        self._timeout = timeout
        self._prepare = prepare or self._prepare_locally
        self._locks: dict[str, asyncio.Lock] = {}
        self._one_at_a_time = asyncio.Lock()  # FIFO: builds start in the order their messages came

    async def on_build(self, data: bytes) -> None:
        """Handle one build message (skipped when the ledger says the build is settled). Builds run one
        at a time, in the order their messages arrive, as Substra's builder runs them: a function stays
        WAITING until its build starts, then BUILDING until it is READY or FAILED."""
        async with self._one_at_a_time:  # taken before any await: the waiting messages keep their order
            await self._build(work_pb2.BuildFunction.FromString(data))

    async def _build(self, work: work_pb2.BuildFunction) -> None:
        function = await self._ledger.function(work.channel, work.function_key)
        step = builds.build_step(function, self._org)
        if step is BuildStep.SKIP:
            log.info("build of %s skipped: the function is not waiting for this organization", function.key)
            return
        if step is BuildStep.CLAIM and not await self._ledger.function_action(
            work.channel, function.key, res.FUNCTION_ACTION_BUILDING
        ):
            return
        logs = self._places.build_log(function.key)
        logs.parent.mkdir(parents=True, exist_ok=True)
        logs.write_text(f"building function {function.key} ({function.name})\n")
        started = time.perf_counter()
        try:
            await self.code(work.channel, function, logs)
        except BuildError as exc:
            with open(logs, "a") as out:
                out.write(f"build failed: {exc}\n")
            await self._failures.report(work.channel, builds.build_failure(function.key), logs)
            return
        built = time.perf_counter()
        await self._ledger.profiling_step(work.channel, function.key, builds.BUILD_IMAGE, _micros(started, built))
        await self._ledger.update_function(work.channel, builds.built(function))
        await self._ledger.function_action(work.channel, function.key, res.FUNCTION_ACTION_READY)
        saved = _micros(built, time.perf_counter())
        await self._ledger.profiling_step(work.channel, function.key, builds.SAVE_FUNCTION, saved)

    async def code(self, channel: str, function: res.Function, logs: Path) -> FunctionCode:
        """The function's code, fetched from its owner and prepared once per archive; BuildError when it
        cannot be (the storage refusing the archive included, but not storage being away)."""
        checksum = function.archive.checksum
        async with self._locks.setdefault(checksum, asyncio.Lock()):
            archive = self._places.archive(checksum)
            if not archive.exists():
                try:
                    await self._files.download(
                        channel,
                        function.owner,
                        storage_pb2.FILE_KIND_FUNCTION_ARCHIVE,
                        function.key,
                        archive,
                        checksum=checksum,
                    )
                except TRANSIENT:
                    raise
                except DomainError as exc:
                    raise BuildError(f"cannot fetch the archive: {exc.message}") from exc
            return await self._prepare(function, archive, logs)

    async def _prepare_locally(self, function: res.Function, archive: Path, logs: Path) -> FunctionCode:
        """The local executor's preparation: the archive unpacked, its environment made in a jail."""
        checksum = function.archive.checksum
        return await build.prepare(archive, self._places.functions, checksum, logs, self._timeout, self._jails)


def _micros(start: float, end: float) -> int:
    return int((end - start) * 1e6)
