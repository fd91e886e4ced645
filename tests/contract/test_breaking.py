"""The API guard of `make check`: `buf breaking` against the previous commit refuses a breaking proto change.

A throw-away git repository holds a copy of the buf workspace; one commit, then a change, then the same
command `make check` runs. Adding a field passes; deleting one or changing its type fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BUF = Path(sys.executable).parent / "buf"
EVENTS = Path("protos/tessera/asset/v1/events.proto")


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
    )


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A git repository with the buf workspace of this tree committed once."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for part in ("buf.yaml", "protos", "third_party"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part)
        else:
            shutil.copy(source, tmp_path / part)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "published API")
    return tmp_path


def breaking(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BUF), "breaking", "--against", ".git#ref=HEAD"], cwd=repo, capture_output=True, text=True
    )


def edit(repo: Path, old: str, new: str) -> None:
    path = repo / EVENTS
    text = path.read_text()
    assert re.search(re.escape(old), text), old
    path.write_text(text.replace(old, new, 1))


def test_an_unchanged_api_passes(workspace):
    result = breaking(workspace)
    assert result.returncode == 0, result.stdout + result.stderr


def test_adding_a_field_passes(workspace):
    edit(workspace, "  int32 current = 2;\n", "  int32 current = 2;\n  // Added later.\n  string note = 3;\n")
    result = breaking(workspace)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deleting_a_field_fails(workspace):
    edit(workspace, "  // Status after the change (the snapshot's status).\n  int32 current = 2;\n", "")
    result = breaking(workspace)
    assert result.returncode != 0
    assert "current" in result.stdout + result.stderr


def test_changing_a_field_type_fails(workspace):
    edit(workspace, "  int32 current = 2;", "  string current = 2;")
    result = breaking(workspace)
    assert result.returncode != 0
    assert "type" in (result.stdout + result.stderr).lower()
