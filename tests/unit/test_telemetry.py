"""Which gRPC calls get spans: every call but health probes and reflection, whatever form grpc gives the method in."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.instrumentation.grpc import filters

from services.kit.telemetry import _traced

METHODS = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/tessera.asset.v1.AssetService/StartTask",
    "/tessera.storage.v1.StorageService/Upload",
    "/grpc.healthy.Service/Call",  # a prefix of a name is not the name
]
# The instrumentation's own composition, which _traced replaces with one prefix test.
REFERENCE = filters.negate(
    filters.any_of(filters.service_prefix("grpc.health."), filters.service_prefix("grpc.reflection."))
)


class Handler(grpc.HandlerCallDetails):  # what a server interceptor is given
    def __init__(self, method: str, invocation_metadata: tuple) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


def client(method) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(method, None, None, None, None)


@pytest.mark.parametrize("method", METHODS)
def test_a_call_is_traced_unless_it_is_a_probe_or_reflection(method):
    expected = not method.startswith(("/grpc.health.", "/grpc.reflection."))
    for details in (Handler(method, ()), client(method), client(method.encode())):
        assert _traced(details) is expected
        assert REFERENCE(details) is expected  # the same answer as the filters it replaces
