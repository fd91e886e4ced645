"""What a build's steps leave in the function's directory is made safe to copy and to remove."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tarfile

import pytest

from services.compute.build import BuildError, _tidy, prepare
from services.kit import trees
from tests.unit.test_trees import deep_tree


def _tree(root):
    (root / "code" / "locked" / "inner").mkdir(parents=True)
    (root / "code" / "run.sh").write_text("#!/bin/sh\n")
    (root / "code" / "run.sh").chmod(0o4700)  # setuid
    (root / "code" / "secret").write_text("x")
    (root / "code" / "secret").chmod(0)
    os.mkfifo(root / "code" / "pipe")
    (root / "code" / "link").symlink_to("/etc/hostname")
    (root / "code" / "locked").chmod(0)
    return root / "code"


def test_special_files_go_locked_folders_open_and_set_id_bits_drop(tmp_path):
    code = _tree(tmp_path)
    _tidy(code)
    assert sorted(os.listdir(code)) == ["link", "locked", "run.sh", "secret"]
    assert (code / "link").is_symlink() and os.readlink(code / "link") == "/etc/hostname"  # kept as a link
    assert stat.S_IMODE((code / "run.sh").stat().st_mode) == 0o744  # no setuid; readable
    assert stat.S_IMODE((code / "secret").stat().st_mode) == 0o644
    assert (code / "locked" / "inner").is_dir()


def test_a_failed_build_s_folder_is_removed_whatever_its_modes(tmp_path):
    _tree(tmp_path)
    trees.remove_tree(tmp_path)
    assert not tmp_path.exists()


def test_steps_that_left_a_tree_too_deep_to_walk_fail_the_build_and_their_folder_goes(tmp_path):
    deep_tree(tmp_path / "code")
    with pytest.raises(trees.TooDeep):
        _tidy(tmp_path / "code")
    trees.remove_tree(tmp_path)
    assert not tmp_path.exists()


def test_an_archive_nested_too_deep_to_copy_fails_its_build(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("Dockerfile", 'FROM python:3.11\nENTRYPOINT ["python3", "f.py"]\n'), ("f.py", "")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
        info = tarfile.TarInfo("/".join(["d"] * 700))
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    archive = tmp_path / "function.tar.gz"
    archive.write_bytes(buffer.getvalue())
    functions = tmp_path / "functions"
    with pytest.raises(BuildError, match="nested too deep"):
        asyncio.run(prepare(archive, functions, "c" * 64, tmp_path / "log", 60, jails=None))
    assert not (functions / ("c" * 64)).exists()
