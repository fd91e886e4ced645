"""A file fetched ahead of its task's start, on a hint from a work message, becomes the task's input only under the
checksum the ledger gives: a wrong or malformed hint costs a download and never reaches a task."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tessera.storage.v1 import storage_pb2

from services.compute.domain.inputs import Placement
from services.compute.domain.places import Places
from services.compute.files import Files
from services.kit.identity import OrgCredentials

CREDS = OrgCredentials("org1", "s" * 32)


class ServedFiles(Files):
    """Files whose peer storage is a dict (the download verifies nothing here: what is tested is where a
    fetched file goes and when the cache takes it)."""

    def __init__(self, root: Path, served: bytes) -> None:
        super().__init__(CREDS, {"org2": "127.0.0.1:1"}, Places(root))
        self.served = served
        self.downloads: list[Path] = []

    async def download(self, channel, owner, kind, asset_key, dest, *, checksum="", salt=""):
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.served)
        self.downloads.append(dest)
        return dest


def _model(places: Places, checksum: str) -> Placement:
    key, plan = "0b6f4a3c-0000-4000-8000-000000000001", "0b6f4a3c-0000-4000-8000-0000000000aa"
    path = places.model(plan, key)
    return Placement("models", storage_pb2.FILE_KIND_MODEL, "org2", key, path, checksum, "task-key")


def test_a_file_fetched_ahead_is_the_input_only_under_the_ledgers_checksum(tmp_path):
    files = ServedFiles(tmp_path, b"forged")
    hinted, ledgers = _model(Places(tmp_path), "a" * 64), _model(Places(tmp_path), "b" * 64)

    async def scenario():
        assert await files.fetch_ahead("c", hinted)
        assert not hinted.path.exists()  # beside the cache path, not in it
        files.served = b"genuine"
        return (await files.cached("c", ledgers)).read_bytes()

    assert asyncio.run(scenario()) == b"genuine"
    assert len(files.downloads) == 2


def test_a_file_fetched_ahead_under_the_ledgers_checksum_is_not_fetched_again(tmp_path):
    files = ServedFiles(tmp_path, b"weights")
    placement = _model(Places(tmp_path), "c" * 64)

    async def scenario():
        assert await files.fetch_ahead("c", placement)
        path = await files.cached("c", placement)
        assert not await files.fetch_ahead("c", placement)  # in the cache already: nothing to do
        return path.read_bytes()

    assert asyncio.run(scenario()) == b"weights"
    assert len(files.downloads) == 1


def test_a_hint_without_a_well_formed_checksum_fetches_nothing(tmp_path):
    files = ServedFiles(tmp_path, b"x")
    for checksum in ("", "../../etc/passwd", "A" * 64, "a" * 63):
        assert not asyncio.run(files.fetch_ahead("c", _model(Places(tmp_path), checksum)))
    assert files.downloads == []
