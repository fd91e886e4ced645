"""Client channels that present an organization's credential and carry the trace context.

``channel(addr, creds)`` returns a ``grpc.aio`` channel for services calling each other;
``sync_channel`` the same for scripts, tools and tests.
"""

from __future__ import annotations

import grpc

from services.kit import telemetry
from services.kit.identity import OrgCredentials
from services.kit.server import MESSAGE_OPTIONS


def _metadata(details_metadata, creds: OrgCredentials | None, user: str):
    entries = list(details_metadata or ())
    if creds is not None:
        entries.extend(creds.metadata(user))
    return entries


def _channel_credentials(creds: OrgCredentials | None):
    if creds is not None and creds.tls_cert:
        return grpc.ssl_channel_credentials(
            root_certificates=creds.tls_ca, private_key=creds.tls_key, certificate_chain=creds.tls_cert
        )
    return None


class _AioAuth:
    """Adds the credential to a call's metadata (the trace context comes from the tracing interceptors)."""

    def __init__(self, creds: OrgCredentials | None, user: str) -> None:
        self._creds = creds
        self._user = user

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=grpc.aio.Metadata(*_metadata(details.metadata, self._creds, self._user)),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


# grpc.aio files an interceptor under the first interface it implements only: one class per kind.
class _AioUnaryUnary(_AioAuth, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AioUnaryStream(_AioAuth, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AioStreamUnary(_AioAuth, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _AioStreamStream(_AioAuth, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def channel(addr: str, creds: OrgCredentials | None = None, user: str = "") -> grpc.aio.Channel:
    """An aio channel to ``addr`` whose calls present ``creds`` (TLS when it holds certificates)."""
    interceptors = [kind(creds, user) for kind in (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)]
    interceptors += telemetry.aio_client_interceptors()
    tls = _channel_credentials(creds)
    if tls is not None:
        return grpc.aio.secure_channel(addr, tls, options=MESSAGE_OPTIONS, interceptors=interceptors)
    return grpc.aio.insecure_channel(addr, options=MESSAGE_OPTIONS, interceptors=interceptors)


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class _SyncAuth(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, creds: OrgCredentials | None, user: str) -> None:
        self._creds = creds
        self._user = user

    def _details(self, d):
        return _SyncDetails(
            d.method,
            d.timeout,
            _metadata(d.metadata, self._creds, self._user) + telemetry.inject_metadata(),
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def sync_channel(addr: str, creds: OrgCredentials | None = None, user: str = "") -> grpc.Channel:
    """A blocking channel to ``addr`` whose calls present ``creds``."""
    tls = _channel_credentials(creds)
    base = (
        grpc.secure_channel(addr, tls, options=MESSAGE_OPTIONS)
        if tls is not None
        else grpc.insecure_channel(addr, options=MESSAGE_OPTIONS)
    )
    return grpc.intercept_channel(base, _SyncAuth(creds, user))
