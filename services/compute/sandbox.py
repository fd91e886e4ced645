"""The task sandbox and command line of the substratools 1.0.0 contract (contract §9.2, §9.3).

One directory per task attempt::

    <work>/tasks/<task>/code/         a copy of the function's code (the cwd: substratools writes there)
    <work>/tasks/<task>/out_models/   <identifier>.model for each model output
    <work>/tasks/<task>/perf/         <identifier>-perf.json for each performance output
    <work>/tasks/<task>/cli-args/arguments.txt
    <work>/tasks/<task>/task.log

Inputs (openers, data samples, models) are read from the organization's cache, by path.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tessera.asset.v1 import resources_pb2 as res


@dataclass
class Sandbox:
    """Paths of one task attempt."""

    root: Path
    inputs: list[dict] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def log_path(self) -> Path:
        return self.root / "task.log"

    @property
    def arguments(self) -> Path:
        return self.root / "cli-args" / "arguments.txt"

    @classmethod
    def create(cls, work_dir: Path, task_key: str, function_dir: Path) -> Sandbox:
        """A fresh sandbox (an earlier attempt's leftovers are removed) holding a copy of the code."""
        root = work_dir / "tasks" / task_key
        if root.exists():
            shutil.rmtree(root)
        (root / "cli-args").mkdir(parents=True)
        shutil.copytree(function_dir, root / "code", symlinks=False)
        return cls(root=root)

    def add_input(self, identifier: str, path: Path, multiple: bool) -> None:
        """One ``--inputs`` entry."""
        self.inputs.append({"id": identifier, "value": str(path), "multiple": multiple})

    def declare_outputs(self, task: res.ComputeTask) -> None:
        """The path of each output file, by the kind the function declares."""
        for identifier in sorted(task.outputs):
            kind = task.function.outputs[identifier].kind
            if kind == res.ASSET_PERFORMANCE:
                path = self.root / "perf" / f"{identifier}-perf.json"
            else:
                path = self.root / "out_models" / f"{identifier}.model"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.outputs[identifier] = path

    def write_arguments(self, rank: int) -> Path:
        """The argparse from-file of substratools: one token per line."""
        outputs = [{"id": k, "value": str(v), "multiple": False} for k, v in self.outputs.items()]
        lines = [
            "--task-properties",
            json.dumps({"rank": rank}),
            "--inputs",
            json.dumps(self.inputs),
            "--outputs",
            json.dumps(outputs),
            "--log-level",
            "info",
        ]
        self.arguments.write_text("\n".join(lines) + "\n")
        return self.arguments


def command(entrypoint: list[str], python: str, arguments: Path) -> list[str]:
    """The ENTRYPOINT with its interpreter replaced by ``python -u`` and the arguments file appended."""
    cmd = list(entrypoint)
    if cmd and Path(cmd[0]).name.startswith("python"):
        cmd = [python, "-u", *cmd[1:]]
    return [*cmd, f"@{arguments}"]


def read_performance(path: Path) -> float:
    """The value a performance output file holds (``{"all": value}``)."""
    data = json.loads(path.read_text())
    return float(data["all"])
