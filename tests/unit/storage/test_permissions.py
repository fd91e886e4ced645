"""Who may read, upload and delete which file, from the ledger's answers (a fake of the ``Ledger``
protocol): the owner always reads; a peer by the guarding asset's permission; data samples and files
without an asset never leave; logs follow the task's logs permission or, for a build, the function's;
model export needs the channel flag and the download permission; disabled files and models are GONE."""

from __future__ import annotations

import asyncio

import pytest

from services.kit.errors import Gone, PermissionDenied, Unavailable
from services.kit.identity import Caller
from services.storage.domain.permissions import Asset, Permissions
from services.storage.domain.records import Kind
from tests.unit.storage.fakes import FakeLedger, stored_file

OWNER, PEER, STRANGER = "org1", "org2", "org3"
CHANNEL, NO_EXPORT = "mychannel", "quiet"
owner, peer, stranger = Caller(OWNER, CHANNEL), Caller(PEER, CHANNEL), Caller(STRANGER, CHANNEL)


def permissions(ledger: FakeLedger | None) -> Permissions:
    return Permissions(ledger, OWNER, export_channels=(CHANNEL,))


def read(perms: Permissions, caller: Caller, stored, **kw) -> None:
    asyncio.run(perms.check_read(caller, stored, **kw))


def refusal(perms: Permissions, caller: Caller, stored, **kw) -> PermissionDenied:
    with pytest.raises(PermissionDenied) as info:
        read(perms, caller, stored, **kw)
    return info.value


GUARDED = [
    (Kind.FUNCTION_ARCHIVE, Asset.FUNCTION),
    (Kind.FUNCTION_DESCRIPTION, Asset.FUNCTION),
    (Kind.FUNCTION_IMAGE, Asset.FUNCTION),
    (Kind.OPENER, Asset.DATA_MANAGER),
    (Kind.DATA_MANAGER_DESCRIPTION, Asset.DATA_MANAGER),
    (Kind.MODEL, Asset.MODEL),
]


# ------------------------------------------------------------------------------------------------ owner
@pytest.mark.parametrize("kind", list(Kind))
def test_the_owner_reads_every_kind_without_a_permission_question(kind):
    ledger = FakeLedger()
    read(permissions(ledger), owner, stored_file(kind))
    read(permissions(ledger), owner, stored_file(kind, asset_key=""))
    assert not [call for call in ledger.calls if call[0] != "model_disabled"]


def test_only_the_owner_uploads_and_deletes():
    perms = permissions(FakeLedger())
    perms.check_owner(owner, "upload")
    with pytest.raises(PermissionDenied) as info:
        perms.check_owner(Caller(PEER, CHANNEL), "delete")
    assert info.value.reason == "NOT_OWNER"


# ------------------------------------------------------------------------------------------------ peers
@pytest.mark.parametrize(("kind", "asset"), GUARDED)
def test_a_peer_reads_by_the_process_permission_of_the_guarding_asset(kind, asset):
    stored = stored_file(kind)
    ledger = FakeLedger(process={(asset, stored.asset_key): {OWNER, PEER}}, models={stored.asset_key})
    read(permissions(ledger), peer, stored)
    assert ("can_process", CHANNEL, asset, stored.asset_key, PEER, False) in ledger.calls
    refused = refusal(permissions(ledger), stranger, stored)
    assert refused.reason == "PERMISSION_DENIED" and "process permission" in refused.message


def test_a_public_asset_is_what_the_ledger_says_it_is_for_every_organization():
    stored = stored_file(Kind.OPENER)
    ledger = FakeLedger(process={(Asset.DATA_MANAGER, stored.asset_key): {OWNER, PEER, STRANGER}})
    for caller in (peer, stranger):
        read(permissions(ledger), caller, stored)


def test_an_asset_the_ledger_does_not_know_is_refused_to_peers():
    refused = refusal(permissions(FakeLedger()), peer, stored_file(Kind.FUNCTION_ARCHIVE))
    assert "not registered in channel 'mychannel'" in refused.message


def test_the_question_is_asked_in_the_caller_s_channel():
    stored = stored_file(Kind.OPENER)
    ledger = FakeLedger(process={(Asset.DATA_MANAGER, stored.asset_key): {PEER}})
    read(permissions(ledger), Caller(PEER, "other"), stored)
    assert ledger.calls == [("can_process", "other", Asset.DATA_MANAGER, stored.asset_key, PEER, False)]


def test_data_samples_and_files_without_an_asset_never_leave_and_the_ledger_is_not_asked():
    ledger = FakeLedger()
    assert refusal(permissions(ledger), peer, stored_file(Kind.DATA_SAMPLE)).reason == "DATA_SAMPLE_PRIVATE"
    assert refusal(permissions(ledger), peer, stored_file(Kind.DATA_SAMPLE), describe=True).reason == (
        "DATA_SAMPLE_PRIVATE"
    )
    assert "belongs to no asset" in refusal(permissions(ledger), peer, stored_file(Kind.MODEL, asset_key="")).message
    assert ledger.calls == []


def test_without_a_ledger_peers_are_refused_and_the_owner_still_reads():
    perms = permissions(None)
    assert "no ledger configured" in refusal(perms, peer, stored_file(Kind.OPENER)).message
    read(perms, owner, stored_file(Kind.MODEL))


def test_a_ledger_that_cannot_answer_is_its_error_not_a_refusal():
    ledger = FakeLedger(fails_with=Unavailable("down", reason="LEDGER_UNAVAILABLE"))
    with pytest.raises(Unavailable):
        read(permissions(ledger), peer, stored_file(Kind.OPENER))
    with pytest.raises(Unavailable):  # whether a model was disabled is the ledger's to say, even to its owner
        read(permissions(ledger), owner, stored_file(Kind.MODEL))
    read(permissions(ledger), owner, stored_file(Kind.OPENER))  # the owner needs no answer for other kinds


# ------------------------------------------------------------------------------------------------- logs
def test_task_logs_follow_the_task_s_logs_permission():
    logs = stored_file(Kind.LOGS)
    ledger = FakeLedger(logs={logs.asset_key: {OWNER, PEER}})
    read(permissions(ledger), peer, logs)
    refused = refusal(permissions(ledger), stranger, logs)
    assert "logs permission" in refused.message
    assert all(call[0] == "can_access_logs" for call in ledger.calls)


def test_build_logs_follow_the_function_s_process_permission():
    """Logs filed under a key that is no task are a function's build logs."""
    logs = stored_file(Kind.LOGS)
    ledger = FakeLedger(process={(Asset.FUNCTION, logs.asset_key): {PEER}})
    read(permissions(ledger), peer, logs)
    assert ledger.calls[-1] == ("can_process", CHANNEL, Asset.FUNCTION, logs.asset_key, PEER, False)
    refusal(permissions(ledger), stranger, logs)


def test_logs_of_neither_a_task_nor_a_function_are_refused():
    assert "not registered" in refusal(permissions(FakeLedger()), peer, stored_file(Kind.LOGS)).message


def test_the_logs_permission_is_not_borrowed_from_the_function_when_the_task_answers_no():
    logs = stored_file(Kind.LOGS)
    ledger = FakeLedger(logs={logs.asset_key: {OWNER}}, process={(Asset.FUNCTION, logs.asset_key): {PEER}})
    refusal(permissions(ledger), peer, logs)


# ----------------------------------------------------------------------------------------------- export
def test_a_model_export_asks_the_download_permission():
    model = stored_file(Kind.MODEL)
    ledger = FakeLedger(
        process={(Asset.MODEL, model.asset_key): {PEER, STRANGER}},
        download={(Asset.MODEL, model.asset_key): {PEER}},
        models={model.asset_key},
    )
    read(permissions(ledger), peer, model, export=True)
    assert ("can_process", CHANNEL, Asset.MODEL, model.asset_key, PEER, True) in ledger.calls
    assert "download permission" in refusal(permissions(ledger), stranger, model, export=True).message
    read(permissions(ledger), stranger, model)  # a computation's fetch needs only the process permission


def test_a_model_export_needs_the_channel_flag_even_for_the_owner():
    model = stored_file(Kind.MODEL)
    quiet = Caller(OWNER, NO_EXPORT)
    assert refusal(permissions(FakeLedger()), quiet, model, export=True).reason == "MODEL_EXPORT_DISABLED"
    read(permissions(FakeLedger()), quiet, model)  # not an export: fine


def test_export_of_other_kinds_is_a_plain_read():
    opener = stored_file(Kind.OPENER)
    ledger = FakeLedger(process={(Asset.DATA_MANAGER, opener.asset_key): {PEER}})
    read(permissions(ledger), Caller(PEER, NO_EXPORT), opener, export=True)
    assert ledger.calls == [("can_process", NO_EXPORT, Asset.DATA_MANAGER, opener.asset_key, PEER, False)]


# ------------------------------------------------------------------------------------------------- gone
def test_a_deleted_file_is_gone_for_everyone_but_can_still_be_described():
    opener = stored_file(Kind.OPENER, disabled=True)
    ledger = FakeLedger(process={(Asset.DATA_MANAGER, opener.asset_key): {PEER}})
    for caller in (owner, peer):
        with pytest.raises(Gone):
            read(permissions(ledger), caller, opener)
        read(permissions(ledger), caller, opener, describe=True)
        assert asyncio.run(permissions(ledger).is_gone(caller, opener))


def test_a_model_the_ledger_disabled_is_gone_for_everyone_owner_included():
    model = stored_file(Kind.MODEL)
    ledger = FakeLedger(
        process={(Asset.MODEL, model.asset_key): {PEER}}, models={model.asset_key}, disabled={model.asset_key}
    )
    for caller in (owner, peer):
        with pytest.raises(Gone):
            read(permissions(ledger), caller, model)
        read(permissions(ledger), caller, model, describe=True)
        assert asyncio.run(permissions(ledger).is_gone(caller, model))


def test_a_peer_reading_a_model_asks_the_ledger_one_question():
    """The permission answer also says whether the model was disabled: one ledger call per peer download."""
    live, gone = stored_file(Kind.MODEL), stored_file(Kind.MODEL)
    ledger = FakeLedger(
        process={(Asset.MODEL, live.asset_key): {PEER}, (Asset.MODEL, gone.asset_key): {PEER}},
        models={live.asset_key, gone.asset_key},
        disabled={gone.asset_key},
    )
    read(permissions(ledger), peer, live)
    with pytest.raises(Gone):
        read(permissions(ledger), peer, gone)
    assert [call[0] for call in ledger.calls] == ["can_process", "can_process"]


def test_a_model_not_registered_yet_is_not_gone():
    """Compute uploads a model before registering it; its owner reads it meanwhile."""
    model = stored_file(Kind.MODEL)
    ledger = FakeLedger()
    read(permissions(ledger), owner, model)
    assert not asyncio.run(permissions(ledger).is_gone(owner, model))
    assert ledger.calls == [("model_disabled", CHANNEL, model.asset_key)] * 2


def test_only_models_are_asked_whether_they_were_disabled():
    ledger = FakeLedger()
    for kind in Kind:
        if kind != Kind.MODEL:
            assert not asyncio.run(permissions(ledger).is_gone(owner, stored_file(kind)))
    assert ledger.calls == []
