"""The executor interface: where and how tasks run, behind one seam.

A :class:`TaskSpec` says what to run (the function's code and entrypoint, the input files, the
outputs expected, the timeout); :meth:`Executor.start` turns it into an :class:`Execution` that can
be awaited or canceled, whose :class:`ExecutionResult` hands back the outputs as files that only
compute can write. Implementations:

- :class:`services.compute.local_executor.LocalExecutor` (``TESSERA_EXECUTOR=local``): warm runners
  in bubblewrap jails, one per (compute plan, function), in compute's own pod or machine;
- :class:`services.compute.kubernetes.executor.KubernetesExecutor` (``TESSERA_EXECUTOR=kubernetes``,
  ADR 0010): a pod per task in compute's namespace, running the function's image built by Kaniko.
"""

from __future__ import annotations

from typing import Protocol

from services.compute.domain.execution import ExecutionResult, TaskInput, TaskSpec

__all__ = ["Execution", "ExecutionResult", "Executor", "TaskInput", "TaskSpec"]


class Execution(Protocol):
    """A running task."""

    async def wait(self) -> ExecutionResult:
        """Block until it ends (or times out, which kills it)."""

    async def cancel(self) -> None:
        """Stop it now."""


class Executor(Protocol):
    """Runs tasks somewhere: local jails, Kubernetes pods..."""

    async def start(self, task: TaskSpec) -> Execution:
        """Start ``task`` and return its handle."""

    async def prepare(self, spec: TaskSpec) -> None:
        """Get ready ahead what ``spec``'s plan and function will run in (a runner), if the executor keeps any;
        ``spec`` names no task (:func:`services.compute.domain.runs.runner_spec`)."""

    async def release(self, plan_key: str) -> None:
        """The plan has ended: stop what was kept warm for it."""

    def forget(self, task_key: str) -> None:
        """Drop what a finished task left (its outputs were read)."""

    async def close(self) -> None:
        """Stop everything."""
