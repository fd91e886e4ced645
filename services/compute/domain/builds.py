"""Builds: whether a build message is acted on, and how a failed build is reported.

A build message is a hint, the ledger's current state decides: only a function this organization
owns that is still WAITING (claimed by moving it to BUILDING first) or already BUILDING (a
redelivery after a crash, built again) is built; anything else was settled meanwhile.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain.errors import BuildError

__all__ = [
    "BUILD_IMAGE",
    "SAVE_FUNCTION",
    "BuildError",
    "BuildStep",
    "FunctionCode",
    "build_failure",
    "build_step",
    "built",
]

BUILD_IMAGE = "build_image"
"""The profiling step of a build itself (Substra's name): the code fetched and prepared."""
SAVE_FUNCTION = "save_function"
"""The profiling step after it (Substra's name): the image recorded and the function READY."""


@dataclass(frozen=True)
class FunctionCode:
    """A prepared function: its unpacked code, how to start it, with which interpreter, environment and
    working directory."""

    directory: Path
    entrypoint: list[str]
    python: str
    env: dict[str, str] = field(default_factory=dict)  # the Dockerfile's ENV, for its tasks
    workdir: str = ""  # where its tasks start: the last WORKDIR, relative to ``directory``
    image_workdir: str = ""  # the same as a path of the function's image (Kubernetes)


class BuildStep(enum.Enum):
    """What a build message means for this organization."""

    SKIP = "skip"  # not ours, or no longer waiting for a build
    CLAIM = "claim"  # WAITING: move it to BUILDING, then build
    RESUME = "resume"  # BUILDING already: an earlier attempt was interrupted, build again


def build_step(function: res.Function, org_id: str) -> BuildStep:
    """What to do with a build message, given the function as the ledger has it now."""
    if function.owner != org_id:
        return BuildStep.SKIP
    if function.status == res.FUNCTION_STATUS_WAITING:
        return BuildStep.CLAIM
    if function.status == res.FUNCTION_STATUS_BUILDING:
        return BuildStep.RESUME
    return BuildStep.SKIP


def build_failure(function_key: str) -> api.RegisterFailureReportRequest:
    """The failure report of a function whose build failed (its logs are attached when they exist)."""
    return api.RegisterFailureReportRequest(
        asset_key=function_key, asset_type=res.FAILED_ASSET_FUNCTION, error_type=res.BUILD_ERROR
    )


def built(function: res.Function) -> api.UpdateFunctionRequest:
    """What the ledger records of a built function: its image (for the local executor, the archive itself)."""
    return api.UpdateFunctionRequest(key=function.key, image=function.archive)
