"""What storage knows about a stored file, and the rules that need nothing else."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from enum import StrEnum

from services.kit.errors import DataLoss, FailedPrecondition, InvalidArgument


class Kind(StrEnum):
    """What a file is. The values are the names of ``tessera.storage.v1.FileKind``, as the table stores them."""

    FUNCTION_ARCHIVE = "FILE_KIND_FUNCTION_ARCHIVE"
    FUNCTION_DESCRIPTION = "FILE_KIND_FUNCTION_DESCRIPTION"
    FUNCTION_IMAGE = "FILE_KIND_FUNCTION_IMAGE"
    OPENER = "FILE_KIND_OPENER"
    DATA_MANAGER_DESCRIPTION = "FILE_KIND_DATA_MANAGER_DESCRIPTION"
    DATA_SAMPLE = "FILE_KIND_DATA_SAMPLE"
    MODEL = "FILE_KIND_MODEL"
    LOGS = "FILE_KIND_LOGS"


@dataclass(frozen=True)
class StoredFile:
    """One file as storage knows it."""

    file_id: str
    kind: Kind
    asset_key: str
    """The asset's UUID; empty for a file uploaded without one."""
    size: int
    checksum: str
    """sha256 of the bytes followed by the upload's salt: the checksum the ledger carries."""
    digest: str
    """sha256 of the bytes alone: the name of the blob that holds them."""
    owner: str
    filename: str
    creation_date: dt.datetime
    disabled: bool
    directory_checksum: str
    """Data samples only: the directory hash of what the archive unpacks to."""

    @property
    def label(self) -> str:
        """How messages name the file: its kind and asset (its id when it has no asset)."""
        return f"{self.kind} of asset {self.asset_key or self.file_id}"


class BlobMissing(DataLoss):
    """A file's record exists but its bytes are gone or damaged: an operations problem, not the caller's."""

    default_reason = "BLOB_MISSING"


def asset_key(field: str, value: str) -> str:
    """An asset key in canonical form (a lowercase UUID), or INVALID_ARGUMENT on ``field``."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.on(field, "must be a UUID") from None


def file_ref(kind: Kind | None, key: str) -> tuple[Kind, str]:
    """A file named by its kind and asset (``None``: the caller named no valid kind)."""
    if kind is None:
        raise InvalidArgument.on("ref.kind", "must be a FileKind other than FILE_KIND_UNSPECIFIED")
    return kind, asset_key("ref.asset_key", key)


def check_download(stored: StoredFile, *, offset: int, expected_checksum: str | None) -> None:
    """Refuse a download whose expected checksum is not the file's, or whose offset is outside the file."""
    if expected_checksum is not None and expected_checksum != stored.checksum:
        raise FailedPrecondition(
            f"the file's checksum is {stored.checksum}, not {expected_checksum}", reason="CHECKSUM_MISMATCH"
        )
    if not 0 <= offset <= stored.size:
        raise InvalidArgument.on("offset", f"must be between 0 and the file's size ({stored.size})")
