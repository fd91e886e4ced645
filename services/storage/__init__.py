"""The storage service: one organization's files, streamed, checked by sha256, served by permission.

- :mod:`~services.storage.server`: the gRPC handlers (Upload, Download, StatFile, DeleteFile).
- :mod:`~services.storage.files`: uploads (validated, streamed, hashed, checked, committed), lookups,
  deletion and the removal of unreferenced blobs.
- :mod:`~services.storage.permissions`: who may read a file, asked of the ledger.
- :mod:`~services.storage.backend`: the content-addressed :class:`FileStore` interface and its
  filesystem implementation (an S3-compatible one can follow).
- :mod:`~services.storage.store` and :mod:`~services.storage.tables`: the ``files`` table.

The storage API's client helpers (addresses, chunk codec, upload/download) are in
:mod:`services.kit.storage`; safe unpacking in :mod:`services.kit.archives`.
"""
