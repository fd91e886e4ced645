"""The ledger as compute calls it: one client per channel, writes made again while the ledger is
busy or away, refusals of settled work told apart from failures.

Every failure is the kit's domain error (:mod:`services.compute.remote`). A write refused because
the work was settled meanwhile (FailedPrecondition: the asset moved on; AlreadyExists: an earlier
attempt recorded it) is logged and answered False: the ledger's state stands, nothing is left to do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.compute.remote import domain_error, translated
from services.kit import client
from services.kit.errors import AlreadyExists, FailedPrecondition
from services.kit.identity import OrgCredentials

log = logging.getLogger("tessera.compute.ledger")
T = TypeVar("T")

SETTLED = (FailedPrecondition, AlreadyExists)
"""A write refused because the work it records was settled meanwhile."""

RETRIED = {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE}
"""Codes of a write refused for contention (nothing was written) or while the ledger restarts."""

LISTING_PAGE = 1000


class Ledger:
    """This organization's client of the ledger, acting in any of its channels."""

    def __init__(self, address: str, creds: OrgCredentials, *, attempts: int = 6) -> None:
        self._address = address
        self._creds = creds
        self._attempts = attempts
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, api_grpc.AssetServiceStub] = {}

    def _stub(self, channel: str) -> api_grpc.AssetServiceStub:
        if channel not in self._stubs:
            creds = dataclasses.replace(self._creds, channel=channel)
            self._channels[channel] = client.channel(self._address, creds)
            self._stubs[channel] = api_grpc.AssetServiceStub(self._channels[channel])
        return self._stubs[channel]

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()

    async def _read(self, call: Awaitable[T]) -> T:
        with translated():
            return await call

    async def _write(self, make_call: Callable[[], Awaitable[T]]) -> T:
        """A write made again a few times, with jittered backoff, while it is refused for contention
        or while the ledger restarts."""
        for attempt in range(1, self._attempts + 1):
            try:
                return await make_call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRIED or attempt == self._attempts:
                    raise domain_error(exc) from exc
                log.info("ledger write refused (%s); trying again", exc.code().name)
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def _answer(self, call: Awaitable[T]) -> T | None:
        """Make a write; its answer, or None when the ledger refused it as settled already."""
        try:
            with translated():
                return await call
        except SETTLED as exc:
            log.info("ledger refused: %s", exc.message)
            return None

    async def _settle(self, call: Awaitable[object]) -> bool:
        """Make a write; False when the ledger refused it as settled already."""
        return await self._answer(call) is not None

    # ------------------------------------------------------------------------------------ functions
    async def function(self, channel: str, key: str) -> res.Function:
        reply = await self._read(self._stub(channel).GetFunction(api.GetFunctionRequest(key=key)))
        return reply.function

    async def function_action(self, channel: str, key: str, action: int) -> bool:
        request = api.ApplyFunctionActionRequest(function_key=key, action=action)
        return await self._settle(self._stub(channel).ApplyFunctionAction(request))

    async def update_function(self, channel: str, request: api.UpdateFunctionRequest) -> bool:
        return await self._settle(self._stub(channel).UpdateFunction(request))

    async def profiling_step(self, channel: str, asset_key: str, step: str, micros: int) -> bool:
        request = api.RegisterProfilingStepRequest(asset_key=asset_key, step=step, duration=micros)
        return await self._settle(self._stub(channel).RegisterProfilingStep(request))

    # ---------------------------------------------------------------------------------------- tasks
    async def start_task(self, channel: str, task_key: str) -> api.StartTaskResponse:
        """One ledger transaction: the task becomes EXECUTING (or stays so, a restart) and comes back with
        its inputs; a task that is not ours, not runnable or already final is refused."""
        request = api.StartTaskRequest(task_key=task_key)
        stub = self._stub(channel)
        return await self._write(lambda: stub.StartTask(request))

    async def task(self, channel: str, key: str) -> res.ComputeTask:
        reply = await self._read(self._stub(channel).GetTask(api.GetTaskRequest(key=key)))
        return reply.task

    async def complete_task(self, channel: str, request: api.CompleteTaskRequest) -> api.CompleteTaskResponse | None:
        """One ledger transaction: outputs, profiling and DONE together; the ledger's answer (the task and
        the tasks of this worker it made ready), or None when refused as settled."""
        stub = self._stub(channel)
        return await self._answer(self._write(lambda: stub.CompleteTask(request)))

    async def report_failure(self, channel: str, request: api.RegisterFailureReportRequest) -> bool:
        return await self._settle(self._stub(channel).RegisterFailureReport(request))

    async def tasks(self, channel: str, worker: str, statuses: list[int]) -> list[res.ComputeTask]:
        """Every task of ``worker`` in one of ``statuses``, all pages read."""
        stub = self._stub(channel)
        request = api.ListTasksRequest(worker=[worker], status=statuses, page_size=LISTING_PAGE)
        found: list[res.ComputeTask] = []
        while True:
            reply = await self._read(stub.ListTasks(request))
            found.extend(reply.tasks)
            if not reply.next_page_token:
                return found
            request.page_token = reply.next_page_token
