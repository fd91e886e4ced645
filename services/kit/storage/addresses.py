"""Where a file is reachable from outside: Substra's REST download route of its asset.

The ledger's ``Addressable.storage_address`` must be an absolute URL; Substra puts the owner's REST
route there (``https://backend-org1/model/<key>/file/``, substra-domain.md §1.1, §3.7). Storage
builds it from ``TESSERA_PUBLIC_URL`` (the organization's gateway) so that an upload's answer can go
straight into a registration, and :func:`parse` turns it back into the (kind, asset key) a peer
asks the owner's storage for.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from tessera.storage.v1 import storage_pb2 as res

ROUTES = {
    res.FILE_KIND_FUNCTION_ARCHIVE: "function/{key}/file/",
    res.FILE_KIND_FUNCTION_DESCRIPTION: "function/{key}/description/",
    res.FILE_KIND_FUNCTION_IMAGE: "function/{key}/image/",
    res.FILE_KIND_OPENER: "data_manager/{key}/opener/",
    res.FILE_KIND_DATA_MANAGER_DESCRIPTION: "data_manager/{key}/description/",
    res.FILE_KIND_MODEL: "model/{key}/file/",
    res.FILE_KIND_LOGS: "logs/{key}/file/",
}
_BY_ROUTE = {(route.split("/")[0], route.split("/")[2]): kind for kind, route in ROUTES.items()}


def storage_address(public_url: str, kind: int, asset_key: str) -> str:
    """The URL of a file of ``kind`` for ``asset_key`` on the gateway at ``public_url``; "" if it has none."""
    route = ROUTES.get(kind)
    if not public_url or not asset_key or route is None:
        return ""
    return f"{public_url.rstrip('/')}/{route.format(key=asset_key)}"


def parse(address: str) -> res.FileRef | None:
    """The file a storage address names (any host), or None if it is not one of the routes above."""
    parts = [p for p in urlsplit(address).path.split("/") if p]
    if len(parts) < 3:
        return None
    resource, key, leaf = parts[-3:]
    kind = _BY_ROUTE.get((resource, leaf))
    if kind is None:
        return None
    try:
        return res.FileRef(kind=kind, asset_key=str(uuid.UUID(key)))
    except ValueError:
        return None
