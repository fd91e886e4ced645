"""The Kubernetes tier: one real control plane (tools.k8s.Cluster) for the whole session.

Every test under tests/k8s is marked ``k8s``. Without the binaries (``make k8s-tools`` builds them; it needs
Go) the tier skips with the reason, except under ``CI=true``, where a skipped Kubernetes tier is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.k8s import build

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory):
    """A running ``tools.k8s.cluster.Cluster``: admin ``api_client()``, ``kubeconfig``, ``new_namespace()``, ..."""
    if build.installed() is None:
        reason = (
            f"Kubernetes test binaries are not built in {build.home() / 'bin'}: run `make k8s-tools` "
            "(it needs `go` on PATH)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    from tools.k8s.cluster import Cluster

    with Cluster(tmp_path_factory.mktemp("k8s")) as cluster:
        yield cluster
