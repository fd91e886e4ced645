"""Routes only the web frontend's pages read (frontend contract §4), assembled from the ledger's list RPCs.

* ``GET /compute_plan_metadata/``: the metadata keys of every plan the caller sees, a bare sorted list.
* ``GET /compute_plan/{key}/task/``: ``ListTasks`` restricted to one plan, with every filter, ordering and
  page of ``/task/`` (bound by the same transcoder rules).
* ``GET /task/{key}/input_assets/``: the transcoded route, with ``kind`` a comma-separated list.
* ``GET /compute_plan/{key}/workflow_graph/``: one node per task (with its function's input and output
  specs) and one edge per parent-output → child-input link; 403 above :data:`WORKFLOW_GRAPH_MAX_TASKS`.
* ``GET /performance/export/``: Substra's CSV of the performances of the plans the filters select,
  streamed plan by plan and page by page: never built whole in memory.

Each reads the ledger as the caller (its channel's visibility). Functions' specs come from a protobuf
map, so their order is the identifiers' (sorted), the only stable one a map offers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from typing import Any

from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from gateway.errors import HttpError
from gateway.transcoder import QUERY_ALIASES, RpcRoute, Transcoder, bind, render_reply
from gateway.upstreams import Principal

WORKFLOW_GRAPH_MAX_TASKS = 5000
# The largest page the ledger serves; it clamps larger requests.
BATCH = 1000
CSV_HEAD = ("compute_plan_key", "compute_plan_name", "compute_plan_tag", "compute_plan_status",
            "compute_plan_start_date", "compute_plan_end_date")  # fmt: skip
CSV_TAIL = ("function_name", "worker", "task_rank", "task_round", "performance")


def _timestamp(message: Message, name: str) -> str:
    if not message.HasField(name):
        return ""
    return getattr(message, name).ToDatetime().isoformat() + "Z"


def _specs(declared) -> list[dict[str, str]]:
    return [{"identifier": name, "kind": res.AssetKind.Name(declared[name].kind)} for name in sorted(declared)]


def _csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


class Pages:
    """The §4 routes; ``routes`` are the transcoded GET routes by RPC name (their query binding is reused)."""

    def __init__(self, transcoder: Transcoder, routes: dict[str, RpcRoute]) -> None:
        self._transcoder = transcoder
        self._routes = routes

    def _asset(self):
        return self._transcoder.upstreams.asset()

    async def _call(self, method: str, message: Message, principal: Principal) -> Message:
        return await getattr(self._asset(), method)(
            message, metadata=principal.metadata(), timeout=self._transcoder.upstreams.call_timeout
        )

    async def _every(self, method: str, message: Message, items: str, principal: Principal) -> AsyncIterator:
        """Every item of a list RPC, page after page."""
        message.page_size = BATCH
        while True:
            reply = await self._call(method, message, principal)
            for item in getattr(reply, items):
                yield item
            if not reply.next_page_token:
                return
            message.page = 0
            message.page_token = reply.next_page_token

    # --------------------------------------------------------------------------- plan metadata keys
    async def compute_plan_metadata(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /compute_plan_metadata/``: a bare list of the metadata keys used by the visible plans."""
        keys: set[str] = set()
        async for plan in self._every("ListComputePlans", api.ListComputePlansRequest(), "compute_plans", principal):
            keys.update(plan.metadata)
        return JSONResponse(sorted(keys))

    # ------------------------------------------------------------------------------- a plan's tasks
    async def plan_tasks(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /compute_plan/{key}/task/``: ``/task/`` with the plan fixed by the path."""
        route = self._routes["ListTasks"]
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "compute_plan_key"]
        message = bind(route, {}, None, [*query, ("compute_plan_key", params["key"])])
        reply = await self._transcoder.invoke(route, message, principal)
        return JSONResponse(render_reply(route, request, message, reply))

    # --------------------------------------------------------------------------- a task's input assets
    async def input_assets(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /task/{key}/input_assets/``: ``kind`` is a comma-separated list (``kind=A,B``), bound to the
        request's repeated ``kinds`` (its ``kind`` takes one value)."""
        route = self._routes["GetTaskInputAssets"]
        aliases = QUERY_ALIASES["GetTaskInputAssets"]
        query = [(aliases.get(k, k), v) for k, v in request.query_params.multi_items()]
        message = bind(route, params, None, query)
        reply = await self._transcoder.invoke(route, message, principal)
        return JSONResponse(render_reply(route, request, message, reply))

    # ---------------------------------------------------------------------------- the workflow graph
    async def workflow_graph(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /compute_plan/{key}/workflow_graph/``: ``{"tasks", "edges"}`` of a plan."""
        key = params["key"]
        await self._call("GetComputePlan", api.GetComputePlanRequest(key=key), principal)  # 404 when not visible
        count = await self._call("ListTasks", api.ListTasksRequest(compute_plan_key=[key], page_size=1), principal)
        if count.total_size > WORKFLOW_GRAPH_MAX_TASKS:
            raise HttpError(
                403,
                f"This compute plan has {count.total_size} tasks: the workflow graph is only drawn up to "
                f"{WORKFLOW_GRAPH_MAX_TASKS}",
            )
        tasks, edges = [], []
        listing = api.ListTasksRequest(compute_plan_key=[key], ordering="creation_date")
        async for task in self._every("ListTasks", listing, "tasks", principal):
            tasks.append(
                {
                    "key": task.key,
                    "rank": task.rank,
                    "function_name": task.function.name,
                    "worker": task.worker,
                    "status": res.ComputeTaskStatus.Name(task.status),
                    "inputs_specs": _specs(task.function.inputs),
                    "outputs_specs": _specs(task.function.outputs),
                }
            )
            for task_input in task.inputs:
                if task_input.WhichOneof("ref") == "parent_task_output":
                    edges.append(
                        {
                            "source_task_key": task_input.parent_task_output.parent_task_key,
                            "source_output_identifier": task_input.parent_task_output.output_identifier,
                            "target_task_key": task.key,
                            "target_input_identifier": task_input.identifier,
                        }
                    )
        tasks.sort(key=lambda t: t["rank"])
        return JSONResponse({"tasks": tasks, "edges": edges})

    # ------------------------------------------------------------------------------ the CSV export
    async def performance_export(self, request: Request, principal: Principal, params: dict) -> StreamingResponse:
        """``GET /performance/export/``: CSV of the performances of the selected plans (``key`` and the plan
        filters), with ``metadata_columns`` from the plans' metadata, optionally only ``identifier``."""
        plans = bind(self._routes["ListComputePlans"], {}, None, request.query_params.multi_items())
        plans.page_size = BATCH
        first = await self._call("ListComputePlans", plans, principal)  # a bad filter is a 4xx, not a broken CSV
        columns = [c.strip() for c in request.query_params.get("metadata_columns", "").split(",") if c.strip()]
        identifiers = {i.strip() for i in request.query_params.get("identifier", "").split(",") if i.strip()}
        names: dict[str, str] = {}

        async def function_name(key: str) -> str:
            if key not in names:
                reply = await self._call("GetFunction", api.GetFunctionRequest(key=key), principal)
                names[key] = reply.function.name
            return names[key]

        async def rows() -> AsyncIterator[str]:
            yield _csv_line([*CSV_HEAD, *columns, *CSV_TAIL])
            page = first
            while True:
                for plan in page.compute_plans:
                    head = [plan.key, plan.name, plan.tag, res.ComputePlanStatus.Name(plan.status),
                            _timestamp(plan, "start_date"), _timestamp(plan, "end_date")]  # fmt: skip
                    meta = [plan.metadata.get(column, "") for column in columns]
                    performances = api.GetComputePlanPerformancesRequest(key=plan.key)
                    async for perf in self._every("GetComputePlanPerformances", performances, "results", principal):
                        if identifiers and perf.identifier not in identifiers:
                            continue
                        task = perf.compute_task
                        round_idx = task.round_idx if task.HasField("round_idx") else ""
                        name = await function_name(task.function_key)
                        # Stored as float32: 7 significant digits are all it holds (0.9, not 0.8999999761581421).
                        value = f"{perf.perf:.7g}"
                        yield _csv_line([*head, *meta, name, task.worker, task.rank, round_idx, value])
                if not page.next_page_token:
                    return
                plans.page, plans.page_token = 0, page.next_page_token
                page = await self._call("ListComputePlans", plans, principal)

        return StreamingResponse(
            rows(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="compute_plans.csv"'},
        )
