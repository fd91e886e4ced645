"""The compute worker: consumes ``work.<org>.build | run | teardown`` and does the work.

Each message is handled with explicit acknowledgement: a running task keeps its message alive
with in-progress heartbeats, and the message is acknowledged only once the outcome is recorded
in the ledger, so a crash means redelivery. Before acting, the worker reads the ledger's current
state: a task already DONE is never run again, a task EXECUTING here (a redelivery after a
crash) is restarted. A reconciler compares the ledger with what runs and re-queues what was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2
from tessera.storage.v1 import storage_pb2

from services.compute import build, layout
from services.compute.executor import Execution, ExecutionResult, Executor, TaskInput, TaskSpec
from services.compute.files import Files, file_checksum
from services.compute.isolation import OneShot
from services.compute.settings import ComputeSettings
from services.kit import archives, client, subjects
from services.kit.identity import Channels, OrgCredentials
from services.kit.status import status_details

log = logging.getLogger("tessera.compute")
SETTLED = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS}
RETRYABLE = {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE}


class UserError(Exception):
    """The user's code failed (EXECUTION_ERROR, its logs are kept)."""


@dataclass
class Running:
    """A task being handled by this worker."""

    key: str
    plan_key: str
    function_key: str
    channel: str
    started: dt.datetime
    step: str = "queued"
    execution: Execution | None = None
    canceled: bool = False


@dataclass
class Stats:
    """Counters the tests and GetStatus read."""

    runs_started: int = 0
    runs_done: int = 0
    builds: int = 0
    skipped: list[str] = field(default_factory=list)


class Worker:
    """Builds functions and runs tasks for one organization."""

    def __init__(
        self,
        settings: ComputeSettings,
        base_creds: OrgCredentials,
        files: Files,
        executor: Executor,
        js: JetStreamContext | None,
        jails: OneShot,
    ) -> None:
        self.settings = settings
        self.org = settings.org_id
        self._creds = base_creds
        self.files = files
        self.executor = executor
        self.jails = jails
        self.js = js
        self.work_dir = Path(settings.work_dir)
        self.running: dict[str, Running] = {}
        self.slots = asyncio.Semaphore(settings.slots)
        # Builds and teardowns have limits of their own: a consumer holds its limit while it waits for a
        # message, and the run consumer must not wait behind idle build or teardown fetches for a slot.
        self._limits = {"run": self.slots, "build": asyncio.Semaphore(settings.slots), "teardown": asyncio.Semaphore(4)}
        self.stats = Stats()
        self._ledgers: dict[str, api_grpc.AssetServiceStub] = {}
        self._tasks: list[asyncio.Task] = []
        self._handlers: set[asyncio.Task] = set()
        self._queued_at: dict[str, float] = {}  # task key → when its work was last queued or received
        self._stranded_since: dict[str, float] = {}  # task key → when reconciliation first saw it idle
        self._subscriptions: list = []
        self._cache_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------------------------ plumbing
    def creds(self, channel: str) -> OrgCredentials:
        """This organization's credential, acting in ``channel``."""
        return OrgCredentials(
            org_id=self._creds.org_id,
            secret=self._creds.secret,
            channel=channel,
            tls_key=self._creds.tls_key,
            tls_cert=self._creds.tls_cert,
            tls_ca=self._creds.tls_ca,
        )

    def ledger(self, channel: str) -> api_grpc.AssetServiceStub:
        """A ledger client acting in ``channel``."""
        if channel not in self._ledgers:
            self._ledgers[channel] = api_grpc.AssetServiceStub(
                client.channel(self.settings.asset_addr, self.creds(channel))
            )
        return self._ledgers[channel]

    def durable(self, kind: str) -> str:
        """Durable consumer name of this organization for ``kind`` work."""
        return f"compute-{self.org}-{kind}".replace(".", "_")

    async def start(self) -> None:
        """Declare the consumers and start consuming, plus the reconciler."""
        if self.js is not None:
            for kind in subjects.WORK_KINDS:
                await self.js.add_consumer(
                    subjects.WORK_STREAM,
                    ConsumerConfig(
                        durable_name=self.durable(kind),
                        filter_subject=subjects.work_subject(self.org, kind),
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=self.settings.ack_wait,
                        max_ack_pending=max(self.settings.slots * 4, 16),
                    ),
                )
            self._tasks.append(asyncio.create_task(self._consume("run", self._on_run), name="consume-run"))
            self._tasks.append(asyncio.create_task(self._consume("build", self._on_build), name="consume-build"))
            self._tasks.append(
                asyncio.create_task(self._consume("teardown", self._on_teardown), name="consume-teardown")
            )
        self._tasks.append(asyncio.create_task(self._reconcile_forever(), name="reconciler"))

    async def stop(self) -> None:
        """Stop consuming; running tasks are killed (their messages will be redelivered)."""
        for task in [*self._tasks, *self._handlers]:
            task.cancel()
        for task in [*self._tasks, *self._handlers]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for running in list(self.running.values()):
            if running.execution is not None:
                with contextlib.suppress(Exception):
                    await running.execution.cancel()
        for subscription in self._subscriptions:  # so that the connection drains at once
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        await self.executor.close()
        await self.files.close()

    async def _consume(self, kind: str, handler) -> None:
        subscription = await self.js.pull_subscribe_bind(self.durable(kind), stream=subjects.WORK_STREAM)
        self._subscriptions.append(subscription)
        limit = self._limits[kind]
        while True:
            await limit.acquire()
            try:
                messages = await subscription.fetch(1, timeout=1.0)
            except TimeoutError:
                limit.release()
                continue
            except Exception:
                limit.release()
                log.warning("fetching %s work failed; retrying", kind, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            task = asyncio.create_task(self._handle(kind, handler, messages[0]))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, kind: str, handler, message) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(message))
        try:
            await handler(message.data)
            await message.ack()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s work failed; it will be redelivered", kind)
            with contextlib.suppress(Exception):
                await message.nak(delay=self.settings.ack_wait / 2)
        finally:
            heartbeat.cancel()
            self._limits[kind].release()

    async def _heartbeat(self, message) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.settings.ack_wait / 3))
            with contextlib.suppress(Exception):
                await message.in_progress()

    async def _ledger_write(self, make_call, attempts: int = 6):
        """A ledger write that may be refused for contention (ABORTED: nothing was written) or while the
        ledger restarts (UNAVAILABLE): made again a few times, with jittered backoff."""
        for attempt in range(1, attempts + 1):
            try:
                return await make_call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE or attempt == attempts:
                    raise
                log.info("ledger write refused (%s); trying again", exc.code().name)
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def _settle(self, call) -> bool:
        try:
            await call
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() in SETTLED:
                log.info("ledger refused: %s", status_details(exc).message)
                return False
            raise

    # --------------------------------------------------------------------------------------- build
    async def _on_build(self, data: bytes) -> None:
        work = work_pb2.BuildFunction.FromString(data)
        ledger = self.ledger(work.channel)
        function = (await ledger.GetFunction(api.GetFunctionRequest(key=work.function_key))).function
        if function.owner != self.org or function.status not in (
            res.FUNCTION_STATUS_WAITING,
            res.FUNCTION_STATUS_BUILDING,
        ):
            self.stats.skipped.append(f"build:{function.key}")
            return
        if function.status == res.FUNCTION_STATUS_WAITING and not await self._settle(
            ledger.ApplyFunctionAction(
                api.ApplyFunctionActionRequest(function_key=function.key, action=res.FUNCTION_ACTION_BUILDING)
            )
        ):
            return
        self.stats.builds += 1
        logs = self.work_dir / "builds" / f"{function.key}.log"
        logs.parent.mkdir(parents=True, exist_ok=True)
        logs.write_text(f"building function {function.key} ({function.name})\n")
        started = time.perf_counter()
        try:
            await self.function_code(work.channel, function, logs)
        except build.BuildError as exc:
            with open(logs, "a") as out:
                out.write(f"build failed: {exc}\n")
            await self._report_failure(work.channel, function.key, res.FAILED_ASSET_FUNCTION, res.BUILD_ERROR, logs)
            return
        build_us = int((time.perf_counter() - started) * 1e6)
        await self._settle(ledger.UpdateFunction(api.UpdateFunctionRequest(key=function.key, image=function.archive)))
        await self._settle(
            ledger.ApplyFunctionAction(
                api.ApplyFunctionActionRequest(function_key=function.key, action=res.FUNCTION_ACTION_READY)
            )
        )
        await self._profile(ledger, function.key, "build_image", build_us)

    async def function_code(self, channel: str, function: res.Function, logs: Path) -> build.FunctionCode:
        """The function's code, fetched from its owner and prepared once per archive."""
        checksum = function.archive.checksum
        async with self._lock(self.work_dir / "functions" / checksum):
            archive = self.work_dir / "archives" / checksum
            if not archive.exists():
                try:
                    await self.files.download(
                        self.creds(channel),
                        function.owner,
                        storage_pb2.FILE_KIND_FUNCTION_ARCHIVE,
                        function.key,
                        archive,
                        checksum=checksum,
                    )
                except grpc.aio.AioRpcError as exc:
                    raise build.BuildError(f"cannot fetch the archive: {status_details(exc).message}") from exc
            return await build.prepare(
                archive, self.work_dir / "functions", checksum, logs, self.settings.build_timeout, self.jails
            )

    # ----------------------------------------------------------------------------------------- run
    async def _on_run(self, data: bytes) -> None:
        work = work_pb2.RunTask.FromString(data)
        key = work.compute_task_key
        self._queued_at[key] = time.monotonic()
        if key in self.running:
            self.stats.skipped.append(f"run:{key}:already-running")
            return
        # Claimed before the first await: a second delivery of the same task (a re-queue, a redelivery)
        # handled on another slot meanwhile must see it taken, not run it a second time.
        running = Running(key, "", "", work.channel, dt.datetime.now(dt.UTC))
        self.running[key] = running
        try:
            await self._claimed_run(work, running)
        finally:
            self.running.pop(key, None)

    async def _claimed_run(self, work: work_pb2.RunTask, running: Running) -> None:
        ledger = self.ledger(work.channel)
        try:
            # One ledger transaction: the task becomes EXECUTING (or stays so, a restart) and comes back with
            # its inputs; a task that is not ours, not runnable or already final is refused, and skipped.
            request = api.StartTaskRequest(task_key=work.compute_task_key)
            start = await self._ledger_write(lambda: ledger.StartTask(request))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (*SETTLED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
                self.stats.skipped.append(f"run:{work.compute_task_key}:{exc.code().name}")
                return
            raise
        task = start.task
        running.plan_key, running.function_key = task.compute_plan_key, task.function_key
        if not start.started:
            self.stats.skipped.append(f"run:{task.key}:plan-not-runnable")
            return
        self.stats.runs_started += 1
        await self._run(ledger, work.channel, start, running)

    async def _run(self, ledger, channel: str, start: api.StartTaskResponse, running: Running) -> None:
        task = start.task
        steps: dict[str, int] = {}
        result: ExecutionResult | None = None
        try:
            running.step = "download_function"
            t0 = time.perf_counter()
            logs = self.work_dir / "builds" / f"{task.function_key}.log"
            logs.parent.mkdir(parents=True, exist_ok=True)
            code = await self.function_code(channel, task.function, logs)
            steps["download_function"] = int((time.perf_counter() - t0) * 1e6)

            running.step = "prepare_inputs"
            t0 = time.perf_counter()
            inputs = await self._prepare_inputs(channel, task, start.input_assets)
            steps["prepare_inputs"] = int((time.perf_counter() - t0) * 1e6)

            running.step = "task_execution"
            t0 = time.perf_counter()
            if running.canceled:
                return
            spec = TaskSpec(
                key=task.key,
                plan_key=task.compute_plan_key,
                function_key=task.function_key,
                code=code.directory,
                python=code.python,
                entrypoint=code.entrypoint,
                inputs=inputs,
                outputs=layout.output_files(task),
                rank=task.rank,
                timeout=self.settings.task_timeout,
            )
            running.execution = await self.executor.start(spec)
            result = await running.execution.wait()
            steps["task_execution"] = int((time.perf_counter() - t0) * 1e6)
            if running.canceled or result.canceled:
                log.info("task %s canceled while running", task.key)
                return
            if not result.succeeded:
                reason = result.error or f"exited with status {result.exit_code}"
                raise UserError(reason)

            running.step = "save_outputs"
            t0 = time.perf_counter()
            completion = await self._save_outputs(channel, task, result, set(start.registered_outputs))
            steps["save_outputs"] = int((time.perf_counter() - t0) * 1e6)
            completion.profiling_steps.extend(api.TaskProfilingStep(step=s, duration=d) for s, d in steps.items())
            # One ledger transaction: outputs, profiling and DONE together.
            if await self._settle(self._ledger_write(lambda: ledger.CompleteTask(completion))):
                self.stats.runs_done += 1
        except (UserError, build.BuildError) as exc:
            log.info("task %s failed: %s", task.key, exc)
            logs = None
            if isinstance(exc, build.BuildError):
                logs = self.work_dir / "builds" / f"{task.function_key}.log"
            elif result is not None:
                logs = self._failure_log(result, str(exc))
            await self._report_failure(channel, task.key, res.FAILED_ASSET_COMPUTE_TASK, res.EXECUTION_ERROR, logs)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (*RETRYABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise  # infrastructure away or busy: the message is redelivered and the task restarted
            log.exception("task %s: internal error", task.key)
            await self._report_failure(channel, task.key, res.FAILED_ASSET_COMPUTE_TASK, res.INTERNAL_ERROR, None)
        except Exception:
            log.exception("task %s: internal error", task.key)
            await self._report_failure(channel, task.key, res.FAILED_ASSET_COMPUTE_TASK, res.INTERNAL_ERROR, None)
        finally:
            self.executor.forget(task.key)

    @staticmethod
    def _failure_log(result: ExecutionResult, reason: str) -> Path | None:
        """The task's log (compute's own copy) with why it failed appended."""
        if result.log_path is None:
            return None
        with open(result.log_path, "a") as out:
            out.write(f"\n[tessera] the task failed: {reason}\n")
        return result.log_path

    async def _prepare_inputs(self, channel: str, task: res.ComputeTask, assets) -> list[TaskInput]:
        creds = self.creds(channel)
        specs = task.function.inputs
        cache = self.work_dir / "cache"
        inputs = []
        for asset in assets:
            multiple = specs[asset.identifier].multiple
            which = asset.WhichOneof("asset")
            if which == "data_manager":
                opener = cache / "openers" / asset.data_manager.key / "__init__.py"
                async with self._lock(opener):
                    if not opener.exists():
                        await self.files.download(
                            creds,
                            asset.data_manager.owner,
                            storage_pb2.FILE_KIND_OPENER,
                            asset.data_manager.key,
                            opener,
                            checksum=asset.data_manager.opener.checksum,
                        )
                inputs.append(TaskInput(asset.identifier, opener, False))
            elif which == "data_sample":
                folder = await self._data_sample(creds, asset.data_sample, cache)
                inputs.append(TaskInput(asset.identifier, folder, multiple))
            elif which == "model":
                model = asset.model
                if not model.HasField("address"):
                    raise UserError(f"input model {model.key} has been disabled")
                path = await self.files.cached_model(
                    creds, model.owner, model.key, model.address.checksum, model.compute_task_key
                )
                inputs.append(TaskInput(asset.identifier, path, multiple))
        return inputs

    def _lock(self, path: Path) -> asyncio.Lock:
        """One lock per cached file: concurrent tasks wait for the first one's download."""
        return self._cache_locks.setdefault(str(path), asyncio.Lock())

    async def _data_sample(self, creds: OrgCredentials, sample: res.DataSample, cache: Path) -> Path:
        folder = cache / "data_samples" / sample.key
        async with self._lock(folder):
            return await self._fetch_data_sample(creds, sample, folder)

    async def _fetch_data_sample(self, creds: OrgCredentials, sample: res.DataSample, folder: Path) -> Path:
        if (folder / ".ready").exists():
            return folder / "data"
        archive = folder.parent / f"{sample.key}.archive"
        await self.files.download(creds, sample.owner, storage_pb2.FILE_KIND_DATA_SAMPLE, sample.key, archive)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        archives.extract(archive, folder / "data")
        archive.unlink(missing_ok=True)
        (folder / ".ready").touch()
        return folder / "data"

    async def _save_outputs(
        self, channel: str, task: res.ComputeTask, result: ExecutionResult, registered: set[str]
    ) -> api.CompleteTaskRequest:
        """Upload the models, read the performances; what the ledger records when the task completes.
        Outputs an earlier attempt registered are kept (a restart)."""
        creds = self.creds(channel)
        completion = api.CompleteTaskRequest(task_key=task.key)
        for identifier in sorted(task.outputs):
            if identifier in registered:
                continue
            path = result.outputs.get(identifier)
            if path is None:
                raise UserError(f"the output {identifier!r} was not written (or is not a regular file)")
            kind = task.function.outputs[identifier].kind
            if kind == res.ASSET_PERFORMANCE:
                try:
                    value = layout.read_performance(path)
                except (ValueError, KeyError, TypeError) as exc:
                    raise UserError(f"the performance output {identifier!r} is not valid: {exc}") from exc
                completion.performances.append(
                    api.TaskPerformance(compute_task_output_identifier=identifier, performance_value=value)
                )
                continue
            model_key = str(uuid.uuid4())
            stored = await self.files.upload(
                creds, path, storage_pb2.FILE_KIND_MODEL, model_key, salt=task.key, filename=f"{identifier}.model"
            )
            # The results folder is compute's own (the jail never had it): the file is what storage hashed.
            self.files.keep_model(model_key, path)
            address = res.Addressable(
                checksum=stored.checksum,
                storage_address=f"{self.settings.public_url.rstrip('/')}/model/{model_key}/file/",
            )
            completion.models.append(
                api.NewModel(
                    key=model_key, compute_task_key=task.key, compute_task_output_identifier=identifier, address=address
                )
            )
        return completion

    async def _report_failure(
        self, channel: str, key: str, asset_type: int, error_type: int, logs: Path | None
    ) -> None:
        ledger = self.ledger(channel)
        request = api.RegisterFailureReportRequest(asset_key=key, asset_type=asset_type, error_type=error_type)
        if logs is not None and logs.exists() and error_type != res.INTERNAL_ERROR:
            await self.files.upload(self.creds(channel), logs, storage_pb2.FILE_KIND_LOGS, key, filename="logs.txt")
            request.logs_address.CopyFrom(
                res.Addressable(
                    checksum=file_checksum(logs),
                    storage_address=f"{self.settings.public_url.rstrip('/')}/logs/{key}/file/",
                )
            )
        await self._settle(ledger.RegisterFailureReport(request))

    async def _profile(self, ledger, key: str, step: str, micros: int) -> None:
        await self._settle(
            ledger.RegisterProfilingStep(api.RegisterProfilingStepRequest(asset_key=key, step=step, duration=micros))
        )

    # ------------------------------------------------------------------------------------ teardown
    async def _on_teardown(self, data: bytes) -> None:
        work = work_pb2.Teardown.FromString(data)
        for running in list(self.running.values()):
            if running.plan_key == work.compute_plan_key and running.execution is not None:
                running.canceled = True
                await running.execution.cancel()
        await self.executor.release(work.compute_plan_key)

    async def cancel(self, task_key: str) -> bool:
        """Stop a task of this worker now (the ledger has already recorded it CANCELED)."""
        running = self.running.get(task_key)
        if running is None:
            return False
        running.canceled = True
        if running.execution is not None:
            await running.execution.cancel()
        return True

    # ----------------------------------------------------------------------------------- reconcile
    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_every)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reconciliation failed", exc_info=True)

    async def reconcile(self, channels: list[str] | None = None) -> list[str]:
        """Re-queue this worker's tasks the ledger says are runnable or running but nothing runs.

        A task queued or received in the last ``ack_wait`` seconds is left alone, and so is one first
        seen idle less than ``ack_wait`` ago: its message may still be in flight. Returns the re-queued
        task keys.
        """
        if self.js is None:
            return []
        requeued = []
        horizon = time.monotonic() - self.settings.ack_wait
        self._queued_at = {key: at for key, at in self._queued_at.items() if at > horizon}  # bounded
        for channel in channels or Channels.parse(self.settings.channels).of(self.org) or [""]:
            reply = await self.ledger(channel).ListTasks(
                api.ListTasksRequest(
                    worker=[self.org],
                    status=[res.STATUS_WAITING_FOR_EXECUTOR_SLOT, res.STATUS_EXECUTING],
                    page_size=1000,
                )
            )
            now = time.monotonic()
            listed = {task.key for task in reply.tasks}
            for key in [k for k in self._stranded_since if k not in listed]:
                del self._stranded_since[key]  # it moved on
            for task in reply.tasks:
                if task.key in self.running or now - self._queued_at.get(task.key, -1e9) < self.settings.ack_wait:
                    continue
                # Only a task still idle an ack_wait after it was first seen idle: a task that just became
                # runnable has its work message in flight from the event service, and a second copy would
                # only be skipped (the worker claims a task once) after costing a ledger round trip.
                since = self._stranded_since.setdefault(task.key, now)
                if now - since < self.settings.ack_wait:
                    continue
                del self._stranded_since[task.key]
                self._queued_at[task.key] = now
                message = work_pb2.RunTask(
                    compute_task_key=task.key, compute_plan_key=task.compute_plan_key, channel=channel
                )
                await self.js.publish(
                    subjects.work_subject(self.org, "run"),
                    message.SerializeToString(),
                    headers={"Nats-Msg-Id": f"reconcile:{task.key}:{int(time.time())}"},
                )
                requeued.append(task.key)
        if requeued:
            log.info("reconciler re-queued %d task(s)", len(requeued))
        return requeued
