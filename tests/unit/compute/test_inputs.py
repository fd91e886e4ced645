"""A task's inputs: what to fetch, from whom, and where the cache keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1 import storage_pb2

from services.compute.domain import layout
from services.compute.domain.errors import UserError
from services.compute.domain.execution import TaskInput
from services.compute.domain.inputs import placements
from services.compute.domain.places import Places

PLACES = Places(Path("/work"))


def _task() -> res.ComputeTask:
    task = res.ComputeTask(key="task-2", compute_plan_key="plan-1")
    task.function.inputs["opener"].CopyFrom(res.FunctionInput(kind=res.ASSET_DATA_MANAGER))
    task.function.inputs["datasamples"].CopyFrom(res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True))
    task.function.inputs["models"].CopyFrom(res.FunctionInput(kind=res.ASSET_MODEL, multiple=True))
    task.function.inputs["model"].CopyFrom(res.FunctionInput(kind=res.ASSET_MODEL))
    return task


def _opener() -> res.ComputeTaskInputAsset:
    manager = res.DataManager(key="dm-1", owner="org1", opener=res.Addressable(checksum="c-opener"))
    return res.ComputeTaskInputAsset(identifier="opener", data_manager=manager)


def _sample(key: str) -> res.ComputeTaskInputAsset:
    return res.ComputeTaskInputAsset(identifier="datasamples", data_sample=res.DataSample(key=key, owner="org1"))


def _model(identifier: str, key: str, *, disabled: bool = False) -> res.ComputeTaskInputAsset:
    model = res.Model(key=key, owner="org2", compute_task_key="task-1")
    if not disabled:
        model.address.CopyFrom(res.Addressable(checksum=f"c-{key}", storage_address="http://org2/model/x/file/"))
    return res.ComputeTaskInputAsset(identifier=identifier, model=model)


def test_each_input_is_fetched_from_its_owner_into_the_cache_in_input_order():
    found = placements(_task(), [_opener(), _sample("s-1"), _sample("s-2"), _model("models", "m-1")], PLACES)
    assert [(p.identifier, p.kind, p.owner, p.asset_key) for p in found] == [
        ("opener", storage_pb2.FILE_KIND_OPENER, "org1", "dm-1"),
        ("datasamples", storage_pb2.FILE_KIND_DATA_SAMPLE, "org1", "s-1"),
        ("datasamples", storage_pb2.FILE_KIND_DATA_SAMPLE, "org1", "s-2"),
        ("models", storage_pb2.FILE_KIND_MODEL, "org2", "m-1"),
    ]
    assert [p.path for p in found] == [
        Path("/work/cache/openers/dm-1/__init__.py"),
        Path("/work/cache/samples/s-1/s-1"),
        Path("/work/cache/samples/s-2/s-2"),
        Path("/work/cache/models/plan-1/m-1"),
    ]


def test_checksums_are_checked_and_a_model_s_is_salted_with_its_producing_task():
    opener, sample, model = placements(_task(), [_opener(), _sample("s-1"), _model("model", "m-1")], PLACES)
    assert (opener.checksum, opener.salt) == ("c-opener", "")
    assert (sample.checksum, sample.salt) == ("", "")
    assert (model.checksum, model.salt) == ("c-m-1", "task-1")


def test_the_task_gets_each_input_with_the_function_s_multiplicity():
    found = placements(_task(), [_opener(), _sample("s-1"), _model("models", "m-1"), _model("model", "m-2")], PLACES)
    assert [p.task_input() for p in found] == [
        TaskInput("opener", Path("/work/cache/openers/dm-1/__init__.py"), False),
        TaskInput("datasamples", Path("/work/cache/samples/s-1/s-1"), True),
        TaskInput("models", Path("/work/cache/models/plan-1/m-1"), True),
        TaskInput("model", Path("/work/cache/models/plan-1/m-2"), False),
    ]


def test_an_input_the_function_does_not_declare_is_single():
    (found,) = placements(_task(), [_model("unknown", "m-1")], PLACES)
    assert found.multiple is False


def test_a_disabled_model_fails_the_task_before_anything_is_fetched():
    with pytest.raises(UserError, match="m-9 has been disabled"):
        placements(_task(), [_opener(), _model("models", "m-9", disabled=True)], PLACES)


def test_compute_s_own_files_have_one_place_each():
    assert PLACES.archive("abc") == Path("/work/archives/abc")
    assert PLACES.build_log("f-1") == Path("/work/builds/f-1.log")
    assert PLACES.functions == Path("/work/functions")
    assert PLACES.model("p", "m") == Path("/work/cache/models/p/m")  # per plan: removed when the plan ends
    with pytest.raises(ValueError):
        PLACES.model("", "m")


def test_a_task_sees_each_data_sample_in_a_folder_named_by_the_sample_s_key():
    """Substra lays samples out as ``data_samples/<key>``; functions may identify samples by folder name."""
    found = placements(_task(), [_opener(), _sample("s-1"), _sample("s-2"), _model("models", "m-1")], PLACES)
    staged = [Path("/tessera/in/t", name) for name in layout.staged_names([p.path.name for p in found])]
    assert [path.name for path in staged] == ["__init__.py", "s-1", "s-2", "m-1"]
    assert {path.parent for path in staged} == {Path("/tessera/in/t")}  # distinct names: no folder of their own


def test_an_input_whose_name_is_taken_is_staged_in_a_folder_of_its_own():
    """The same model given twice, and a name equal to the arguments file's: each path stays distinct and keeps
    its cache name as its last component."""
    names = ["__init__.py", "m-1", "m-1", layout.ARGUMENTS, "s-1"]
    staged = layout.staged_names(names)
    assert staged == ["__init__.py", "m-1", "2/m-1", "3/arguments.txt", "s-1"]
    assert len(set(staged)) == len(staged) and layout.ARGUMENTS not in staged
    assert [Path(name).name for name in staged] == names
