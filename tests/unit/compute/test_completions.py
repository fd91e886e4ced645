"""Kept CompleteTask requests: in memory while the call is under way, on disk once it failed."""

from tessera.asset.v1 import asset_service_pb2 as api

from services.compute.completions import Completions
from services.compute.domain.places import Places


def _request(key: str) -> api.CompleteTaskRequest:
    return api.CompleteTaskRequest(
        task_key=key, performances=[api.TaskPerformance(compute_task_output_identifier="p", performance_value=0.5)]
    )


def test_a_request_whose_call_succeeds_never_touches_the_disk(tmp_path):
    places = Places(tmp_path)
    completions = Completions(places)
    request = _request("t1")
    completions.keep("chan", request)
    request.start_ready = 3  # set after keeping: the kept request is the one kept
    assert completions.kept("t1") == ("chan", _request("t1"))
    assert not places.completion("t1").exists() and not places.completion("t1").parent.exists()
    completions.drop("t1")
    assert completions.kept("t1") is None


def test_a_request_whose_call_failed_survives_the_process_until_dropped(tmp_path):
    places = Places(tmp_path)
    completions = Completions(places)
    completions.keep("chan", _request("t1"))
    completions.persist("t1")
    completions.persist("unknown")  # nothing kept under that key: nothing written
    assert sorted(p.name for p in places.completion("t1").parent.iterdir()) == ["t1"]
    restarted = Completions(places)
    assert restarted.kept("t1") == ("chan", _request("t1"))
    restarted.drop("t1")
    assert not places.completion("t1").exists()
    assert Completions(places).kept("t1") is None
