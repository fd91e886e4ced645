"""Two organizations' storage services and the ledger they ask, in-process over loopback gRPC.

``net.storage(owner, caller)`` is a StorageService stub of ``owner``'s storage authenticated as
``caller``; ``net.ledger(org)`` an AssetService stub. Storages: ``org1`` and ``org2`` (tight archive
limits for the bomb tests, a 4 GiB file limit for the multi-GB round trip), ``tiny`` (org1, 1 MiB file
limit, model export disabled) and ``offline`` (org1, its ledger unreachable). Every helper builds fresh
assets, so tests are independent.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.asset.v1 import resources_pb2 as asset_res
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api
from tessera.storage.v1 import storage_service_pb2_grpc as api_grpc

from services.asset.bootstrap import build as build_ledger
from services.asset.settings import AssetSettings
from services.kit.client import sync_channel
from services.kit.db import ensure_database
from services.kit.identity import OrgCredentials
from services.kit.status import StatusDetails, status_details
from services.kit.storage.client import FastCalls, upload_requests
from services.storage.bootstrap import build as build_storage
from services.storage.settings import StorageSettings
from services.storage.store.blobs import FilesystemStore
from tests.support import ServerThread
from tools.devnet.credentials import CredentialFiles, new_secret, write_org_credentials

ORG1, ORG2 = "MyOrg1MSP", "MyOrg2MSP"
ORGS = (ORG1, ORG2)
SECRETS = {org: new_secret() for org in ORGS}
CHANNEL = "mychannel"
CHANNELS = f"{CHANNEL}={ORG1},{ORG2}"
EXPORT_CHANNELS = (CHANNEL,)
BIG_LIMIT = 4 << 30
ARCHIVE_BYTES_LIMIT = 8 << 20
ARCHIVE_MEMBERS_LIMIT = 500
TINY_LIMIT = 1 << 20

DOCKERFILE = b'FROM python:3.11\nCOPY . .\nENTRYPOINT ["python3", "function.py", "--function-name", "train"]\n'


def new_key() -> str:
    return str(uuid.uuid4())


def sha256(data: bytes, salt: bytes = b"") -> str:
    return hashlib.sha256(data + salt).hexdigest()


@dataclass
class Storage:
    """One running storage service and its blob store (to look at the disk)."""

    org: str
    thread: ServerThread
    blobs: FilesystemStore
    database_url: str


@dataclass
class Network:
    """The ledger and the storage services, with stubs per calling organization."""

    ledger_thread: ServerThread
    services: dict[str, Storage]
    _channels: dict

    def _channel(self, addr: str, org: str) -> grpc.Channel:
        key = (addr, org)
        if key not in self._channels:
            self._channels[key] = sync_channel(addr, OrgCredentials(org, SECRETS[org]))
        return self._channels[key]

    def storage(self, owner: str, caller: str | None = None) -> api_grpc.StorageServiceStub:
        """A stub of ``owner``'s storage (``org1``, ``org2`` or ``tiny``) calling as ``caller``."""
        service = self.services[owner]
        return api_grpc.StorageServiceStub(self._channel(service.thread.addr, caller or service.org))

    def fast(self, owner: str, caller: str | None = None) -> FastCalls:
        """Upload and Download of ``owner``'s storage through the zero-copy chunk codec."""
        service = self.services[owner]
        return FastCalls(self._channel(service.thread.addr, caller or service.org))

    def ledger(self, org: str) -> asset_grpc.AssetServiceStub:
        return asset_grpc.AssetServiceStub(self._channel(self.ledger_thread.addr, org))

    def blobs(self, owner: str) -> FilesystemStore:
        return self.services[owner].blobs


def _storage_settings(
    org: str, folder: Path, url: str, ledger_addr: str, credentials: CredentialFiles, **overrides
) -> StorageSettings:
    values = dict(
        grpc_addr="127.0.0.1:0",
        database_url=url,
        **credentials.settings(org),
        channels=CHANNELS,
        org_id=org,
        storage_root=str(folder),
        asset_addr=ledger_addr,
        public_url=f"http://{org.lower()}.test",
        model_export_channels=EXPORT_CHANNELS,
        max_file_bytes=BIG_LIMIT,
        max_unpacked_bytes=ARCHIVE_BYTES_LIMIT,
        max_archive_members=ARCHIVE_MEMBERS_LIMIT,
        shutdown_grace=0.5,
    )
    values.update(overrides)
    return StorageSettings(**values)


@pytest.fixture(scope="package")
def net(postgres, tmp_path_factory) -> Network:
    folder = tmp_path_factory.mktemp("storage-net")
    credentials = write_org_credentials(folder / "credentials", SECRETS)
    suffix = uuid.uuid4().hex[:8]
    ledger_url = postgres.url(f"sledger_{suffix}")
    ensure_database(ledger_url)
    ledger_settings = AssetSettings(
        grpc_addr="127.0.0.1:0",
        database_url=ledger_url,
        **credentials.settings(),
        channels=CHANNELS,
    )
    with ServerThread(lambda: build_ledger(ledger_settings)) as ledger:
        specs = {
            "org1": (ORG1, {}),
            "org2": (ORG2, {}),
            "tiny": (ORG1, {"max_file_bytes": TINY_LIMIT, "durable": False, "model_export_channels": ()}),
            "offline": (ORG1, {"asset_addr": "127.0.0.1:1", "ledger_timeout": 2.0, "durable": False}),
        }
        network = Network(ledger, {}, {})
        try:
            for name, (org, overrides) in specs.items():
                url = postgres.url(f"s{name}_{suffix}")
                ensure_database(url)
                settings = _storage_settings(org, folder / name, url, ledger.addr, credentials, **overrides)
                thread = ServerThread(lambda settings=settings: build_storage(settings))
                thread.__enter__()
                network.services[name] = Storage(org, thread, FilesystemStore(folder / name), url)
            for org in ORGS:
                network.ledger(org).RegisterOrganization(
                    asset_api.RegisterOrganizationRequest(address=f"http://{org.lower()}.test")
                )
            yield network
        finally:
            for channel in network._channels.values():
                channel.close()
            for service in reversed(network.services.values()):
                service.thread.__exit__(None, None, None)


# ------------------------------------------------------------------------------------------------ calls
def call_error(call, *args, **kwargs) -> StatusDetails:
    """Run a call that must fail; its decoded status."""
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, **kwargs)
        if hasattr(result, "__next__"):  # a server stream fails while it is read
            for _ in result:
                pass
    return status_details(info.value)


def meta(kind: int = res.FILE_KIND_MODEL, asset_key: str | None = None, **fields) -> api.UploadMetadata:
    metadata = api.UploadMetadata(kind=kind, **fields)
    if asset_key is not None:
        metadata.asset_key = asset_key
    return metadata


def upload(stub, data: bytes | Iterable[bytes], metadata: api.UploadMetadata | None = None, **kw) -> res.FileInfo:
    """Upload ``data`` (bytes or chunks) with ``metadata`` (or one built from ``kw``)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return stub.Upload(upload_requests(metadata or meta(**kw), source)).file


def download(stub, offset: int = 0, export: bool = False, **which) -> tuple[res.FileInfo, bytes]:
    """The FileInfo and the bytes of a file named by ``file_id=`` or ``ref=``."""
    request = api.DownloadRequest(offset=offset, export=export, **which)
    info, parts = None, []
    for response in stub.Download(request):
        if response.WhichOneof("payload") == "info":
            info = response.info
        else:
            parts.append(response.chunk)
    return info, b"".join(parts)


def ref(kind: int, key: str) -> res.FileRef:
    return res.FileRef(kind=kind, asset_key=key)


def assert_nothing_left(net, name: str, key: str, kind: int = res.FILE_KIND_MODEL, blobs_before: int | None = None):
    """No staged bytes, no record for the asset, no new blob."""
    blobs = net.blobs(name)
    deadline = time.monotonic() + 5  # a cancelled upload is cleaned up by the server shortly after
    while blobs.staged_count() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert blobs.staged_count() == 0
    error = call_error(net.storage(name).StatFile, api.StatFileRequest(ref=ref(kind, key)))
    assert error.code == grpc.StatusCode.NOT_FOUND
    if blobs_before is not None:
        assert blobs.blob_count() == blobs_before


# --------------------------------------------------------------------------------------------- archives
def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def function_archive() -> bytes:
    return tar_gz({"Dockerfile": DOCKERFILE, "function.py": b"import substratools as tools\n"})


# ----------------------------------------------------------------------------------------------- ledger
def public() -> asset_res.NewPermissions:
    return asset_res.NewPermissions(public=True)


def private(*orgs: str) -> asset_res.NewPermissions:
    return asset_res.NewPermissions(public=False, authorized_ids=list(orgs))


def addressable(info: res.FileInfo) -> asset_res.Addressable:
    """The ledger's Addressable of a stored file."""
    return asset_res.Addressable(checksum=info.checksum, storage_address=info.storage_address)


CHAIN_IO = {
    "inputs": {"model": asset_res.FunctionInput(kind=asset_res.ASSET_MODEL, optional=True)},
    "outputs": {"model": asset_res.FunctionOutput(kind=asset_res.ASSET_MODEL)},
}


def register_function(net: Network, org: str, permissions, archive: res.FileInfo, description: res.FileInfo, key: str):
    """A READY function whose files are stored at ``org``'s storage."""
    stub = net.ledger(org)
    stub.RegisterFunction(
        asset_api.RegisterFunctionRequest(
            key=key,
            name="function",
            description=addressable(description),
            archive=addressable(archive),
            permissions=permissions,
            inputs=CHAIN_IO["inputs"],
            outputs=CHAIN_IO["outputs"],
        )
    )
    for action in (asset_res.FUNCTION_ACTION_BUILDING, asset_res.FUNCTION_ACTION_READY):
        stub.ApplyFunctionAction(asset_api.ApplyFunctionActionRequest(function_key=key, action=action))


def stored_function(net: Network, org: str = ORG1, permissions=None) -> str:
    """Upload a function's archive and description to ``org``'s storage, register it; its key."""
    name = "org1" if org == ORG1 else "org2"
    key = new_key()
    archive = upload(net.storage(name), function_archive(), meta(res.FILE_KIND_FUNCTION_ARCHIVE, key))
    description = upload(net.storage(name), b"# train\n", meta(res.FILE_KIND_FUNCTION_DESCRIPTION, key))
    register_function(net, org, permissions or public(), archive, description, key)
    return key


def plan_with_tasks(net: Network, owner: str, worker: str, *outputs: asset_api.NewComputeTaskOutput) -> list[str]:
    """A plan of ``owner`` with a chain of tasks run by ``worker``, one per output spec; their keys."""
    stub = net.ledger(owner)
    function_key = stored_function(net, owner)
    plan_key = new_key()
    stub.RegisterComputePlan(asset_api.RegisterComputePlanRequest(key=plan_key, name="plan"))
    keys, specs = [], []
    for output in outputs:
        task = asset_api.NewComputeTask(
            key=new_key(), compute_plan_key=plan_key, function_key=function_key, worker=worker
        )
        if keys:
            task.inputs.append(
                asset_api.NewComputeTaskInput(
                    identifier="model", parent_task_key=keys[-1], parent_task_output_identifier="model"
                )
            )
        task.outputs["model"].CopyFrom(output)
        keys.append(task.key)
        specs.append(task)
    stub.RegisterTasks(asset_api.RegisterTasksRequest(tasks=specs))
    return keys


def act(stub, task_key: str, action: int) -> None:
    stub.ApplyTaskAction(asset_api.ApplyTaskActionRequest(task_key=task_key, action=action))


def produce_model(net: Network, worker_storage: str, worker: str, task_key: str, content: bytes) -> res.FileInfo:
    """What the worker's compute does: EXECUTING, upload the model (salted with the task key), register
    it with the address storage gave, DONE. Returns the stored file."""
    ledger = net.ledger(worker)
    act(ledger, task_key, asset_res.TASK_ACTION_EXECUTING)
    model_key = new_key()
    info = upload(
        net.storage(worker_storage),
        content,
        meta(res.FILE_KIND_MODEL, model_key, checksum_salt=task_key, filename="model.bin"),
    )
    ledger.RegisterModels(
        asset_api.RegisterModelsRequest(
            models=[
                asset_api.NewModel(
                    key=model_key,
                    compute_task_key=task_key,
                    compute_task_output_identifier="model",
                    address=addressable(info),
                )
            ]
        )
    )
    act(ledger, task_key, asset_res.TASK_ACTION_DONE)
    return info
