"""Two organizations on the session's PostgreSQL and NATS, every service a real process, and the
calls an organization makes to register datasets and functions (what its gateway does)."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1 import storage_pb2, storage_service_pb2, storage_service_pb2_grpc

from services.kit.client import sync_channel
from services.kit.identity import OrgCredentials
from services.kit.storage.client import upload_requests
from tests.conftest import running_network
from tools.devnet.network import Network
from tools.samples import flassets

TIMEOUT = 180.0


@pytest.fixture(scope="package")
def network(postgres, tmp_path_factory):
    """The dev network, with short redelivery and reconciliation periods."""
    yield from running_network(
        postgres,
        tmp_path_factory,
        extra_env={"compute": {"TESSERA_ACK_WAIT": "4", "TESSERA_RECONCILE_SECONDS": "3"}},
    )


@dataclass
class Org:
    """One organization's clients: the ledger and its own storage."""

    id: str
    ledger: api_grpc.AssetServiceStub
    storage: storage_service_pb2_grpc.StorageServiceStub
    creds: OrgCredentials
    storage_addr: str

    def storage_of(self, other: Org) -> storage_service_pb2_grpc.StorageServiceStub:
        """``other``'s storage, called with this organization's credential (a peer's view)."""
        return storage_service_pb2_grpc.StorageServiceStub(sync_channel(other.storage_addr, self.creds))

    def upload(self, kind: int, key: str, data: bytes, filename: str = "file") -> storage_pb2.FileInfo:
        metadata = storage_service_pb2.UploadMetadata(kind=kind, asset_key=key, filename=filename)
        return self.storage.Upload(upload_requests(metadata, [data])).file

    def addressable(self, info: storage_pb2.FileInfo) -> res.Addressable:
        return res.Addressable(checksum=info.checksum, storage_address=info.storage_address)

    def dataset(self, rows_per_sample: list[np.ndarray], permissions: res.NewPermissions) -> tuple[str, list[str]]:
        """A data manager with an opener, and its data samples; returns their keys."""
        key = str(uuid.uuid4())
        opener = self.upload(storage_pb2.FILE_KIND_OPENER, key, flassets.OPENER.encode(), "opener.py")
        description = self.upload(storage_pb2.FILE_KIND_DATA_MANAGER_DESCRIPTION, key, b"# data\n", "description.md")
        self.ledger.RegisterDataManager(
            api.RegisterDataManagerRequest(
                key=key,
                name="csv",
                opener=self.addressable(opener),
                description=self.addressable(description),
                permissions=permissions,
                logs_permission=permissions,
            )
        )
        samples = []
        for rows in rows_per_sample:
            sample_key = str(uuid.uuid4())
            info = self.upload(storage_pb2.FILE_KIND_DATA_SAMPLE, sample_key, flassets.data_sample_zip(rows), "s.zip")
            samples.append(api.NewDataSample(key=sample_key, data_manager_keys=[key], checksum=info.directory_checksum))
        self.ledger.RegisterDataSamples(api.RegisterDataSamplesRequest(data_samples=samples))
        return key, [s.key for s in samples]

    def function(self, name: str, inputs: dict, outputs: dict, archive: bytes | None = None) -> str:
        """A public function whose archive runs ``name``; returns its key."""
        key = str(uuid.uuid4())
        data = archive or flassets.function_archive(name)
        archive_info = self.upload(storage_pb2.FILE_KIND_FUNCTION_ARCHIVE, key, data, "function.tar.gz")
        description = self.upload(storage_pb2.FILE_KIND_FUNCTION_DESCRIPTION, key, b"# f\n", "description.md")
        self.ledger.RegisterFunction(
            api.RegisterFunctionRequest(
                key=key,
                name=name,
                archive=self.addressable(archive_info),
                description=self.addressable(description),
                permissions=res.NewPermissions(public=True),
                inputs=inputs,
                outputs=outputs,
            )
        )
        return key


def orgs_of(network: Network) -> list[Org]:
    asset = network.services[0].addr
    out = []
    for org in network.organizations:
        creds = network.org_credentials(org.id)
        out.append(
            Org(
                org.id,
                api_grpc.AssetServiceStub(sync_channel(asset, creds)),
                storage_service_pb2_grpc.StorageServiceStub(sync_channel(org.storage, creds)),
                creds,
                org.storage,
            )
        )
    return out


@pytest.fixture(scope="package")
def orgs(network) -> list[Org]:
    """Both organizations (the network is started once the ledger lists them)."""
    return orgs_of(network)


def wait_for(predicate, timeout: float = TIMEOUT, period: float = 0.3, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(period)


def wait_function_ready(org: Org, key: str) -> res.Function:
    def ready():
        function = org.ledger.GetFunction(api.GetFunctionRequest(key=key)).function
        return (
            function
            if function.status != res.FUNCTION_STATUS_WAITING and function.status != res.FUNCTION_STATUS_BUILDING
            else None
        )

    return wait_for(ready, what=f"function {key} built")


def wait_plan_final(org: Org, key: str) -> res.ComputePlan:
    final = {res.PLAN_STATUS_DONE, res.PLAN_STATUS_FAILED, res.PLAN_STATUS_CANCELED}

    def done():
        plan = org.ledger.GetComputePlan(api.GetComputePlanRequest(key=key)).compute_plan
        non_final = plan.task_count - plan.done_count - plan.failed_count - plan.canceled_count
        return plan if plan.status in final and non_final == 0 else None

    return wait_for(done, what=f"plan {key} final")


def download(stub, kind: int, key: str) -> bytes:
    """A whole file from a storage service."""
    request = storage_service_pb2.DownloadRequest(ref=storage_pb2.FileRef(kind=kind, asset_key=key))
    return b"".join(r.chunk for r in stub.Download(request) if r.WhichOneof("payload") == "chunk")


def digest(data: bytes, salt: str = "") -> str:
    return hashlib.sha256(data + salt.encode()).hexdigest()


def grpc_code(call, *args) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value.code()
