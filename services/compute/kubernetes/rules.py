"""The Kubernetes executor's decisions, on API objects as plain dicts: how a pod's status ends a task,
when compute's own clock gives up on it, whether a build Job is done, which pods and staged folders
a pass of the reaper removes. No I/O: unit-tested in ``tests/unit/compute/test_pod_specs.py``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from services.compute.kubernetes import specs

HOPELESS_WAITS = frozenset({"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"})
"""Why a container waits that no retry of the kubelet can cure."""
PULL_WAITS = frozenset({"ErrImagePull", "ImagePullBackOff"})
"""Pull failures the kubelet retries; given up after ``pull_patience`` seconds."""
SIGNALS = {137: "SIGKILL", 139: "SIGSEGV", 143: "SIGTERM"}


class Ending(enum.Enum):
    """How a task's pod ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the container exited with a non-zero status (or the pod failed without one)
    TIMED_OUT = "timed-out"  # activeDeadlineSeconds, or compute's own clock
    UNSTARTABLE = "unstartable"  # its image cannot be pulled or its container created
    GONE = "gone"  # deleted before it ended, by someone else than this execution


@dataclass(frozen=True)
class Verdict:
    """A pod's end, as the task's result sees it."""

    ending: Ending
    exit_code: int | None = None
    error: str = ""
    last_words: str = ""  # the container's termination message: its last log lines when it failed

    @property
    def succeeded(self) -> bool:
        return self.ending is Ending.SUCCEEDED


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _container(pod: dict, name: str) -> dict:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name:
            return status
    return {}


def uid(pod: dict) -> str:
    return (pod.get("metadata") or {}).get("uid", "")


def labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def terminating(pod: dict) -> bool:
    """Whether the pod is being deleted."""
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def verdict(pod: dict, now: float, pull_patience: float = 300.0) -> Verdict | None:
    """How ``pod`` ended its task, or None while it has not (``now``: seconds since the epoch)."""
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    container = _container(pod, specs.CONTAINER)
    terminated = (container.get("state") or {}).get("terminated") or {}
    last_words = terminated.get("message", "") or ""
    if phase == "Succeeded":
        return Verdict(Ending.SUCCEEDED, 0, last_words=last_words)
    if phase == "Failed":
        if status.get("reason") == "DeadlineExceeded":
            return Verdict(Ending.TIMED_OUT, None, "its pod exceeded its deadline (activeDeadlineSeconds)", last_words)
        if "exitCode" in terminated:
            code = int(terminated["exitCode"])
            reason = terminated.get("reason", "")
            if reason == "OOMKilled":
                error = "the task was killed: out of memory (OOMKilled, its memory limit)"
            elif code in SIGNALS:
                error = f"the task's process was killed by {SIGNALS[code]}"
            else:
                error = f"exited with status {code}"
            return Verdict(Ending.FAILED, code, error, last_words)
        why = ": ".join(part for part in (status.get("reason"), status.get("message")) if part) or "no reason given"
        return Verdict(Ending.FAILED, None, f"its pod failed ({why})", last_words)
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason", "")
    if phase == "Pending" and (reason in HOPELESS_WAITS or reason in PULL_WAITS):
        created = _timestamp((pod.get("metadata") or {}).get("creationTimestamp")) or now
        if reason in HOPELESS_WAITS or now - created >= pull_patience:
            message = waiting.get("message", "")
            return Verdict(Ending.UNSTARTABLE, None, f"its container cannot start: {reason} {message}".strip())
    return None


def deadline(pod: dict, timeout: float, grace: float, now: float) -> float:
    """When compute stops waiting for ``pod`` (seconds since the epoch): the task's timeout plus
    ``grace`` after the pod started (after it was created while it has not). A re-adopted pod keeps
    the deadline it had."""
    status = pod.get("status") or {}
    started = _timestamp(status.get("startTime")) or _timestamp((pod.get("metadata") or {}).get("creationTimestamp"))
    return (started or now) + timeout + grace


def job_outcome(job: dict) -> bool | None:
    """True when a build Job completed, False when it failed, None while it runs."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return True
        if condition.get("type") == "Failed":
            return False
    return None


def job_failure(job: dict) -> str:
    """Why a build Job failed, in words."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            parts = (condition.get("reason"), condition.get("message"))
            return ": ".join(p for p in parts if p) or "failed"
    return "failed"


def to_reap(
    pods: Iterable[dict], organization: str, executing: Collection[str], attached: Collection[str]
) -> list[str]:
    """The names of the task pods to delete: this organization's (no other's, whatever the listing
    held), not being deleted already, whose task the ledger no longer has EXECUTING and that no
    execution of this process holds. A pod of an EXECUTING task is kept: its work message comes
    back (redelivered, or re-queued by the reconciler) and the task's execution re-adopts it."""
    names = []
    for pod in pods:
        found = labels(pod)
        if found.get(specs.MANAGED_BY) != specs.MANAGER or found.get(specs.ORGANIZATION) != organization:
            continue
        if found.get(specs.ROLE) != specs.TASK_ROLE or terminating(pod):
            continue
        key = found.get(specs.TASK, "")
        if key in attached or key in executing:
            continue
        names.append(pod["metadata"]["name"])
    return names


def stale_folders(staged: Iterable[str], pods: Iterable[dict], attached: Collection[str]) -> list[str]:
    """The staged task folders (by task key) that neither a pod nor an execution of this process uses."""
    with_pod = {labels(pod).get(specs.TASK) for pod in pods}
    return sorted(key for key in staged if key not in with_pod and key not in attached)
