"""The substratools 1.0.0 contract of a task (contract §9.2, §9.3): the arguments file, the log's and
output identifiers' names, the performance file (output file names: :mod:`.outputs`).

substratools reads its arguments from a file (``@path``, one token per line): the task's
properties, its inputs and its outputs as JSON lists of ``{"id", "value", "multiple"}``. The paths
are those the task sees where it runs (see :mod:`services.compute.local_executor`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

TASK_LOG = "task.log"
SAFE_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,100}")


ARGUMENTS = "arguments.txt"  # the task's arguments file, beside its inputs


def staged_names(names: Sequence[str]) -> list[str]:
    """Where each input of a task is staged, relative to the task's inputs folder, given the inputs' cache
    names in order: under its own name (a data sample's folder keeps the sample's key as its name, an opener
    its ``__init__.py``), at the top of the folder; a name already taken (the same input twice, or the
    arguments file's) goes in a folder named by its index. One folder fewer per input than a folder each:
    every folder made is a file-system allocation on each task's path."""
    taken = {ARGUMENTS}
    staged = []
    for index, name in enumerate(names):
        staged.append(name if name not in taken else f"{index}/{name}")
        taken.add(name)
    return staged


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


def performance_value(text: str) -> float:
    """The value a performance output file holds (``{"all": value}``); ValueError, KeyError or TypeError
    when it holds anything else."""
    return float(json.loads(text)["all"])
