"""Data samples registered from folders on the organization's own server (the SDK's ``local=False``).

Substra calls the mounted volume "servermedias": an operator puts the data where the gateway can read
it, and users register folders by path instead of uploading them (contract §5.1). A path is accepted
only when the gateway has ``TESSERA_SERVERMEDIAS_ROOT`` and the path is an existing, non-empty
directory under it, not itself a symbolic link; with ``multiple`` each of its sub-folders is a sample.

Each folder is packed as an uncompressed tar, streamed to storage like an uploaded sample, so that
storage keeps owning every byte tasks read and computes the same directory checksum as for an upload
of that folder. Symbolic links, devices and other special files inside a folder are refused rather
than followed: the root is the boundary of what users may register.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import HttpError

PACK_BUFFER = 1 << 20
"""Bytes gathered before the packing thread hands them to the upload (one hop per MiB)."""


def sample_folders(spec: dict[str, Any], root: str) -> list[Path]:
    """The folders a ``{"path"|"paths", "multiple"?}`` body names, checked; 400 otherwise."""
    if not root:
        raise HttpError(
            400,
            "server-side data samples (local=False) are not enabled on this organization: its gateway has no "
            "TESSERA_SERVERMEDIAS_ROOT; upload the folders instead (local=True)",
        )
    if ("path" in spec) == ("paths" in spec):
        raise HttpError(400, "give either path (one folder) or paths (a list of folders)")
    raw = [spec["path"]] if "path" in spec else spec["paths"]
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) and p for p in raw):
        raise HttpError(400, "paths: a non-empty list of absolute folder paths is required")
    multiple = spec.get("multiple", False)
    if not isinstance(multiple, bool):
        raise HttpError(400, "multiple: must be true or false")
    boundary = Path(os.path.realpath(root))
    folders: list[Path] = []
    for path in raw:
        folder = _checked(path, boundary)
        if multiple:
            subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
            if not subfolders:
                raise HttpError(400, f"{path}: multiple is set but the folder has no sub-folders")
            folders.extend(_checked(str(p), boundary) for p in subfolders)
        else:
            folders.append(folder)
    if len(set(folders)) != len(folders):
        raise HttpError(400, "the same folder is named twice")
    return folders


def _checked(path: str, boundary: Path) -> Path:
    if not os.path.isabs(path):
        raise HttpError(400, f"{path}: must be an absolute path")
    if os.path.islink(path):
        raise HttpError(400, f"{path}: must not be a symbolic link")
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(boundary):
        raise HttpError(400, f"{path}: not under this organization's server media root")
    if not real.is_dir():
        raise HttpError(400, f"{path}: not an existing directory")
    if not any(entry.is_file() for entry in real.rglob("*")):
        raise HttpError(400, f"{path}: the folder holds no file")
    return real


class _Sink(io.RawIOBase):
    """A writable file whose bytes go to ``push`` (called from the packing thread)."""

    def __init__(self, push: Callable[[bytes], None]) -> None:
        self._push = push

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._push(bytes(data))
        return len(data)


def pack(folder: Path, push: Callable[[bytes], None]) -> None:
    """Stream ``folder``'s tree as a tar to ``push``, names relative to the folder (blocking: run it on a
    thread). Only directories and regular files are packed."""
    with io.BufferedWriter(_Sink(push), PACK_BUFFER) as out, tarfile.open(fileobj=out, mode="w|") as tar:
        for current, directories, files in os.walk(folder):
            directories.sort()  # in place: os.walk descends in this order
            for name in [*directories, *sorted(files)]:
                path = Path(current) / name
                mode = path.lstat().st_mode
                relative = path.relative_to(folder).as_posix()
                if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    raise HttpError(400, f"{folder}: {relative} is not a regular file or folder (links are refused)")
                try:
                    tar.add(path, arcname=relative, recursive=False)
                except OSError as exc:
                    raise HttpError(400, f"{folder}: cannot read {relative}: {exc.strerror}") from None
