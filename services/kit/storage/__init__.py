"""The client side of the storage service's gRPC API, shared by every caller (compute, the gateway, tools).

- :mod:`~services.kit.storage.addresses`: Substra's REST download routes of files (``storage_address``),
  the one place that builds and parses them.
- :mod:`~services.kit.storage.wire`: the zero-copy encoding of file chunks (the server uses it too).
- :mod:`~services.kit.storage.client`: upload from a file or chunks, download with resume and checksum
  verification, :class:`~services.kit.storage.client.FastCalls`.

Services never import each other's packages (``docs/adr/0008-service-boundaries.md``); what two of them
share lives in the kit.
"""
