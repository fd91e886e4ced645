"""What an upload must satisfy: its metadata, its size and checksum as the bytes arrive and at the end,
which archive checks its kind gets, and when it conflicts with a file already stored for its asset."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import cast

from services.kit.errors import AlreadyExists, FieldViolation, InvalidArgument, ResourceExhausted
from services.storage.domain.records import Kind, StoredFile

MAX_FILENAME = 255
MAX_SALT = 256
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class UploadRequest:
    """An upload's metadata as the caller sent it (``None``: the optional field was not set; ``kind`` is
    ``None`` when the caller named no valid kind)."""

    kind: Kind | None
    asset_key: str | None = None
    expected_size: int | None = None
    expected_checksum: str | None = None
    filename: str = ""
    checksum_salt: str = ""


@dataclass(frozen=True)
class UploadSpec:
    """A validated upload request."""

    kind: Kind
    asset_key: str
    """Canonical UUID, or empty for a file without an asset."""
    expected_size: int | None
    expected_checksum: str | None
    filename: str
    salt: bytes


class ArchiveCheck(Enum):
    """The content check an upload gets before it is stored (Substra's, contract §9.1 and §5.1)."""

    FUNCTION_ARCHIVE = "function archive"
    """A safe archive with a root Dockerfile and an exec-form ENTRYPOINT."""
    DATA_SAMPLE = "data sample"
    """A safe archive with at least one file; its directory checksum is recorded."""


def validate_upload(request: UploadRequest, max_bytes: int) -> UploadSpec:
    """Check an upload's metadata, naming every violation at once; refuse at once an announced size over
    ``max_bytes``."""
    violations: list[FieldViolation] = []
    if request.kind is None:
        violations.append(FieldViolation("metadata.kind", "must be a FileKind other than FILE_KIND_UNSPECIFIED"))
    key = ""
    if request.asset_key is not None:
        try:
            key = str(uuid.UUID(request.asset_key))
        except ValueError:
            violations.append(FieldViolation("metadata.asset_key", "must be a UUID"))
    size = request.expected_size
    if size is not None and size < 0:
        violations.append(FieldViolation("metadata.expected_size", "must not be negative"))
    checksum = request.expected_checksum
    if checksum is not None and not _HEX64.fullmatch(checksum):
        violations.append(FieldViolation("metadata.expected_checksum", "must be 64 lowercase hex characters"))
    name = request.filename
    if len(name) > MAX_FILENAME or "/" in name or any(ord(c) < 32 for c in name):
        violations.append(
            FieldViolation("metadata.filename", f"must be a base name of at most {MAX_FILENAME} characters")
        )
    if len(request.checksum_salt) > MAX_SALT:
        violations.append(FieldViolation("metadata.checksum_salt", f"must be at most {MAX_SALT} characters"))
    if violations:
        first = violations[0]
        raise InvalidArgument(f"{first.field}: {first.description}", violations=violations)
    if size is not None and size > max_bytes:
        raise too_large(max_bytes)
    return UploadSpec(
        kind=cast(Kind, request.kind),  # None is a violation above
        asset_key=key,
        expected_size=size,
        expected_checksum=checksum,
        filename=name,
        salt=request.checksum_salt.encode(),
    )


def too_large(max_bytes: int) -> ResourceExhausted:
    """The refusal of an upload over the size limit, naming the limit."""
    return ResourceExhausted(
        f"the file exceeds the upload limit TESSERA_MAX_FILE_BYTES ({max_bytes} bytes)",
        reason="FILE_TOO_LARGE",
        metadata={"limit": "TESSERA_MAX_FILE_BYTES", "value": str(max_bytes)},
    )


def storage_full(detail: str) -> ResourceExhausted:
    """The refusal of an upload the storage volume has no room for."""
    return ResourceExhausted(
        "the storage volume is full", reason="STORAGE_FULL", metadata={"limit": "disk", "value": detail}
    )


def _size_mismatch(message: str, received: str) -> InvalidArgument:
    return InvalidArgument(
        message, reason="SIZE_MISMATCH", violations=[FieldViolation("metadata.expected_size", received)]
    )


def check_received(spec: UploadSpec, received: int, max_bytes: int) -> None:
    """Refuse the upload as soon as the bytes received so far pass the limit or the announced size."""
    if received > max_bytes:
        raise too_large(max_bytes)
    if spec.expected_size is not None and received > spec.expected_size:
        raise _size_mismatch(
            f"the upload is larger than its expected_size ({spec.expected_size} bytes)",
            f"{received} bytes received so far",
        )


def check_complete(spec: UploadSpec, received: int) -> None:
    """Refuse an upload that ended short of its announced size."""
    if spec.expected_size is not None and received != spec.expected_size:
        raise _size_mismatch(
            f"the upload ended after {received} bytes, expected_size was {spec.expected_size}",
            f"{received} bytes received",
        )


def check_checksum(spec: UploadSpec, checksum: str) -> None:
    """Refuse an upload whose bytes (and salt) do not hash to the announced checksum."""
    if spec.expected_checksum is not None and checksum != spec.expected_checksum:
        raise InvalidArgument(
            f"checksum mismatch: the bytes received hash to {checksum}, not {spec.expected_checksum}",
            reason="CHECKSUM_MISMATCH",
            metadata={"expected": spec.expected_checksum, "actual": checksum},
            violations=[FieldViolation("metadata.expected_checksum", "does not match the bytes received")],
        )


def archive_check(kind: Kind) -> ArchiveCheck | None:
    """Which content check a file of ``kind`` gets (None: its bytes are stored as they are)."""
    if kind == Kind.FUNCTION_ARCHIVE:
        return ArchiveCheck.FUNCTION_ARCHIVE
    if kind == Kind.DATA_SAMPLE:
        return ArchiveCheck.DATA_SAMPLE
    return None


def check_new_upload(spec: UploadSpec, existing: StoredFile | None) -> None:
    """Refuse before any byte arrives what cannot succeed: an asset whose file was deleted (it never gets
    another), or one stored with a checksum other than the announced one."""
    if existing is None:
        return
    if existing.disabled or (spec.expected_checksum and spec.expected_checksum != existing.checksum):
        raise conflict(existing)


def settle_duplicate(existing: StoredFile | None, new: StoredFile) -> StoredFile:
    """The file to answer when ``new`` could not be recorded because its asset already has ``existing``:
    the same bytes and checksum uploaded again give the stored file (idempotent); anything else conflicts."""
    if (
        existing is not None
        and not existing.disabled
        and existing.digest == new.digest
        and existing.checksum == new.checksum
    ):
        return existing
    raise conflict(existing)


def conflict(existing: StoredFile | None) -> AlreadyExists:
    """The refusal of a second, different file for an asset."""
    if existing is None:
        return AlreadyExists("the file was stored concurrently with other content")
    state = "was deleted" if existing.disabled else "already has a file with other content"
    return AlreadyExists(
        f"{existing.kind} of asset {existing.asset_key} {state}",
        metadata={"keys": existing.asset_key, "file_id": existing.file_id},
    )
