"""The substratools 1.0.0 contract of a task (contract §9.2, §9.3): output file names and the
arguments file.

substratools reads its arguments from a file (``@path``, one token per line): the task's
properties, its inputs and its outputs as JSON lists of ``{"id", "value", "multiple"}``. The paths
are those the task sees inside its jail (see :mod:`services.compute.executor`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tessera.asset.v1 import resources_pb2 as res

TASK_LOG = "task.log"
SAFE_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,100}")


def output_files(task: res.ComputeTask) -> dict[str, str]:
    """The file name of each output, by the kind the function declares."""
    files = {}
    for identifier in sorted(task.outputs):
        if not SAFE_IDENTIFIER.fullmatch(identifier):  # the ledger refuses them; never a path here
            raise ValueError(f"output identifier {identifier!r} cannot name a file")
        kind = task.function.outputs[identifier].kind
        files[identifier] = f"{identifier}-perf.json" if kind == res.ASSET_PERFORMANCE else f"{identifier}.model"
    return files


def input_entry(identifier: str, path: str, multiple: bool) -> dict:
    """One entry of ``--inputs`` or ``--outputs``."""
    return {"id": identifier, "value": path, "multiple": multiple}


def arguments(rank: int, inputs: list[dict], outputs: list[dict]) -> str:
    """The argparse from-file of substratools: one token per line."""
    lines = [
        "--task-properties",
        json.dumps({"rank": rank}),
        "--inputs",
        json.dumps(inputs),
        "--outputs",
        json.dumps(outputs),
        "--log-level",
        "info",
    ]
    return "\n".join(lines) + "\n"


def read_performance(path: Path) -> float:
    """The value a performance output file holds (``{"all": value}``)."""
    data = json.loads(path.read_text())
    return float(data["all"])
