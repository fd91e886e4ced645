"""Who gets a file: the owner always; a peer only when the ledger says so (process, logs or download
permission); data samples never; a disabled model is GONE. Models live at the worker's storage and are
fetched from there by the address the ledger holds."""

from __future__ import annotations

import grpc
import pytest
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import resources_pb2 as asset_res
from tessera.storage.v1 import storage_pb2 as res
from tessera.storage.v1 import storage_service_pb2 as api

from services.kit.storage import addresses
from services.kit.storage.client import download_to_sync
from tests.integration.storage.conftest import (
    ORG1,
    ORG2,
    act,
    addressable,
    call_error,
    download,
    function_archive,
    meta,
    new_key,
    plan_with_tasks,
    private,
    produce_model,
    public,
    ref,
    register_function,
    upload,
)

DENIED = grpc.StatusCode.PERMISSION_DENIED


def denied(call, *args, **kwargs) -> str:
    """The reason of a PERMISSION_DENIED refusal."""
    error = call_error(call, *args, **kwargs)
    assert error.code == DENIED, error
    return error.reason


def stat(stub, kind: int, key: str) -> res.FileInfo:
    return stub.StatFile(api.StatFileRequest(ref=ref(kind, key))).file


def function_at_org1(net, permissions) -> str:
    key = new_key()
    org1 = net.storage("org1")
    archive = upload(org1, function_archive(), meta(res.FILE_KIND_FUNCTION_ARCHIVE, key))
    description = upload(org1, b"# doc", meta(res.FILE_KIND_FUNCTION_DESCRIPTION, key))
    upload(org1, b"image bytes", meta(res.FILE_KIND_FUNCTION_IMAGE, key))
    register_function(net, ORG1, permissions, archive, description, key)
    return key


def data_manager_at_org1(net, permissions) -> str:
    key = new_key()
    org1 = net.storage("org1")
    opener = upload(org1, b"class Opener: ...\n", meta(res.FILE_KIND_OPENER, key, filename="opener.py"))
    description = upload(org1, b"# data", meta(res.FILE_KIND_DATA_MANAGER_DESCRIPTION, key))
    net.ledger(ORG1).RegisterDataManager(
        asset_api.RegisterDataManagerRequest(
            key=key,
            name="dataset",
            description=addressable(description),
            opener=addressable(opener),
            type="csv",
            permissions=permissions,
            logs_permission=public(),
        )
    )
    return key


# ------------------------------------------------------------------------------------------------ owners
def test_only_the_owner_uploads_and_deletes(net):
    peer = net.storage("org1", ORG2)
    assert denied(upload, peer, b"x", meta(asset_key=new_key())) == "NOT_OWNER"
    info = upload(net.storage("org1"), b"x", meta(res.FILE_KIND_OPENER, new_key()))
    assert denied(peer.DeleteFile, api.DeleteFileRequest(file_id=info.file_id)) == "NOT_OWNER"
    assert net.blobs("org1").staged_count() == 0


def test_files_without_asset_and_data_samples_never_leave(net):
    owner, peer = net.storage("org1"), net.storage("org1", ORG2)
    loose = upload(owner, b"scratch", meta(res.FILE_KIND_LOGS))
    assert denied(download, peer, file_id=loose.file_id) == "PERMISSION_DENIED"
    archive = function_archive()
    sample = upload(owner, archive, meta(res.FILE_KIND_DATA_SAMPLE, new_key()))
    assert download(owner, file_id=sample.file_id)[1] == archive  # the owner's compute reads it
    assert denied(download, peer, file_id=sample.file_id) == "DATA_SAMPLE_PRIVATE"
    assert denied(peer.StatFile, api.StatFileRequest(file_id=sample.file_id)) == "DATA_SAMPLE_PRIVATE"


def test_an_asset_the_ledger_does_not_know_is_refused_to_peers(net):
    info = upload(net.storage("org1"), b"x", meta(res.FILE_KIND_OPENER, new_key()))
    assert denied(download, net.storage("org1", ORG2), file_id=info.file_id) == "PERMISSION_DENIED"


# ------------------------------------------------------------------------------- functions, data managers
@pytest.mark.parametrize(("permissions", "allowed"), [(public(), True), (private(ORG2), True), (private(), False)])
def test_function_files_follow_the_function_process_permission(net, permissions, allowed):
    key = function_at_org1(net, permissions)
    peer = net.storage("org1", ORG2)
    for kind in (res.FILE_KIND_FUNCTION_ARCHIVE, res.FILE_KIND_FUNCTION_DESCRIPTION, res.FILE_KIND_FUNCTION_IMAGE):
        if allowed:
            info, content = download(peer, ref=ref(kind, key))
            assert len(content) == info.size and stat(peer, kind, key) == info
        else:
            assert denied(download, peer, ref=ref(kind, key)) == "PERMISSION_DENIED"
            assert denied(stat, peer, kind, key) == "PERMISSION_DENIED"
        assert download(net.storage("org1"), ref=ref(kind, key))[0].asset_key == key  # the owner, always


@pytest.mark.parametrize(("permissions", "allowed"), [(public(), True), (private(), False)])
def test_opener_and_description_follow_the_data_manager_permission(net, permissions, allowed):
    key = data_manager_at_org1(net, permissions)
    peer = net.storage("org1", ORG2)
    for kind in (res.FILE_KIND_OPENER, res.FILE_KIND_DATA_MANAGER_DESCRIPTION):
        if allowed:
            assert download(peer, ref=ref(kind, key))[1]
        else:
            assert denied(download, peer, ref=ref(kind, key)) == "PERMISSION_DENIED"


# ------------------------------------------------------------------------------------------------ models
def test_a_model_lives_at_its_worker_and_is_fetched_from_there(net, tmp_path):
    """org1's plan runs a task on org2: the model is stored by org2's storage, registered with org2's
    address, and org1 (authorized by the output permission) fetches it from org2 with the salted check."""
    (task,) = plan_with_tasks(net, ORG1, ORG2, asset_api.NewComputeTaskOutput(permissions=private()))
    content = b"weights" * 50_000
    stored = produce_model(net, "org2", ORG2, task, content)
    assert stored.owner == ORG2

    models = net.ledger(ORG1).ListTaskOutputAssets(asset_api.ListTaskOutputAssetsRequest(key=task)).assets
    model = models[0].model
    assert model.owner == ORG2 and model.address.storage_address.startswith("http://myorg2msp.test/model/")
    where = addresses.parse(model.address.storage_address)
    assert where == ref(res.FILE_KIND_MODEL, model.key)

    # org1's compute asks org2's storage, with org1's own credential.
    target = tmp_path / "model"
    info = download_to_sync(
        net.storage("org2", ORG1),
        api.DownloadRequest(ref=where),
        target,
        expected_checksum=model.address.checksum,
        salt=task.encode(),
    )
    assert target.read_bytes() == content and info.file_id == stored.file_id
    assert call_error(download, net.storage("org1"), ref=where).code == grpc.StatusCode.NOT_FOUND  # not at org1


def test_a_model_of_another_organization_s_private_plan_is_refused(net):
    (task,) = plan_with_tasks(net, ORG2, ORG2, asset_api.NewComputeTaskOutput(permissions=private()))
    stored = produce_model(net, "org2", ORG2, task, b"secret weights")
    assert denied(download, net.storage("org2", ORG1), ref=ref(res.FILE_KIND_MODEL, stored.asset_key))
    assert download(net.storage("org2"), ref=ref(res.FILE_KIND_MODEL, stored.asset_key))[1] == b"secret weights"


def test_a_disabled_model_is_gone_for_everyone(net):
    transient = asset_api.NewComputeTaskOutput(permissions=public(), transient=True)
    parent, child = plan_with_tasks(net, ORG1, ORG2, transient, asset_api.NewComputeTaskOutput(permissions=public()))
    model = produce_model(net, "org2", ORG2, parent, b"intermediate")
    produce_model(net, "org2", ORG2, child, b"final")
    which = ref(res.FILE_KIND_MODEL, model.asset_key)
    assert download(net.storage("org2", ORG1), ref=which)[1] == b"intermediate"

    net.ledger(ORG2).DisableOutput(asset_api.DisableOutputRequest(compute_task_key=parent, identifier="model"))
    for caller in (ORG2, ORG1):
        error = call_error(download, net.storage("org2", caller), ref=which)
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "GONE")
        assert stat(net.storage("org2", caller), res.FILE_KIND_MODEL, model.asset_key).disabled
    # The owner's event handler then removes the bytes; still GONE.
    net.storage("org2").DeleteFile(api.DeleteFileRequest(ref=which))
    assert not net.blobs("org2").blob_path(model.checksum).exists()
    assert call_error(download, net.storage("org2", ORG1), ref=which).reason == "GONE"


def test_model_export_needs_the_channel_flag_and_the_download_permission(net):
    (task,) = plan_with_tasks(net, ORG1, ORG2, asset_api.NewComputeTaskOutput(permissions=private()))
    stored = produce_model(net, "org2", ORG2, task, b"exported")
    which = ref(res.FILE_KIND_MODEL, stored.asset_key)
    assert download(net.storage("org2", ORG1), ref=which, export=True)[1] == b"exported"
    (other,) = plan_with_tasks(net, ORG2, ORG2, asset_api.NewComputeTaskOutput(permissions=private()))
    private_model = produce_model(net, "org2", ORG2, other, b"kept")
    assert denied(download, net.storage("org2", ORG1), ref=ref(res.FILE_KIND_MODEL, private_model.asset_key))
    # "tiny" (an org1 storage) has no channel with model export enabled: even its own users may not export.
    local = upload(net.storage("tiny"), b"m", meta(res.FILE_KIND_MODEL, new_key()))
    assert denied(download, net.storage("tiny"), file_id=local.file_id, export=True) == "MODEL_EXPORT_DISABLED"
    assert download(net.storage("tiny"), file_id=local.file_id)[1] == b"m"  # not an export: fine


# -------------------------------------------------------------------------------------------------- logs
def _failed_task_logs(net, plan_owner: str) -> str:
    """A task of ``plan_owner``'s plan run by org2 fails; org2 stores its logs; the task key."""
    (task,) = plan_with_tasks(net, plan_owner, ORG2, asset_api.NewComputeTaskOutput(permissions=public()))
    worker = net.ledger(ORG2)
    act(worker, task, asset_res.TASK_ACTION_EXECUTING)
    logs = upload(net.storage("org2"), b"Traceback: boom\n", meta(res.FILE_KIND_LOGS, task))
    worker.RegisterFailureReport(
        asset_api.RegisterFailureReportRequest(
            asset_key=task,
            asset_type=asset_res.FAILED_ASSET_COMPUTE_TASK,
            error_type=asset_res.EXECUTION_ERROR,
            logs_address=addressable(logs),
        )
    )
    return task


def test_task_logs_follow_the_logs_permission(net):
    mine = _failed_task_logs(net, ORG1)  # logs permission: the plan owner, org1
    assert download(net.storage("org2", ORG1), ref=ref(res.FILE_KIND_LOGS, mine))[1] == b"Traceback: boom\n"
    theirs = _failed_task_logs(net, ORG2)
    assert denied(download, net.storage("org2", ORG1), ref=ref(res.FILE_KIND_LOGS, theirs)) == "PERMISSION_DENIED"


@pytest.mark.parametrize(("permissions", "allowed"), [(public(), True), (private(), False)])
def test_build_logs_follow_the_function_process_permission(net, permissions, allowed):
    key = function_at_org1(net, permissions)
    upload(net.storage("org1"), b"build failed", meta(res.FILE_KIND_LOGS, key))
    peer = net.storage("org1", ORG2)
    if allowed:
        assert download(peer, ref=ref(res.FILE_KIND_LOGS, key))[1] == b"build failed"
    else:
        assert denied(download, peer, ref=ref(res.FILE_KIND_LOGS, key)) == "PERMISSION_DENIED"


# ------------------------------------------------------------------------------------------ ledger down
def test_an_unreachable_ledger_is_unavailable_never_internal(net):
    owner, peer = net.storage("offline"), net.storage("offline", ORG2)
    opener = upload(owner, b"opener", meta(res.FILE_KIND_OPENER, new_key()))
    error = call_error(download, peer, file_id=opener.file_id)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "LEDGER_UNAVAILABLE")
    assert download(owner, file_id=opener.file_id)[1] == b"opener"  # the owner needs no permission
    model = upload(owner, b"m", meta(res.FILE_KIND_MODEL, new_key()))
    # Whether a model was disabled is the ledger's to say, even for its owner.
    assert call_error(download, owner, file_id=model.file_id).code == grpc.StatusCode.UNAVAILABLE
