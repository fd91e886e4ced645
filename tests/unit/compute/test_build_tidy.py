"""What a build's steps leave in the function's directory is made safe to copy and to remove."""

from __future__ import annotations

import os
import stat

from services.compute.build import _remove, _tidy


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
    _remove(tmp_path)
    assert not tmp_path.exists()
