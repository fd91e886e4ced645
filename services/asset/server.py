"""gRPC handlers of the ledger: protobuf in, one unit of work around the domain rules, protobuf out.

Every write runs in one serializable transaction (retried on serialization failure); the domain's
``commit`` ends it (plan statuses, then the events). Reads run in a plain transaction. The unit of
work hands each call its repositories (the rules' store, the list queries), never a session. The
caller's organization and channel come from the interceptor (its credential), never from a request
field.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import datasets, functions, organizations, outputs, plans, tasks, work
from services.asset.domain.commit import commit
from services.asset.domain.common import Context, in_declared_order
from services.asset.events import MAX_HOLD_SECONDS, Hub, RecentEvents, event_batches, wakes
from services.asset.plan_locks import PlanLocks
from services.kit import pagination, telemetry
from services.kit.db import UnitOfWork
from services.kit.errors import DomainError
from services.kit.identity import Caller, current_caller

if TYPE_CHECKING:
    from services.asset.store.queries import Queries
    from services.asset.store.repositories import Repositories

T = TypeVar("T")
REPLAY_BATCH = 100


def now() -> dt.datetime:
    """Transaction time of the ledger (UTC); never the client's clock."""
    return dt.datetime.now(dt.UTC)


# ------------------------------------------------------------------------------- protobuf → domain
def _optional(message, name: str):
    """A message field's value, or None when it is not set."""
    return getattr(message, name) if message.HasField(name) else None


def new_task(given: api.NewComputeTask) -> tasks.NewTask:
    """A task to register, as the domain takes it."""
    return tasks.NewTask(
        key=given.key,
        compute_plan_key=given.compute_plan_key,
        function_key=given.function_key,
        worker=given.worker,
        tag=given.tag,
        metadata=in_declared_order(given.metadata, given.metadata_order),
        inputs=[
            tasks.NewTaskInput(
                identifier=i.identifier,
                asset_key=i.asset_key,
                parent_task_key=i.parent_task_key,
                parent_task_output_identifier=i.parent_task_output_identifier,
            )
            for i in given.inputs
        ],
        outputs={
            name: tasks.NewTaskOutput(permissions=o.permissions, transient=o.transient)
            for name, o in in_declared_order(given.outputs, given.outputs_order).items()
        },
    )


def new_model(given: api.NewModel) -> outputs.NewModel:
    """A model to register, as the domain takes it."""
    return outputs.NewModel(
        key=given.key,
        compute_task_key=given.compute_task_key,
        compute_task_output_identifier=given.compute_task_output_identifier,
        address=given.address,
    )


@dataclass
class _Transition:
    """A task transition waiting for its plan's turn, with what its unit of work needs."""

    caller: Caller
    trace_context: dict[str, str]
    work: Callable[[Context], Any]
    outcome: asyncio.Future
    task_key: str = ""  # the task a transition moves (read for the whole group at once)

    @classmethod
    def of(cls, work: Callable[[Context], Any], task_key: str = "") -> _Transition:
        """``work`` for the current call: its caller and trace, an outcome to wait for."""
        loop = asyncio.get_running_loop()
        return cls(current_caller(), telemetry.trace_carrier(), work, loop.create_future(), task_key)


class _Refused(Exception):
    """The rules refused the transition at ``index`` of a group: the group is rolled back and runs again without it."""

    def __init__(self, index: int, error: DomainError) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


def _write_group(repositories: Repositories, group: list[_Transition]) -> tuple[list, list[ev.Event]]:
    """One transaction for writes of one channel (transitions of one plan, or a single write): each work on its own
    context (its caller, its events) sharing the store and the plans, then one :func:`commit` of every event (and
    the plans' derived status) on the last context."""
    store = repositories.store(group[0].caller.channel)
    keys = [item.task_key for item in group if item.task_key]
    if len(keys) > 1:  # the group's tasks (and their functions) in one read, not one per transition
        store.get_tasks(keys)
    at = now()
    shared_plans: dict[str, res.ComputePlan] = {}
    dirty: set[str] = set()
    results, events = [], []
    for index, item in enumerate(group):
        ctx = Context(
            caller=item.caller,
            now=at,
            store=store,
            trace_context=item.trace_context,
            plans=shared_plans,
            dirty_plans=dirty,
        )
        try:
            results.append(item.work(ctx))
        except DomainError as exc:
            raise _Refused(index, exc) from exc
        events += ctx.events
    ctx.events = events
    commit(ctx)
    return results, ctx.events


class AssetService(api_grpc.AssetServiceServicer):
    """The ledger's gRPC API."""

    def __init__(
        self,
        writes: UnitOfWork[Repositories],
        reads: UnitOfWork[Repositories],
        hub: Hub,
        recent: RecentEvents | None = None,
    ) -> None:
        self._writes = writes
        self._reads = reads
        self._hub = hub
        self._recent = RecentEvents() if recent is None else recent
        self._plan_locks = PlanLocks()
        self._queued: dict[tuple[str, str], list[_Transition]] = {}  # per (channel, plan): waiting for its lock

    async def _write(self, work: Callable[[Context], T]) -> T:
        """``work`` in a transaction of its own; its events are appended and announced once it commits."""
        mine = _Transition.of(work)
        await self._commit_group([mine])
        return mine.outcome.result()

    async def _task_write(self, task_key: str, work: Callable[[Context], T]) -> T:
        """:meth:`_write` for a transition of one task: queued behind the other transitions of its plan in this
        process (:mod:`services.asset.plan_locks`), and committed together with those queued with it."""
        channel = current_caller().channel
        plan = self._plan_locks.plan_of(channel, task_key)
        if plan is None:
            try:
                task = await self._read(lambda ctx: tasks.get_task(ctx, task_key))
            except DomainError:
                return await self._write(work)  # the write reports what is wrong with the key
            self._plan_locks.learn(channel, [task])
            plan = task.compute_plan_key
        mine = _Transition.of(work, task_key)
        queued = self._queued.setdefault((channel, plan), [])
        queued.append(mine)
        async with self._plan_locks.held(channel, plan):
            if not mine.outcome.done():  # not committed by the group of an earlier holder: take the queue
                group = self._queued.pop((channel, plan))
                await asyncio.shield(self._commit_group(group))  # the others' outcomes hang on it too
        return mine.outcome.result()

    async def _commit_group(self, group: list[_Transition]) -> None:
        """Commit ``group`` in one transaction: each transition's work in turn, then the plans they touched and
        every event at once. A transition the rules refuse gets its error, and the others run again without it."""
        while group:
            try:
                results, emitted = await self._writes.run(
                    lambda repositories, group=group: _write_group(repositories, group)
                )
            except _Refused as refused:
                group[refused.index].outcome.set_exception(refused.error)
                group = group[: refused.index] + group[refused.index + 1 :]
                continue
            except asyncio.CancelledError:
                for item in group:
                    item.outcome.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every caller of the group gets what stopped it
                for item in group:
                    if not item.outcome.done():
                        item.outcome.set_exception(exc)
                return
            if emitted:
                self._recent.add(emitted)
                await self._hub.notify()
            for item, result in zip(group, results, strict=True):
                item.outcome.set_result(result)
            return

    async def _read(self, work: Callable[[Context], T]) -> T:
        caller = current_caller()
        return await self._reads.run(
            lambda repositories: work(Context(caller=caller, now=now(), store=repositories.store(caller.channel)))
        )

    async def _query(self, work: Callable[[Queries, Context], T]) -> T:
        """A list query, with a context for the rules' checks (existence, permissions) it may need."""
        caller = current_caller()

        def unit(repositories: Repositories) -> T:
            ctx = Context(caller=caller, now=now(), store=repositories.store(caller.channel))
            return work(repositories.queries(caller.channel), ctx)

        return await self._reads.run(unit)

    # organizations
    async def RegisterOrganization(self, request, context):
        org = await self._write(lambda ctx: organizations.register(ctx, request.address))
        org.is_current = True
        return api.RegisterOrganizationResponse(organization=org)

    async def ListOrganizations(self, request, context):
        caller = current_caller()
        page = await self._query(lambda q, ctx: q.organizations(request))
        for org in page.items:
            org.is_current = org.id == caller.org_id
        return api.ListOrganizationsResponse(
            organizations=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    # data managers and samples
    async def RegisterDataManager(self, request, context):
        new = datasets.NewDataManager(
            key=request.key,
            name=request.name,
            description=request.description,
            opener=request.opener,
            type=request.type,
            permissions=request.permissions,
            logs_permission=_optional(request, "logs_permission"),
            metadata=in_declared_order(request.metadata, request.metadata_order),
        )
        manager = await self._write(lambda ctx: datasets.register_data_manager(ctx, new))
        return api.RegisterDataManagerResponse(data_manager=manager)

    async def GetDataManager(self, request, context):
        manager = await self._read(lambda ctx: datasets.get_data_manager(ctx, request.key, with_samples=True))
        return api.GetDataManagerResponse(data_manager=manager)

    async def ListDataManagers(self, request, context):
        page = await self._query(lambda q, ctx: q.data_managers(request))
        return api.ListDataManagersResponse(
            data_managers=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def UpdateDataManager(self, request, context):
        await self._write(lambda ctx: datasets.update_data_manager(ctx, request.key, request.name))
        return api.UpdateDataManagerResponse()

    async def RegisterDataSamples(self, request, context):
        new = [
            datasets.NewDataSample(key=s.key, data_manager_keys=list(s.data_manager_keys), checksum=s.checksum)
            for s in request.data_samples
        ]
        samples = await self._write(lambda ctx: datasets.register_data_samples(ctx, new))
        return api.RegisterDataSamplesResponse(data_samples=samples)

    async def LinkDataSamples(self, request, context):
        samples = await self._write(
            lambda ctx: datasets.link_data_samples(ctx, list(request.data_manager_keys), list(request.data_sample_keys))
        )
        return api.LinkDataSamplesResponse(data_samples=samples)

    async def GetDataSample(self, request, context):
        sample = await self._read(lambda ctx: datasets.get_data_sample(ctx, request.key))
        return api.GetDataSampleResponse(data_sample=sample)

    async def ListDataSamples(self, request, context):
        page = await self._query(lambda q, ctx: q.data_samples(request))
        return api.ListDataSamplesResponse(
            data_samples=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    # functions
    async def RegisterFunction(self, request, context):
        new = functions.NewFunction(
            key=request.key,
            name=request.name,
            description=request.description,
            archive=request.archive,
            permissions=request.permissions,
            metadata=in_declared_order(request.metadata, request.metadata_order),
            inputs=in_declared_order(request.inputs, request.inputs_order),
            outputs=in_declared_order(request.outputs, request.outputs_order),
        )
        return api.RegisterFunctionResponse(
            function=await self._write(lambda ctx: functions.register_function(ctx, new))
        )

    async def GetFunction(self, request, context):
        return api.GetFunctionResponse(function=await self._read(lambda ctx: functions.get_function(ctx, request.key)))

    async def ListFunctions(self, request, context):
        page = await self._query(lambda q, ctx: q.functions(request))
        return api.ListFunctionsResponse(
            functions=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def UpdateFunction(self, request, context):
        image = _optional(request, "image")
        await self._write(lambda ctx: functions.update_function(ctx, request.key, request.name, image))
        return api.UpdateFunctionResponse()

    async def ApplyFunctionAction(self, request, context):
        await self._write(lambda ctx: functions.apply_action(ctx, request.function_key, request.action, request.reason))
        return api.ApplyFunctionActionResponse()

    # compute plans
    async def RegisterComputePlan(self, request, context):
        new = plans.NewPlan(
            key=request.key,
            name=request.name,
            tag=request.tag,
            metadata=in_declared_order(request.metadata, request.metadata_order),
            creator=request.creator,
        )
        plan = await self._write(lambda ctx: plans.register_plan(ctx, new))
        return api.RegisterComputePlanResponse(compute_plan=plans.present(plan, now()))

    async def GetComputePlan(self, request, context):
        plan = await self._read(lambda ctx: plans.get_plan(ctx, request.key))
        return api.GetComputePlanResponse(compute_plan=plans.present(plan, now()))

    async def ListComputePlans(self, request, context):
        page = await self._query(lambda q, ctx: q.plans(request))
        moment = now()
        return api.ListComputePlansResponse(
            compute_plans=[plans.present(p, moment) for p in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateComputePlan(self, request, context):
        await self._write(lambda ctx: plans.update_plan(ctx, request.key, request.name))
        return api.UpdateComputePlanResponse()

    async def CancelComputePlan(self, request, context):
        await self._write(lambda ctx: plans.cancel_plan(ctx, request.key))
        return api.CancelComputePlanResponse()

    async def GetComputePlanPerformances(self, request, context):
        def perf(q: Queries, ctx: Context):
            plans.get_plan(ctx, request.key)
            return q.plan_performances(request)

        page, ranks, rounds = await self._query(perf)
        results = []
        for row in page.items:
            performance, function_key, rank, worker, round_idx = row
            task = api.PerformanceComputeTask(
                key=performance.compute_task_key, function_key=function_key, rank=rank, worker=worker
            )
            if round_idx is not None and round_idx.lstrip("-").isdigit():
                task.round_idx = int(round_idx)
            results.append(
                api.ComputePlanPerformance(compute_task=task, identifier=performance.identifier, perf=performance.value)
            )
        return api.GetComputePlanPerformancesResponse(
            results=results,
            next_page_token=page.next_page_token,
            total_size=page.total_size,
            compute_plan_statistics=api.ComputePlanStatistics(
                compute_tasks_distinct_ranks=ranks, compute_tasks_distinct_rounds=rounds
            ),
        )

    # tasks
    async def RegisterTasks(self, request, context):
        new = [new_task(t) for t in request.tasks]
        channel = current_caller().channel
        plans = {t.compute_plan_key for t in request.tasks}  # one per batch, as the SDK sends them
        held = self._plan_locks.held(channel, plans.pop()) if len(plans) == 1 else contextlib.nullcontext()
        async with held:
            registered = await self._write(lambda ctx: tasks.register_tasks(ctx, new))
        self._plan_locks.learn(channel, registered)
        return api.RegisterTasksResponse(tasks=registered)

    async def GetTask(self, request, context):
        return api.GetTaskResponse(task=await self._read(lambda ctx: tasks.get_task(ctx, request.key)))

    async def ListTasks(self, request, context):
        page = await self._query(lambda q, ctx: q.tasks(request))
        return api.ListTasksResponse(tasks=page.items, next_page_token=page.next_page_token, total_size=page.total_size)

    async def ApplyTaskAction(self, request, context):
        await self._task_write(
            request.task_key, lambda ctx: tasks.apply_action(ctx, request.task_key, request.action, request.reason)
        )
        return api.ApplyTaskActionResponse()

    async def StartTask(self, request, context):
        started = await self._task_write(request.task_key, lambda ctx: work.start_task(ctx, request.task_key))
        return _start_response(started)

    async def CompleteTask(self, request, context):
        done = work.Completion(
            task_key=request.task_key,
            models=[new_model(m) for m in request.models],
            performances=[
                work.TaskPerformance(p.compute_task_output_identifier, p.performance_value)
                for p in request.performances
            ],
            profiling_steps=[work.TaskStep(s.step, s.duration) for s in request.profiling_steps],
        )
        completed = await self._task_write(
            request.task_key, lambda ctx: work.complete_task(ctx, done, request.start_ready)
        )
        return api.CompleteTaskResponse(
            task=completed.task, ready=completed.ready, started=[_start_response(s) for s in completed.started]
        )

    async def GetTaskInputAssets(self, request, context):
        assets = await self._read(lambda ctx: tasks.input_assets(ctx, request.key))
        if request.identifier:
            assets = [a for a in assets if a.identifier == request.identifier]
        kinds = {k for k in (request.kind, *request.kinds) if k}
        if kinds:
            assets = [a for a in assets if a.kind in kinds]
        page = pagination.page_request(request, 100, 1000)
        pagination.check_in_range(page, len(assets), bool(request.page))
        return api.GetTaskInputAssetsResponse(
            assets=assets[page.offset : page.offset + page.size],
            next_page_token=pagination.next_token(page, len(assets)),
            total_size=len(assets),
        )

    async def ListTaskOutputAssets(self, request, context):
        def run(q: Queries, ctx: Context):
            tasks.get_task(ctx, request.key)
            return q.output_assets(request)

        page = await self._query(run)
        return api.ListTaskOutputAssetsResponse(
            assets=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    # models, performances, failures, profiling
    async def RegisterModels(self, request, context):
        new = [new_model(m) for m in request.models]
        return api.RegisterModelsResponse(models=await self._write(lambda ctx: outputs.register_models(ctx, new)))

    async def GetModel(self, request, context):
        return api.GetModelResponse(model=await self._read(lambda ctx: outputs.get_model(ctx, request.key)))

    async def ListModels(self, request, context):
        page = await self._query(lambda q, ctx: q.models(request))
        return api.ListModelsResponse(
            models=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def DisableOutput(self, request, context):
        models = await self._write(
            lambda ctx: outputs.disable_output(ctx, request.compute_task_key, request.identifier)
        )
        return api.DisableOutputResponse(models=models)

    async def RegisterPerformance(self, request, context):
        performance = await self._write(
            lambda ctx: outputs.register_performance(
                ctx, request.compute_task_key, request.compute_task_output_identifier, request.performance_value
            )
        )
        return api.RegisterPerformanceResponse(performance=performance)

    async def ListPerformances(self, request, context):
        page = await self._query(lambda q, ctx: q.performances(request))
        return api.ListPerformancesResponse(
            performances=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def RegisterFailureReport(self, request, context):
        logs = _optional(request, "logs_address")
        report = await self._write(
            lambda ctx: outputs.register_failure_report(
                ctx, request.asset_key, request.asset_type, request.error_type, logs
            )
        )
        return api.RegisterFailureReportResponse(failure_report=report)

    async def GetFailureReport(self, request, context):
        report = await self._read(lambda ctx: outputs.get_failure_report(ctx, request.asset_key))
        return api.GetFailureReportResponse(failure_report=report)

    async def RegisterProfilingStep(self, request, context):
        step = await self._write(
            lambda ctx: outputs.register_profiling_step(ctx, request.asset_key, request.step, request.duration)
        )
        return api.RegisterProfilingStepResponse(profiling_step=step)

    async def ListProfilingSteps(self, request, context):
        page = await self._query(lambda q, ctx: q.profiling_steps(request))
        return api.ListProfilingStepsResponse(
            profiling_steps=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    # permissions
    async def CanProcess(self, request, context):
        access = await self._read(
            lambda ctx: outputs.can_process(
                ctx, request.asset_kind, request.asset_key, request.organization_id, download=request.download
            )
        )
        return api.CanProcessResponse(allowed=access.allowed, disabled=access.disabled)

    async def CanAccessLogs(self, request, context):
        allowed = await self._read(lambda ctx: outputs.can_access_logs(ctx, request.asset_key, request.organization_id))
        return api.CanAccessLogsResponse(allowed=allowed)

    # events
    async def QueryEvents(self, request, context):
        page = await self._query(lambda q, ctx: q.events(request))
        return api.QueryEventsResponse(
            events=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def SubscribeEvents(self, request, context):
        """History after the cursor, then live events, gap-free and in position order (one message per event,
        or per batch read when the caller asks for batches)."""
        position = request.after_position
        caller = current_caller()
        hold = min(max(request.hold_milliseconds, 0) / 1000, MAX_HOLD_SECONDS) if request.batched else 0.0
        held_since: float | None = None  # when the events waiting unsent were first seen
        checked = 0  # how many of them are known not to wake the caller
        loop = asyncio.get_running_loop()
        while True:
            seen = self._hub.generation
            batch = self._recent.after(caller.channel, position, REPLAY_BATCH)
            if batch is None:
                batch = await self._query(lambda q, ctx, after=position: q.events_after(after, REPLAY_BATCH))
            quiet = hold and batch and len(batch) < REPLAY_BATCH
            if quiet and not any(wakes(e, caller.org_id) for e in batch[checked:]):
                checked = len(batch)
                held_since = held_since if held_since is not None else loop.time()
                remaining = hold - (loop.time() - held_since)
                if remaining > 0:  # none asks the caller to act: wait for more, or for the hold to end
                    await self._hub.wait(seen, timeout=remaining)
                    continue
            held_since, checked = None, 0
            if request.batched:
                for run in event_batches(batch):
                    yield api.SubscribeEventsResponse(events=run)
                    position = run[-1].position
            else:
                for event in batch:
                    yield api.SubscribeEventsResponse(event=event)
                    position = event.position
            if len(batch) < REPLAY_BATCH:
                await self._hub.wait(seen, timeout=1.0)


def _start_response(started: work.Started) -> api.StartTaskResponse:
    return api.StartTaskResponse(
        task=started.task,
        started=started.started,
        input_assets=started.inputs,
        registered_outputs=started.registered,
    )
