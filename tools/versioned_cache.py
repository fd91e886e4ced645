"""A folder of built tools under ``${TESSERA_CACHE:-~/.cache/tessera}``, keyed by their versions (ADR 0009).

A folder is filled under a temporary name and renamed into place once complete, under a file lock: a folder that
exists is whole, and two builds running at once build once. Standard library only: it runs before the tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root(kind: str) -> Path:
    """``$TESSERA_CACHE/<kind>``, by default ``~/.cache/tessera/<kind>``."""
    return Path(os.environ.get("TESSERA_CACHE") or Path.home() / ".cache" / "tessera").expanduser() / kind


def build_once(final: Path, complete: Callable[[], bool], fill: Callable[[Path], None]) -> Path:
    """Make ``final`` with ``fill(folder)`` unless ``complete()`` says it is there (checked again under the lock)."""
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:  # a second build waits for the first and then finds it done
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete():
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            fill(work)
            work.chmod(0o755)  # mkdtemp made it private
            if final.exists():  # an incomplete folder left by hand: replace it
                shutil.rmtree(final)
            work.rename(final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(work)
    return final


def missing_tools(label: str, commands: tuple[str, ...], built: str, tests: str) -> int | None:
    """When one of ``commands`` is not on PATH, say that ``built`` cannot be made and return the exit status (1 in
    CI, where ``tests`` must run; 0 elsewhere, where they skip); ``None`` when all are there."""
    missing = [c for c in commands if shutil.which(c) is None]
    if not missing:
        return None
    ci = os.environ.get("CI") == "true"
    print(
        f"{label}: {' and '.join(f'`{c}`' for c in missing)} not on PATH, so the {built} cannot be built; "
        + ("CI=true: failing." if ci else f"the {tests} will skip."),
        file=sys.stderr,
    )
    return 1 if ci else 0
