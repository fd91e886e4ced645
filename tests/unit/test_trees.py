"""Walking and deleting trees deeper than the standard library copes with (services.kit.trees)."""

import os
import shutil
import stat
import tempfile
import traceback
from pathlib import Path

import pytest

from services.kit import trees

DEEP = 1500  # past Python 3.11's recursion in shutil.rmtree and os.fwalk, and past PATH_MAX with "d/" per level


def deep_tree(root, depth=DEEP):
    """``root``/d/d/.../d, ``depth`` levels, with a file at the bottom; made by descriptor (the path is too long)."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)


def _open_descriptors():
    return len(os.listdir("/proc/self/fd"))


def test_a_tree_too_deep_for_shutil_is_removed(tmp_path):
    deep_tree(tmp_path / "deep")
    before = _open_descriptors()
    assert trees.remove_tree(tmp_path / "deep")
    assert os.listdir(tmp_path) == []  # nothing left beside it either
    assert _open_descriptors() == before


def test_a_locked_tree_and_a_file_and_a_missing_path_are_removed(tmp_path):
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "file").write_text("x")
    (locked / "inner").chmod(0)
    locked.chmod(0)
    assert trees.remove_tree(locked)
    (tmp_path / "file").write_text("x")
    assert trees.remove_tree(tmp_path / "file")
    assert trees.remove_tree(tmp_path / "missing")


def test_a_link_is_removed_never_its_target(tmp_path):
    target = tmp_path / "target"
    (target / "kept").mkdir(parents=True)
    (tmp_path / "link").symlink_to(target)
    assert trees.remove_tree(tmp_path / "link")
    assert (target / "kept").is_dir()


def test_the_iterative_removal_alone_takes_a_deep_tree_apart(tmp_path):
    deep_tree(tmp_path / "deep", depth=50)
    trees._take_apart(tmp_path / "deep")
    assert os.listdir(tmp_path) == []


def test_walk_visits_every_folder_once_without_following_links(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "out").symlink_to("/")
    seen = {}
    for fd, entries in trees.walk(tmp_path):
        seen[os.readlink(f"/proc/self/fd/{fd}")] = sorted(name for name, _ in entries)
    assert seen == {
        str(tmp_path): ["a", "c"],
        str(tmp_path / "a"): ["b"],
        str(tmp_path / "a" / "b"): ["f"],
        str(tmp_path / "c"): ["out"],
    }


def test_walk_does_not_enter_a_folder_the_caller_removed_when_shown_its_parent(tmp_path):
    (tmp_path / "kept" / "inner").mkdir(parents=True)
    (tmp_path / "gone" / "inner").mkdir(parents=True)
    visited = []
    for _fd, entries in trees.walk(tmp_path):
        visited += [name for name, _ in entries]
        if "gone" in visited and (tmp_path / "gone").exists():
            shutil.rmtree(tmp_path / "gone")
    assert visited.count("inner") == 1  # under "kept" only


def test_walk_refuses_a_tree_deeper_than_its_bound_and_leaks_no_descriptor(tmp_path):
    deep_tree(tmp_path / "deep", depth=40)
    before = _open_descriptors()
    with pytest.raises(trees.TooDeep):
        for _ in trees.walk(tmp_path / "deep", max_depth=30):
            pass
    assert _open_descriptors() == before
    assert sum(1 for _ in trees.walk(tmp_path / "deep", max_depth=40)) == 41
    assert _open_descriptors() == before


def _locked_tree(root):
    """Folders made unwritable and unreadable by their owner, the innermost ones past shutil's recursion."""
    deep_tree(root, depth=1200)
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_text("x")
    (root / "a" / "b").chmod(0o500)  # cannot be emptied, nor moved, without opening it up
    (root / "a").chmod(0)
    root.chmod(0o500)


def test_an_ordinary_user_s_locked_tree_is_removed(tmp_path):
    """As compute runs in a container: the jail's uid is compute's, and a task may lock what it leaves."""
    if os.geteuid() != 0:
        _locked_tree(tmp_path / "locked")
        assert trees.remove_tree(tmp_path / "locked")
        return
    home = Path(tempfile.mkdtemp())  # outside pytest's folders, which only root may enter
    try:
        os.chown(home, 65534, 65534)
        pid = os.fork()
        if pid == 0:  # the child, as nobody: a root process would not be stopped by the modes
            try:
                os.setgid(65534)
                os.setuid(65534)
                _locked_tree(home / "locked")
                os._exit(0 if trees.remove_tree(home / "locked") and not os.listdir(home) else 1)
            except Exception:  # noqa: BLE001 - shown here: the child's exit status alone would not say it
                traceback.print_exc()
            finally:
                os._exit(2)
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        trees.remove_tree(home)


def test_no_link_is_followed_to_open_up_or_move_a_folder(tmp_path):
    """What the deletion does to a folder's modes goes through a descriptor of the folder, never a link that a
    process still running in the tree may put in its place."""
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "swapped").symlink_to(outside)
    fd = os.open(tmp_path / "tree", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for call in (trees._open_up, trees._open_folder):
            with pytest.raises(OSError):
                call("swapped", fd)
    finally:
        os.close(fd)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o755
    assert trees.remove_tree(tmp_path / "tree") and outside.is_dir()


def test_a_link_swapped_in_for_a_folder_during_the_removal_is_unlinked_not_followed(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    (outside / "kept").mkdir(parents=True, mode=0o755)
    (tmp_path / "tree" / "victim" / "inner").mkdir(parents=True)
    move = trees._move

    def swap_then_move(name, dir_fd, *args, **kwargs):
        if name == "victim":  # seen as a folder, then replaced by a link before it is moved
            shutil.rmtree(f"/proc/self/fd/{dir_fd}/victim")
            os.symlink(outside, "victim", dir_fd=dir_fd)
        move(name, dir_fd, *args, **kwargs)

    monkeypatch.setattr(trees, "_move", swap_then_move)
    assert trees._take_apart(tmp_path / "tree")
    assert sorted(os.listdir(tmp_path)) == ["outside"]
    assert (outside / "kept").is_dir() and stat.S_IMODE(outside.stat().st_mode) == 0o755


def _writer(monkeypatch, times):
    """Have each of the first ``times`` unlinks of the removal add a file beside it, as a process writing in the
    tree while it goes."""
    unlink, written = trees._unlink, []

    def unlink_and_write(name, dir_fd):
        unlink(name, dir_fd)
        if len(written) < times:
            written.append(name)
            os.close(os.open(f"new{len(written)}", os.O_WRONLY | os.O_CREAT, dir_fd=dir_fd))

    monkeypatch.setattr(trees, "_unlink", unlink_and_write)


def test_a_folder_written_to_while_emptied_is_emptied_again(tmp_path, monkeypatch):
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "file").write_text("x")
    _writer(monkeypatch, times=3)
    assert trees._take_apart(tmp_path / "tree")
    assert os.listdir(tmp_path) == []


def test_a_removal_that_cannot_finish_says_so(tmp_path, monkeypatch):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "file").write_text("x")
    _writer(monkeypatch, times=trees.MAX_REFILLS + 10)
    monkeypatch.setattr(trees.shutil, "rmtree", lambda path: None)  # the fallback alone
    assert not trees.remove_tree(tmp_path / "tree")  # moved aside, but still on disk
    assert not (tmp_path / "tree").exists() and len(os.listdir(tmp_path)) == 1
