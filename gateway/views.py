"""The few Substra endpoints that are neither transcoded nor uploads or downloads.

* ``GET /healthz``: the health of each upstream service (503 unless every one serves).
* ``GET /info/`` (contract §2.2, §6): public; with a valid token it adds what the SDK requires
  (``channel``, ``version``, ``orchestrator_version``, ``config.model_export_enabled``, the user).
* ``POST /data_sample/bulk_update/``: form-urlencoded (the SDK) or JSON links → ``LinkDataSamples``.
* ``GET /function/{key}/profiling/``, ``/task_profiling/``, ``/task_profiling/{key}/``: the
  ledger's profiling steps in Substra 1.0's shapes, durations as integer microseconds (frontend contract §4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from tessera.asset.v1 import asset_service_pb2 as api

from gateway.errors import HttpError
from gateway.inputs import json_or_form
from gateway.settings import GatewaySettings
from gateway.transcoder import page_links
from gateway.upstreams import Principal, Upstreams

# Fields of a bulk_update form: the SDK sends one per key, managers and samples together.
MAX_LINKED = 10_000


class Views:
    """``/healthz``, ``/info/``, data sample links and profiling."""

    def __init__(
        self,
        settings: GatewaySettings,
        upstreams: Upstreams,
        authenticate: Callable[[Request, bool], Awaitable[Principal]],
        export_enabled: Callable[[str], bool],
    ) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._authenticate = authenticate
        self._export_enabled = export_enabled

    async def health(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``GET /healthz``: ``{"status", "upstreams"}``, 503 when an upstream does not serve."""
        statuses = await self._upstreams.health()
        healthy = all(status == "SERVING" for status in statuses.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", "upstreams": statuses}, status_code=200 if healthy else 503
        )

    async def info(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``GET /info/``: anonymous callers get the organization only."""
        org = self._settings.org_id
        data: dict[str, Any] = {
            "host": str(request.base_url).rstrip("/"),
            "organization_id": org,
            "organization_name": org,
            "config": {},
            "auth": {},
        }
        if request.headers.get("authorization"):
            principal = await self._authenticate(request, False)
            data.update(
                {
                    "channel": principal.channel,
                    "version": self._settings.version,
                    "orchestrator_version": self._settings.version,
                    "config": {"model_export_enabled": self._export_enabled(principal.channel)},
                    "user": principal.username,
                    "user_role": principal.role,
                }
            )
        return JSONResponse(data)

    async def bulk_update(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``POST /data_sample/bulk_update/``: link data samples to more data managers."""
        data = await json_or_form(request, max_fields=MAX_LINKED)
        if isinstance(data, dict):
            managers, samples = _str_list(data, "data_manager_keys"), _str_list(data, "data_sample_keys")
        else:
            managers = [v for v in data.getlist("data_manager_keys") if isinstance(v, str)]
            samples = [v for v in data.getlist("data_sample_keys") if isinstance(v, str)]
        reply = await self._upstreams.asset().LinkDataSamples(
            api.LinkDataSamplesRequest(data_manager_keys=managers, data_sample_keys=samples),
            metadata=principal.metadata(),
            timeout=self._upstreams.call_timeout,
        )
        return JSONResponse({"keys": [sample.key for sample in reply.data_samples]})

    async def _steps(self, principal: Principal, asset_key: str, page: int = 0, page_size: int = 0):
        return await self._upstreams.asset().ListProfilingSteps(
            api.ListProfilingStepsRequest(asset_key=asset_key, page=page, page_size=page_size),
            metadata=principal.metadata(),
            timeout=self._upstreams.call_timeout,
        )

    async def function_profiling(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /function/{key}/profiling/``: the build steps of a function."""
        await self._upstreams.asset().GetFunction(
            api.GetFunctionRequest(key=params["key"]),
            metadata=principal.metadata(),
            timeout=self._upstreams.call_timeout,
        )
        reply = await self._steps(principal, params["key"])
        return JSONResponse(
            _rundown(params["key"], reply.profiling_steps, principal.channel, "function_key", "duration")
        )

    async def task_profiling(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /task_profiling/{key}/``: the timed steps of one task."""
        reply = await self._steps(principal, params["key"])
        if not reply.profiling_steps:
            raise HttpError(404, "No profiling for this task")
        return JSONResponse(_rundown(params["key"], reply.profiling_steps, principal.channel))

    async def task_profiling_list(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /task_profiling/``: every profiled asset, paginated by step."""
        page = _int_param(request, "page")
        reply = await self._steps(principal, "", page, _int_param(request, "page_size"))
        grouped: dict[str, list] = {}
        for step in reply.profiling_steps:
            grouped.setdefault(step.asset_key, []).append(step)
        tasks = set()
        if grouped:  # function build steps share the table: keep the tasks' only
            found = await self._upstreams.asset().ListTasks(
                api.ListTasksRequest(key=list(grouped), page_size=len(grouped)),
                metadata=principal.metadata(),
                timeout=self._upstreams.call_timeout,
            )
            tasks = {task.key for task in found.tasks}
        following, previous = page_links(request, page or 1, bool(reply.next_page_token))
        results = [_rundown(key, steps, principal.channel) for key, steps in grouped.items() if key in tasks]
        return JSONResponse({"count": len(results), "next": following, "previous": previous, "results": results})


def _rundown(
    key: str, steps, channel: str, key_name: str = "compute_task_key", total_name: str = "task_duration"
) -> dict[str, Any]:
    return {
        key_name: key,
        "channel": channel,
        "execution_rundown": [{"step": step.step, "duration": int(step.duration)} for step in steps],
        total_name: sum(int(step.duration) for step in steps),
    }


def _str_list(data: dict, name: str) -> list[str]:
    value = data.get(name) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HttpError(400, f"{name}: expected a list of keys")
    return value


def _int_param(request: Request, name: str) -> int:
    raw = request.query_params.get(name, "0") or "0"
    try:
        return int(raw)
    except ValueError:
        raise HttpError(400, f"{name}: {raw!r} is not a number") from None
