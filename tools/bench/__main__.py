"""``python -m tools.bench [NAME...]``: run the benchmarks ``tools/bench/bench_<name>.py``.

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
    """Run the named benchmarks, or all of them."""
    names = argv or available()
    if not names:
        print("no benchmarks yet: add tools/bench/bench_<name>.py with a main(argv) function")
        return 0
    status = 0
    for name in names:
        if name not in available():
            print(f"unknown benchmark {name!r}; available: {', '.join(available())}", file=sys.stderr)
            return 2
        print(f"== {name}", flush=True)
        status |= importlib.import_module(f"tools.bench.bench_{name}").main([])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
