"""The versioned tool cache of tools/k8s and tools/clients: a folder appears whole or not at all, and once."""

from __future__ import annotations

import pytest

from tools.versioned_cache import build_once, cache_root


def test_the_cache_root_follows_tessera_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path))
    assert cache_root("clients") == tmp_path / "clients"


def test_a_folder_is_filled_once_and_renamed_into_place(tmp_path):
    final, calls = tmp_path / "tools" / "v1-abc", []

    def fill(work):
        calls.append(work)
        (work / "bin").mkdir()
        (work / "bin" / "tool").write_text("#!/bin/sh\n")

    assert build_once(final, lambda: (final / "bin" / "tool").exists(), fill) == final
    assert build_once(final, lambda: (final / "bin" / "tool").exists(), fill) == final
    assert len(calls) == 1 and (final / "bin" / "tool").exists() and not calls[0].exists()


def test_a_failed_fill_leaves_no_folder(tmp_path):
    final = tmp_path / "tools" / "v1-abc"

    def fill(work):
        (work / "half").write_text("")
        raise RuntimeError("go install failed")

    with pytest.raises(RuntimeError):
        build_once(final, lambda: False, fill)
    assert [p.name for p in final.parent.iterdir()] == [".lock"]
