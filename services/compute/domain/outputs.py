"""A task's outputs: their file names, which ones a run saves, and what the ledger records of them.

Models are stored in this organization's storage under a key compute draws, their address on this
organization's gateway; performances are read from the output file and sent as values. Outputs an
earlier attempt of the same task registered (a restart after a crash) are kept, not saved again.
A failure's logs are stored the same way, addressed by the failed asset's key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1 import storage_pb2

from services.compute.domain import layout
from services.compute.domain.errors import UserError
from services.kit.storage.addresses import storage_address


def output_files(task: res.ComputeTask) -> dict[str, str]:
    """The file name of each output, by the kind the function declares (refused when an identifier
    could name anything but a plain file: the ledger refuses them, this never makes a path of one)."""
    files = {}
    for identifier in sorted(task.outputs):
        if not layout.SAFE_IDENTIFIER.fullmatch(identifier):
            raise ValueError(f"output identifier {identifier!r} cannot name a file")
        performance = _kind(task, identifier) == res.ASSET_PERFORMANCE
        files[identifier] = f"{identifier}-perf.json" if performance else f"{identifier}.model"
    return files


def _kind(task: res.ComputeTask, identifier: str) -> int:
    outputs = task.function.outputs
    return outputs[identifier].kind if identifier in outputs else res.ASSET_UNKNOWN


@dataclass(frozen=True)
class Output:
    """One output a run saves."""

    identifier: str
    performance: bool  # a value sent to the ledger; otherwise a model file, stored


def to_save(task: res.ComputeTask, registered: set[str]) -> list[Output]:
    """The task's outputs that no earlier attempt registered, by identifier."""
    return [
        Output(identifier, _kind(task, identifier) == res.ASSET_PERFORMANCE)
        for identifier in sorted(task.outputs)
        if identifier not in registered
    ]


def missing(identifier: str) -> UserError:
    """The failure of a task that did not leave output ``identifier``."""
    return UserError(f"the output {identifier!r} was not written (or is not a regular file)")


def performance(identifier: str, text: str) -> api.TaskPerformance:
    """The value of performance output ``identifier`` whose file holds ``text``; UserError when malformed."""
    try:
        value = layout.performance_value(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"the performance output {identifier!r} is not valid: {exc}") from exc
    return api.TaskPerformance(compute_task_output_identifier=identifier, performance_value=value)


def new_model(task_key: str, identifier: str, model_key: str, checksum: str, public_url: str) -> api.NewModel:
    """The ledger's record of a model this organization stored (``checksum`` as storage computed it)."""
    address = res.Addressable(
        checksum=checksum, storage_address=storage_address(public_url, storage_pb2.FILE_KIND_MODEL, model_key)
    )
    return api.NewModel(
        key=model_key, compute_task_key=task_key, compute_task_output_identifier=identifier, address=address
    )


def logs_address(public_url: str, asset_key: str, checksum: str) -> res.Addressable:
    """Where the logs of a failed task or build are downloaded from."""
    return res.Addressable(
        checksum=checksum, storage_address=storage_address(public_url, storage_pb2.FILE_KIND_LOGS, asset_key)
    )
