"""The gateway's gRPC channels to its organization's services, and who it calls them for.

One long-lived channel per upstream presents the organization's credential
(:func:`services.kit.server.credentials_from`); each call adds the acting user's channel
(``x-tessera-channel``) and name (``x-tessera-user``, audit only) as per-call metadata.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tessera.asset.v1 import asset_service_pb2_grpc
from tessera.compute.v1 import compute_service_pb2_grpc
from tessera.event.v1 import event_service_pb2_grpc
from tessera.storage.v1 import storage_service_pb2_grpc

from gateway.errors import HttpError
from gateway.settings import GatewaySettings
from services.kit import client
from services.kit.identity import CHANNEL_HEADER, USER_HEADER
from services.kit.server import credentials_from


@dataclass(frozen=True)
class Principal:
    """The authenticated user a request acts for."""

    user_id: int
    username: str
    role: str
    channel: str
    token_id: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Per-call metadata: the user's channel and name."""
        entries = [(USER_HEADER, self.username)]
        if self.channel:
            entries.append((CHANNEL_HEADER, self.channel))
        return tuple(entries)


STUBS = {
    "asset": asset_service_pb2_grpc.AssetServiceStub,
    "storage": storage_service_pb2_grpc.StorageServiceStub,
    "compute": compute_service_pb2_grpc.ComputeServiceStub,
    "event": event_service_pb2_grpc.EventServiceStub,
}


class Upstreams:
    """One channel per upstream service, opened on first use and shared by every request."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._addrs = settings.upstreams()
        self._peers = {org: addr for org, addr in settings.peer_addresses().items() if org != settings.org_id}
        self._timeout = settings.health_timeout
        self._credentials = credentials_from(settings)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, object] = {}
        self.call_timeout = settings.upstream_timeout
        self.org_id = settings.org_id

    def channel(self, name: str) -> grpc.aio.Channel:
        """The channel to upstream ``name``; a 501 when this organization does not run it."""
        if name not in self._channels:
            addr = self._addrs.get(name)
            if addr is None:
                raise HttpError(501, f"the {name} service is not available on this organization")
            self._channels[name] = client.channel(addr, self._credentials)
        return self._channels[name]

    def storage_of(self, org_id: str) -> storage_service_pb2_grpc.StorageServiceStub:
        """The storage holding ``org_id``'s files: this organization's, or a peer's (TESSERA_PEERS)."""
        if org_id == self.org_id or not org_id:
            return self.storage()
        name = f"peer:{org_id}"
        if name not in self._stubs:
            addr = self._peers.get(org_id)
            if addr is None:
                raise HttpError(404, f"the files of {org_id} are not reachable from this organization")
            self._channels[name] = client.channel(addr, self._credentials)
            self._stubs[name] = storage_service_pb2_grpc.StorageServiceStub(self._channels[name])
        return self._stubs[name]

    def stub(self, name: str):
        """The generated stub of upstream ``name`` (cached)."""
        if name not in self._stubs:
            self._stubs[name] = STUBS[name](self.channel(name))
        return self._stubs[name]

    def asset(self) -> asset_service_pb2_grpc.AssetServiceStub:
        """The ledger's stub."""
        return self.stub("asset")

    def storage(self) -> storage_service_pb2_grpc.StorageServiceStub:
        """This organization's storage stub."""
        return self.stub("storage")

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
        self._channels.clear()
        self._stubs.clear()
