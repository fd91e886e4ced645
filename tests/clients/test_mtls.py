"""Both clients with the production credential: mutual TLS, where the client certificate's common name is the
organization (the ledger of tests/integration/test_mtls.py, in mtls mode)."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import asset_service_pb2 as api

from tests.clients.conftest import run
from tests.integration.test_mtls import _stub, tls_ledger  # noqa: F401 (tls_ledger is a fixture)
from tools.clients import build

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def certificates(tls_ledger, tmp_path_factory):  # noqa: F811
    """org1's key and certificate and the network's CA as PEM files; org1 is registered through its certificate."""
    server, ca = tls_ledger
    key, cert = ca.issue("org1")
    _stub(server.addr, key, cert, ca.pem, org="org1").RegisterOrganization(api.RegisterOrganizationRequest())
    folder = tmp_path_factory.mktemp("org1-tls")
    for name, pem in (("org1.key", key), ("org1.crt", cert), ("ca.crt", ca.pem)):
        (folder / name).write_bytes(pem)
    return server.addr, folder


@pytest.mark.parametrize("language", ["go", "ts"])
def test_client_certificate_names_the_organization(language, clients, certificates, tmp_path):
    addr, folder = certificates
    files = {"cert": folder / "org1.crt", "key": folder / "org1.key", "ca": folder / "ca.crt"}
    if language == "go":
        command = ["go", "run", "./examples/plan", f"-asset={addr}", *(f"-{k}={v}" for k, v in files.items())]
        output = run(command, cwd=build.GO_CLIENT, env=build.go_env())
    else:
        script = build.TS_CLIENT / "dist" / "examples" / "plan.js"
        output = run(["node", str(script), f"--asset={addr}", *(f"--{k}={v}" for k, v in files.items())], cwd=tmp_path)
    # The example is given no organization: the ledger knows org1 from the certificate alone.
    assert "organization org1 current=true" in output.splitlines(), output
