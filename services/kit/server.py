"""A ``grpc.aio`` server with health checking (also on an optional plaintext port for probes), reflection, the
interceptor chain and graceful stop.

Usage from a composition root::

    server = GrpcServer(settings, authenticator_from(settings))
    server.add(asset_service_pb2_grpc.add_AssetServiceServicer_to_server, servicer, "tessera.asset.v1.AssetService")
    await server.start()
    await server.wait()
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.kit import telemetry
from services.kit.identity import (
    Authenticator,
    Channels,
    MtlsAuthenticator,
    OrgCredentials,
    SecretAuthenticator,
    load_own_secret,
    load_verifiers,
    secret_verifier,
)
from services.kit.interceptors import ServerInterceptor
from services.kit.settings import CommonSettings, SettingsError

T = TypeVar("T")

log = logging.getLogger("tessera.server")

# Messages up to 8 MiB: batches of 500 tasks fit; files travel as streams of chunks instead.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MESSAGE_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
# No SO_REUSEPORT: a second server on a taken port must fail instead of sharing it silently.
SERVER_OPTIONS = [*MESSAGE_OPTIONS, ("grpc.so_reuseport", 0)]


def _read(variable: str, reader: Callable[[str], T], path: str) -> T | None:
    """``reader(path)`` when ``path`` is set, a problem reported as a configuration error naming ``variable``."""
    if not path:
        return None
    try:
        return reader(path)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{variable}: {exc}") from None


def authenticator_from(settings: CommonSettings) -> Authenticator:
    """The authenticator the settings ask for (``secret`` or ``mtls``)."""
    if settings.auth_mode == "mtls":
        return MtlsAuthenticator(Channels.parse(settings.channels))
    if settings.auth_mode != "secret":
        raise ValueError(f"TESSERA_AUTH_MODE must be secret or mtls, not {settings.auth_mode!r}")
    if not settings.org_verifiers_file:
        # Without it every call would be refused; say so at start (TESSERA_ORG_SECRETS_FILE is no longer read).
        raise SettingsError("TESSERA_ORG_VERIFIERS_FILE is required when TESSERA_AUTH_MODE is secret (ADR 0014)")
    verifiers = _read("TESSERA_ORG_VERIFIERS_FILE", load_verifiers, settings.org_verifiers_file) or {}
    return SecretAuthenticator(verifiers, Channels.parse(settings.channels, sorted(verifiers)))


def credentials_from(settings: CommonSettings, channel: str = "") -> OrgCredentials:
    """This process's own organization credential, to call other services."""
    if settings.auth_mode == "mtls":
        return OrgCredentials(
            org_id=settings.org_id,
            channel=channel,
            tls_key=Path(settings.tls_key).read_bytes(),
            tls_cert=Path(settings.tls_cert).read_bytes(),
            tls_ca=Path(settings.tls_ca).read_bytes(),
        )
    secret = _read("TESSERA_ORG_SECRET_FILE", load_own_secret, settings.org_secret_file) or ""
    verifiers = _read("TESSERA_ORG_VERIFIERS_FILE", load_verifiers, settings.org_verifiers_file) or {}
    if secret and settings.org_id in verifiers and verifiers[settings.org_id] != secret_verifier(secret):
        # Caught here, at start, rather than as UNAUTHENTICATED on every call to the ledger and the peers.
        raise SettingsError(
            f"TESSERA_ORG_SECRET_FILE: the secret does not match the verifier of {settings.org_id} "
            "in TESSERA_ORG_VERIFIERS_FILE"
        )
    return OrgCredentials(org_id=settings.org_id, secret=secret, channel=channel)


class GrpcServer:
    """One gRPC server: the service's servicers plus health and reflection."""

    def __init__(
        self, settings: CommonSettings, authenticator: Authenticator, *, own_organization_only: bool = False
    ) -> None:
        """``own_organization_only``: every RPC answers the calling organization only if it is this server's
        (``TESSERA_ORG_ID``); another organization's valid credential gets PERMISSION_DENIED."""
        self._settings = settings
        only = settings.org_id if own_organization_only else None
        if own_organization_only and not only:
            raise ValueError("a service of one organization needs TESSERA_ORG_ID")
        self._server = grpc.aio.server(
            interceptors=[*telemetry.server_interceptors(), ServerInterceptor(authenticator, only_organization=only)],
            options=SERVER_OPTIONS,
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names: list[str] = []
        # The kubelet's gRPC probes speak plaintext only; in mtls mode the main port requires a client certificate.
        self._health_server: grpc.aio.Server | None = None
        self.health_port: int | None = None
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self.port: int | None = None

    def add(self, register: Callable[[object, grpc.aio.Server], None], servicer: object, full_name: str) -> None:
        """Register ``servicer`` with the generated ``add_XServicer_to_server`` function."""
        register(servicer, self._server)
        self._service_names.append(full_name)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` after the server has stopped accepting calls (close pools, NATS...)."""
        self._on_stop.append(callback)

    async def start(self) -> int:
        """Bind, start serving, and report SERVING for every registered service."""
        names = [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self._server)
        settings = self._settings
        if settings.auth_mode == "mtls":
            credentials = grpc.ssl_server_credentials(
                [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
                root_certificates=Path(settings.tls_ca).read_bytes(),
                require_client_auth=True,
            )
            self.port = self._server.add_secure_port(settings.grpc_addr, credentials)
        else:
            self.port = self._server.add_insecure_port(settings.grpc_addr)
        await self._server.start()
        if settings.health_addr:
            self._health_server = grpc.aio.server(options=SERVER_OPTIONS)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
            self.health_port = self._health_server.add_insecure_port(settings.health_addr)
            await self._health_server.start()
        for name in ("", *self._service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving %s on %s",
            ", ".join(self._service_names),
            settings.grpc_addr,
            extra={"fields": {"port": self.port, "services": self._service_names}},
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, let in-flight calls finish within ``grace`` seconds, then clean up."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self._settings.shutdown_grace if grace is None else grace)
        if self._health_server is not None:
            await self._health_server.stop(0)
        for callback in reversed(self._on_stop):
            try:
                await callback()
            except Exception:
                log.exception("error while stopping")

    async def wait(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
        await self.stop()
