"""What storage does with one organization's files, between the gRPC handlers and the stores: lookups,
uploads (validated, received, checked, committed), opening a file for download, deletion, and the
removal of blobs no enabled file uses. The rules come from :mod:`services.storage.domain`; the table is
reached through a unit of work that hands out :class:`~services.storage.store.files.FileRecords`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterable

from services.kit import archives
from services.kit.db import UnitOfWork
from services.kit.errors import NotFound
from services.storage.domain.records import BlobMissing, Kind, StoredFile, file_ref
from services.storage.domain.uploads import UploadRequest, check_new_upload, settle_duplicate, validate_upload
from services.storage.store.blobs import BlobReader, BlobStore, BlobWriter
from services.storage.store.files import FileRecords
from services.storage.streaming import IO_BYTES, Received, Upload, volume_full_refused

log = logging.getLogger("tessera.storage")


class Files:
    """One organization's files: its blob store and its ``files`` table."""

    def __init__(
        self,
        blobs: BlobStore,
        uow: UnitOfWork[FileRecords],
        *,
        reads: UnitOfWork[FileRecords] | None = None,
        org_id: str,
        max_file_bytes: int,
        limits: archives.Limits,
    ) -> None:
        self.blobs = blobs
        self._uow = uow
        self._reads = uow if reads is None else reads  # lookups (on an autocommit engine: no BEGIN, no COMMIT)
        self.org_id = org_id
        self.max_file_bytes = max_file_bytes
        self.limits = limits

    # ------------------------------------------------------------------------------------------- lookups
    async def find(self, file_id: str) -> StoredFile:
        """The file ``file_id``; NOT_FOUND otherwise."""
        found = await self._reads.run(lambda files: files.get(file_id))
        if found is None:
            raise NotFound(f"file {file_id} not found")
        return found

    async def find_by_ref(self, kind: Kind | None, asset_key: str) -> StoredFile:
        """The file of kind ``kind`` of the asset ``asset_key``; NOT_FOUND otherwise."""
        kind, key = file_ref(kind, asset_key)
        found = await self._reads.run(lambda files: files.get_by_ref(kind, key))
        if found is None:
            raise NotFound(f"no {kind} file for asset {key}")
        return found

    # ------------------------------------------------------------------------------------------- uploads
    async def upload(self, request: UploadRequest, chunks: AsyncIterable[bytes]) -> StoredFile:
        """Receive one file: refuse at once what cannot succeed, stage the chunks, check them, commit.
        Any failure (the caller going away included) leaves no staged byte, no blob and no row."""
        spec = validate_upload(request, self.max_file_bytes)
        small = spec.expected_size is not None and spec.expected_size <= IO_BYTES
        if spec.asset_key and not small:  # a small file is received sooner than asked about; the commit refuses it
            existing = await self._reads.run(lambda files: files.get_by_ref(spec.kind, spec.asset_key))
            check_new_upload(spec, existing)
        with volume_full_refused():
            writer = await asyncio.to_thread(self.blobs.stage)
        upload = Upload(spec, writer, max_bytes=self.max_file_bytes, limits=self.limits)
        try:
            async for chunk in chunks:
                await upload.write(chunk)
            received = await upload.finish()
            return await self._record(upload, received)
        except BaseException:
            upload.abort()
            raise

    async def _record(self, upload: Upload, received: Received) -> StoredFile:
        spec = upload.spec
        stored = StoredFile(
            file_id=str(uuid.uuid4()),
            kind=spec.kind,
            asset_key=spec.asset_key,
            size=received.size,
            checksum=received.checksum,
            digest=received.digest,
            owner=self.org_id,
            filename=spec.filename,
            creation_date=dt.datetime.now(dt.UTC),
            disabled=False,
            directory_checksum=received.directory_checksum,
        )
        try:
            return await self._uow.run(lambda files: self._commit(files, upload.writer, stored))
        except BaseException:
            # The blob may have been linked before the row failed: remove it unless something uses it.
            try:
                await asyncio.shield(self.collect(stored.digest))
            except Exception:  # logged; the original failure is the one to report
                log.exception("could not collect blob %s after a failed upload", stored.digest)
            raise

    def _commit(self, files: FileRecords, writer: BlobWriter, stored: StoredFile) -> StoredFile:
        """In one transaction, under the digest's lock: the blob, then the row (or the identical file)."""
        files.lock_digest(stored.digest)
        self.blobs.commit(writer, stored.digest)
        if files.insert(stored):
            return stored
        return settle_duplicate(files.get_by_ref(stored.kind, stored.asset_key), stored)

    # ------------------------------------------------------------------------------------------ download
    async def open(self, stored: StoredFile) -> BlobReader:
        """A reader of the file's bytes; DATA_LOSS when they are missing."""
        try:
            reader = await asyncio.to_thread(self.blobs.open, stored.digest)
        except FileNotFoundError:
            raise BlobMissing(f"the bytes of file {stored.file_id} are missing") from None
        if reader.size != stored.size:
            reader.close()
            raise BlobMissing(f"the bytes of file {stored.file_id} are damaged (size {reader.size}, not {stored.size})")
        return reader

    # -------------------------------------------------------------------------------------------- delete
    async def delete(self, stored: StoredFile) -> StoredFile:
        """Disable the file and remove its blob unless another enabled file uses it (idempotent)."""

        def disable(files: FileRecords) -> StoredFile:
            current = files.get(stored.file_id, for_update=True)
            if current is None:
                raise NotFound(f"file {stored.file_id} not found")
            files.disable(current.file_id)
            return current

        current = await self._uow.run(disable)
        await self.collect(current.digest)
        return await self.find(stored.file_id)

    async def collect(self, digest: str) -> None:
        """Remove the blob ``digest`` if no enabled file references it any more."""
        if not digest:
            return

        def work(files: FileRecords) -> None:
            files.lock_digest(digest)
            if files.live_references(digest) == 0:
                self.blobs.delete(digest)

        await self._uow.run(work)
