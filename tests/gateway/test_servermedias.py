"""Data samples registered from folders on the organization's server: the SDK's ``local=False``."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from pathlib import Path

import pytest
import requests
from substra.sdk import exceptions, schemas
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.storage.v1 import storage_pb2

from tests.gateway.helpers import client, dataset_spec, files, storage_stub
from tests.gateway.test_auth import headers, login


@pytest.fixture(scope="module")
def media(net, tmp_path_factory):
    """MyOrg1MSP's SDK client, a dataset, and the server media root of its gateway."""
    root = Path(net.org1.settings.servermedias_root)
    c1 = client(net.org1)
    dm = c1.add_dataset(dataset_spec(files(tmp_path_factory.mktemp("media-ds"))))
    token = login(net.org1.url, net.org1.admin.username, net.org1.admin.password).json()["token"]
    yield c1, dm, root, headers(token)
    c1.logout()


def _folder(parent: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = parent / name
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    return folder


def _stored_tree(net, key: str) -> dict[str, bytes]:
    ref = storage_pb2.FileRef(kind=storage_pb2.FILE_KIND_DATA_SAMPLE, asset_key=key)
    from tessera.storage.v1 import storage_service_pb2 as storage_api

    data = b"".join(
        r.chunk for r in storage_stub(net.org1).Download(storage_api.DownloadRequest(ref=ref)) if r.HasField("chunk")
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_a_server_folder_is_stored_and_checksummed_like_its_upload(net, media):
    c1, dm, root, _ = media
    tree = {"x.csv": b"1,2,3\n", "nested/y.csv": b"4,5,6\n", "nested/deeper/z.bin": os.urandom(300_000)}
    folder = _folder(root, f"s-{uuid.uuid4().hex[:6]}", tree)
    served = c1.add_data_sample(schemas.DataSampleSpec(path=folder, data_manager_keys=[dm]), local=False)
    uploaded = c1.add_data_sample(schemas.DataSampleSpec(path=folder, data_manager_keys=[dm]), local=True)
    checksums = [net.org1.ledger.GetDataSample(api.GetDataSampleRequest(key=k)).data_sample.checksum
                 for k in (served, uploaded)]  # fmt: skip
    assert checksums[0] == checksums[1] and len(checksums[0]) == 64
    assert _stored_tree(net, served) == tree  # storage holds the folder's bytes, tasks read them from there
    assert set(c1.get_dataset(dm).data_sample_keys) >= {served, uploaded}


def test_several_folders_and_the_multiple_form(net, media):
    c1, dm, root, auth = media
    parent = root / f"many-{uuid.uuid4().hex[:6]}"
    folders = [_folder(parent, f"part{i}", {"data.txt": f"sample {i}".encode()}) for i in range(3)]
    keys = c1.add_data_samples(schemas.DataSampleSpec(paths=folders[:2], data_manager_keys=[dm]), local=False)
    assert len(keys) == 2 and len(set(keys)) == 2
    # "multiple": every sub-folder of the path is a sample (what Substra's backend accepts besides the SDK).
    reply = requests.post(
        f"{net.org1.url}/data_sample/",
        json={"path": str(parent), "multiple": True, "data_manager_keys": [dm]},
        headers=auth,
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    assert len(reply.json()) == 3 and all(s["data_manager_keys"] == [dm] for s in reply.json())


def test_what_is_refused_and_that_nothing_is_left(net, media, tmp_path):
    c1, dm, root, auth = media
    url = f"{net.org1.url}/data_sample/"
    good = _folder(root, f"ok-{uuid.uuid4().hex[:6]}", {"a.txt": b"a"})
    outside = _folder(tmp_path, "outside", {"a.txt": b"a"})
    empty = root / f"empty-{uuid.uuid4().hex[:6]}"
    (empty / "sub").mkdir(parents=True)
    link = root / f"link-{uuid.uuid4().hex[:6]}"
    link.symlink_to(outside)
    escaping = _folder(root, f"esc-{uuid.uuid4().hex[:6]}", {"a.txt": b"a"})
    (escaping / "secret").symlink_to("/etc/hostname")
    before = c1.get_dataset(dm).data_sample_keys
    blobs = root.parent / "storage" / net.org1.id / "blobs"  # MyOrg1MSP's storage root (tests/gateway/conftest.py)

    def stored_blobs() -> set[Path]:
        return {p for p in blobs.rglob("*") if p.is_file()}

    blobs_before = stored_blobs()
    assert blobs_before  # the right folder: the dataset's opener and description are in it already

    def refused(body: dict) -> str:
        reply = requests.post(url, json={"data_manager_keys": [dm], **body}, headers=auth, timeout=30)
        assert reply.status_code == 400, (body, reply.status_code, reply.text)
        return reply.json()["detail"] if isinstance(reply.json(), dict) else str(reply.json())

    assert "not under" in refused({"path": str(outside)})
    assert "not under" in refused({"path": str(root / ".." / outside.relative_to(tmp_path.parent))})
    assert "symbolic link" in refused({"path": str(link)})
    assert "no file" in refused({"path": str(empty)})
    assert "not an existing directory" in refused({"path": str(root / "missing")})
    assert "absolute" in refused({"path": "relative/folder"})
    assert "links are refused" in refused({"paths": [str(good), str(escaping)]})  # the first is discarded
    assert "either path" in refused({"path": str(good), "paths": [str(good)]})
    assert "data_manager_keys" in refused({"path": str(good), "data_manager_keys": []})
    assert c1.get_dataset(dm).data_sample_keys == before
    # An unknown data manager: 404 from the ledger, and the stored folder is deleted again.
    reply = requests.post(url, json={"path": str(good), "data_manager_keys": [str(uuid.uuid4())]}, headers=auth,
                          timeout=30)  # fmt: skip
    assert reply.status_code == 404
    # What was stored for the refused registrations (the first folder of a refused pair, the folder of the
    # unknown data manager) was deleted again: storage holds no new bytes.
    assert stored_blobs() == blobs_before


def test_an_organization_without_a_media_root_refuses_server_paths(net, tmp_path):
    c2 = client(net.org2)
    folder = _folder(tmp_path, "s", {"a.txt": b"a"})
    with pytest.raises(exceptions.InvalidRequest) as refused:
        c2.add_data_sample(schemas.DataSampleSpec(path=folder, data_manager_keys=[str(uuid.uuid4())]), local=False)
    assert "TESSERA_SERVERMEDIAS_ROOT" in str(refused.value)
    c2.logout()
