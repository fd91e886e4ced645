"""The generated clients against a running dev network: the tools from their versioned cache (tools/clients), the
clients generated and compiled from this checkout's protos, and assets registered with the real substra SDK.

The network runs on the session's PostgreSQL and a NATS server of its own, once for the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import substra
from substra.sdk import models, schemas

from tests.conftest import running_network
from tools.clients import build
from tools.samples import flassets

# A function whose one task scores its data: the performance is the mean of every value of the samples.
EVALUATE = """
import numpy as np
import substratools as tools


@tools.register
def evaluate(inputs, outputs, task_properties):
    tools.save_performance(float(np.mean(inputs["datasamples"])), outputs["performance"])


tools.execute()
"""


@pytest.fixture(scope="package")
def tools_dir() -> Path:
    """The cached client tools (``make clients-tools`` installs them); the package skips without go or npm, except
    under CI=true, where it fails."""
    if build.installed() is None and (shutil.which("go") is None or shutil.which("npm") is None):
        if os.environ.get("CI") == "true":
            pytest.fail("go and npm are needed for the client tests in CI")
        pytest.skip("go or npm is not on PATH")
    return build.build()


@pytest.fixture(scope="package")
def clients(tools_dir) -> Path:
    """Both clients generated from protos/ and compiled with their examples: the guard against a proto change
    that breaks them."""
    build.generate(tools_dir)
    return tools_dir


@pytest.fixture(scope="package")
def network(postgres, tmp_path_factory):
    """A two-organization dev network of real processes."""
    yield from running_network(postgres, tmp_path_factory)


@pytest.fixture(scope="package")
def secrets(network) -> dict[str, str]:
    """Each organization's dev-network secret, from the file its own services read (ADR 0014)."""
    return {org.id: network.credentials.secret(org.id) for org in network.organizations}


@pytest.fixture(scope="package")
def assets(network, tmp_path_factory):
    """MyOrg1MSP's dataset, two data samples and a built ``evaluate`` function, registered with the substra SDK;
    ``expected`` is the performance its task must report."""
    org = network.organizations[0]
    client = substra.Client(url=org.gateway, backend_type="remote", username=org.username, password=org.password)
    folder = tmp_path_factory.mktemp("client-assets")
    public = schemas.Permissions(public=True, authorized_ids=[])
    dm = client.add_dataset(
        schemas.DatasetSpec(
            name="client examples",
            data_opener=flassets.write(folder / "opener.py", flassets.OPENER),
            description=flassets.write(folder / "description.md", "# rows\n"),
            permissions=public,
            logs_permission=public,
        )
    )
    rows = np.arange(12, dtype=float).reshape(4, 3) / 7
    samples = []
    for name, part in (("a", rows[:2]), ("b", rows[2:])):
        text = "\n".join(",".join(f"{x:.6f}" for x in row) for row in part) + "\n"
        flassets.write(folder / name / "data.csv", text)
        samples.append(client.add_data_sample(schemas.DataSampleSpec(path=folder / name, data_manager_keys=[dm])))
    function = client.add_function(
        schemas.FunctionSpec(
            name="evaluate",
            description=flassets.write(folder / "evaluate.md", "# evaluate\n"),
            file=flassets.write(
                folder / "evaluate.tar.gz", flassets.function_archive("evaluate", extra={"function.py": EVALUATE})
            ),
            permissions=public,
            inputs=[
                schemas.FunctionInputSpec(
                    identifier="opener", kind=schemas.AssetKind.data_manager, multiple=False, optional=False
                ),
                schemas.FunctionInputSpec(
                    identifier="datasamples", kind=schemas.AssetKind.data_sample, multiple=True, optional=False
                ),
            ],
            outputs=[
                schemas.FunctionOutputSpec(identifier="performance", kind=schemas.AssetKind.performance, multiple=False)
            ],
        )
    )
    assert client.wait_function(function, timeout=60, polling_period=0.3).status == models.FunctionStatus.ready
    data = np.concatenate([np.loadtxt(folder / n / "data.csv", delimiter=",", ndmin=2) for n in "ab"])
    client.logout()
    return SimpleNamespace(
        org=org.id, data_manager=dm, samples=samples, function=function, expected=float(np.mean(data))
    )


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180):
    """Run a client program; its output, with the command and stderr in the assertion message on failure."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout
