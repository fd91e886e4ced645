"""Walking and deleting folder trees that untrusted code wrote.

A jail's work folder or outputs, a function's build folder and an unpacked archive may hold a tree
thousands of levels deep. The standard library's ``shutil.rmtree`` and ``os.fwalk`` recurse once per
level in Python 3.11 and raise ``RecursionError`` (which ``ignore_errors`` does not catch) near a
thousand; paths that deep are also longer than ``PATH_MAX``. Here:

- :func:`walk` goes through a tree by folder descriptor without recursing, and refuses one deeper
  than ``max_depth`` with :class:`TooDeep` (an ``OSError``) before holding more descriptors than that;
- :func:`remove_tree` deletes any tree, however deep, and never raises: a failure to delete must not
  stop the cleanup around it (a runner's uid given back, the next folder of the trash).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

MAX_DEPTH = 256
"""Folders deeper than this under a walked root make :func:`walk` refuse the tree."""
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TooDeep(OSError):
    """A tree holds folders deeper than the walk allows."""

    def __init__(self, root: str | os.PathLike, max_depth: int) -> None:
        super().__init__(errno.ELOOP, f"folders nested more than {max_depth} levels deep", str(root))


def walk(root: str | os.PathLike, max_depth: int = MAX_DEPTH) -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """Every folder of ``root`` (itself first), depth first, as its open descriptor and its entries'
    names and ``lstat`` modes. Links are never followed. A folder is opened only after the caller
    has seen its parent's entries, so the caller may open it up (``chmod``) or remove entries first;
    entries it removed are not visited. One descriptor is held per level of the current path."""
    stack: list[tuple[int, Iterator[str]]] = []
    fd = os.open(root, _OPEN_FOLDER)
    try:
        while fd is not None:
            entries = [(name, os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode) for name in os.listdir(fd)]
            yield fd, entries
            stack.append((fd, iter([name for name, mode in entries if stat.S_ISDIR(mode)])))
            fd = None
            while stack and fd is None:
                parent, folders = stack[-1]
                name = next(folders, None)
                if name is None:
                    os.close(stack.pop()[0])
                elif len(stack) > max_depth:
                    raise TooDeep(root, max_depth)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        fd = os.open(name, _OPEN_FOLDER, dir_fd=parent)
    finally:
        for held, _ in stack:
            os.close(held)
        if fd is not None:  # opened, not yet on the stack
            os.close(fd)


def remove_tree(path: str | os.PathLike) -> bool:
    """Delete ``path`` (a file, a link or a folder tree of any depth, whatever its modes); True once it is
    gone, beside it included. Never raises. ``shutil.rmtree`` first; if anything is left, the tree is
    taken apart iteratively."""
    with contextlib.suppress(OSError, RecursionError):
        shutil.rmtree(path)
    if not os.path.lexists(path):
        return True
    try:
        return _take_apart(Path(path))
    except OSError:
        return False


MAX_REFILLS = 100
"""How many times a removal empties again a folder written to while it was emptied, before it gives up."""


def _take_apart(path: Path) -> bool:
    """Delete a tree without recursion and without long paths: the tree is moved into a fresh folder
    beside it, then every folder met is moved up into that folder (so none is ever more than one level
    down) and emptied, then removed. True once that folder is gone too.

    A process may still be changing the tree (a warm runner's own threads, between two of its tasks):
    nothing here follows a link it could swap in for a folder. Folders are opened ``O_NOFOLLOW`` (a
    link or a file found in a folder's place is unlinked), modes are changed only through a descriptor
    of the folder and only when a lock stops the removal (an ordinary user's ``chmod 000``); entries
    that vanish are skipped, and a folder written to while it was emptied is emptied again."""
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        os.unlink(path)
        return True
    flat = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".removing", dir=path.parent)
    flat_fd = os.open(flat, _OPEN_FOLDER)
    try:
        parent_fd = os.open(path.parent, _OPEN_FOLDER)
        try:
            _move(path.name, parent_fd, "0", flat_fd, from_tree=False)  # its parent is not the tree's to change
        finally:
            os.close(parent_fd)
        pending, moved, refills = ["0"], 1, 0
        while pending:
            name = pending.pop()
            try:
                fd = _open_folder(name, flat_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                os.unlink(name, dir_fd=flat_fd)  # no longer a folder: a link or a file swapped in
                continue
            try:
                for entry in os.listdir(fd):
                    try:
                        if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                            _move(entry, fd, str(moved), flat_fd)
                            pending.append(str(moved))
                            moved += 1
                        else:
                            _unlink(entry, fd)
                    except FileNotFoundError:
                        pass
            finally:
                os.close(fd)
            try:
                os.rmdir(name, dir_fd=flat_fd)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY or refills >= MAX_REFILLS:
                    raise
                refills += 1
                pending.append(name)
    finally:
        os.close(flat_fd)
    os.rmdir(flat)
    return not os.path.lexists(flat)


def _open_folder(name: str, dir_fd: int) -> int:
    """A folder entry opened to be listed, never through a link; one locked by its owner (``chmod 000``,
    which stops no root) is opened up first."""
    try:
        return os.open(name, _OPEN_FOLDER, dir_fd=dir_fd)
    except PermissionError:
        _open_up(name, dir_fd)
        return os.open(name, _OPEN_FOLDER, dir_fd=dir_fd)


def _unlink(name: str, dir_fd: int) -> None:
    """Unlink an entry of the folder ``dir_fd``, opening that folder up if its owner made it read-only."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except PermissionError:
        os.fchmod(dir_fd, 0o700)
        os.unlink(name, dir_fd=dir_fd)


def _move(name: str, dir_fd: int, new_name: str, new_dir_fd: int, *, from_tree: bool = True) -> None:
    """Rename a folder entry into another folder. The entry (moving a folder writes its ``..``) and, when
    it is a folder of the tree, its folder are opened up first if their owner made them read-only."""
    try:
        os.rename(name, new_name, src_dir_fd=dir_fd, dst_dir_fd=new_dir_fd)
    except PermissionError:
        if from_tree:
            os.fchmod(dir_fd, 0o700)
        _open_up(name, dir_fd)
        os.rename(name, new_name, src_dir_fd=dir_fd, dst_dir_fd=new_dir_fd)


def _open_up(name: str, dir_fd: int) -> None:
    """Make a folder entry its owner's to change, through a descriptor of the folder itself (``O_PATH``
    needs no permission on it; its ``/proc/self/fd`` name reaches that folder, never a link's target)."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
    finally:
        os.close(fd)
