"""Failed gRPC calls become the kit's domain errors, so that compute's rules never read a status code."""

from __future__ import annotations

import grpc
import pytest

from services.compute.remote import domain_error, translated
from services.kit import errors


class FailedCall(grpc.RpcError):
    """What a failed call raises: a code, a message, no rich status."""

    def __init__(self, code: grpc.StatusCode, message: str = "") -> None:
        self._code, self._message = code, message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self):
        return ()


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.Unavailable),
        (grpc.StatusCode.ABORTED, errors.Aborted),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
    ],
)
def test_each_code_becomes_its_domain_error(code, cls):
    error = domain_error(FailedCall(code, "why"))
    assert type(error) is cls and error.message == "why"


def test_a_code_with_no_domain_error_is_a_plain_one_named_by_its_code():
    error = domain_error(FailedCall(grpc.StatusCode.INTERNAL))
    assert type(error) is errors.DomainError
    assert (error.message, error.reason) == ("INTERNAL", "INTERNAL")


def test_translated_raises_the_domain_error_of_the_failed_call():
    with pytest.raises(errors.Unavailable) as raised, translated():
        raise FailedCall(grpc.StatusCode.UNAVAILABLE, "ledger restarting")
    assert isinstance(raised.value.__cause__, FailedCall)
