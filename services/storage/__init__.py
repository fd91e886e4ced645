"""The storage service: one organization's files, streamed, checked by sha256, served by permission.

Rooms as in every service: ``__main__`` → :mod:`~services.storage.bootstrap` (the composition root) with
:mod:`~services.storage.settings`;

- :mod:`~services.storage.server`: the gRPC handlers (Upload, Download, StatFile, DeleteFile), which only
  translate protobuf to the calls below and back.
- :mod:`~services.storage.domain`: the rules, free of I/O: :mod:`~.domain.records` (a stored file, its
  kinds, download checks), :mod:`~.domain.uploads` (metadata validation, size and checksum checks, archive
  checks by kind, conflicts with a stored file), :mod:`~.domain.permissions` (who may read, upload,
  delete; the ledger's answers behind the ``Ledger`` protocol).
- :mod:`~services.storage.files`: what storage does with files (lookups, uploads, opening, deletion, blob
  collection), over a unit of work and the blob store.
- :mod:`~services.storage.streaming`: bytes on the move: an upload received into a staged blob, a blob
  read ahead for a download.
- :mod:`~services.storage.ledger`: the ``Ledger`` protocol over the ledger's gRPC API.
- :mod:`~services.storage.store`: the ``files`` table (:mod:`~.store.files` its protocol, :mod:`~.store.sql`
  on PostgreSQL, :mod:`~.store.tables`) and the content-addressed blobs (:mod:`~.store.blobs`, the
  ``BlobStore`` interface and its filesystem implementation; an S3-compatible one can follow).
- ``migrations/``: the Alembic history of schema ``storage``.

The storage API's client helpers (addresses, chunk codec, upload/download) are in
:mod:`services.kit.storage`; safe unpacking in :mod:`services.kit.archives`.
"""
