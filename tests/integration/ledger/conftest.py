"""An in-process ledger on the session's PostgreSQL and NATS, three organizations, and builders.

``ledger.org1`` / ``org2`` / ``org3`` are AssetService stubs authenticated as MyOrg1MSP... ; the
``make`` helpers register valid assets with fresh keys so each test starts from its own data.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import grpc
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.asset.bootstrap import build
from services.asset.settings import AssetSettings
from services.kit.client import sync_channel
from services.kit.db import ensure_database
from services.kit.identity import OrgCredentials
from services.kit.status import StatusDetails, status_details
from tests.support import ServerThread
from tools.devnet.credentials import write_org_credentials

ORGS = ("MyOrg1MSP", "MyOrg2MSP", "MyOrg3MSP")
SECRETS = {org: f"secret-of-{org}" for org in ORGS}
CHANNEL = "mychannel"


def new_key() -> str:
    """A fresh UUID key."""
    return str(uuid.uuid4())


def checksum(text: str = "") -> str:
    """A sha256 hex digest."""
    return hashlib.sha256((text or new_key()).encode()).hexdigest()


def address(kind: str = "file") -> res.Addressable:
    """A valid Addressable."""
    return res.Addressable(checksum=checksum(), storage_address=f"http://storage.test/{kind}/{new_key()}/")


def public() -> res.NewPermissions:
    return res.NewPermissions(public=True)


def private(*orgs: str) -> res.NewPermissions:
    return res.NewPermissions(public=False, authorized_ids=list(orgs))


def call_error(call, *args, **kwargs) -> StatusDetails:
    """Run a call that must fail; its decoded status."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return status_details(info.value)


@dataclass
class Ledger:
    """The running service and one stub per organization."""

    server: ServerThread
    org1: api_grpc.AssetServiceStub
    org2: api_grpc.AssetServiceStub
    org3: api_grpc.AssetServiceStub
    database_url: str

    def stub(self, org: str) -> api_grpc.AssetServiceStub:
        return {ORGS[0]: self.org1, ORGS[1]: self.org2, ORGS[2]: self.org3}[org]


@pytest.fixture(scope="package")
def ledger(postgres, nats_server, tmp_path_factory) -> Ledger:
    folder = tmp_path_factory.mktemp("ledger")
    credentials = write_org_credentials(folder, SECRETS)
    url = postgres.url(f"ledger_{uuid.uuid4().hex[:8]}")
    ensure_database(url)
    settings = AssetSettings(
        grpc_addr="127.0.0.1:0",
        database_url=url,
        nats_url=nats_server.url,
        **credentials.settings(),
        channels=f"{CHANNEL}={','.join(ORGS)};solo={ORGS[2]}",
    )
    with ServerThread(lambda: build(settings)) as server:
        stubs = [
            api_grpc.AssetServiceStub(sync_channel(server.addr, OrgCredentials(org, SECRETS[org]))) for org in ORGS
        ]
        for org, stub in zip(ORGS, stubs, strict=True):
            stub.RegisterOrganization(api.RegisterOrganizationRequest(address=f"http://{org.lower()}.test"))
        yield Ledger(server, *stubs, database_url=url)


# ---------------------------------------------------------------------------------------- builders
def make_data_manager(stub, permissions=None, logs=None, **kwargs) -> res.DataManager:
    request = api.RegisterDataManagerRequest(
        key=new_key(),
        name=kwargs.pop("name", "dataset"),
        description=address("description"),
        opener=address("opener"),
        type="csv",
        permissions=permissions or public(),
        logs_permission=logs or public(),
        **kwargs,
    )
    return stub.RegisterDataManager(request).data_manager


def make_samples(stub, manager_key: str, n: int = 2) -> list[res.DataSample]:
    samples = [api.NewDataSample(key=new_key(), data_manager_keys=[manager_key], checksum=checksum()) for _ in range(n)]
    return list(stub.RegisterDataSamples(api.RegisterDataSamplesRequest(data_samples=samples)).data_samples)


def model_input(optional=False, multiple=False) -> res.FunctionInput:
    return res.FunctionInput(kind=res.ASSET_MODEL, optional=optional, multiple=multiple)


TRAIN_IO = {
    "inputs": {
        "opener": res.FunctionInput(kind=res.ASSET_DATA_MANAGER),
        "datasamples": res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True),
        "models": res.FunctionInput(kind=res.ASSET_MODEL, optional=True, multiple=True),
    },
    "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
}
AGGREGATE_IO = {
    "inputs": {"models": res.FunctionInput(kind=res.ASSET_MODEL, multiple=True)},
    "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
}
TEST_IO = {
    "inputs": {
        "opener": res.FunctionInput(kind=res.ASSET_DATA_MANAGER),
        "datasamples": res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True),
        "models": res.FunctionInput(kind=res.ASSET_MODEL),
    },
    "outputs": {"performance": res.FunctionOutput(kind=res.ASSET_PERFORMANCE)},
}


def make_function(stub, io=None, permissions=None, ready=True, **kwargs) -> res.Function:
    io = io or TRAIN_IO
    request = api.RegisterFunctionRequest(
        key=new_key(),
        name=kwargs.pop("name", "function"),
        description=address("description"),
        archive=address("archive"),
        permissions=permissions or public(),
        inputs=io["inputs"],
        outputs=io["outputs"],
        **kwargs,
    )
    function = stub.RegisterFunction(request).function
    if ready:
        build_function(stub, function.key)
    return function


def build_function(stub, key: str) -> None:
    stub.ApplyFunctionAction(api.ApplyFunctionActionRequest(function_key=key, action=res.FUNCTION_ACTION_BUILDING))
    stub.ApplyFunctionAction(api.ApplyFunctionActionRequest(function_key=key, action=res.FUNCTION_ACTION_READY))


def make_plan(stub, **kwargs) -> res.ComputePlan:
    request = api.RegisterComputePlanRequest(key=new_key(), name=kwargs.pop("name", "plan"), **kwargs)
    return stub.RegisterComputePlan(request).compute_plan


def data_inputs(manager_key: str, samples) -> list[api.NewComputeTaskInput]:
    return [api.NewComputeTaskInput(identifier="opener", asset_key=manager_key)] + [
        api.NewComputeTaskInput(identifier="datasamples", asset_key=s.key) for s in samples
    ]


def parent_input(identifier: str, parent_key: str, output: str = "model") -> api.NewComputeTaskInput:
    return api.NewComputeTaskInput(
        identifier=identifier, parent_task_key=parent_key, parent_task_output_identifier=output
    )


def task_spec(plan_key: str, function: res.Function, inputs, worker: str = "", **outputs) -> api.NewComputeTask:
    """A task whose outputs default to the function's, public and not transient."""
    spec = api.NewComputeTask(
        key=new_key(), compute_plan_key=plan_key, function_key=function.key, worker=worker, inputs=inputs
    )
    for name in function.outputs:
        spec.outputs[name].CopyFrom(outputs.get(name) or api.NewComputeTaskOutput(permissions=public()))
    return spec


def act(stub, task_key: str, action: int) -> None:
    stub.ApplyTaskAction(api.ApplyTaskActionRequest(task_key=task_key, action=action))


def status(stub, task_key: str) -> int:
    return stub.GetTask(api.GetTaskRequest(key=task_key)).task.status


def run_task(stub, task_key: str, model: bool = True, performance: float | None = None) -> str | None:
    """Drive a task as its worker would: EXECUTING, outputs, DONE; returns the model key."""
    act(stub, task_key, res.TASK_ACTION_EXECUTING)
    model_key = None
    if model:
        model_key = new_key()
        stub.RegisterModels(
            api.RegisterModelsRequest(
                models=[
                    api.NewModel(
                        key=model_key,
                        compute_task_key=task_key,
                        compute_task_output_identifier="model",
                        address=address("model"),
                    )
                ]
            )
        )
    if performance is not None:
        stub.RegisterPerformance(
            api.RegisterPerformanceRequest(
                compute_task_key=task_key, compute_task_output_identifier="performance", performance_value=performance
            )
        )
    act(stub, task_key, res.TASK_ACTION_DONE)
    return model_key
