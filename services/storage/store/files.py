"""The ``files`` table as the application uses it, inside one transaction (:class:`FileRecords`);
:class:`services.storage.store.sql.SqlFileRecords` implements it on PostgreSQL."""

from __future__ import annotations

from typing import Protocol

from services.storage.domain.records import Kind, StoredFile


class FileRecords(Protocol):
    """Rows of stored files, and the per-digest lock that orders blob commits and removals.

    Committing a blob and inserting the row that references it happen under the digest's lock, and so do
    deciding that a blob is no longer referenced and removing it: replicas sharing the database and the
    blobs never remove a blob that a concurrent upload is about to reference.
    """

    def get(self, file_id: str, *, for_update: bool = False) -> StoredFile | None:
        """The file ``file_id``, or None (``for_update``: locked until the transaction ends)."""

    def get_by_ref(self, kind: Kind, asset_key: str) -> StoredFile | None:
        """The file of kind ``kind`` of the asset ``asset_key``, or None."""

    def insert(self, stored: StoredFile) -> bool:
        """Insert ``stored``; False (and nothing written) if its kind and asset already have a file."""

    def disable(self, file_id: str) -> None:
        """Mark a file disabled (rows are never deleted)."""

    def live_references(self, digest: str) -> int:
        """How many enabled files use the blob ``digest``."""

    def lock_digest(self, digest: str) -> None:
        """Hold the lock of ``digest`` until the transaction ends."""
