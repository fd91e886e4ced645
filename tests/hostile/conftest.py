"""A two-organization network whose jails have tight limits, for the hostile-function suite."""

from __future__ import annotations

import pytest

from services.kit import trees
from tests.conftest import running_network
from tests.execution.conftest import orgs_of

# Small enough that every probe is quick and bounded, large enough for numpy and substratools.
LIMITS = {
    "TESSERA_TASK_MEMORY_MB": "1024",
    "TESSERA_TASK_CPU_SECONDS": "4",
    "TESSERA_TASK_PROCESSES": "24",
    "TESSERA_TASK_FILE_MB": "8",
    "TESSERA_TASK_TMP_MB": "8",
    "TESSERA_TASK_TIMEOUT": "15",
    "TESSERA_ACK_WAIT": "20",
}


@pytest.fixture(scope="package")
def network(postgres, tmp_path_factory):
    networks = running_network(postgres, tmp_path_factory, extra_env={"compute": LIMITS})
    network = next(networks)
    yield network
    next(networks, None)  # stopped
    # Whatever a failing test left of its attacks (trees thousands of levels deep among them) goes with
    # compute's own deletion: pytest's clean-up of old temporary folders recurses and would fail on them.
    assert trees.remove_tree(network.state_dir / "compute")


@pytest.fixture(scope="package")
def orgs(network):
    return orgs_of(network)
