"""Two versions of Tessera benchmarked at the same time: the FedAvg scenario (:mod:`tools.bench.fedavg`) of each,
started together on this machine, so that both meet the same machine.

Why: this machine's speed moves by a third within minutes (the same code's steady round read 0.54 s and 0.81 s
twenty minutes apart), so runs taken one after the other hide any change below ~15 %. Two networks running at
once share the slow and the fast moments: their CPU per round differs by 0.5-3.5 % when both sides are the same
code (docs/benchmarks.md). Each network has its own PostgreSQL, NATS and ports; both together are ~100 processes
on the machine, so the absolute round times are about twice those of a lone run: compare the ratios.

Usage::

    python -m tools.bench.side_by_side A B [--runs N] [--rounds R] [--orgs N] [--env-a K=V]... [--env-b K=V]...

A and B each name a git revision of this repository (checked out in a temporary worktree, its bindings
generated) or a source tree's folder (its ``gen/python`` generated). The same revision on both sides with
``--env-b`` compares a setting. Prints, per run, each side's steady round and CPU per round, and B's CPU over
A's by component.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROUND = re.compile(r"\|\s*\*\*(?P<round>[0-9.]+)\*\*\s*\|\s*$")
CPU_ROW = re.compile(r"^\|\s*(?P<name>[^|*]+?)\s*\|\s*(?P<seconds>[0-9.]+)\s*\|\s*$")


@dataclass
class Reading:
    """What one FedAvg run printed: its steady round and its CPU seconds per round by component."""

    round: float
    cpu: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.cpu.values())


def parse(report: str) -> Reading:
    """The figures of a FedAvg report (:func:`tools.bench.fedavg.run`)."""
    rounds = [float(m["round"]) for line in report.splitlines() if (m := ROUND.search(line))]
    if not rounds:
        raise ValueError("no steady round in the report:\n" + report[-2000:])
    tables: dict[str, dict[str, float]] = {"CPU per round": {}, "Phases of a steady round": {}}
    table: dict[str, float] | None = None
    for line in report.splitlines():
        starts = [rows for title, rows in tables.items() if line.startswith(title)]
        if starts:
            table = starts[0]
        elif table is not None and (m := CPU_ROW.match(line)):
            table[m["name"]] = float(m["seconds"])
        elif table is not None and not line.strip() and table:
            table = None
    return Reading(rounds[0], tables["CPU per round"], tables["Phases of a steady round"])


@contextlib.contextmanager
def source_tree(spec: str, scratch: Path) -> Iterator[Path]:
    """The folder of ``spec``: a source tree as is, or a worktree of a git revision; bindings generated."""
    path = Path(spec)
    if path.is_dir():
        tree, worktree = path.resolve(), False
    else:
        tree = scratch / re.sub(r"[^A-Za-z0-9_.-]", "_", spec)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), spec], check=True)
        worktree = True
    try:
        if not (tree / "gen" / "python").is_dir() or worktree:
            subprocess.run([sys.executable, str(tree / "tools" / "codegen" / "gen.py")], check=True, cwd=tree)
        yield tree
    finally:
        if worktree:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def start(tree: Path, env: dict[str, str], args: argparse.Namespace, log: Path) -> subprocess.Popen:
    """One FedAvg benchmark of ``tree`` (its code first on the path), writing its report to ``log``."""
    command = [sys.executable, "-m", "tools.bench", "execution", "--fedavg"]
    command += ["--rounds", str(args.rounds), "--orgs", str(args.orgs)]
    environment = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'gen' / 'python'}", **env}
    return subprocess.Popen(command, cwd=tree, env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _assignments(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env-a/--env-b take NAME=VALUE, not {value!r}")
        out[name] = setting
    return out


def report(readings: list[tuple[Reading, Reading]], a: str, b: str) -> list[str]:
    """The runs, then B's CPU per round over A's by component (medians over the runs)."""
    lines = [
        f"A = {a}, B = {b}; both at once in each run.",
        "",
        "| run | A round (s) | B round (s) | A CPU/round (s) | B CPU/round (s) | B/A CPU |",
        "|---|---|---|---|---|---|",
    ]
    for i, (ra, rb) in enumerate(readings, 1):
        lines.append(
            f"| {i} | {ra.round:.2f} | {rb.round:.2f} | {ra.total:.3f} | {rb.total:.3f} | {rb.total / ra.total:.3f} |"
        )
    names = sorted({n for ra, _ in readings for n in ra.cpu}, key=lambda n: -readings[0][0].cpu.get(n, 0.0))
    lines += ["", "B/A CPU per round by component (median over the runs):", "", "| component | B/A |", "|---|---|"]
    for name in names:
        ratios = [rb.cpu[name] / ra.cpu[name] for ra, rb in readings if ra.cpu.get(name) and name in rb.cpu]
        if ratios:
            lines.append(f"| {name} | {statistics.median(ratios):.3f} |")
    total = statistics.median(rb.total / ra.total for ra, rb in readings)
    lines.append(f"| **total** | **{total:.3f}** |")
    phases = [name for name in readings[0][0].phases if all(name in r.phases for pair in readings for r in pair)]
    if phases:
        lines += ["", "Phases of a steady round, medians over the runs (s):", "", "| phase | A | B |", "|---|---|---|"]
        for name in phases:
            a_value = statistics.median(ra.phases[name] for ra, _ in readings)
            b_value = statistics.median(rb.phases[name] for _, rb in readings)
            lines.append(f"| {name} | {a_value:.3f} | {b_value:.3f} |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.side_by_side", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="git revision or source folder of side A")
    parser.add_argument("b", help="git revision or source folder of side B")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--env-a", action="append", default=[], help="NAME=VALUE for side A's processes")
    parser.add_argument("--env-b", action="append", default=[], help="NAME=VALUE for side B's processes")
    args = parser.parse_args(argv)
    env_a, env_b = _assignments(args.env_a), _assignments(args.env_b)
    readings: list[tuple[Reading, Reading]] = []
    with tempfile.TemporaryDirectory(prefix="tessera-side-by-side-") as tmp:
        scratch = Path(tmp)
        with source_tree(args.a, scratch / "a") as tree_a, source_tree(args.b, scratch / "b") as tree_b:
            for run in range(1, args.runs + 1):
                logs = scratch / f"a{run}.txt", scratch / f"b{run}.txt"
                processes = [start(tree_a, env_a, args, logs[0]), start(tree_b, env_b, args, logs[1])]
                if any(p.wait() != 0 for p in processes):
                    for log in logs:
                        print(log.read_text()[-3000:], file=sys.stderr)
                    return 1
                ra, rb = (parse(log.read_text()) for log in logs)
                readings.append((ra, rb))
                print(
                    f"run {run}: A {ra.round:.2f} s, {ra.total:.3f} CPU s; B {rb.round:.2f} s, {rb.total:.3f}",
                    flush=True,
                )
    describe = lambda spec, env: spec + "".join(f" {k}={v}" for k, v in env.items())  # noqa: E731
    print("\n".join(["", *report(readings, describe(args.a, env_a), describe(args.b, env_b))]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
