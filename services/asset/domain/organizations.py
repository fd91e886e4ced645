"""Organizations: each registers itself, once per channel, under the identity of its credential."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

from services.kit.errors import AlreadyExists, InvalidArgument
from services.kit.identity import Caller


@dataclass(frozen=True)
class Organization:
    """A member of a channel."""

    id: str
    channel: str
    address: str
    creation_date: dt.datetime


class OrganizationRepository(Protocol):
    """Persistence the rules need."""

    def get(self, channel: str, org_id: str) -> Organization | None:
        """The organization, or None."""

    def add(self, organization: Organization) -> None:
        """Store a new organization."""

    def list(self, channel: str) -> list[Organization]:
        """Every organization of the channel, oldest first."""


def validate_address(address: str) -> str:
    """An organization address is empty or an absolute http(s) URL."""
    if not address:
        return ""
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidArgument.on("address", "must be an absolute http(s) URL")
    return address


def register(repo: OrganizationRepository, caller: Caller, address: str, now: dt.datetime) -> Organization:
    """Register the calling organization in its channel; the id is never taken from the request."""
    address = validate_address(address)
    if repo.get(caller.channel, caller.org_id) is not None:
        raise AlreadyExists(
            f"organization {caller.org_id} is already registered in channel {caller.channel}",
            metadata={"keys": caller.org_id},
        )
    organization = Organization(id=caller.org_id, channel=caller.channel, address=address, creation_date=now)
    repo.add(organization)
    return organization
