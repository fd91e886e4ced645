"""What an executor is given and what it gives back; the executors are in ``services.compute.executor``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TaskInput:
    """One ``--inputs`` entry: a cached file or folder."""

    identifier: str
    path: Path
    multiple: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to run one task."""

    key: str
    plan_key: str
    function_key: str
    code: Path  # the function's unpacked archive
    python: str  # the interpreter of its environment
    entrypoint: list[str]
    inputs: list[TaskInput]
    outputs: dict[str, str]  # identifier → file name
    rank: int = 0
    timeout: float = 3600.0
    env: dict[str, str] = field(default_factory=dict)  # the Dockerfile's ENV
    workdir: str = ""  # the Dockerfile's last WORKDIR, relative to ``code``
    image_workdir: str = ""  # the same as a path of the function's image ("" when it sets none)


@dataclass(frozen=True)
class ExecutionResult:
    """How an execution ended, and what it left."""

    exit_code: int | None
    timed_out: bool = False
    canceled: bool = False
    error: str = ""
    outputs: dict[str, Path] = field(default_factory=dict)  # identifier → a file only compute can write
    log_path: Path | None = None

    @property
    def succeeded(self) -> bool:
        """Exit code 0, neither killed by timeout nor canceled."""
        return self.exit_code == 0 and not self.timed_out and not self.canceled
