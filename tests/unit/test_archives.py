"""Safe unpacking, Substra's archive checks and the directory hash (services.kit.archives).

Every hostile archive is built here, in memory or in ``tmp_path``, with the standard library.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from services.kit import archives
from services.kit.archives import ArchiveError, ArchiveTooLarge, Limits

DOCKERFILE = b'FROM python:3.11\nCOPY . .\nENTRYPOINT ["python3", "function.py", "--function-name", "train"]\n'


# ------------------------------------------------------------------------------------------------ builders
def tar_bytes(entries, mode: str = "w:gz") -> bytes:
    """A tar archive; entries are (name, bytes) files or ready TarInfo objects (with optional data)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            elif isinstance(entry[0], tarfile.TarInfo):
                info, data = entry
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_info(name: str, kind: bytes, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


def zip_bytes(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive; entries are (name, bytes) or (ZipInfo, bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_link(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def source(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


def checksumdir_sha256(root: Path) -> str:
    """The reference: checksumdir.dirhash(root, "sha256") re-implemented from its definition."""
    hashes = []
    for folder, _, files in os.walk(root):
        for name in files:
            hashes.append(hashlib.sha256(Path(folder, name).read_bytes()).hexdigest())
    reduced = hashlib.sha256()
    for value in sorted(hashes):
        reduced.update(value.encode())
    return reduced.hexdigest()


FUNCTION_FILES = [("Dockerfile", DOCKERFILE), ("function.py", b"import substratools as tools\n")]


# --------------------------------------------------------------------------------- function archives
@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_function_archive_in_every_tar_compression_gives_its_entrypoint(mode):
    entrypoint = archives.inspect_function_archive(source(tar_bytes(FUNCTION_FILES, mode)))
    assert entrypoint == ["python3", "function.py", "--function-name", "train"]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_function_archive_as_zip(compression, tmp_path):
    path = tmp_path / "function.zip"
    path.write_bytes(zip_bytes(FUNCTION_FILES, compression))
    assert archives.inspect_function_archive(path)[0] == "python3"


def test_function_archive_made_with_tar_dot_is_accepted():
    data = tar_bytes([(f"./{name}", content) for name, content in FUNCTION_FILES])
    assert archives.inspect_function_archive(source(data))[1] == "function.py"


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("function.py", b"x")], "MISSING_DOCKERFILE"),
        ([("sub/Dockerfile", DOCKERFILE), ("function.py", b"x")], "MISSING_DOCKERFILE"),
        ([("Dockerfile", DOCKERFILE)], "ARCHIVE_TOO_SMALL"),
        ([("Dockerfile", b"FROM python\nENTRYPOINT python3 function.py\n"), ("f.py", b"")], "INVALID_ENTRYPOINT"),
        ([("Dockerfile", b'FROM python\nENTRYPOINT ["python3", 3]\n'), ("f.py", b"")], "INVALID_ENTRYPOINT"),
        ([("Dockerfile", b"FROM python\nCMD python3 f.py\n"), ("f.py", b"")], "MISSING_ENTRYPOINT"),
    ],
)
def test_function_archive_checks_of_contract_9_1(entries, reason):
    with pytest.raises(ArchiveError) as info:
        archives.inspect_function_archive(source(tar_bytes(entries)))
    assert info.value.reason == reason


def test_entrypoint_parsing_follows_substra_first_line_rule():
    assert archives.parse_entrypoint('FROM x\nENTRYPOINT ["a", "b"]\nENTRYPOINT ["c"]\n') == ["a", "b"]
    assert archives.parse_entrypoint('FROM x\r\nENTRYPOINT  [ "a" ]  \r\n') == ["a"]
    with pytest.raises(ArchiveError, match="exec form"):
        archives.parse_entrypoint("ENTRYPOINT a b\n")
    with pytest.raises(ArchiveError, match="Cannot find ENTRYPOINT"):
        archives.parse_entrypoint('FROM x\n  ENTRYPOINT ["indented lines do not count"]\n')


# ------------------------------------------------------------------------------------------ hostile names
@pytest.mark.parametrize(
    "name",
    ["../evil", "a/../../evil", "/etc/passwd", "a/../b", "..\\evil", "C:/windows/evil"],
)
@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_traversal_absolute_and_odd_names_are_refused(name, fmt):
    entries = [*FUNCTION_FILES, (name, b"owned")]
    data = tar_bytes(entries) if fmt == "tar" else zip_bytes(entries)
    with pytest.raises(ArchiveError):
        archives.scan(source(data))


def test_zip_names_written_raw_with_traversal_are_refused():
    data = bytearray(zip_bytes([("aaaaaaaa", b"owned")]))
    data[:] = data.replace(b"aaaaaaaa", b"../../ev")  # local header and central directory
    with pytest.raises(ArchiveError, match="traversal"):
        archives.scan(source(bytes(data)))


def test_duplicate_members_are_refused():
    with pytest.raises(ArchiveError, match="twice"):
        archives.scan(source(tar_bytes([("a", b"1"), ("./a", b"2")])))
    with pytest.raises(ArchiveError, match="not a directory"):
        archives.scan(source(tar_bytes([("a", b"1"), ("a/b", b"2")])))


# -------------------------------------------------------------------------------------------------- links
@pytest.mark.parametrize(
    "entries",
    [
        [tar_info("link", tarfile.SYMTYPE, "/etc/passwd")],
        [tar_info("link", tarfile.SYMTYPE, "../outside")],
        [tar_info("sub/link", tarfile.SYMTYPE, "../../outside")],
        # a file written through a link of the archive
        [tar_info("link", tarfile.SYMTYPE, "."), ("link/file", b"x")],
        # a link whose target goes through another link: "a" is the root, so "a/.." is outside
        [tar_info("a", tarfile.SYMTYPE, "."), tar_info("b", tarfile.SYMTYPE, "a/..")],
        # the link appears after a member that made its name a directory
        [("dir/file", b"x"), tar_info("dir", tarfile.SYMTYPE, "elsewhere")],
        [tar_info("dangling", tarfile.SYMTYPE, "missing")],
        [tar_info("self", tarfile.SYMTYPE, "self")],
        [tar_info("hard", tarfile.LNKTYPE, "../outside")],
        [tar_info("hard", tarfile.LNKTYPE, "/etc/shadow")],
        [tar_info("hard", tarfile.LNKTYPE, "not-yet"), ("not-yet", b"x")],
    ],
    ids=[
        "absolute",
        "parent",
        "nested-parent",
        "write-through-link",
        "link-through-link",
        "dir-then-link",
        "dangling",
        "self",
        "hard-outside",
        "hard-absolute",
        "hard-forward",
    ],
)
def test_links_pointing_outside_or_through_links_are_refused(entries, tmp_path):
    data = tar_bytes([("keep", b"k"), *entries])
    with pytest.raises(ArchiveError):
        archives.scan(source(data))
    with pytest.raises(ArchiveError):
        archives.extract(source(data), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_zip_symlink_outside_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("keep", b"k")
        info, data = zip_link("link", "../../etc/passwd")
        archive.writestr(info, data)
    with pytest.raises(ArchiveError, match="outside"):
        archives.scan(source(buffer.getvalue()))


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_and_fifo_members_are_refused(kind):
    device = tar_info("dev/sda", kind)
    device.devmajor, device.devminor = 8, 0
    with pytest.raises(ArchiveError, match="device"):
        archives.scan(source(tar_bytes([("keep", b"k"), device])))


def test_zip_device_mode_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("null")
        info.external_attr = (stat.S_IFCHR | 0o666) << 16
        archive.writestr(info, b"")
    with pytest.raises(ArchiveError, match="device"):
        archives.scan(source(buffer.getvalue()))


# ------------------------------------------------------------------------------------------------- bombs
def test_zip_bomb_is_refused_on_decompressed_bytes():
    data = zip_bytes([("zeros", b"\0" * (8 << 20))])
    assert len(data) < 64 << 10
    with pytest.raises(ArchiveTooLarge) as info:
        archives.scan(source(data), Limits(max_total_bytes=1 << 20))
    assert info.value.metadata == {"limit": "max_unpacked_bytes", "value": str(1 << 20)}


def test_zip_whose_headers_lie_about_sizes_is_refused():
    data = bytearray(zip_bytes([("zeros", b"\0" * (4 << 20))]))
    # Shrink the declared uncompressed size (central directory) to 1 byte: the limit check on headers
    # passes, zipfile stops at the declared size and the CRC no longer matches.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 1)
    with pytest.raises((ArchiveError, ArchiveTooLarge)):
        archives.scan(source(bytes(data)), Limits(max_total_bytes=1 << 20))


def test_tar_gz_bomb_is_refused_while_streaming(tmp_path):
    data = tar_bytes([("a", b"\0" * (3 << 20)), ("b", b"\0" * (3 << 20))])
    with pytest.raises(ArchiveTooLarge):
        archives.extract(source(data), tmp_path / "out", Limits(max_total_bytes=4 << 20))
    assert not (tmp_path / "out").exists()


def test_hard_links_count_as_copies_of_their_file():
    links = [tar_info(f"link{i}", tarfile.LNKTYPE, "big") for i in range(40)]
    data = tar_bytes([("big", b"\0" * (1 << 20)), *links])
    with pytest.raises(ArchiveTooLarge):
        archives.scan(source(data), Limits(max_total_bytes=10 << 20))
    assert archives.scan(source(data), Limits(max_total_bytes=41 << 20)).total_bytes == 41 << 20


def test_member_count_limit():
    data = tar_bytes([(f"f{i}", b"") for i in range(50)])
    with pytest.raises(ArchiveTooLarge) as info:
        archives.scan(source(data), Limits(max_members=20))
    assert info.value.metadata["limit"] == "max_archive_members"


def test_zip_announcing_too_many_entries_is_refused_before_reading_them():
    data = bytearray(zip_bytes([("a", b"1")]))
    eocd = data.rfind(b"PK\x05\x06")
    data[eocd + 8 : eocd + 12] = struct.pack("<HH", 60000, 60000)
    with pytest.raises(ArchiveTooLarge):
        archives.scan(source(bytes(data)), Limits(max_members=1000))


# ----------------------------------------------------------------------------------------- corrupt input
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just some text, not an archive",
        os.urandom(4096),
        b"\x28\xb5\x2f\xfd" + os.urandom(100),  # zstd
        tar_bytes(FUNCTION_FILES)[:-200],  # truncated gzip stream
        zip_bytes(FUNCTION_FILES)[:-30],  # zip without its end record
    ],
    ids=["empty", "text", "random", "zstd", "truncated-tgz", "truncated-zip"],
)
def test_unreadable_input_is_an_archive_error(data):
    with pytest.raises(ArchiveError):
        archives.scan(source(data))


# ------------------------------------------------------------------------------------ data samples, hash
def make_folder(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "a.csv").write_bytes(b"x,y\n1,2\n")
    (root / "sub" / "b.csv").write_bytes(b"x,y\n3,4\n")
    (root / "sub" / "deeper" / "same-content.csv").write_bytes(b"x,y\n1,2\n")
    (root / "empty.txt").write_bytes(b"")


def test_data_sample_checksum_equals_checksumdir_of_the_folder(tmp_path):
    folder = tmp_path / "sample"
    folder.mkdir()
    make_folder(folder)
    expected = checksumdir_sha256(folder)
    assert archives.directory_hash(folder) == expected
    zipped = tmp_path / "sample.zip"
    with zipfile.ZipFile(zipped, "w") as archive:  # the SDK's zip_folder: paths relative to the folder
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    assert archives.data_sample_checksum(zipped) == expected
    tarred = tmp_path / "sample.tar.xz"
    with tarfile.open(tarred, "w:xz") as archive:
        archive.add(folder, arcname=".")
    assert archives.data_sample_checksum(tarred) == expected
    archives.extract(tarred, tmp_path / "unpacked")
    assert archives.directory_hash(tmp_path / "unpacked") == expected


def test_data_sample_hash_with_links_matches_the_unpacked_tree(tmp_path):
    data = tar_bytes(
        [
            ("data/a.bin", b"alpha"),
            ("data/b.bin", b"beta"),
            tar_info("data/hard", tarfile.LNKTYPE, "data/a.bin"),
            tar_info("to-file", tarfile.SYMTYPE, "data/b.bin"),
            tar_info("data/to-dir", tarfile.SYMTYPE, "."),
        ]
    )
    checksum = archives.data_sample_checksum(source(data))
    archives.extract(source(data), tmp_path / "out")
    assert archives.directory_hash(tmp_path / "out") == checksum == checksumdir_sha256(tmp_path / "out")


def test_data_sample_without_any_file_is_refused():
    data = tar_bytes([tar_info("empty-dir", tarfile.DIRTYPE, mode=0o755)])
    with pytest.raises(ArchiveError) as info:
        archives.data_sample_checksum(source(data))
    assert info.value.reason == "EMPTY_DATA_SAMPLE"


# -------------------------------------------------------------------------------------------------- unpack
def test_extract_writes_plain_modes_and_inner_links(tmp_path):
    setuid = tarfile.TarInfo("bin/tool")
    setuid.mode = 0o4755
    data = tar_bytes(
        [
            (setuid, b"#!/bin/sh\n"),
            ("data/x.txt", b"hello"),
            tar_info("data/hard", tarfile.LNKTYPE, "data/x.txt"),
            tar_info("link", tarfile.SYMTYPE, "data/x.txt"),
            tar_info("bin/up", tarfile.SYMTYPE, "../data"),
        ]
    )
    out = tmp_path / "out"
    listing = archives.extract(source(data), out)
    assert [m.kind for m in listing.members] == ["file", "file", "hardlink", "symlink", "symlink"]
    assert stat.S_IMODE((out / "bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "data/x.txt").stat().st_mode) == 0o644
    assert (out / "data/hard").read_bytes() == b"hello"
    assert os.readlink(out / "link") == "data/x.txt"
    assert os.readlink(out / "bin/up") == "../data"
    assert (out / "bin/up/x.txt").read_bytes() == b"hello"


def test_extract_refuses_an_existing_destination(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        archives.extract(source(tar_bytes(FUNCTION_FILES)), tmp_path / "out")


def test_extract_leaves_nothing_when_a_late_member_is_hostile(tmp_path):
    data = tar_bytes([*FUNCTION_FILES, ("big", b"1" * 1000), ("../late-evil", b"x")])
    with pytest.raises(ArchiveError):
        archives.extract(source(data), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
