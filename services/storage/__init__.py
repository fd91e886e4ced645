"""The storage service: one organization's files, streamed, checked by sha256, served by permission.

- :mod:`~services.storage.server`: the gRPC handlers (Upload, Download, StatFile, DeleteFile).
- :mod:`~services.storage.files`: uploads (validated, streamed, hashed, checked, committed), lookups,
  deletion and the removal of unreferenced blobs.
- :mod:`~services.storage.permissions`: who may read a file, asked of the ledger.
- :mod:`~services.storage.backend`: the content-addressed :class:`FileStore` interface and its
  filesystem implementation (an S3-compatible one can follow).
- :mod:`~services.storage.store` and :mod:`~services.storage.tables`: the ``files`` table.
- :mod:`~services.storage.archives`: safe unpacking and Substra's archive checks (a library that compute
  and the gateway use too).
- :mod:`~services.storage.wire`: the zero-copy encoding of file chunks.
- :mod:`~services.storage.client`: helpers for callers (upload from a file, download with resume and
  checksum verification, :class:`~services.storage.client.FastCalls`).
- :mod:`~services.storage.addresses`: Substra's REST download routes of files (``storage_address``).
"""
