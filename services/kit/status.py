"""The edge between domain errors and gRPC: one table of status codes, rich status out and back in.

A :class:`~services.kit.errors.DomainError` becomes a ``google.rpc.Status`` with the code of
:data:`GRPC_CODES`, an ``ErrorInfo`` (stable ``reason``, ``metadata``) and, for validation failures,
``BadRequest`` field violations, sent by the server interceptor with grpcio-status. Clients read it
back with :func:`status_details` (sync and aio errors alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.kit import errors

ERROR_DOMAIN = "tessera.dev"

GRPC_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Gone: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
}
"""Every domain error class and its canonical code; a subclass takes its nearest listed ancestor's."""


def grpc_code(error: errors.DomainError) -> grpc.StatusCode:
    """The canonical code of ``error`` (UNKNOWN for a class nobody listed)."""
    for cls in type(error).__mro__:
        if cls in GRPC_CODES:
            return GRPC_CODES[cls]
    return grpc.StatusCode.UNKNOWN


def to_status(error: errors.DomainError) -> status_pb2.Status:
    """The ``google.rpc.Status`` describing ``error``."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))
    details = [info]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    return status_pb2.Status(code=grpc_code(error).value[0], message=error.message, details=details)


def to_grpc_status(error: errors.DomainError) -> grpc.Status:
    """What ``context.abort_with_status`` sends for ``error``: code, message and the packed details."""
    return rpc_status.to_status(to_status(error))


@dataclass
class StatusDetails:
    """What a client learns from a failed call: code, message, reason and field violations."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[errors.FieldViolation] = field(default_factory=list)


def status_details(error: grpc.RpcError) -> StatusDetails:
    """Decode the rich status of a failed call (works for sync and aio errors)."""
    result = StatusDetails(code=error.code(), message=error.details() or "")
    for key, value in error.trailing_metadata() or ():
        if key != rpc_status.GRPC_DETAILS_METADATA_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                result.reason = info.reason
                result.metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                result.violations = [errors.FieldViolation(v.field, v.description) for v in bad.field_violations]
    return result
