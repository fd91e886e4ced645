"""Compute's model cache is kept per plan: an ended plan's models go (storage keeps them), others stay, and what
an earlier layout or an interrupted removal left is tidied at start."""

from __future__ import annotations

import asyncio

from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2

from services.compute.domain.places import Places
from services.compute.runs import Runs
from tests.unit.compute.test_fetch_ahead import ServedFiles, _model

PLAN, OTHER = "0b6f4a3c-0000-4000-8000-0000000000aa", "0b6f4a3c-0000-4000-8000-0000000000bb"


def test_an_ended_plan_s_models_are_removed_and_fetched_again_if_read_later(tmp_path):
    places = Places(tmp_path)
    files = ServedFiles(tmp_path, b"weights")
    produced = tmp_path / "results" / "model"
    produced.parent.mkdir()
    produced.write_bytes(b"made here")
    files.keep_model(OTHER, "0b6f4a3c-0000-4000-8000-000000000002", produced)
    placement = _model(places, "c" * 64)

    async def scenario():
        first = await files.cached("c", placement)
        await files.forget_plan(PLAN)
        gone = not first.exists()
        again = await files.cached("c", placement)
        return gone, again.read_bytes()

    gone, again = asyncio.run(scenario())
    assert gone
    assert again == b"weights"
    assert len(files.downloads) == 2  # the cache no longer had it
    assert places.model(OTHER, "0b6f4a3c-0000-4000-8000-000000000002").read_bytes() == b"made here"
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == sorted([PLAN, OTHER])  # no leftover


def test_start_removes_loose_models_and_half_removed_plans(tmp_path):
    models = tmp_path / "cache" / "models"
    (models / OTHER).mkdir(parents=True)
    (models / OTHER / "kept").write_bytes(b"1")
    (models / "0b6f4a3c-0000-4000-8000-000000000009").write_bytes(b"an earlier layout's model")
    (models / f".{PLAN}.123.gone").mkdir()
    (models / f".{PLAN}.123.gone" / "m").write_bytes(b"2")
    ServedFiles(tmp_path, b"")
    assert sorted(p.name for p in models.iterdir()) == [OTHER]
    assert (models / OTHER / "kept").read_bytes() == b"1"


def test_only_a_plan_key_names_a_folder_to_remove(tmp_path):
    files = ServedFiles(tmp_path, b"")
    kept = tmp_path / "cache" / "kept"
    kept.mkdir(parents=True)
    (tmp_path / "cache" / "models").mkdir()
    for key in ("", "..", "../kept", "../../cache"):
        asyncio.run(files.forget_plan(key))
    assert kept.is_dir() and (tmp_path / "cache" / "models").is_dir()


def _peer_model(key: str, producer: str) -> res.Model:
    """A model org2 registered (its file at org2's storage)."""
    address = res.Addressable(checksum="d" * 64, storage_address="http://org2/")
    return res.Model(key=key, owner="org2", compute_task_key=producer, address=address)


def test_a_run_message_s_model_hints_are_fetched_into_its_plan_s_folder_and_need_its_plan(tmp_path):
    files = ServedFiles(tmp_path, b"peer model")
    runs = Runs(Places(tmp_path), None, files, None, None, None, None, None, public_url="", task_timeout=60)
    peer = _peer_model("0b6f4a3c-0000-4000-8000-000000000003", "0b6f4a3c-0000-4000-8000-000000000004")
    work = work_pb2.RunTask(compute_task_key="0b6f4a3c-0000-4000-8000-000000000005", channel="c", peer_models=[peer])

    async def scenario():
        runs._prefetch(work)  # an older sender's message, without the plan: no folder to put the hint in
        assert not runs._prefetches
        work.compute_plan_key = PLAN
        runs._prefetch(work)
        await asyncio.gather(*runs._prefetches)

    asyncio.run(scenario())
    assert [p.parent for p in files.downloads] == [Places(tmp_path).plan_models(PLAN)]


def test_a_fetch_ahead_starts_its_model_s_download_into_its_plan_s_folder(tmp_path):
    files = ServedFiles(tmp_path, b"peer model")
    runs = Runs(Places(tmp_path), None, files, None, None, None, None, None, public_url="", task_timeout=60)
    peer = _peer_model("0b6f4a3c-0000-4000-8000-000000000013", "0b6f4a3c-0000-4000-8000-000000000014")
    disabled = res.Model(key="0b6f4a3c-0000-4000-8000-000000000016", owner="org2")
    reader = "0b6f4a3c-0000-4000-8000-000000000015"

    async def scenario():
        assert runs.fetch_ahead("c", "", reader, [peer]) == 0  # no plan, no folder
        assert runs.fetch_ahead("c", PLAN, reader, [peer, disabled]) == 1  # a disabled model has no file
        await asyncio.gather(*runs._prefetches)

    asyncio.run(scenario())
    assert [p.parent for p in files.downloads] == [Places(tmp_path).plan_models(PLAN)]
    assert files.downloads[0].name.startswith(".")  # beside the cache path: taken only under the ledger's checksum
