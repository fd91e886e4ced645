"""``python -m tools.bench [NAME [ARGS...]]``: run one benchmark ``tools/bench/bench_<name>.py`` with
its arguments, or all of them.

Each benchmark module exposes ``main(argv) -> int`` and prints its figures as ratios measured
side by side in the same run, with the command that produced them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def available() -> list[str]:
    """Names of the benchmark modules next to this file."""
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    """Run the named benchmark with its arguments, or all of them with none."""
    if argv and argv[0] not in available():
        print(f"unknown benchmark {argv[0]!r}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    names, extra = (argv[:1], argv[1:]) if argv else (available(), [])
    status = 0
    for name in names:
        print(f"== {name}: python -m tools.bench {' '.join([name, *extra])}", flush=True)
        status |= importlib.import_module(f"tools.bench.bench_{name}").main(extra)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
