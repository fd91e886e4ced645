"""Where Tessera answered differently from Substra with the real SDK (issue 13), each checked with
``substra==1.0.0`` on two organizations: what a function sees, how every organization renders the
same asset, the plan's duration, permission refusals, profiling steps, builds.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from substra.sdk import models, schemas

from tests.sdk.conftest import sdk_client
from tools.samples import flassets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POLL = 0.3
PUBLIC = schemas.Permissions(public=True, authorized_ids=[])
MODEL = schemas.AssetKind.model

# An opener that hands the function the names of its sample folders.
NAMES_OPENER = """
import os

import substratools as tools


class FolderNames(tools.Opener):
    def get_data(self, folders):
        return [os.path.basename(os.path.normpath(f)) for f in folders]

    def fake_data(self, n_samples=None):
        return []
"""

COMPAT_FUNCTIONS = """
import json

import substratools as tools


@tools.register
def names(inputs, outputs, task_properties):
    with open(outputs["model"], "w") as f:
        json.dump(inputs["datasamples"], f)


@tools.register
def score(inputs, outputs, task_properties):
    tools.save_performance(0.5, outputs["performance"])


tools.execute()
"""

# Declared in an order no sorting gives, so that any reordering shows.
DECLARED_INPUTS = ["opener", "datasamples", "zeta", "models", "alpha", "middle", "beta"]
DECLARED_OUTPUTS = ["model", "omega", "extra", "aux"]
METADATA = {"zulu": "1", "alpha": "2", "mike": "3", "bravo": "4", "yankee": "5", "charlie": "6"}


def _archive(name: str, dockerfile: str | None = None, functions: str = COMPAT_FUNCTIONS) -> bytes:
    dockerfile = dockerfile or (
        f'FROM python:3.11-slim\nCOPY function.py .\nENTRYPOINT ["python3", "function.py", "--function-name", "{name}"]\n'
    )
    return flassets.function_archive(name, dockerfile, {"function.py": functions})


def _headers(client) -> dict:
    return {"Authorization": f"Token {client._token}", "Accept": "application/json;version=0.0"}


def _get(url: str, client) -> requests.Response:
    return requests.get(url, headers=_headers(client), timeout=30)


@pytest.fixture(scope="module")
def world(organizations, tmp_path_factory):
    """Both organizations' clients; MyOrg1MSP's dataset (opener listing folder names) with three
    samples, processable by both organizations."""
    folder = tmp_path_factory.mktemp("sdk-compat")
    c1, c2 = sdk_client(organizations[0]), sdk_client(organizations[1])
    org1, org2 = c1.organization_info().organization_id, c2.organization_info().organization_id
    dm = c1.add_dataset(
        schemas.DatasetSpec(
            name="compat-names",
            data_opener=flassets.write(folder / "opener.py", NAMES_OPENER),
            description=flassets.write(folder / "description.md", "# names\n"),
            permissions=PUBLIC,
            logs_permission=PUBLIC,
            metadata=METADATA,
        )
    )
    samples = []
    for i in range(3):
        sample = folder / f"sample-{i}"
        flassets.write(sample / "data.csv", "1,2,3\n")
        samples.append(c1.add_data_sample(schemas.DataSampleSpec(path=sample, data_manager_keys=[dm])))
    world = SimpleNamespace(
        c1=c1, c2=c2, org1=org1, org2=org2, dm=dm, samples=samples, folder=folder, gateways=organizations
    )  # fmt: skip
    yield world
    for client in (c1, c2):
        if client._token is not None:
            client.logout()


def _function(world, name: str, inputs, outputs, archive: bytes | None = None, metadata=None) -> str:
    path = flassets.write(world.folder / "functions" / f"{name}-{uuid.uuid4().hex[:6]}.tar.gz", archive or _archive(name))
    description = flassets.write(world.folder / "functions" / f"{name}.md", f"# {name}\n")
    return world.c1.add_function(
        schemas.FunctionSpec(
            name=name,
            description=description,
            file=path,
            permissions=PUBLIC,
            inputs=inputs,
            outputs=outputs,
            metadata=metadata or {},
        )
    )


DATA_IN = [
    schemas.FunctionInputSpec(identifier="opener", kind=schemas.AssetKind.data_manager, multiple=False, optional=False),
    schemas.FunctionInputSpec(
        identifier="datasamples", kind=schemas.AssetKind.data_sample, multiple=True, optional=False
    ),
]
MODEL_OUT = [schemas.FunctionOutputSpec(identifier="model", kind=MODEL, multiple=False)]


def _data(dm: str, *samples: str) -> list[schemas.InputRef]:
    return [schemas.InputRef(identifier="opener", asset_key=dm)] + [
        schemas.InputRef(identifier="datasamples", asset_key=s) for s in samples
    ]


@pytest.fixture(scope="module")
def names_task(world) -> str:
    """A task whose function writes the names of its sample folders as its model."""
    function = _function(world, "names", DATA_IN, MODEL_OUT)
    assert world.c1.wait_function(function, timeout=60, polling_period=POLL).status == models.FunctionStatus.ready
    task = world.c1.add_task(
        schemas.TaskSpec(
            function_key=function,
            worker=world.org1,
            inputs=_data(world.dm, *world.samples),
            outputs={"model": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)},
            metadata=METADATA,
        )
    )
    done = world.c1.wait_task(task, timeout=60, polling_period=POLL)
    assert done.status == models.ComputeTaskStatus.done
    return task


# ------------------------------------------------------------------------------------------ 1. sample folders
def test_a_function_sees_each_data_sample_in_a_folder_named_by_its_key(world, names_task, tmp_path):
    path = world.c1.download_model_from_task(names_task, "model", tmp_path)
    assert json.loads(Path(path).read_text()) == world.samples

