"""Safe reading and unpacking of zip and tar archives, and the checks Substra applies to them.

A pure library (no I/O besides the archive and the destination given to it): storage checks uploads
with it, compute unpacks function archives and data samples with it, the gateway can use it on
server-side folders. Every archive is read as a stream, member by member, and refused as soon as a
member breaks a rule:

* a name that is absolute, holds a ``..`` component, a backslash or a NUL, or that goes through a
  symbolic link of the archive, or collides with another member;
* a symbolic or hard link whose target is absolute, leaves the archive's root, goes through another
  link, or names no member of the archive;
* a device, FIFO or any other special file;
* more members than :attr:`Limits.max_members`, or more unpacked bytes than :attr:`Limits.max_total_bytes`
  (counted on the bytes actually decompressed, never trusted from the headers; a hard link counts as
  a copy of its file, as whoever copies the unpacked tree writes it): decompression bombs.

Formats: zip (stored or deflate, bzip2, lzma members) and tar, plain or gzip, bzip2, xz compressed
(Python 3.11 has no zstd). Rule violations raise :class:`ArchiveError` (INVALID_ARGUMENT); exceeded
limits raise :class:`ArchiveTooLarge` (RESOURCE_EXHAUSTED naming the limit).

Substra's checks: :func:`inspect_function_archive` (contract §9.1: a ``Dockerfile`` at the root whose
``ENTRYPOINT`` is in exec form, at least two entries) and :func:`data_sample_checksum` (contract §5.1:
at least one file; the checksum is :func:`directory_hash` of the unpacked tree, computed here without
unpacking). :func:`extract` unpacks with the same rules, writing nothing outside ``dest`` and leaving
nothing behind on failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import posixpath
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from services.kit import trees
from services.kit.errors import InvalidArgument, ResourceExhausted

READ_BLOCK = 1 << 20
MAX_KEPT_BYTES = 1 << 20
MAX_LINK_TARGET = 4096

Source = str | os.PathLike | BinaryIO


class ArchiveError(InvalidArgument):
    """The archive is unreadable or breaks a safety or Substra rule; the message says which."""

    default_reason = "INVALID_ARCHIVE"


class ArchiveTooLarge(ResourceExhausted):
    """The archive exceeds a limit; ``metadata['limit']`` names it and ``metadata['value']`` gives it."""

    default_reason = "ARCHIVE_LIMIT_EXCEEDED"


@dataclass(frozen=True)
class Limits:
    """What an archive may hold once unpacked."""

    max_members: int = 100_000
    """Most entries (files, directories, links) an archive may have."""
    max_total_bytes: int = 10 << 30
    """Most bytes its files may hold once decompressed, all together."""


# ------------------------------------------------------------------------------------------------ members
FILE, DIRECTORY, SYMLINK, HARDLINK = "file", "directory", "symlink", "hardlink"


@dataclass
class Member:
    """One entry of an archive, its name normalized (``a/b``, never ``./a/b`` or ``a/b/``)."""

    name: str
    kind: str
    size: int = 0
    executable: bool = False
    target: str = ""
    """For links: the normalized path the link resolves to, relative to the archive's root."""
    link_text: str = ""
    """For symbolic links: the target as written in the archive."""
    walked: tuple[str, ...] = ()
    """For symbolic links: every path the target's resolution goes through."""


@dataclass
class Listing:
    """What a scan found: the members in archive order and, when asked, the sha256 of each file."""

    members: list[Member] = field(default_factory=list)
    file_hashes: dict[str, str] = field(default_factory=dict)
    """Hex sha256 of each file's content by name (hard links included), when hashing was asked."""
    total_bytes: int = 0
    kept: bytes | None = None
    """The content of the member named by ``scan(keep=...)``, if the archive has it."""


def _refuse(message: str) -> ArchiveError:
    return ArchiveError(message)


def _normalize(raw: str, what: str = "member") -> str:
    """The safe relative form of an archive path, or :class:`ArchiveError`."""
    if not raw:
        raise _refuse(f"{what} with an empty name")
    if "\x00" in raw:
        raise _refuse(f"{what} {raw!r}: NUL character in name")
    if "\\" in raw:
        raise _refuse(f"{what} {raw!r}: backslash in name (path traversal on some systems)")
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha()):
        raise _refuse(f"{what} {raw!r}: absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(f"{what} {raw!r}: path traversal ('..')")
    return "/".join(parts)


def _parents(name: str) -> Iterator[str]:
    parts = name.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


class _Checker:
    """The rules that depend on the members seen so far, applied one member at a time."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.count = 0
        self.total = 0
        self.kinds: dict[str, str] = {}  # name -> kind, for every explicit member
        self.implied: set[str] = set()  # directories that exist because something is under them
        self.symlinks: dict[str, Member] = {}
        self.sizes: dict[str, int] = {}  # file or hard link -> its bytes, for the links to it

    def count_member(self) -> None:
        self.count += 1
        if self.count > self.limits.max_members:
            raise ArchiveTooLarge(
                f"the archive holds more than {self.limits.max_members} members",
                metadata={"limit": "max_archive_members", "value": str(self.limits.max_members)},
            )

    def add_bytes(self, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_total_bytes:
            raise ArchiveTooLarge(
                f"the archive unpacks to more than {self.limits.max_total_bytes} bytes",
                metadata={"limit": "max_unpacked_bytes", "value": str(self.limits.max_total_bytes)},
            )

    def admit(self, member: Member) -> bool:
        """Check ``member`` against those before it; False for a repeated directory entry (skip it)."""
        name = member.name
        for parent in _parents(name):
            kind = self.kinds.get(parent)
            if kind == SYMLINK:
                raise _refuse(f"member {name!r} goes through the symbolic link {parent!r}")
            if kind is not None and kind != DIRECTORY:
                raise _refuse(f"member {name!r} is under {parent!r}, which is not a directory")
        previous = self.kinds.get(name)
        if member.kind == DIRECTORY:
            if previous == DIRECTORY:
                return False
            if previous is not None:
                raise _refuse(f"member {name!r} appears twice")
        elif previous is not None or name in self.implied:
            raise _refuse(f"member {name!r} appears twice")
        self.kinds[name] = member.kind
        self.implied.update(_parents(name))
        if member.kind == SYMLINK:
            self.symlinks[name] = member
        if member.kind == FILE:
            self.sizes[name] = member.size
        if member.kind == HARDLINK:
            if self.kinds.get(member.target) not in (FILE, HARDLINK):
                raise _refuse(f"hard link {name!r} points to {member.target!r}, which is not an earlier file")
            # Counted as a copy: whoever copies the unpacked tree (a build, a task's folder) writes it again.
            self.sizes[name] = self.sizes[member.target]
            self.add_bytes(self.sizes[name])
        return True

    def is_directory(self, name: str) -> bool:
        return name == "" or self.kinds.get(name) == DIRECTORY or name in self.implied

    def finish(self) -> None:
        """Checks that need every member: symbolic links resolve inside, to a member, not via a link."""
        for link in self.symlinks.values():
            for prefix in {*_parents(link.target), link.target, *link.walked}:
                if prefix in self.symlinks:
                    raise _refuse(f"symbolic link {link.name!r} goes through the symbolic link {prefix!r}")
            if not (self.is_directory(link.target) or self.kinds.get(link.target) in (FILE, HARDLINK)):
                raise _refuse(f"symbolic link {link.name!r} points to {link.link_text!r}, which is not in the archive")


def _symlink_target(name: str, text: str) -> tuple[str, tuple[str, ...]]:
    """Where a symbolic link at ``name`` pointing to ``text`` resolves, relative to the root, and every
    path the resolution walks through (each must be a plain directory, never another link)."""
    if not text:
        raise _refuse(f"symbolic link {name!r} has an empty target")
    if "\x00" in text or "\\" in text:
        raise _refuse(f"symbolic link {name!r}: invalid character in target {text!r}")
    if text.startswith("/"):
        raise _refuse(f"symbolic link {name!r} points to the absolute path {text!r}")
    stack = name.split("/")[:-1]
    walked = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise _refuse(f"symbolic link {name!r} points outside the archive ({text!r})")
            stack.pop()
        else:
            stack.append(part)
            walked.append("/".join(stack))
    return "/".join(stack), tuple(walked)


# ------------------------------------------------------------------------------------------------ formats
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_COMPRESSED_TAR_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CORRUPT = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,  # zipfile: encrypted member
    struct.error,
    UnicodeDecodeError,
    ValueError,
)


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[BinaryIO]:
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            yield handle
    else:
        source.seek(0)
        yield source


def _detect(handle: BinaryIO) -> str:
    head = handle.read(512)
    handle.seek(0)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_COMPRESSED_TAR_MAGIC) or head[257:262] == b"ustar":
        return "tar"
    if head.startswith(_ZSTD_MAGIC):
        raise _refuse("zstd-compressed archives are not supported; use zip or tar (plain, gzip, bzip2 or xz)")
    if zipfile.is_zipfile(handle):
        handle.seek(0)
        return "zip"
    handle.seek(0)
    if len(head) >= 512:
        return "tar"  # an old-style tar without the ustar magic; tarfile decides
    raise _refuse("not a zip or tar archive")


Opener = Callable[[], IO[bytes]] | None


def _tar_members(handle: BinaryIO, checker: _Checker) -> Iterator[tuple[Member, Opener]]:
    with tarfile.open(fileobj=handle, mode="r|*") as archive:
        for info in archive:
            archive.members = []  # stream mode keeps every header otherwise: memory grows with the count
            checker.count_member()
            name = _normalize(info.name)
            if info.isdir():
                member = Member(name, DIRECTORY)
            elif info.isreg():
                member = Member(name, FILE, size=info.size, executable=bool(info.mode & 0o111))
            elif info.issym():
                if len(info.linkname) > MAX_LINK_TARGET:
                    raise _refuse(f"symbolic link {name!r} has an overlong target")
                target, walked = _symlink_target(name, info.linkname)
                member = Member(name, SYMLINK, target=target, link_text=info.linkname, walked=walked)
            elif info.islnk():
                member = Member(name, HARDLINK, target=_normalize(info.linkname, "hard link target"))
            else:
                raise _refuse(f"member {info.name!r} is a device, FIFO or other special file")
            if not name:
                if member.kind == DIRECTORY:
                    continue  # "./": the root itself
                raise _refuse(f"member {info.name!r} has an empty name")
            opener = (lambda info=info: archive.extractfile(info)) if member.kind == FILE else None
            yield member, opener


def _zip_entry_count(handle: BinaryIO) -> int:
    """Entries announced by the end-of-central-directory record, read before zipfile loads them all."""
    # zipfile's own end-of-central-directory reader (zip64 aware); private, but stable since Python 2.
    record = zipfile._EndRecData(handle)
    handle.seek(0)
    if record is None:
        raise _refuse("corrupt zip archive: no end of central directory")
    return int(record[zipfile._ECD_ENTRIES_TOTAL])


def _zip_members(handle: BinaryIO, checker: _Checker) -> Iterator[tuple[Member, Opener]]:
    announced = _zip_entry_count(handle)
    if announced > checker.limits.max_members:
        checker.count = announced - 1
        checker.count_member()
    with zipfile.ZipFile(handle) as archive:
        declared = 0
        for info in archive.infolist():
            declared += info.file_size
        if declared > checker.limits.max_total_bytes:
            checker.add_bytes(declared)  # raises: refused before inflating anything
        for info in archive.infolist():
            checker.count_member()
            name = _normalize(info.filename)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if info.is_dir() or kind == stat.S_IFDIR:
                member = Member(name, DIRECTORY)
            elif kind == stat.S_IFLNK:
                if info.file_size > MAX_LINK_TARGET:
                    raise _refuse(f"symbolic link {name!r} has an overlong target")
                text = archive.read(info).decode()
                checker.add_bytes(len(text))
                target, walked = _symlink_target(name, text)
                member = Member(name, SYMLINK, target=target, link_text=text, walked=walked)
            elif kind in (0, stat.S_IFREG):
                member = Member(name, FILE, size=info.file_size, executable=bool(mode & 0o111))
            else:
                raise _refuse(f"member {info.filename!r} is a device, FIFO or other special file")
            if not name:
                if member.kind == DIRECTORY:
                    continue
                raise _refuse(f"member {info.filename!r} has an empty name")
            opener = (lambda info=info: archive.open(info)) if member.kind == FILE else None
            yield member, opener


@contextlib.contextmanager
def _translating(what: str = "archive") -> Iterator[None]:
    """Turn the errors of a corrupt or truncated archive into :class:`ArchiveError`."""
    try:
        yield
    except (ArchiveError, ArchiveTooLarge):
        raise
    except _CORRUPT as exc:
        raise _refuse(f"corrupt or unreadable {what}: {exc}") from None


def _walk(source: Source, limits: Limits) -> Iterator[tuple[Member, Opener, _Checker]]:
    """Every admitted member of ``source`` with an opener for files. Consumers iterate it inside
    :func:`_translating`, which also covers the reads they make through the openers."""
    checker = _Checker(limits)
    with _opened(source) as handle:
        kind = _detect(handle)
        members = _tar_members(handle, checker) if kind == "tar" else _zip_members(handle, checker)
        for member, opener in members:
            if checker.admit(member):
                yield member, opener, checker
        checker.finish()


def _copy(opener: Callable[[], IO[bytes]], checker: _Checker, sinks: list[Callable[[bytes], object]]) -> int:
    """Stream one member's bytes into ``sinks``, counting them against the limits."""
    written = 0
    with opener() as stream:
        while True:
            block = stream.read(READ_BLOCK)
            if not block:
                return written
            checker.add_bytes(len(block))
            written += len(block)
            for sink in sinks:
                sink(block)


def scan(source: Source, limits: Limits = Limits(), *, hash_files: bool = False, keep: str = "") -> Listing:
    """Check every rule on ``source`` without unpacking it; hash each file's bytes if asked, and keep the
    content of the file member named ``keep`` (at most 1 MiB, e.g. the Dockerfile)."""
    listing = Listing()
    checker = None
    with _translating():
        for member, opener, checker in _walk(source, limits):
            _scan_member(listing, member, opener, checker, hash_files, keep)
    listing.total_bytes = checker.total if checker else 0
    return listing


def _scan_member(
    listing: Listing, member: Member, opener: Opener, checker: _Checker, hash_files: bool, keep: str
) -> None:
    listing.members.append(member)
    if member.kind == HARDLINK and hash_files:
        listing.file_hashes[member.name] = listing.file_hashes[member.target]
    if opener is None:
        return
    sinks: list[Callable[[bytes], object]] = []
    digest = hashlib.sha256()
    if hash_files:
        sinks.append(digest.update)
    content = bytearray()
    if member.name == keep:

        def grab(block: bytes) -> None:
            if len(content) + len(block) > MAX_KEPT_BYTES:
                raise _refuse(f"{keep} is larger than {MAX_KEPT_BYTES} bytes")
            content.extend(block)

        sinks.append(grab)
    _copy(opener, checker, sinks)
    if member.name == keep:
        listing.kept = bytes(content)
    if hash_files:
        listing.file_hashes[member.name] = digest.hexdigest()


# ----------------------------------------------------------------------------------------------- Substra
ENTRYPOINT_SHELL_FORM = (
    "Invalid ENTRYPOINT in function/metric Dockerfile. You need to use the exec form in your Dockerfile. "
    'Exec form: `ENTRYPOINT ["executable", "param1", "param2"]`. Shell form: `ENTRYPOINT executable param1 '
    "param2`. See https://docs.docker.com/engine/reference/builder/#entrypoint."
)
ENTRYPOINT_MISSING = "Invalid Dockerfile: Cannot find ENTRYPOINT"


def parse_entrypoint(dockerfile: str) -> list[str]:
    """The ENTRYPOINT of a Dockerfile as Substra's builder reads it (contract §9.1).

    The first line that starts with ``ENTRYPOINT`` decides; it must be in exec (JSON array) form.
    """
    for line in dockerfile.splitlines():
        if not line.startswith("ENTRYPOINT"):
            continue
        try:
            value = json.loads(line[len("ENTRYPOINT") :])
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ArchiveError(ENTRYPOINT_SHELL_FORM, reason="INVALID_ENTRYPOINT")
        return value
    raise ArchiveError(ENTRYPOINT_MISSING, reason="MISSING_ENTRYPOINT")


def inspect_function_archive(source: Source, limits: Limits = Limits()) -> list[str]:
    """Check a function archive (safe, a root ``Dockerfile``, at least two entries) and return its
    ENTRYPOINT (exec form), or raise :class:`ArchiveError` with Substra's message."""
    listing = scan(source, limits, keep="Dockerfile")
    dockerfile = next((m for m in listing.members if m.name == "Dockerfile"), None)
    if dockerfile is None or dockerfile.kind != FILE:
        raise ArchiveError("Ensure your archive contains a Dockerfile.", reason="MISSING_DOCKERFILE")
    if len(listing.members) < 2:
        raise ArchiveError(
            "Ensure your archive contains at least one more file than the Dockerfile.", reason="ARCHIVE_TOO_SMALL"
        )
    return parse_entrypoint((listing.kept or b"").decode("utf-8", errors="replace"))


def _reduce(file_hashes: list[str]) -> str:
    digest = hashlib.sha256()
    for value in sorted(file_hashes):
        digest.update(value.encode())
    return digest.hexdigest()


def data_sample_checksum(source: Source, limits: Limits = Limits()) -> str:
    """The checksum of a data sample archive: :func:`directory_hash` of what it unpacks to, computed
    without unpacking. Refuses an archive without any file (a sample is a non-empty folder)."""
    listing = scan(source, limits, hash_files=True)
    kinds = {m.name: m for m in listing.members}
    values = []
    for member in listing.members:
        if member.kind == FILE:
            values.append(listing.file_hashes[member.name])
        elif member.kind == HARDLINK:
            values.append(listing.file_hashes[member.target])
        elif member.kind == SYMLINK:
            target = kinds.get(member.target)
            if target is not None and target.kind in (FILE, HARDLINK):
                # os.walk lists a link to a file among the files, and hashing follows it.
                values.append(listing.file_hashes[target.name])
    if not any(m.kind in (FILE, HARDLINK) for m in listing.members):
        raise ArchiveError("the data sample archive holds no file", reason="EMPTY_DATA_SAMPLE")
    return _reduce(values)


def directory_hash(root: str | os.PathLike) -> str:
    """sha256 of a folder as Substra computes it (``checksumdir.dirhash(root, "sha256")``): the sha256 of
    the sorted hex digests of every file's content. Names, modes and empty folders do not count; links to
    files count as the file, links to folders are not followed."""
    root = Path(root)
    if not root.is_dir():
        raise ArchiveError(f"{root} is not a directory")
    values = []
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            digest = hashlib.sha256()
            try:
                with open(os.path.join(folder, name), "rb") as handle:
                    while block := handle.read(READ_BLOCK):
                        digest.update(block)
            except OSError:
                pass  # checksumdir hashes an unreadable (dangling) entry as empty
            values.append(digest.hexdigest())
    return _reduce(values)


# ----------------------------------------------------------------------------------------------- unpack
def _write_file(path: str, opener: Callable[[], IO[bytes]], checker: _Checker, executable: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o755 if executable else 0o644)
    with os.fdopen(fd, "wb") as out:
        _copy(opener, checker, [out.write])


def extract(source: Source, dest: str | os.PathLike, limits: Limits = Limits()) -> Listing:
    """Unpack ``source`` into ``dest`` (created; it must not exist) under every rule of this module.

    Files are written with ``O_EXCL | O_NOFOLLOW`` and plain modes (0644, or 0755 when executable; no
    owner, setuid or timestamps from the archive); symbolic links are created last, once every member
    has been checked, so no write ever goes through one. On any failure ``dest`` is removed.
    """
    dest = Path(dest)
    dest.mkdir(mode=0o755)
    listing = Listing()
    links: list[Member] = []
    try:
        base = os.path.realpath(dest)
        checker = None
        with _translating():
            for member, opener, checker in _walk(source, limits):
                listing.members.append(member)
                path = os.path.join(base, *member.name.split("/"))
                if member.kind == DIRECTORY:
                    os.makedirs(path, mode=0o755, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                if member.kind == FILE:
                    _write_file(path, opener, checker, member.executable)
                elif member.kind == HARDLINK:
                    os.link(os.path.join(base, *member.target.split("/")), path, follow_symlinks=False)
                else:
                    links.append(member)
        for link in links:
            path = os.path.join(base, *link.name.split("/"))
            start = posixpath.dirname(link.name)
            os.symlink(posixpath.relpath(link.target or ".", start or "."), path)
        listing.total_bytes = checker.total if checker else 0
        return listing
    except BaseException:
        trees.remove_tree(dest)
        raise


__all__ = [
    "ArchiveError",
    "ArchiveTooLarge",
    "Limits",
    "Listing",
    "Member",
    "data_sample_checksum",
    "directory_hash",
    "extract",
    "inspect_function_archive",
    "parse_entrypoint",
    "scan",
]
