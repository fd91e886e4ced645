"""Organizations: each registers itself, once per channel, under the identity of its credential."""

from __future__ import annotations

from urllib.parse import urlparse

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain.common import Context, timestamp
from services.kit.errors import AlreadyExists, InvalidArgument


def validate_address(address: str) -> str:
    """An organization address is empty or an absolute http(s) URL."""
    if not address:
        return ""
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidArgument.on("address", "must be an absolute http(s) URL")
    return address


def register(ctx: Context, address: str) -> res.Organization:
    """Register the calling organization in its channel; the id is never taken from the request."""
    address = validate_address(address)
    if ctx.org in ctx.store.organization_ids():
        raise AlreadyExists(
            f"organization {ctx.org} is already registered in channel {ctx.channel}", metadata={"keys": ctx.org}
        )
    organization = res.Organization(id=ctx.org, address=address, creation_date=timestamp(ctx.now))
    ctx.store.add_organization(organization)
    ctx.emit(res.ASSET_ORGANIZATION, ctx.org, ev.EVENT_ASSET_CREATED, organization)
    return organization
