"""Typed domain errors, and their one translation to and from ``google.rpc.Status``.

Domain code raises these (it imports neither grpc nor sqlalchemy); the server interceptor turns
them into a canonical gRPC code plus ``ErrorInfo`` (a stable machine ``reason``) and, for
validation failures, ``BadRequest`` field violations. Clients read them back with
:func:`status_details`. Nobody ever branches on message text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "tessera.dev"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: a dotted path (``tasks[3].inputs[0].asset_key``) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base class: a caller-visible failure with a canonical code and a stable reason."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    default_reason = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations or [])


class InvalidArgument(DomainError):
    """The request is malformed; ``violations`` names each offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def on(cls, field_path: str, description: str, **kwargs) -> InvalidArgument:
        """Shorthand for one violation on one field."""
        return cls(f"{field_path}: {description}", violations=[FieldViolation(field_path, description)], **kwargs)


class NotFound(DomainError):
    """A referenced resource does not exist (or is not visible to the caller)."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    """A resource with the same key exists; ``metadata['keys']`` lists them (comma separated)."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class PermissionDenied(DomainError):
    """The caller's organization may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The caller presented no valid credential."""

    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class FailedPrecondition(DomainError):
    """The resource is not in a state that allows the operation (e.g. an illegal transition)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """Concurrent writes kept conflicting: nothing was done, the same call may be made again."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


class ResourceExhausted(DomainError):
    """A limit was hit; ``metadata`` names the limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Gone(DomainError):
    """The resource existed but is no longer available (a disabled model); HTTP maps it to 410."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "GONE"


def to_status(error: DomainError) -> status_pb2.Status:
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
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=details)


def trailing_metadata(error: DomainError) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata that carries the rich status of ``error``."""
    return ((STATUS_DETAILS_KEY, to_status(error).SerializeToString()),)


@dataclass
class StatusDetails:
    """What a client learns from a failed call: code, message, reason and field violations."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)


def status_details(error: grpc.RpcError) -> StatusDetails:
    """Decode the rich status of a failed call (works for sync and aio errors)."""
    code = error.code()
    result = StatusDetails(code=code, message=error.details() or "")
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY:
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
                result.violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return result
