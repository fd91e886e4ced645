"""Failures of the calls compute makes to other services (the ledger, storage), as the kit's domain errors.

The reverse of the kit's status table (:data:`services.kit.status.GRPC_CODES`), so that compute's
rules decide on error classes, never on gRPC codes: a refusal is ``FailedPrecondition``,
``AlreadyExists``, ``NotFound``...; a dependency away or out of time is ``Unavailable``; contention
is ``Aborted``; a code with no domain error (INTERNAL, UNKNOWN...) is a plain ``DomainError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from services.kit import errors
from services.kit.status import GRPC_CODES, status_details

_CLASSES: dict[grpc.StatusCode, type[errors.DomainError]] = {
    code: cls for cls, code in GRPC_CODES.items() if cls is not errors.Gone
}
_CLASSES[grpc.StatusCode.DEADLINE_EXCEEDED] = errors.Unavailable


def domain_error(exc: grpc.RpcError) -> errors.DomainError:
    """The domain error a failed call stands for, with its message, reason and metadata."""
    details = status_details(exc)
    cls = _CLASSES.get(details.code, errors.DomainError)
    return cls(
        details.message or details.code.name,
        reason=details.reason or details.code.name,
        metadata=details.metadata,
        violations=details.violations,
    )


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise the domain error of any failed gRPC call made inside the block."""
    try:
        yield
    except grpc.RpcError as exc:
        raise domain_error(exc) from exc
