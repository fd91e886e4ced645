"""Secret mode of the dev network (ADR 0014): an organization's processes are given its own secret only, and another
organization's name with that secret is refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import grpc
import pytest
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.compute.v1 import compute_service_pb2 as compute_api
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc

from services.kit.client import sync_channel
from services.kit.identity import OrgCredentials, secret_verifier


def _given(network, org: str) -> tuple[list[str], list[Path]]:
    """The configuration of ``org``'s processes ("" for the ledger): their environment values, and every file named
    there or lying under a folder named there (state, work, media folders, credential and users files...)."""
    values = [value for spec in network.services if spec.org == org for value in spec.env.values()]
    files: set[Path] = set()
    for value in values:
        path = Path(value)
        if not path.is_absolute():
            continue
        if path.is_file():
            files.add(path)
        elif path.is_dir():
            files.update(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return values, sorted(files)


def _secrets(network) -> dict[str, str]:
    return {org.id: network.credentials.secret(org.id) for org in network.organizations}


@pytest.mark.parametrize("index", [0, 1, None], ids=["org1", "org2", "ledger"])
def test_no_process_is_given_a_secret_but_its_own_organizations(network, index):
    org = network.organizations[index].id if index is not None else ""
    values, files = _given(network, org)
    others = {o: s.encode() for o, s in _secrets(network).items() if o != org}
    found = []
    for path in files:
        try:
            content = path.read_bytes()
        except OSError:  # a socket or a file another user owns: nothing the organization reads either
            continue
        found += [(str(path), o) for o, secret in others.items() if secret in content]
    found += [(value, o) for value in values for o, secret in others.items() if secret.decode() in value]
    assert not found
    if org:  # the scan did read the organization's own credential
        own = network.credentials.secret_files[org]
        assert own in files and own.read_text() == network.credentials.secret(org)
        assert stat.S_IMODE(own.stat().st_mode) == 0o600
    assert network.credentials.verifiers in files


def test_every_process_holds_the_verifiers_of_the_secrets(network):
    verifiers = json.loads(network.credentials.verifiers.read_text())
    assert verifiers == {org: secret_verifier(secret) for org, secret in _secrets(network).items()}


def test_one_organizations_secret_under_anothers_name_is_unauthenticated(network):
    first, second = network.organizations
    own_secret = network.credentials.secret(first.id)
    ledger_addr = network.services[0].addr
    # Its own name works, the other's does not: on the ledger and on the other organization's compute.
    asset_grpc.AssetServiceStub(sync_channel(ledger_addr, network.org_credentials(first.id))).ListOrganizations(
        asset_api.ListOrganizationsRequest()
    )
    compute_grpc.ComputeServiceStub(sync_channel(second.compute, network.org_credentials(second.id))).GetStatus(
        compute_api.GetStatusRequest()
    )
    impostor = OrgCredentials(second.id, own_secret)
    calls = [
        lambda: asset_grpc.AssetServiceStub(sync_channel(ledger_addr, impostor)).ListOrganizations(
            asset_api.ListOrganizationsRequest()
        ),
        lambda: compute_grpc.ComputeServiceStub(sync_channel(second.compute, impostor)).GetStatus(
            compute_api.GetStatusRequest()
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
