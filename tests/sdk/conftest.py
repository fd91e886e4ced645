"""The whole network as real processes (``tools.devnet.network.Network``), driven only through
each organization's gateway by the real ``substra`` SDK and by ``substrafl``.

The network runs on the session's PostgreSQL and a NATS server of its own (``running_network``),
once for the package.
"""

from __future__ import annotations

import time

import pytest
import substra

from tests.conftest import running_network
from tests.support import OtlpCollector
from tools.devnet.network import Organization

SERVICES = ("asset", "storage", "compute", "event", "gateway")


@pytest.fixture(scope="package")
def collector():
    """Where every process of the network exports its spans (OTLP over gRPC, as to a real collector)."""
    with OtlpCollector() as receiver:
        yield receiver


@pytest.fixture(scope="package")
def network(postgres, tmp_path_factory, collector):
    """The dev network: a ledger and, per organization, storage, compute, event and gateway, on a
    NATS server of its own, with short redelivery and reconciliation periods, exporting its spans to
    ``collector``."""
    tracing = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    extra_env = {name: dict(tracing) for name in SERVICES}
    extra_env["compute"].update({"TESSERA_ACK_WAIT": "4", "TESSERA_RECONCILE_SECONDS": "3"})
    yield from running_network(postgres, tmp_path_factory, extra_env=extra_env)


def sdk_client(org: Organization) -> substra.Client:
    """A remote SDK client logged in at ``org``'s gateway as its administrator."""
    return substra.Client(url=org.gateway, backend_type="remote", username=org.username, password=org.password)


@pytest.fixture(scope="package")
def organizations(network) -> list[Organization]:
    """Both organizations, once the ledger knows them (each event service registers its own)."""
    client = sdk_client(network.organizations[0])
    deadline = time.monotonic() + 30
    while len(client.list_organization()) < len(network.organizations):
        assert time.monotonic() < deadline, "the organizations did not register"
        time.sleep(0.2)
    client.logout()
    return network.organizations
