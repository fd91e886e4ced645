"""Typed domain errors: what went wrong, in the domain's words, free of any transport.

Domain code raises these (it imports neither grpc nor sqlalchemy). Their one translation to gRPC
(a canonical code, ``ErrorInfo`` with a stable machine ``reason``, ``BadRequest`` field violations)
is the table of :mod:`services.kit.status`, applied by the server interceptor at the edge; the
gateway maps the same status to HTTP in ``gateway/errors.py``. Nobody ever branches on message text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: a dotted path (``tasks[3].inputs[0].asset_key``) and why."""

    field: str
    description: str


class DomainError(Exception):
    """Base class: a caller-visible failure with a stable reason (its status code is chosen at the edge)."""

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

    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def on(cls, field_path: str, description: str, **kwargs) -> InvalidArgument:
        """Shorthand for one violation on one field."""
        return cls(f"{field_path}: {description}", violations=[FieldViolation(field_path, description)], **kwargs)


class NotFound(DomainError):
    """A referenced resource does not exist (or is not visible to the caller)."""

    default_reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    """A resource with the same key exists; ``metadata['keys']`` lists them (comma separated)."""

    default_reason = "ALREADY_EXISTS"


class PermissionDenied(DomainError):
    """The caller's organization may not do this."""

    default_reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    """The caller presented no valid credential."""

    default_reason = "UNAUTHENTICATED"


class FailedPrecondition(DomainError):
    """The resource is not in a state that allows the operation (e.g. an illegal transition)."""

    default_reason = "FAILED_PRECONDITION"


class Aborted(DomainError):
    """Concurrent writes kept conflicting: nothing was done, the same call may be made again."""

    default_reason = "ABORTED"


class ResourceExhausted(DomainError):
    """A limit was hit; ``metadata`` names the limit."""

    default_reason = "RESOURCE_EXHAUSTED"


class Gone(DomainError):
    """The resource existed but is no longer available (a disabled model); gRPC FAILED_PRECONDITION, HTTP 410."""

    default_reason = "GONE"


class Unavailable(DomainError):
    """A dependency (the ledger, a peer, the database) cannot be reached now; the same call may succeed later."""

    default_reason = "UNAVAILABLE"


class DataLoss(DomainError):
    """Stored bytes no longer match what was recorded (a blob missing or corrupted)."""

    default_reason = "DATA_LOSS"
