"""The ``files`` table on PostgreSQL: :class:`~services.storage.store.files.FileRecords` on one session,
explicit row mapping, no rule. The digest lock is a transaction-scoped advisory lock."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.storage.domain.records import Kind, StoredFile
from services.storage.store.tables import FileRow

FILES = FileRow.__table__
COLUMNS = [column.name for column in FILES.columns]

# Built once, on the table rather than the mapped class: a lookup or an insert then skips the ORM's
# per-statement work (a small file's upload or download is a handful of statements).
GET = sa.select(FILES).where(FILES.c.file_id == sa.bindparam("file_id"))
GET_FOR_UPDATE = GET.with_for_update()
GET_BY_REF = sa.select(FILES).where(
    FILES.c.kind == sa.bindparam("kind"), FILES.c.asset_key == sa.bindparam("asset_key")
)
INSERT = (
    insert(FILES)
    .values({name: sa.bindparam(name) for name in COLUMNS})
    .on_conflict_do_nothing(index_elements=["kind", "asset_key"], index_where=sa.text("asset_key <> ''"))
    .returning(FILES.c.file_id)
)


def _stored(row) -> StoredFile:
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

    def _one(self, statement, parameters: dict) -> StoredFile | None:
        row = self.session.execute(statement, parameters).first()
        return _stored(row) if row is not None else None

    def get(self, file_id: str, *, for_update: bool = False) -> StoredFile | None:
        return self._one(GET_FOR_UPDATE if for_update else GET, {"file_id": file_id})

    def get_by_ref(self, kind: Kind, asset_key: str) -> StoredFile | None:
        return self._one(GET_BY_REF, {"kind": str(kind), "asset_key": asset_key})

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
        return self.session.execute(INSERT, values).first() is not None

    def disable(self, file_id: str) -> None:
        self.session.execute(sa.update(FileRow).where(FileRow.file_id == file_id).values(disabled=True))

    def live_references(self, digest: str) -> int:
        query = sa.select(sa.func.count()).select_from(FileRow).where(FileRow.digest == digest, ~FileRow.disabled)
        return self.session.scalar(query) or 0

    def lock_digest(self, digest: str) -> None:
        key = int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)
        self.session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
