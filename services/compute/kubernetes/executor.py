"""The Kubernetes executor (:mod:`services.compute.executor`'s interface): one pod per task.

For a task, compute stages ``tasks/<key>/in`` (its inputs, hard links of the cache, and the
substratools arguments file) and an empty ``tasks/<key>/out`` on the volume it shares with its task
pods, creates the task's pod (:func:`.specs.task_pod`), and waits on the watch of its
organization's task pods (:mod:`.watch`) until the pod ends (:func:`.rules.verdict`) or compute's own
clock (the task's timeout plus a grace, counted from the pod's start) runs out. Then the container's
log is read through the API, the outputs are copied out of ``out`` (regular files only), and the pod
is deleted. Cancel deletes the pod.

A pod's name is its task's, so a restarted compute finds the pod of a task it is given again and
waits on it (re-adoption) instead of starting a second one; a compute that stops leaves its pods
running for that (:meth:`KubernetesExecutor.detach`). The reaper deletes the pods (and staged
folders) that no EXECUTING task of the ledger and no execution here accounts for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.compute.domain import layout
from services.compute.domain.execution import ExecutionResult, TaskSpec
from services.compute.kubernetes import rules, specs
from services.compute.kubernetes.api import Api, Conflict
from services.compute.kubernetes.rules import Ending, Verdict
from services.compute.kubernetes.watch import DELETED, Board, Follower
from services.compute.local_executor import link_tree, open_folder, safe_copy
from services.kit import background, errors, trees

log = logging.getLogger("tessera.compute.kubernetes")

WAKE_SECONDS = 30.0  # rules are re-evaluated at least this often while a pod waits (pull patience)
CANCEL_PATIENCE = 30.0  # seconds a cancel waits for its pod's deletion beyond the pod's grace period


class Detached(Exception):
    """The executor let go of a running pod (compute is stopping): it keeps running for the next one."""


class KubernetesExecution:
    """One task's pod, created or re-adopted, awaited."""

    def __init__(self, executor: KubernetesExecutor, spec: TaskSpec) -> None:
        self._executor = executor
        self._spec = spec
        self.name = specs.pod_name(spec.key)
        self.uid = ""
        self.adopted = False
        self._canceled = False
        self._cancel_deadline = 0.0
        self._detached = False
        executor.board.follow(self.name)
        self._task = asyncio.create_task(self._execute(), name=f"pod-{spec.key}")

    async def wait(self) -> ExecutionResult:
        return await asyncio.shield(self._task)

    async def cancel(self) -> None:
        """Delete the pod (unless compute is stopping: then it is left for the next compute)."""
        if self._detached or self._task.done():
            return
        self._canceled = True
        self._cancel_deadline = time.time() + specs.DELETE_GRACE_SECONDS + CANCEL_PATIENCE
        if self.uid:
            await self._executor.api.delete_pod(self.name, specs.DELETE_GRACE_SECONDS)
        self._executor.board.wake(self.name)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._task

    def detach(self) -> None:
        """Stop waiting; the pod, its folders and the task go on without this process."""
        self._detached = True
        self._executor.board.wake(self.name)

    async def _execute(self) -> ExecutionResult:
        executor, spec = self._executor, self._spec
        try:
            return await self._run()
        except Detached:
            executor.kept.add(spec.key)
            return ExecutionResult(None, canceled=True, error="compute stopped; the pod keeps running")
        finally:
            executor.board.unfollow(self.name)
            executor.attached.discard(spec.key)
            executor.executions.pop(spec.key, None)

    async def _run(self) -> ExecutionResult:
        executor, spec = self._executor, self._spec
        await executor.open()
        pod = await executor.api.pod(self.name)
        if pod is not None and rules.terminating(pod):
            await self._until_gone(pod)  # deleted meanwhile (by the reaper, a cancel): a new one follows
            pod = None
        if pod is None:
            if self._canceled:
                return ExecutionResult(None, canceled=True)
            await asyncio.to_thread(executor.stage, spec)
            try:
                pod = await executor.api.create_pod(specs.task_pod(executor.config, spec))
            except Conflict:
                pod = await executor.api.pod(self.name)  # made meanwhile: wait on it, never a second one
                if pod is None:
                    raise errors.Unavailable(f"the pod of task {spec.key} exists and does not") from None
                self.adopted = True
        else:
            self.adopted = True
            log.info("task %s: its pod %s exists (phase %s); waiting on it", spec.key, self.name, _phase(pod))
        self.uid = rules.uid(pod)
        if self._canceled:  # canceled while the pod was being created
            self._cancel_deadline = time.time() + specs.DELETE_GRACE_SECONDS + CANCEL_PATIENCE
            await executor.api.delete_pod(self.name, specs.DELETE_GRACE_SECONDS)
        verdict = await self._verdict(pod)
        if verdict is None:  # canceled: the pod is being deleted
            return ExecutionResult(None, canceled=True)
        return await self._ended(verdict)

    async def _verdict(self, pod: dict) -> Verdict | None:
        """Wait until the pod ends (None when it was canceled); raises :class:`Detached`."""
        executor, spec, board = self._executor, self._spec, self._executor.board
        deadline = rules.deadline(pod, spec.timeout, executor.grace, time.time())
        while True:
            board.settle(self.name)
            if self._detached:
                raise Detached
            kind, current = board.seen(self.name, self.uid) or ("", pod)
            if kind == DELETED:
                if self._canceled:
                    return None
                raise errors.Unavailable(f"the pod of task {spec.key} was deleted before it ended")
            if self._canceled:
                if time.time() >= self._cancel_deadline:
                    return None  # its deletion was asked; do not wait on it for ever
                await board.changed(self.name, self._cancel_deadline - time.time())
                continue
            verdict = rules.verdict(current, time.time(), executor.pull_patience)
            if verdict is not None:
                return verdict
            if time.time() >= deadline:
                return Verdict(Ending.TIMED_OUT, None, f"timed out after {spec.timeout:g} s")
            await board.changed(self.name, min(WAKE_SECONDS, deadline - time.time()))

    async def _until_gone(self, pod: dict) -> None:
        board, uid = self._executor.board, rules.uid(pod)
        deadline = time.time() + specs.DELETE_GRACE_SECONDS + 60
        while time.time() < deadline:
            board.settle(self.name)
            seen = board.seen(self.name, uid)
            if seen is not None and seen[0] == DELETED:
                return
            current = await self._executor.api.pod(self.name)
            if current is None or rules.uid(current) != uid:
                return
            await board.changed(self.name, min(WAKE_SECONDS, deadline - time.time()))
        raise errors.Unavailable(f"the old pod of task {self._spec.key} is still being deleted")

    async def _ended(self, verdict: Verdict) -> ExecutionResult:
        """Read the log and the outputs, delete the pod."""
        executor, spec = self._executor, self._spec
        dest = executor.results_dir(spec.key)
        await asyncio.to_thread(trees.remove_tree, dest)
        await asyncio.to_thread(dest.mkdir, parents=True)
        log_path = dest / layout.TASK_LOG
        await asyncio.to_thread(log_path.write_text, await self._log(verdict))
        outputs = {}
        if verdict.succeeded:
            outputs = await asyncio.to_thread(executor.collect, spec, dest)
        await executor.api.delete_pod(self.name, specs.DELETE_GRACE_SECONDS)
        return ExecutionResult(
            verdict.exit_code,
            timed_out=verdict.ending is Ending.TIMED_OUT,
            error=verdict.error,
            outputs=outputs,
            log_path=log_path,
        )

    async def _log(self, verdict: Verdict) -> str:
        """The container's log through the API; its termination message (its last lines) when the log cannot
        be read. Why it cannot goes to compute's own log only: the report is the user's, not the cluster's."""
        try:
            return await self._executor.api.pod_log(self.name, specs.CONTAINER, self._executor.log_bytes)
        except errors.DomainError as exc:
            log.warning("task %s: its pod's log cannot be read (%s)", self._spec.key, exc.message)
        note = "[tessera] the container's log could not be read"
        if verdict.last_words:
            return f"{verdict.last_words.rstrip()}\n{note}; above: its last lines\n"
        return note + "\n"


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase", "Pending")


class KubernetesExecutor:
    """Runs tasks as pods in one namespace, for one organization."""

    def __init__(
        self,
        api: Api,
        config: specs.Config,
        work_dir: Path,
        *,
        grace: float = 60.0,
        file_bytes: int = 4 << 30,
        log_bytes: int = 4 << 20,
        pull_patience: float = 300.0,
    ) -> None:
        self.api = api
        self.config = config
        self.work_dir = work_dir
        self.grace = grace
        self.file_bytes = file_bytes
        self.log_bytes = log_bytes
        self.pull_patience = pull_patience
        self.board = Board()
        self.attached: set[str] = set()  # task keys an execution of this process holds
        self.kept: set[str] = set()  # task keys whose pod was left running at stop (folders kept)
        self.executions: dict[str, KubernetesExecution] = {}
        self._follower: Follower | None = None
        self._opening: asyncio.Task | None = None

    @property
    def tasks_dir(self) -> Path:
        return self.work_dir / "tasks"

    def results_dir(self, task_key: str) -> Path:
        return self.work_dir / "results" / task_key

    async def open(self) -> None:
        """The deny-all policy exists and the watch of this organization's pods is synced (once)."""
        if self._opening is None or (self._opening.done() and self._opening.exception() is not None):
            self._opening = asyncio.create_task(self._open())
        await asyncio.shield(self._opening)

    async def _open(self) -> None:
        if await self.api.ensure_network_policy(specs.deny_all_policy(self.config.namespace)):
            log.info("created the deny-all NetworkPolicy %s for task pods", specs.NETWORK_POLICY)
        self._follower = Follower(
            self.api.core.list_namespaced_pod,
            self.config.namespace,
            specs.task_selector(self.config.organization),
            self.board.on_change,
            loop=asyncio.get_running_loop(),
            name=f"pods-{self.config.organization}",
        )
        self._follower.start()
        await self._follower.synced.wait()

    async def start(self, task: TaskSpec) -> KubernetesExecution:
        if task.key in self.executions:
            raise errors.AlreadyExists(f"task {task.key} is executing here already")
        self.attached.add(task.key)
        self.kept.discard(task.key)
        execution = KubernetesExecution(self, task)
        self.executions[task.key] = execution
        return execution

    async def prepare(self, spec: TaskSpec) -> None:
        """Nothing is kept warm per plan: each task has its own pod."""

    async def release(self, plan_key: str) -> None:
        """Nothing is kept warm per plan: each task has its own pod."""

    def forget(self, task_key: str) -> None:
        """Remove a task's staged folders and compute's copy of its outputs, unless its pod still runs."""
        if task_key in self.attached or task_key in self.kept:
            return
        trees.remove_tree(self.tasks_dir / task_key)
        trees.remove_tree(self.results_dir(task_key))

    # ------------------------------------------------------------------------------- staging
    def stage(self, spec: TaskSpec) -> None:
        """Lay out ``tasks/<key>/in`` (inputs and arguments, read-only to the pod) and an empty ``out``."""
        root = self.tasks_dir / spec.key
        trees.remove_tree(root)
        root.mkdir(parents=True, mode=0o755)
        inbox, outbox = root / "in", root / "out"
        inbox.mkdir(mode=0o755)
        outbox.mkdir(mode=0o755)
        text, staged = specs.arguments(spec)
        for name, source in staged.items():
            link_tree(Path(source), inbox / name)
        (inbox / layout.ARGUMENTS).write_text(text)
        if os.geteuid() == 0:
            os.chown(outbox, self.config.uid, self.config.gid)
        elif os.geteuid() != self.config.uid:
            outbox.chmod(0o777)  # only this task's pod mounts it

    def collect(self, spec: TaskSpec, dest: Path) -> dict[str, Path]:
        """Copy the task's outputs out of ``out`` (regular files only, links refused) into ``dest``."""
        outputs: dict[str, Path] = {}
        folder = open_folder(self.tasks_dir / spec.key, "out")
        if folder is None:
            return outputs
        try:
            for index, (identifier, filename) in enumerate(sorted(spec.outputs.items())):
                target = dest / "outputs" / f"output-{index}"
                if safe_copy(folder, filename, target, self.file_bytes):
                    outputs[identifier] = target
        finally:
            os.close(folder)
        return outputs

    # ------------------------------------------------------------------------------- reaping
    async def reap(self, executing: set[str]) -> list[str]:
        """Delete this organization's task pods that neither the ledger (``executing``: the keys of its
        EXECUTING tasks, read before this call) nor an execution here accounts for, and the staged
        folders no pod uses; the names of the pods deleted."""
        pods = await self.api.pods(specs.task_selector(self.config.organization))
        names = rules.to_reap(pods, self.config.organization, executing, set(self.attached))
        for name in names:
            log.info("reaping pod %s: its task is not executing any more", name)
            await self.api.delete_pod(name, specs.DELETE_GRACE_SECONDS)
        staged = await asyncio.to_thread(_listdir, self.tasks_dir)
        for key in rules.stale_folders(staged, pods, set(self.attached) | self.kept & executing):
            await asyncio.to_thread(trees.remove_tree, self.tasks_dir / key)
        self.kept &= executing
        return names

    # ------------------------------------------------------------------------------ stopping
    async def detach(self) -> None:
        """Compute is stopping: let every running pod go on (the next compute re-adopts it)."""
        for execution in list(self.executions.values()):
            execution.detach()

    async def close(self) -> None:
        await self.detach()
        for execution in list(self.executions.values()):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await execution.wait()
        if self._follower is not None:
            await self._follower.stop()


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


class Reaper:
    """Every ``period`` seconds (and once at start), reaps what the ledger no longer has EXECUTING."""

    def __init__(
        self, executor: KubernetesExecutor, executing: Callable[[], Awaitable[set[str]]], period: float
    ) -> None:
        self._executor = executor
        self._executing = executing
        self._period = period
        self._loop: asyncio.Task | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._forever(), name="pod-reaper")

    async def stop(self) -> None:
        await background.cancel(self._loop)

    async def _forever(self) -> None:
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reaping task pods failed", exc_info=True)
            await asyncio.sleep(self._period)

    async def once(self) -> list[str]:
        """One pass (the ledger is read first: a pod started after the reading is held by an execution)."""
        executing = await self._executing()
        return await self._executor.reap(executing)
