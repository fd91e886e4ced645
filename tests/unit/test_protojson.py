"""The compiled protobuf JSON parser gives what ParseDict gives, and ParseDict's errors on bad input."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.kit import protojson


def _json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _task() -> res.ComputeTask:
    task = res.ComputeTask(
        key="k",
        owner="MyOrg1MSP",
        rank=3,
        status=res.STATUS_DONE,
        metadata={"epoch": "2", "": "empty key"},
        logs_permission=res.Permission(public=False, authorized_ids=["MyOrg1MSP", "MyOrg2MSP"]),
        inputs=[
            res.ComputeTaskInput(identifier="opener", asset_key="dm"),
            res.ComputeTaskInput(
                identifier="models",
                parent_task_output=res.ParentTaskOutputRef(parent_task_key="p", output_identifier="model"),
            ),
        ],
        duration=2**20,
    )
    task.outputs["model"].CopyFrom(res.ComputeTaskOutput(permissions=res.Permissions(), transient=True))
    task.outputs["empty"].CopyFrom(res.ComputeTaskOutput())
    task.creation_date.GetCurrentTime()  # a well-known type: handed to ParseDict
    return task


@pytest.mark.parametrize(
    "message",
    [
        _task(),
        res.Permissions(process=res.Permission(public=True), download=res.Permission()),
        res.Addressable(checksum="0" * 64, storage_address="http://x/file/"),
        res.FunctionInput(kind=res.ASSET_MODEL, multiple=True, optional=True),
        ev.Event(id="e", position=2**50, asset_kind=res.ASSET_COMPUTE_TASK, compute_task=_task()),
        res.ComputeTask(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_parse_matches_parse_dict(message):
    data = _json(message)
    parsed = protojson.parse(type(message), data)
    assert parsed == json_format.ParseDict(data, type(message)())
    assert parsed == message


def test_an_empty_nested_message_is_present_as_with_parse_dict():
    data = {"logs_permission": {}}
    assert protojson.parse(res.ComputeTask, data).HasField("logs_permission")


@pytest.mark.parametrize(
    "data",
    [{"nope": 1}, {"rank": "three"}, {"status": "STATUS_NOPE"}, {"metadata": {"a": 1}}, {"inputs": [{"x": 1}]}],
)
def test_bad_input_fails_as_parse_dict_does(data):
    with pytest.raises(json_format.ParseError):
        protojson.parse(res.ComputeTask, data)
