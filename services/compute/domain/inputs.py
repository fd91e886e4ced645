"""A task's inputs: which files to fetch, from whose storage, and where the cache keeps them.

The ledger resolves a task's inputs (StartTask answers them in input order); each becomes one file
or folder of the cache, fetched once and shared by every task that needs it: a data manager's
opener, a data sample (an archive, unpacked), a model (its checksum salted with the key of the task
that produced it, domain §1.9). A disabled model cannot be read: the task fails.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1.storage_pb2 import FILE_KIND_DATA_SAMPLE, FILE_KIND_MODEL, FILE_KIND_OPENER

from services.compute.domain.errors import UserError
from services.compute.domain.execution import TaskInput
from services.compute.domain.places import Places

KINDS = {"data_manager": FILE_KIND_OPENER, "data_sample": FILE_KIND_DATA_SAMPLE, "model": FILE_KIND_MODEL}
"""The file fetched for each kind of resolved input (the oneof of ``ComputeTaskInputAsset``)."""


@dataclass(frozen=True)
class Placement:
    """One input: the file to fetch and where the task finds it."""

    identifier: str
    kind: int  # a storage FileKind: one of KINDS' values
    owner: str  # whose storage holds it
    asset_key: str
    path: Path  # in the cache: a file, or for a data sample the folder it unpacks to
    checksum: str = ""  # what the ledger recorded ("" when it records none for the file itself)
    salt: str = ""  # appended to the bytes before hashing (models: the producing task's key)
    multiple: bool = False

    def task_input(self) -> TaskInput:
        """The ``--inputs`` entry the task gets."""
        return TaskInput(self.identifier, self.path, self.multiple)


def placements(task: res.ComputeTask, assets: Iterable[res.ComputeTaskInputAsset], places: Places) -> list[Placement]:
    """The inputs of ``task``, in input order; UserError when one cannot be read."""
    return [_placement(task, asset, places) for asset in assets if asset.WhichOneof("asset") in KINDS]


def _placement(task: res.ComputeTask, asset: res.ComputeTaskInputAsset, places: Places) -> Placement:
    which = asset.WhichOneof("asset")
    specs = task.function.inputs
    multiple = specs[asset.identifier].multiple if asset.identifier in specs else False
    place = functools.partial(Placement, asset.identifier, KINDS[which])
    if which == "data_manager":  # one opener, whatever the function declares
        manager = asset.data_manager
        return place(manager.owner, manager.key, places.opener(manager.key), checksum=manager.opener.checksum)
    if which == "data_sample":
        sample = asset.data_sample
        return place(sample.owner, sample.key, places.data_sample(sample.key), multiple=multiple)
    if not asset.model.HasField("address"):
        raise UserError(f"input model {asset.model.key} has been disabled")
    return model_placement(asset.identifier, asset.model, places, task.compute_plan_key, multiple=multiple)


def model_placement(
    identifier: str, model: res.Model, places: Places, plan_key: str, *, multiple: bool = False
) -> Placement:
    """Where a model (not disabled) is fetched from and kept for a task of ``plan_key``: its checksum is salted
    with the key of the task that made it."""
    return Placement(
        identifier,
        FILE_KIND_MODEL,
        model.owner,
        model.key,
        places.model(plan_key, model.key),
        checksum=model.address.checksum,
        salt=model.compute_task_key,
        multiple=multiple,
    )
