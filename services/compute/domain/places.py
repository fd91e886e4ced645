"""Where compute keeps things in its work folder (``TESSERA_WORK_DIR``), the one description of it.

    archives/<checksum>                 a function's archive, as fetched
    functions/<checksum>/               its unpacked code (and functions/venvs/: the build's virtualenvs)
    builds/<function key>.log           a function's build log
    cache/openers/<data manager>/       a data manager's opener (``__init__.py``)
    cache/samples/<key>/<key>/          a data sample, unpacked (the folder is named by its key)
    cache/models/<plan key>/<key>       a model, fetched or produced here for a task of that plan (removed
                                        when the plan ends: Teardown)
    completions/<task key>              a finished task's CompleteTask, kept until the ledger has it

The executor keeps its own folders beside these (the local one: ``runners/`` and ``results/``).
Keys and checksums come from the ledger, which accepts only UUIDs and hex digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Places:
    """The paths of compute's work folder."""

    root: Path

    @property
    def functions(self) -> Path:
        return self.root / "functions"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def archive(self, checksum: str) -> Path:
        return self.root / "archives" / checksum

    def build_log(self, function_key: str) -> Path:
        return self.root / "builds" / f"{function_key}.log"

    def opener(self, data_manager_key: str) -> Path:
        return self.cache / "openers" / data_manager_key / "__init__.py"

    def data_sample(self, key: str) -> Path:
        """The unpacked data sample a task reads: a folder named by the sample's key, as Substra lays
        samples out (functions may identify samples by their folder's name)."""
        return self.cache / "samples" / key / key

    def model(self, plan_key: str, key: str) -> Path:
        return self.plan_models(plan_key) / key

    def plan_models(self, plan_key: str) -> Path:
        """The models cached for the tasks of one plan."""
        if not plan_key:
            raise ValueError("a model is cached under the plan of the task that reads or makes it")
        return self.cache / "models" / plan_key

    def completion(self, task_key: str) -> Path:
        return self.root / "completions" / task_key
