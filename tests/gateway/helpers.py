"""Builders for the gateway tests: files the SDK uploads, SDK clients, and the steps of an
organization's compute simulated on the ledger (until the compute service runs tasks here)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from pathlib import Path

import substra
from substra.sdk import schemas
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1 import storage_pb2, storage_service_pb2, storage_service_pb2_grpc

from services.kit.client import sync_channel
from services.kit.identity import OrgCredentials
from tests.gateway.conftest import SECRETS, Org, User

OPENER = """import substratools as tools


class Opener(tools.Opener):
    def get_data(self, folders):
        return folders

    def fake_data(self, n_samples=None):
        return []
"""
FUNCTION = """import substratools as tools


@tools.register
def {name}(inputs, outputs, task_properties):
    pass


if __name__ == "__main__":
    tools.execute()
"""


def client(org: Org, user: User | None = None) -> substra.Client:
    """A remote SDK client logged in at ``org``'s gateway."""
    user = user or org.admin
    return substra.Client(url=org.url, backend_type="remote", username=user.username, password=user.password)


def function_archive(folder: Path, name: str) -> Path:
    """A tar.gz with a Dockerfile and a substratools script, as substrafl makes them."""
    path = folder / f"{name}.tar.gz"
    dockerfile = f'FROM python:3.11-slim\nENTRYPOINT ["python3", "function.py", "--function-name", "{name}"]\n'
    with tarfile.open(path, "w:gz") as archive:
        for member, text in (("Dockerfile", dockerfile), ("function.py", FUNCTION.format(name=name))):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def files(folder: Path) -> dict[str, Path]:
    """Opener, description and three sample folders."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "opener.py").write_text(OPENER)
    (folder / "description.md").write_text("# A dataset\nFor the gateway tests.\n")
    paths = {"opener": folder / "opener.py", "description": folder / "description.md"}
    for index in range(1, 4):
        sample = folder / f"sample{index}"
        sample.mkdir(exist_ok=True)
        (sample / "data.csv").write_text(f"x,y\n{index},{index * 2}\n")
        paths[f"sample{index}"] = sample
    return paths


PUBLIC = schemas.Permissions(public=True, authorized_ids=[])


def dataset_spec(paths: dict[str, Path], name: str = "demo-ds", **kwargs) -> schemas.DatasetSpec:
    """A public dataset."""
    return schemas.DatasetSpec(
        name=name,
        data_opener=paths["opener"],
        description=paths["description"],
        permissions=kwargs.pop("permissions", PUBLIC),
        logs_permission=kwargs.pop("logs_permission", PUBLIC),
        metadata=kwargs.pop("metadata", {"k": "v"}),
        **kwargs,
    )


def _input(identifier: str, kind: schemas.AssetKind, multiple=False, optional=False) -> schemas.FunctionInputSpec:
    return schemas.FunctionInputSpec(identifier=identifier, kind=kind, multiple=multiple, optional=optional)


DATA_INPUTS = [
    _input("opener", schemas.AssetKind.data_manager),
    _input("datasamples", schemas.AssetKind.data_sample, multiple=True),
]


def function_spec(folder: Path, paths: dict[str, Path], role: str, permissions=PUBLIC) -> schemas.FunctionSpec:
    """train (→ model), predict (model → predictions) or evaluate (predictions → accuracy)."""
    model = schemas.AssetKind.model
    inputs, outputs = {
        "train": (DATA_INPUTS, [schemas.FunctionOutputSpec(identifier="model", kind=model, multiple=False)]),
        "predict": (
            [*DATA_INPUTS, _input("model", model)],
            [schemas.FunctionOutputSpec(identifier="predictions", kind=model, multiple=False)],
        ),
        "evaluate": (
            [*DATA_INPUTS, _input("predictions", model)],
            [schemas.FunctionOutputSpec(identifier="accuracy", kind=schemas.AssetKind.performance, multiple=False)],
        ),
    }[role]
    return schemas.FunctionSpec(
        name=role,
        description=paths["description"],
        file=function_archive(folder, role),
        permissions=permissions,
        inputs=inputs,
        outputs=outputs,
    )


# ------------------------------------------------------------------------- a compute, simulated
def storage_stub(org: Org) -> storage_service_pb2_grpc.StorageServiceStub:
    """``org``'s storage as the organization itself."""
    return storage_service_pb2_grpc.StorageServiceStub(
        sync_channel(org.storage_addr, OrgCredentials(org.id, SECRETS[org.id]))
    )


def upload(org: Org, kind: int, asset_key: str, data: bytes, salt: str = "") -> storage_pb2.FileInfo:
    """Store a file in ``org``'s storage, as its compute would."""
    metadata = storage_service_pb2.UploadMetadata(kind=kind, asset_key=asset_key, filename="file", checksum_salt=salt)
    requests = [storage_service_pb2.UploadRequest(metadata=metadata), storage_service_pb2.UploadRequest(chunk=data)]
    return storage_stub(org).Upload(iter(requests)).file


def make_ready(org: Org, function_key: str) -> None:
    """Build a function as its owner's compute would: BUILDING, image, READY."""
    org.ledger.ApplyFunctionAction(
        api.ApplyFunctionActionRequest(function_key=function_key, action=res.FUNCTION_ACTION_BUILDING)
    )
    image = res.Addressable(
        checksum=hashlib.sha256(function_key.encode()).hexdigest(),
        storage_address=f"{org.url}/function/{function_key}/image/",
    )
    org.ledger.UpdateFunction(api.UpdateFunctionRequest(key=function_key, image=image))
    org.ledger.ApplyFunctionAction(
        api.ApplyFunctionActionRequest(function_key=function_key, action=res.FUNCTION_ACTION_READY)
    )


def execute(org: Org, task_key: str, model: bytes | None = None, output="model", perf: tuple | None = None) -> str:
    """Run a task as its worker would: EXECUTING, outputs stored and registered, DONE."""
    org.ledger.ApplyTaskAction(api.ApplyTaskActionRequest(task_key=task_key, action=res.TASK_ACTION_EXECUTING))
    model_key = ""
    if model is not None:
        model_key = str(uuid.uuid4())
        info = upload(org, storage_pb2.FILE_KIND_MODEL, model_key, model, salt=task_key)
        address = res.Addressable(checksum=info.checksum, storage_address=f"{org.url}/model/{model_key}/file/")
        org.ledger.RegisterModels(
            api.RegisterModelsRequest(
                models=[
                    api.NewModel(
                        key=model_key, compute_task_key=task_key, compute_task_output_identifier=output, address=address
                    )
                ]
            )
        )
    if perf is not None:
        identifier, value = perf
        org.ledger.RegisterPerformance(
            api.RegisterPerformanceRequest(
                compute_task_key=task_key, compute_task_output_identifier=identifier, performance_value=value
            )
        )
    org.ledger.ApplyTaskAction(api.ApplyTaskActionRequest(task_key=task_key, action=res.TASK_ACTION_DONE))
    return model_key


def fail(org: Org, task_key: str, logs: bytes) -> None:
    """Fail an EXECUTING-able task with logs, as its worker would."""
    org.ledger.ApplyTaskAction(api.ApplyTaskActionRequest(task_key=task_key, action=res.TASK_ACTION_EXECUTING))
    info = upload(org, storage_pb2.FILE_KIND_LOGS, task_key, logs)
    org.ledger.RegisterFailureReport(
        api.RegisterFailureReportRequest(
            asset_key=task_key,
            asset_type=res.FAILED_ASSET_COMPUTE_TASK,
            error_type=res.EXECUTION_ERROR,
            logs_address=res.Addressable(checksum=info.checksum, storage_address=f"{org.url}/logs/{task_key}/file/"),
        )
    )


def fail_build(org: Org, function_key: str, logs: bytes) -> None:
    """Fail a function's build with logs, as its owner's compute would (its tasks fail with it)."""
    org.ledger.ApplyFunctionAction(
        api.ApplyFunctionActionRequest(function_key=function_key, action=res.FUNCTION_ACTION_BUILDING)
    )
    info = upload(org, storage_pb2.FILE_KIND_LOGS, function_key, logs)
    org.ledger.RegisterFailureReport(
        api.RegisterFailureReportRequest(
            asset_key=function_key,
            asset_type=res.FAILED_ASSET_FUNCTION,
            error_type=res.BUILD_ERROR,
            logs_address=res.Addressable(
                checksum=info.checksum, storage_address=f"{org.url}/logs/{function_key}/file/"
            ),
        )
    )
