"""The ``files`` table on PostgreSQL: :class:`~services.storage.store.files.FileRecords` on one session,
explicit row mapping, no rule. The digest lock is a transaction-scoped advisory lock."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.storage.domain.records import Kind, StoredFile
from services.storage.store.tables import FileRow


def _stored(row: FileRow) -> StoredFile:
    return StoredFile(
        file_id=row.file_id,
        kind=Kind(row.kind),
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


class SqlFileRecords:
    """The files of one transaction's session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, file_id: str, *, for_update: bool = False) -> StoredFile | None:
        row = self.session.get(FileRow, file_id, with_for_update=for_update)
        return _stored(row) if row is not None else None

    def get_by_ref(self, kind: Kind, asset_key: str) -> StoredFile | None:
        query = sa.select(FileRow).where(FileRow.kind == str(kind), FileRow.asset_key == asset_key)
        row = self.session.scalars(query).first()
        return _stored(row) if row is not None else None

    def insert(self, stored: StoredFile) -> bool:
        values = {
            "file_id": stored.file_id,
            "kind": str(stored.kind),
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
        return self.session.execute(statement).first() is not None

    def disable(self, file_id: str) -> None:
        self.session.execute(sa.update(FileRow).where(FileRow.file_id == file_id).values(disabled=True))

    def live_references(self, digest: str) -> int:
        query = sa.select(sa.func.count()).select_from(FileRow).where(FileRow.digest == digest, ~FileRow.disabled)
        return self.session.scalar(query) or 0

    def lock_digest(self, digest: str) -> None:
        key = int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)
        self.session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
