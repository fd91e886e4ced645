"""The executor interface, and the local implementation that runs a task as a subprocess.

A :class:`PreparedTask` says what to run (command, working directory, environment, limits);
:meth:`Executor.start` turns it into an :class:`Execution` that can be awaited or canceled.
The Kubernetes executor (a pod per task, see ARCHITECTURE.md §7) implements the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class PreparedTask:
    """Everything needed to start one task or build step."""

    key: str
    command: list[str]
    cwd: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 3600.0
    memory_bytes: int = 0


@dataclass(frozen=True)
class ExecutionResult:
    """How an execution ended."""

    exit_code: int | None
    timed_out: bool = False
    canceled: bool = False
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        """Exit code 0, neither killed by timeout nor canceled."""
        return self.exit_code == 0 and not self.timed_out and not self.canceled


class Execution(Protocol):
    """A running task."""

    async def wait(self) -> ExecutionResult:
        """Block until it ends (or times out, which kills it)."""

    async def cancel(self) -> None:
        """Stop it now."""


class Executor(Protocol):
    """Starts prepared tasks somewhere: local subprocesses, Kubernetes pods..."""

    async def start(self, task: PreparedTask) -> Execution:
        """Start ``task`` and return its handle."""


def _child_setup(memory_bytes: int) -> None:  # runs between fork and exec
    os.setsid()  # its own process group: cancel and timeout kill the whole tree
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the compute service
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class LocalExecution:
    """A task running as a local process group."""

    GRACE = 3.0

    def __init__(self, process: asyncio.subprocess.Process, task: PreparedTask) -> None:
        self._process = process
        self._task = task
        self._started = time.monotonic()
        self._canceled = False

    def _kill(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    async def wait(self) -> ExecutionResult:
        try:
            code = await asyncio.wait_for(self._process.wait(), self._task.timeout)
        except TimeoutError:
            await self._stop()
            return ExecutionResult(self._process.returncode, timed_out=True, seconds=self._elapsed())
        return ExecutionResult(code, canceled=self._canceled, seconds=self._elapsed())

    async def cancel(self) -> None:
        self._canceled = True
        await self._stop()

    async def _stop(self) -> None:
        self._kill(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), self.GRACE)
        except TimeoutError:
            self._kill(signal.SIGKILL)
            await self._process.wait()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started


class LocalExecutor:
    """Runs each task as a subprocess in its sandbox directory, output captured to its log file."""

    async def start(self, task: PreparedTask) -> LocalExecution:
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(task.log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                *task.command,
                cwd=task.cwd,
                env=task.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=lambda: _child_setup(task.memory_bytes),
            )
        return LocalExecution(process, task)
