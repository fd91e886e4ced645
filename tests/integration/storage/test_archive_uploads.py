"""Function archives and data samples are checked as archives at upload (contract §9.1, §5.1): a
refused archive leaves nothing behind and answers INVALID_ARGUMENT, or RESOURCE_EXHAUSTED naming the
limit for a decompression bomb."""

from __future__ import annotations

import io
import tarfile
import zipfile

import grpc
import pytest
from tessera.storage.v1 import storage_pb2 as res

from services.kit import archives
from tests.integration.storage.conftest import (
    ARCHIVE_BYTES_LIMIT,
    ARCHIVE_MEMBERS_LIMIT,
    DOCKERFILE,
    assert_nothing_left,
    call_error,
    download,
    function_archive,
    meta,
    new_key,
    tar_gz,
    upload,
)


def tar_with(*infos: tarfile.TarInfo, files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (files or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in infos:
            archive.addfile(info)
    return buffer.getvalue()


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


FUNCTION = {"Dockerfile": DOCKERFILE, "function.py": b"print('hi')\n"}
HOSTILE = {
    "traversal": tar_gz({**FUNCTION, "../../escape.py": b"x"}),
    "absolute": tar_gz({**FUNCTION, "/etc/cron.d/evil": b"x"}),
    "zip-traversal": zip_of({**FUNCTION, "../escape.py": b"x"}),
    "symlink-outside": tar_with(link("data", "../../../etc"), files=FUNCTION),
    "symlink-absolute": tar_with(link("passwd", "/etc/passwd"), files=FUNCTION),
    "hardlink-outside": tar_with(link("shadow", "../shadow", tarfile.LNKTYPE), files=FUNCTION),
    "device": tar_with(device("null"), files=FUNCTION),
    "not-an-archive": b"#!/usr/bin/env python\nprint('not an archive')\n",
    "truncated": function_archive()[:-64],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_function_archives_are_refused_and_leave_nothing(net, name):
    key = new_key()
    before = net.blobs("org1").blob_count()
    error = call_error(upload, net.storage("org1"), HOSTILE[name], meta(res.FILE_KIND_FUNCTION_ARCHIVE, key))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    assert error.reason == "INVALID_ARCHIVE", error
    assert_nothing_left(net, "org1", key, res.FILE_KIND_FUNCTION_ARCHIVE, blobs_before=before)


def test_a_member_written_through_a_link_is_refused(net):
    """``dir`` -> ``.`` is harmless alone; a later ``dir/x`` would be written through it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in FUNCTION.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        archive.addfile(link("dir", "."))
        info = tarfile.TarInfo("dir/escape")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    error = call_error(upload, net.storage("org1"), buffer.getvalue(), meta(res.FILE_KIND_FUNCTION_ARCHIVE, new_key()))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARCHIVE")
    assert "goes through the symbolic link" in error.message


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"function.py": b"x", "README": b"y"}, "MISSING_DOCKERFILE"),
        ({"Dockerfile": DOCKERFILE}, "ARCHIVE_TOO_SMALL"),
        ({"Dockerfile": b"FROM python\nENTRYPOINT python3 f.py\n", "f.py": b""}, "INVALID_ENTRYPOINT"),
        ({"Dockerfile": b"FROM python\n", "f.py": b""}, "MISSING_ENTRYPOINT"),
    ],
)
def test_function_archive_rules_of_contract_9_1(net, files, reason):
    error = call_error(upload, net.storage("org1"), tar_gz(files), meta(res.FILE_KIND_FUNCTION_ARCHIVE, new_key()))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


def test_valid_function_archives_zip_and_tar(net):
    for data in (function_archive(), zip_of(FUNCTION)):
        info = upload(net.storage("org1"), data, meta(res.FILE_KIND_FUNCTION_ARCHIVE, new_key()))
        assert download(net.storage("org1"), file_id=info.file_id)[1] == data
        assert info.directory_checksum == ""


def test_decompression_bombs_are_resource_exhausted_naming_the_limit(net):
    bomb = zip_of({"Dockerfile": DOCKERFILE, "zeros": b"\0" * (ARCHIVE_BYTES_LIMIT + 1)})
    assert len(bomb) < 100_000
    key = new_key()
    error = call_error(upload, net.storage("org1"), bomb, meta(res.FILE_KIND_FUNCTION_ARCHIVE, key))
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "ARCHIVE_LIMIT_EXCEEDED")
    assert error.metadata == {"limit": "max_unpacked_bytes", "value": str(ARCHIVE_BYTES_LIMIT)}
    assert_nothing_left(net, "org1", key, res.FILE_KIND_FUNCTION_ARCHIVE)

    many = tar_gz({**FUNCTION, **{f"f{i}": b"" for i in range(ARCHIVE_MEMBERS_LIMIT)}})
    error = call_error(upload, net.storage("org1"), many, meta(res.FILE_KIND_DATA_SAMPLE, key))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.metadata["limit"] == "max_archive_members"
    assert_nothing_left(net, "org1", key, res.FILE_KIND_DATA_SAMPLE)


def test_data_sample_gets_its_directory_hash(net, tmp_path):
    folder = tmp_path / "sample"
    (folder / "images").mkdir(parents=True)
    (folder / "labels.csv").write_bytes(b"id,label\n1,cat\n")
    (folder / "images" / "1.png").write_bytes(b"\x89PNG fake")
    data = zip_of({"labels.csv": b"id,label\n1,cat\n", "images/1.png": b"\x89PNG fake"})
    info = upload(net.storage("org1"), data, meta(res.FILE_KIND_DATA_SAMPLE, new_key(), filename="path"))
    assert info.directory_checksum == archives.directory_hash(folder)
    assert info.checksum != info.directory_checksum and info.storage_address == ""  # never downloadable


def test_empty_or_hostile_data_samples_are_refused(net):
    empty = tar_with(_dir("just-a-dir"))
    error = call_error(upload, net.storage("org1"), empty, meta(res.FILE_KIND_DATA_SAMPLE, new_key()))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_DATA_SAMPLE")
    for name in ("traversal", "symlink-outside", "device"):
        error = call_error(upload, net.storage("org1"), HOSTILE[name], meta(res.FILE_KIND_DATA_SAMPLE, new_key()))
        assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARCHIVE")


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info
