"""A task's outputs: file names, which ones are saved, what the ledger records."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain import outputs
from services.compute.domain.errors import UserError


def _task(declared: dict[str, int], task_outputs: list[str] | None = None) -> res.ComputeTask:
    task = res.ComputeTask(key="task-1")
    for identifier, kind in declared.items():
        task.function.outputs[identifier].kind = kind
    for identifier in declared if task_outputs is None else task_outputs:
        task.outputs[identifier].CopyFrom(res.ComputeTaskOutput())
    return task


def test_output_files_are_named_by_kind():
    task = _task({"model": res.ASSET_MODEL, "score": res.ASSET_PERFORMANCE, "shared": res.ASSET_MODEL})
    assert outputs.output_files(task) == {
        "model": "model.model",
        "score": "score-perf.json",
        "shared": "shared.model",
    }


@pytest.mark.parametrize("identifier", ["../escape", "a/b", ".hidden", "", "x" * 101, "sp ace"])
def test_an_identifier_that_could_name_a_path_is_refused(identifier):
    with pytest.raises(ValueError):
        outputs.output_files(_task({identifier: res.ASSET_MODEL}))


def test_an_output_the_function_does_not_declare_is_a_model():
    assert outputs.output_files(_task({}, ["other"])) == {"other": "other.model"}


def test_outputs_an_earlier_attempt_registered_are_not_saved_again():
    task = _task({"model": res.ASSET_MODEL, "score": res.ASSET_PERFORMANCE, "head": res.ASSET_MODEL})
    saved = outputs.to_save(task, registered={"head"})
    assert saved == [outputs.Output("model", performance=False), outputs.Output("score", performance=True)]
    assert outputs.to_save(task, registered={"model", "score", "head"}) == []


def test_a_missing_output_is_the_user_s_failure():
    error = outputs.missing("model")
    assert isinstance(error, UserError) and "'model'" in str(error)


def test_a_performance_file_holds_its_value_under_all():
    performance = outputs.performance("score", '{"all": 0.75}')
    assert performance.compute_task_output_identifier == "score"
    assert performance.performance_value == pytest.approx(0.75)


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"other": 1}', '{"all": "high"}', '{"all": null}'])
def test_a_malformed_performance_file_is_the_user_s_failure(text):
    with pytest.raises(UserError, match="'score' is not valid"):
        outputs.performance("score", text)


def test_a_model_is_recorded_at_its_address_on_this_organization_s_gateway():
    model = outputs.new_model("task-1", "model", "model-key", "abc123", "https://org1.example/")
    assert (model.key, model.compute_task_key, model.compute_task_output_identifier) == ("model-key", "task-1", "model")
    assert model.address.checksum == "abc123"
    assert model.address.storage_address == "https://org1.example/model/model-key/file/"


def test_logs_are_recorded_at_their_address():
    address = outputs.logs_address("http://127.0.0.1:8000", "task-1", "def456")
    assert address.storage_address == "http://127.0.0.1:8000/logs/task-1/file/"
    assert address.checksum == "def456"
