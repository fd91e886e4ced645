"""SQL access to the ``files`` table: explicit row mapping, no business rule.

Blob bookkeeping relies on one transaction-scoped advisory lock per digest: committing a blob and
inserting the row that references it happen under the lock, and so does deciding that a blob is no
longer referenced and removing it. Replicas sharing the database and the root therefore never remove
a blob that a concurrent upload is about to reference.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.storage.tables import FileRow


@dataclass(frozen=True)
class StoredFile:
    """One file as storage knows it."""

    file_id: str
    kind: str
    """The FileKind value name, e.g. ``FILE_KIND_MODEL``."""
    asset_key: str
    size: int
    checksum: str
    digest: str
    owner: str
    filename: str
    creation_date: dt.datetime
    disabled: bool
    directory_checksum: str


def _stored(row: FileRow) -> StoredFile:
    return StoredFile(
        file_id=row.file_id,
        kind=row.kind,
        asset_key=row.asset_key,
        size=row.size,
        checksum=row.checksum,
        digest=row.digest,
        owner=row.owner,
        filename=row.filename,
        creation_date=row.creation_date,
        disabled=row.disabled,
        directory_checksum=row.directory_checksum,
    )


def lock_digest(session: Session, digest: str) -> None:
    """Hold the advisory lock of ``digest`` until the transaction ends."""
    key = int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)
    session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def get(session: Session, file_id: str, *, for_update: bool = False) -> StoredFile | None:
    """The file ``file_id``, or None."""
    row = session.get(FileRow, file_id, with_for_update=for_update)
    return _stored(row) if row is not None else None


def get_by_ref(session: Session, kind: str, asset_key: str, *, for_update: bool = False) -> StoredFile | None:
    """The file of kind ``kind`` of the asset ``asset_key``, or None."""
    query = sa.select(FileRow).where(FileRow.kind == kind, FileRow.asset_key == asset_key)
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).first()
    return _stored(row) if row is not None else None


def insert_file(session: Session, stored: StoredFile) -> bool:
    """Insert ``stored``; False (and nothing written) if its kind and asset already have a file."""
    values = {
        "file_id": stored.file_id,
        "kind": stored.kind,
        "asset_key": stored.asset_key,
        "checksum": stored.checksum,
        "size": stored.size,
        "owner": stored.owner,
        "filename": stored.filename,
        "creation_date": stored.creation_date,
        "digest": stored.digest,
        "disabled": stored.disabled,
        "directory_checksum": stored.directory_checksum,
    }
    statement = (
        insert(FileRow)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["kind", "asset_key"], index_where=sa.text("asset_key <> ''"))
        .returning(FileRow.file_id)
    )
    return session.execute(statement).first() is not None


def disable(session: Session, file_id: str) -> None:
    """Mark a file disabled."""
    session.execute(sa.update(FileRow).where(FileRow.file_id == file_id).values(disabled=True))


def live_references(session: Session, digest: str) -> int:
    """How many enabled files use the blob ``digest``."""
    query = sa.select(sa.func.count()).select_from(FileRow).where(FileRow.digest == digest, ~FileRow.disabled)
    return session.scalar(query) or 0
