"""Running tasks: a ``work.<org>.run`` message → StartTask, the function's code and the inputs
fetched, the task executed, its outputs saved and CompleteTask (or a failure report); teardowns
and cancels stop what runs.

A worker claims a task key the moment its message arrives, before any call, so that a second copy
of the same work (a redelivery, a re-queue) reaching another slot meanwhile is skipped. The ledger's
answer to StartTask then decides (:mod:`services.compute.domain.runs`): a task already final, not
ours or of a plan that cannot run is skipped; a task EXECUTING here after a crash is restarted and
keeps the outputs its earlier attempt registered.

A completion asks the ledger to start, in the same transaction, as many of the tasks it makes ready
here as this worker has free slots (the finishing task's own included): CompleteTask answers with them
started, as StartTask would have, and they are claimed at once and run through :attr:`Runs.offer` (the
work consumer runs them in a slot) without a StartTask call. Tasks it made ready but did not start
are offered too, as if their messages had come, and StartTask decides for them. Their work messages,
published by the event service from the same DONE, come a few tens of milliseconds later and find the
task claimed or finished here. A task whose completion the ledger recorded is remembered as finished,
so a late message for it is skipped without a ledger call (a DONE task never runs again); anything else
is StartTask's to decide, as for any duplicate (a task started by a completion whose answer was lost
is EXECUTING here: its message restarts it).

A run message also names the models of other organizations its task reads, as the event service saw them
registered: they are fetched into the cache while StartTask is on its way, instead of after its answer
(a hint only; the task runs with what StartTask answers, and each file is checked against its checksum).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2
from tessera.storage.v1 import storage_pb2

from services.compute.builds import Builds
from services.compute.completions import Completions
from services.compute.domain import inputs, outputs, runs
from services.compute.domain.builds import FunctionCode
from services.compute.domain.errors import TRANSIENT
from services.compute.domain.execution import ExecutionResult, TaskInput
from services.compute.domain.places import Places
from services.compute.domain.reconcile import Reconciliation
from services.compute.domain.runs import Logs, Run
from services.compute.executor import Execution, Executor
from services.compute.failures import FailureReports
from services.compute.files import Files
from services.compute.ledger import Ledger

SAVE_RETRY_SECONDS = 300.0
"""How long a finished task's outputs are offered to a storage that is away before the run gives up
(its work message then comes back, and the task runs again)."""

PARALLEL_DOWNLOADS = 4
"""Inputs of one task fetched at once."""

log = logging.getLogger("tessera.compute.runs")
FINISHED_KEPT = 10_000  # keys of tasks completed here, remembered to skip their late messages


class Runs:
    """The tasks this worker runs."""

    def __init__(
        self,
        places: Places,
        ledger: Ledger,
        files: Files,
        builds: Builds,
        failures: FailureReports,
        completions: Completions,
        executor: Executor,
        reconciliation: Reconciliation,
        *,
        public_url: str,
        task_timeout: float,
        slots: int = 1,
    ) -> None:
        self._places = places
        self._ledger = ledger
        self._files = files
        self._builds = builds
        self._failures = failures
        self._completions = completions
        self._executor = executor
        self._reconciliation = reconciliation
        self._public_url = public_url
        self._task_timeout = task_timeout
        self._slots = slots
        self._queued = 0  # ready tasks offered that wait for a slot, not claimed yet
        self.running: dict[str, Run] = {}
        self._executions: dict[str, Execution] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._prefetches: set[asyncio.Future] = set()
        self.offer: Callable[[Callable[[], Awaitable[None]]], None] | None = None
        """Runs work in a run slot as soon as one is free: tasks a completion here made ready or started
        (set by the composition root; without it, they wait for their messages)."""

    async def on_run(self, data: bytes) -> None:
        """Handle one run message."""
        work = work_pb2.RunTask.FromString(data)
        key = work.compute_task_key
        self._reconciliation.received(key, time.monotonic())
        if key in self.running:
            log.info("run of %s skipped: it already runs here", key)
            return
        if key in self._finished:
            log.info("run of %s skipped: it was completed here", key)
            return
        run = self._claim(key, work.channel)  # before the first await (see the module's description)
        self._prefetch(work)
        try:
            if not await self._report_kept(key):
                await self._claimed(run)
        finally:
            self._release(key)

    def _prefetch(self, work: work_pb2.RunTask) -> None:
        """Start fetching the peers' models a run message names while StartTask is on its way."""
        self.fetch_ahead(work.channel, work.compute_plan_key, work.compute_task_key, work.peer_models)

    def fetch_ahead(self, channel: str, plan_key: str, task_key: str, models) -> int:
        """Start fetching ``models`` (peers' models that task ``task_key`` will read) into ``plan_key``'s cache,
        beside their paths; how many downloads started. A hint: the run's own fetch of an input waits for these
        through the cache's lock, takes a file fetched ahead only under the checksum the ledger gives, and
        fetches again what failed."""
        if not plan_key:  # a message without its plan names no cache folder: no hint taken
            return 0
        started = 0
        for model in models:
            if model.HasField("address"):
                placement = inputs.model_placement("", model, self._places, plan_key)
                fetch = asyncio.ensure_future(self._fetch_hinted(channel, placement, task_key))
                self._prefetches.add(fetch)
                fetch.add_done_callback(self._prefetches.discard)
                started += 1
        return started

    async def _fetch_hinted(self, channel: str, placement: inputs.Placement, task_key: str) -> None:
        try:
            fetched = await self._files.fetch_ahead(channel, placement)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a hint: the run fetches its inputs itself
            log.info("early fetch of model %s for task %s failed: %s", placement.asset_key, task_key, exc)
        else:
            if fetched:
                log.info("model %s fetched ahead of the start of task %s", placement.asset_key, task_key)

    def _claim(self, key: str, channel: str) -> Run:
        run = Run(key, channel, started=dt.datetime.now(dt.UTC), claimed=time.monotonic())
        self.running[key] = run
        return run

    def _release(self, key: str) -> None:
        self.running.pop(key, None)
        self._executions.pop(key, None)

    async def _started_here(self, run: Run, start: api.StartTaskResponse) -> None:
        """Run a task the ledger started in the answer to a completion here (claimed when it came)."""
        try:
            await self._begin(run, start)
        finally:
            self._release(run.key)

    async def _report_kept(self, key: str) -> bool:
        """Send the completion kept from an earlier attempt whose report failed; True if there was one
        (the task is not run again; a failure to reach the ledger raises, and the message comes back)."""
        kept = self._completions.kept(key)
        if kept is None:
            return False
        channel, request = kept
        log.info("task %s finished earlier: reporting its kept completion", key)
        await self._ledger.complete_task(channel, request)  # False: the ledger had it already
        self._completions.drop(key)
        return True

    async def _claimed(self, run: Run) -> None:
        try:
            start = await self._ledger.start_task(run.channel, run.key)
        except Exception as exc:
            if runs.start_refused(exc):
                log.info("run of %s skipped: the ledger refused to start it (%s)", run.key, exc)
                return
            raise
        await self._begin(run, start)

    async def _begin(self, run: Run, start: api.StartTaskResponse) -> None:
        task = start.task
        run.plan_key, run.function_key = task.compute_plan_key, task.function_key
        skipped = runs.skip_reason(start)
        if skipped:
            log.info("run of %s skipped: %s", run.key, skipped)
            return
        await self._run(run, start)

    async def _run(self, run: Run, start: api.StartTaskResponse) -> None:
        task = start.task
        durations: dict[str, int] = {}
        result: ExecutionResult | None = None
        try:
            run.step = runs.DOWNLOAD
            t0 = time.perf_counter()
            code = await self._code(run.channel, task.function)
            durations[run.step] = int((time.perf_counter() - t0) * 1e6)

            run.step = "prepare_inputs"
            t0 = time.perf_counter()
            task_inputs = await self._inputs(run.channel, task, start.input_assets)
            durations[run.step] = int((time.perf_counter() - t0) * 1e6)

            run.step = "task_execution"
            t0 = time.perf_counter()
            if run.canceled:
                return
            log.info("task %s: executing", task.key)
            execution = await self._executor.start(runs.task_spec(task, code, task_inputs, self._task_timeout))
            self._executions[run.key] = execution
            result = await execution.wait()
            durations[run.step] = int((time.perf_counter() - t0) * 1e6)
            if run.canceled or result.canceled:
                log.info("task %s canceled while running", task.key)
                return
            failed = runs.execution_failure(result)
            if failed is not None:
                raise failed

            run.step = "save_outputs"
            t0 = time.perf_counter()
            completion = await self._saved(run, task, result, set(start.registered_outputs))
            durations[run.step] = int((time.perf_counter() - t0) * 1e6)
            completion = runs.profiling(completion, durations, task)
            self._completions.keep(run.channel, completion)  # the work is done: never run it again
            completion.start_ready = self._free_slots()
            try:
                completed = await self._ledger.complete_task(run.channel, completion)
            except BaseException:
                self._completions.persist(task.key)  # for the next delivery, or the next process
                raise
            self._completions.drop(task.key)
            self._finish(run.channel, task.key, completed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = runs.failure_of(exc)
            if failure is None:
                raise  # infrastructure away or busy: the message is redelivered and the task restarted
            if failure.error_type == res.INTERNAL_ERROR:
                log.exception("task %s: internal error", task.key)
            else:
                log.info("task %s failed: %s", task.key, exc)
            logs = None
            if failure.logs is Logs.BUILD:
                logs = self._places.build_log(task.function_key)
            elif failure.logs is Logs.TASK and result is not None:
                logs = self._failure_log(result, str(exc))
            await self._failures.report(run.channel, failure.report(task.key), logs)
        finally:
            self._executor.forget(task.key)

    async def _code(self, channel: str, function: res.Function) -> FunctionCode:
        """The function's code, prepared once (its build log kept where a failed task's report finds it)."""
        logs = self._places.build_log(function.key)
        logs.parent.mkdir(parents=True, exist_ok=True)
        return await self._builds.code(channel, function, logs)

    def _free_slots(self) -> int:
        """How many tasks a completion here may start: the slots no run holds nor a ready task waits for, the
        completing one's included (0 when nothing would run them before their messages come)."""
        if self.offer is None:
            return 0
        return max(0, self._slots - len(self.running) - self._queued + 1)

    def _finish(self, channel: str, key: str, completed: api.CompleteTaskResponse | None) -> None:
        """Remember a task the ledger has DONE; run the tasks its completion started here, offer those it
        made ready."""
        self._finished[key] = None
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)
        if completed is None or self.offer is None:
            return
        now = time.monotonic()
        for start in completed.started:
            self._reconciliation.received(start.task.key, now)
            if start.task.key in self.running:  # its message came first and runs it (StartTask restarted it)
                continue
            run = self._claim(start.task.key, channel)
            self.offer(lambda run=run, start=start: self._started_here(run, start))
        for ready in completed.ready:
            data = work_pb2.RunTask(
                compute_task_key=ready.key, compute_plan_key=ready.compute_plan_key, channel=channel
            ).SerializeToString()
            self._queued += 1
            self.offer(lambda data=data: self._queued_run(data))

    async def _queued_run(self, data: bytes) -> None:
        self._queued -= 1  # it has its slot now: counted as running once claimed
        await self.on_run(data)

    @staticmethod
    def _failure_log(result: ExecutionResult, reason: str) -> Path | None:
        """The task's log (compute's own copy) with why it failed appended."""
        if result.log_path is None:
            return None
        with open(result.log_path, "a") as out:
            out.write(runs.failure_note(reason))
        return result.log_path

    async def _inputs(
        self, channel: str, task: res.ComputeTask, assets: list[res.ComputeTaskInputAsset]
    ) -> list[TaskInput]:
        """The task's inputs in the cache, fetched a few at once (an aggregation reads one model per
        organization, each from its own storage); the first failure stops the others."""
        placements = list(inputs.placements(task, assets, self._places))
        limit = asyncio.Semaphore(PARALLEL_DOWNLOADS)

        async def fetch(placement) -> None:
            async with limit:
                await self._files.cached(channel, placement)

        fetches = [asyncio.ensure_future(fetch(placement)) for placement in placements]
        try:
            await asyncio.gather(*fetches)
        except BaseException:
            for pending in fetches:
                pending.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)
            raise
        return [placement.task_input() for placement in placements]

    async def _saved(
        self, run: Run, task: res.ComputeTask, result: ExecutionResult, registered: set[str]
    ) -> api.CompleteTaskRequest:
        """:meth:`_save_outputs`, tried again while storage (or its database) is away: the task's work is
        done and is not done again because a store failed; only a crash of compute loses it."""
        delay, deadline = 0.5, time.monotonic() + SAVE_RETRY_SECONDS
        while True:
            try:
                return await self._save_outputs(run.channel, task, result, registered)
            except TRANSIENT as exc:
                if run.canceled or time.monotonic() > deadline:
                    raise
                log.info("task %s: storing its outputs failed (%s); trying again in %.1f s", task.key, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)

    async def _save_outputs(
        self, channel: str, task: res.ComputeTask, result: ExecutionResult, registered: set[str]
    ) -> api.CompleteTaskRequest:
        """Store the models, read the performances: what the ledger records when the task completes."""
        completion = api.CompleteTaskRequest(task_key=task.key)
        for output in outputs.to_save(task, registered):
            path = result.outputs.get(output.identifier)
            if path is None:
                raise outputs.missing(output.identifier)
            if output.performance:
                text = path.read_text(errors="replace")
                completion.performances.append(outputs.performance(output.identifier, text))
                continue
            model_key = str(uuid.uuid4())
            stored = await self._files.upload(
                channel,
                path,
                storage_pb2.FILE_KIND_MODEL,
                model_key,
                salt=task.key,
                filename=f"{output.identifier}.model",
            )
            # The results folder is compute's own (the jail never had it): the file is what storage hashed.
            self._files.keep_model(task.compute_plan_key, model_key, path)
            completion.models.append(
                outputs.new_model(task.key, output.identifier, model_key, stored.checksum, self._public_url)
            )
        return completion

    # ----------------------------------------------------------------------------- preparing runners
    async def on_prepare(self, data: bytes) -> None:
        """Get a runner of a function ready for a plan whose tasks were registered here: advisory, so nothing
        is done when the function is not built yet (its first task starts a runner, as without this)."""
        work = work_pb2.PrepareRunner.FromString(data)
        try:
            function = await self._ledger.function(work.channel, work.function_key)
            if function.status != res.FUNCTION_STATUS_READY:
                log.info("runner of %s not prepared: the function is not built", work.function_key)
                return
            code = await self._code(work.channel, function)
            await self._executor.prepare(runs.runner_spec(work.compute_plan_key, function, code))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - advisory: the first task starts its runner anyway
            log.info("runner of %s for plan %s not prepared: %s", work.function_key, work.compute_plan_key, exc)

    # ----------------------------------------------------------------------------- stopping runs
    async def on_teardown(self, data: bytes) -> None:
        """A plan has ended: stop its runs still here and what the executor keeps warm for it."""
        work = work_pb2.Teardown.FromString(data)
        for run in list(self.running.values()):
            if run.plan_key == work.compute_plan_key and run.key in self._executions:
                await self.cancel(run.key)
        await self._executor.release(work.compute_plan_key)
        await self._files.forget_plan(work.compute_plan_key)

    async def cancel(self, task_key: str) -> bool:
        """Stop a task of this worker now (the ledger has already ended it); False when it is not here."""
        run = self.running.get(task_key)
        if run is None:
            return False
        run.canceled = True
        execution = self._executions.get(task_key)
        if execution is not None:
            await execution.cancel()
        return True

    async def stop(self) -> None:
        """Stop every execution (their messages will be redelivered) and every early fetch."""
        for fetch in list(self._prefetches):
            fetch.cancel()
        for execution in list(self._executions.values()):
            with contextlib.suppress(Exception):
                await execution.cancel()
