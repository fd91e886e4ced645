"""The event service is its organization's own: another organization's valid credential is refused."""

from __future__ import annotations

import grpc
import pytest
from tessera.event.v1 import event_service_pb2 as api
from tessera.event.v1 import event_service_pb2_grpc as api_grpc

from services.kit.client import sync_channel
from services.kit.identity import OrgCredentials
from services.kit.status import status_details


def _events_as(world, org: str) -> api_grpc.EventServiceStub:
    creds = OrgCredentials(org, world.secrets[org], channel=world.channels[0])
    return api_grpc.EventServiceStub(sync_channel(world.event_addr, creds))


def test_its_own_organization_may_call(world):
    assert _events_as(world, world.org1).ListNewsFeed(api.ListNewsFeedRequest(page_size=1)) is not None


@pytest.mark.parametrize(
    "call",
    [
        lambda stub: stub.ListEvents(api.ListEventsRequest(page_size=1)),
        lambda stub: stub.ListNewsFeed(api.ListNewsFeedRequest(page_size=1)),
        lambda stub: next(iter(stub.SubscribeEvents(api.SubscribeEventsRequest(), timeout=5))),
    ],
    ids=["ListEvents", "ListNewsFeed", "SubscribeEvents"],
)
def test_a_peer_with_a_valid_credential_is_refused(world, call):
    with pytest.raises(grpc.RpcError) as info:
        call(_events_as(world, world.org2))
    details = status_details(info.value)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWN_ORGANIZATION")
