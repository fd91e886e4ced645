"""The ASGI application (Starlette). This first version serves the health route only; the
Substra routes are built from the ``google.api.http`` annotations of the services' descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.settings import GatewaySettings
from services.kit import client


class Upstreams:
    """One long-lived gRPC channel per upstream service, shared by every request."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._addrs = settings.upstreams()
        self._timeout = settings.health_timeout
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, name: str) -> grpc.aio.Channel:
        """The channel to upstream ``name``, opened on first use."""
        if name not in self._channels:
            self._channels[name] = client.channel(self._addrs[name])
        return self._channels[name]

    async def health(self) -> dict[str, str]:
        """The health status of every upstream, checked concurrently."""

        async def check(name: str) -> tuple[str, str]:
            stub = health_pb2_grpc.HealthStub(self.channel(name))
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=self._timeout)
            except grpc.RpcError as exc:
                return name, f"UNAVAILABLE ({exc.code().name})"
            return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        return dict(await asyncio.gather(*(check(name) for name in self._addrs)))

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close()


def create_app(settings: GatewaySettings) -> Starlette:
    """Build the application and its upstream channels."""
    upstreams = Upstreams(settings)

    async def healthz(request: Request) -> JSONResponse:
        statuses = await upstreams.health()
        healthy = all(status == "SERVING" for status in statuses.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", "upstreams": statuses}, status_code=200 if healthy else 503
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await upstreams.close()

    return Starlette(routes=[Route("/healthz", healthz)], lifespan=lifespan)
