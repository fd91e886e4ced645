"""Function images for the Kubernetes executor: a Kaniko Job per function and organization.

A function's archive is unpacked by compute (the kit's safe unpacking) into ``images/<function key>``
on the shared volume: that folder is the build context, its ``Dockerfile`` the recipe, its exec-form
ENTRYPOINT the command of the function's task pods, and its ``ENV`` and last ``WORKDIR`` their
environment and working directory (as the image has them). The Job (:func:`.specs.build_job`) pushes the
image to ``<registry>/<prefix>:<function key>``. The Job's name is the function's, so a function builds
once: a Job that completed earlier means the image is there (skipped); one still running after a
restart of compute is waited on; one that failed is deleted and built again on the next attempt.
The build pod's log goes into the function's build log, which the failure report carries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain import dockerfile
from services.compute.domain.builds import BuildError, FunctionCode
from services.compute.kubernetes import rules, specs
from services.compute.kubernetes.api import Api, Conflict
from services.compute.kubernetes.watch import DELETED, Board, Follower
from services.kit import archives, errors, trees

log = logging.getLogger("tessera.compute.kubernetes")

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
GONE_PATIENCE = 60.0


class Images:
    """Builds and caches this organization's function images."""

    def __init__(
        self, api: Api, config: specs.Config, work_dir: Path, *, grace: float = 60.0, log_bytes: int = 4 << 20
    ):
        self.api = api
        self.config = config
        self.work_dir = work_dir
        self.grace = grace
        self.log_bytes = log_bytes
        self.board = Board()
        self._follower: Follower | None = None
        self._opening: asyncio.Task | None = None
        self.built = 0  # Jobs this process created (and saw complete)
        # Functions whose Job this process saw complete: their tasks need no API call and add no line to the
        # build log (which otherwise grew by a line per task).
        self._ready: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def context(self, function_key: str) -> Path:
        return self.work_dir / specs.context_folder(function_key)

    async def open(self) -> None:
        """The watch of this organization's build Jobs is synced (once)."""
        if self._opening is None or (self._opening.done() and self._opening.exception() is not None):
            self._opening = asyncio.create_task(self._open())
        await asyncio.shield(self._opening)

    async def _open(self) -> None:
        self._follower = Follower(
            self.api.batch.list_namespaced_job,
            self.config.namespace,
            specs.build_selector(self.config.organization),
            self.board.on_change,
            loop=asyncio.get_running_loop(),
            name=f"builds-{self.config.organization}",
        )
        self._follower.start()
        await self._follower.synced.wait()

    async def close(self) -> None:
        if self._follower is not None:
            await self._follower.stop()

    # ------------------------------------------------------------------------ the build path
    async def prepare(self, function: res.Function, archive: Path, logs: Path) -> FunctionCode:
        """The function's image, built once (BuildError on the user's mistakes and failed builds)."""
        context = self.context(function.key)
        if not context.exists():
            await asyncio.to_thread(_unpack, archive, context)
        dockerfile = context / "Dockerfile"
        try:
            text = dockerfile.read_text(errors="replace")
            entrypoint = archives.parse_entrypoint(text)
        except (OSError, errors.InvalidArgument) as exc:
            raise BuildError(str(exc)) from exc
        await self.build(function.key, logs)
        env, workdir = _runtime(text)
        return FunctionCode(directory=context, entrypoint=entrypoint, python="", env=env, image_workdir=workdir)

    async def build(self, function_key: str, logs: Path) -> str:
        """Make sure the function's image exists (its Job completed); returns the image's reference."""
        if function_key not in self._ready:
            async with self._locks.setdefault(function_key, asyncio.Lock()):
                if function_key not in self._ready:
                    await self._build(function_key, logs)
                    self._ready.add(function_key)
        return specs.image_ref(self.config, function_key)

    async def _build(self, function_key: str, logs: Path) -> str:
        await self.open()
        name = specs.job_name(self.config.organization, function_key)
        image = specs.image_ref(self.config, function_key)
        self.board.follow(name)
        try:
            job = await self.api.job(name)
            if job is not None and rules.job_outcome(job) is True:
                _append(logs, f"image {image} was built already (Job {name})\n")
                return image
            if job is not None and (rules.job_outcome(job) is False or rules.terminating(job)):
                await self.api.delete_job(name)  # an earlier attempt failed: build again
                await self._until_gone(name, rules.uid(job))
                job = None
            if job is None:
                _append(logs, f"building image {image} with Kaniko (Job {name})\n")
                try:
                    job = await self.api.create_job(specs.build_job(self.config, function_key))
                except Conflict:
                    job = await self.api.job(name)
                    if job is None:
                        raise errors.Unavailable(f"the build Job {name} exists and does not") from None
            else:
                _append(logs, f"waiting on the running build of image {image} (Job {name})\n")
            job = await self._finished(name, job)
            _append(logs, await self._build_log(name))
            outcome = rules.job_outcome(job)
            if outcome is True:
                self.built += 1
                return image
            why = rules.job_failure(job) if outcome is False else f"timed out after {self.config.build_timeout:g} s"
            await self.api.delete_job(name)
            raise BuildError(f"the image build failed ({why})")
        finally:
            self.board.unfollow(name)

    async def _finished(self, name: str, job: dict) -> dict:
        """The Job once it completed or failed, or as it is when the build's time is up."""
        uid = rules.uid(job)
        deadline = time.time() + self.config.build_timeout + self.grace
        while True:
            self.board.settle(name)
            kind, current = self.board.seen(name, uid) or ("", job)
            if kind == DELETED:
                raise errors.Unavailable(f"the build Job {name} was deleted before it ended")
            if rules.job_outcome(current) is not None or time.time() >= deadline:
                return current
            await self.board.changed(name, deadline - time.time())

    async def _until_gone(self, name: str, uid: str) -> None:
        deadline = time.time() + GONE_PATIENCE
        while time.time() < deadline:
            self.board.settle(name)
            seen = self.board.seen(name, uid)
            if seen is not None and seen[0] == DELETED:
                return
            current = await self.api.job(name)
            if current is None or rules.uid(current) != uid:
                return
            await self.board.changed(name, min(5.0, deadline - time.time()))
        raise errors.Unavailable(f"the failed build Job {name} is still being deleted")

    async def _build_log(self, name: str) -> str:
        """The log of the Job's pod (Kaniko's output); its termination message when the log cannot be read."""
        pods = await self.api.pods(f"{JOB_NAME_LABEL}={name}")
        if not pods:
            return "[tessera] the build's pod is gone: no build log\n"
        pod = pods[-1]
        try:
            text = await self.api.pod_log(pod["metadata"]["name"], specs.BUILD_CONTAINER, self.log_bytes)
            return text if text.endswith("\n") else text + "\n"
        except errors.DomainError as exc:
            log.warning("the log of build Job %s cannot be read (%s)", name, exc.message)
        last = ""
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            last = ((status.get("state") or {}).get("terminated") or {}).get("message", "") or last
        note = "[tessera] the build's log could not be read"
        return f"{last.rstrip()}\n{note}; above: its last lines\n" if last else note + "\n"


def _runtime(text: str) -> tuple[dict[str, str], str]:
    """The ENV values and the last WORKDIR the Dockerfile states by itself, for the task pod to state
    them too (so that its own defaults never hide them). The image carries them anyway: a value that
    uses a variable of the base image, and anything the local executor's reading refuses, is left to it."""
    try:
        runtime = dockerfile.runtime(text)
    except BuildError:
        return {}, ""
    return {k: v for k, v in runtime.env.items() if k not in runtime.unresolved}, runtime.image_workdir


def _unpack(archive: Path, context: Path) -> None:
    """Unpack safely beside the final folder, then move it in place (a reader never sees half of it)."""
    partial = context.with_name(context.name + ".partial")
    trees.remove_tree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        archives.inspect_function_archive(archive)
        archives.extract(archive, partial)
    except (errors.InvalidArgument, errors.ResourceExhausted) as exc:
        trees.remove_tree(partial)
        raise BuildError(str(exc)) from exc
    partial.rename(context)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as out:
        out.write(text)
