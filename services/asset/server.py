"""gRPC handlers of the ledger: they translate protobuf to domain calls and back, nothing more."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import organizations
from services.asset.store.repositories import SqlOrganizations
from services.kit.db import UnitOfWork
from services.kit.identity import current_caller


def _timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _organization(org: organizations.Organization, caller_id: str) -> res.Organization:
    return res.Organization(
        id=org.id, address=org.address, creation_date=_timestamp(org.creation_date), is_current=org.id == caller_id
    )


def now() -> dt.datetime:
    """Transaction time of the ledger (UTC); never the client's clock."""
    return dt.datetime.now(dt.UTC)


class AssetService(api_grpc.AssetServiceServicer):
    """The ledger's gRPC API. RPCs not overridden here answer UNIMPLEMENTED."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def RegisterOrganization(self, request: api.RegisterOrganizationRequest, context):
        caller = current_caller()
        org = await self._uow.run(
            lambda session: organizations.register(SqlOrganizations(session), caller, request.address, now())
        )
        return api.RegisterOrganizationResponse(organization=_organization(org, caller.org_id))

    async def ListOrganizations(self, request: api.ListOrganizationsRequest, context):
        caller = current_caller()
        orgs = await self._uow.run(lambda session: SqlOrganizations(session).list(caller.channel))
        return api.ListOrganizationsResponse(
            organizations=[_organization(o, caller.org_id) for o in orgs], total_size=len(orgs)
        )
