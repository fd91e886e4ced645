"""The one translation from gRPC status to HTTP status and JSON error body (contract §3).

Like grpc-gateway's ``runtime/errors.go``: one table from canonical code to HTTP status, consulted
for every failed upstream call, plus the gateway's own refusals (authentication, malformed
requests). Every error body is JSON with a ``detail``; a 409 adds the duplicate ``key`` (a list of
``{"key": ...}`` where the SDK expects one, for data samples), a 400 adds the field ``errors``.
Nothing branches on message text: the code, then the ``ErrorInfo`` reason, decide.
"""

from __future__ import annotations

from typing import Any

import grpc
from starlette.responses import JSONResponse

from services.kit.status import StatusDetails, status_details

# grpc code → HTTP status, as B:orchestrator/error.py maps them (contract §3).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Stable ErrorInfo reasons whose HTTP status differs from their code's.
REASON_STATUS: dict[str, int] = {
    "GONE": 410,  # services.kit.errors.Gone: a disabled model, a file removed
    "FILE_TOO_LARGE": 413,  # storage's limits on one upload (RESOURCE_EXHAUSTED)
    "ARCHIVE_LIMIT_EXCEEDED": 413,
    "STORAGE_FULL": 507,
}

# What a 503 tells the client to wait before trying again (seconds): a dependency is down.
RETRY_AFTER_SECONDS = 5

# RESOURCE_EXHAUSTED raised by the gRPC transport itself (message size limits) carries no ErrorInfo;
# the contract maps it to 413 ("message larger than max"), a domain limit to 429.
TRANSPORT_EXHAUSTED_STATUS = 413


class HttpError(Exception):
    """A refusal made by the gateway itself, rendered like an upstream error."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def response(self) -> JSONResponse:
        """The JSON response."""
        return JSONResponse({"detail": self.detail, **self.extra}, status_code=self.status, headers=self.headers)


def http_status(details: StatusDetails) -> int:
    """The HTTP status of a failed call."""
    if details.reason in REASON_STATUS:
        return REASON_STATUS[details.reason]
    if details.code == grpc.StatusCode.RESOURCE_EXHAUSTED and not details.reason:
        return TRANSPORT_EXHAUSTED_STATUS
    return HTTP_STATUS.get(details.code, 500)


def duplicate_keys(details: StatusDetails) -> list[str]:
    """The keys an ALREADY_EXISTS names (``ErrorInfo.metadata['keys']``, comma-separated)."""
    return [key for key in details.metadata.get("keys", "").split(",") if key]


def error_body(details: StatusDetails, *, list_conflicts: bool = False) -> Any:
    """The JSON body of a failed call."""
    body: dict[str, Any] = {"detail": details.message or details.code.name}
    status = http_status(details)
    if status == 409:
        keys = duplicate_keys(details)
        if list_conflicts:
            # add_data_sample(s) reads body[0]["key"]: a list, one entry per duplicate (contract §3).
            return [{"key": key, "detail": body["detail"]} for key in keys] or [{"key": None, **body}]
        body["key"] = keys[0] if len(keys) == 1 else (keys or None)
    if details.violations:
        body["errors"] = [{"field": v.field, "description": v.description} for v in details.violations]
    if details.reason:
        body["reason"] = details.reason
    return body


def retry_headers(status: int) -> dict[str, str] | None:
    """``Retry-After`` for a 503, nothing otherwise."""
    return {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None


def unavailable(detail: str) -> JSONResponse:
    """503 with ``Retry-After``: a dependency is down, the same request may succeed later."""
    return HttpError(503, detail, headers=retry_headers(503), reason="UNAVAILABLE").response()


def rpc_error_response(error: grpc.RpcError, *, list_conflicts: bool = False) -> JSONResponse:
    """The HTTP response of a failed upstream call."""
    details = status_details(error)
    status = http_status(details)
    return JSONResponse(
        error_body(details, list_conflicts=list_conflicts), status_code=status, headers=retry_headers(status)
    )
