"""grpcurl and buf curl, the debugging tools of the README, against every gRPC process of the running network:
reflection, a message's description, health, and calls carrying an organization's credential."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from tests.clients.conftest import run
from tools.clients import build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PUBLIC = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


@pytest.fixture(scope="module")
def grpcurl(tools_dir) -> str:
    return str(tools_dir / "bin" / "grpcurl")


def _auth(org: str, secret: str) -> str:
    return "authorization: Basic " + base64.b64encode(f"{org}:{secret}".encode()).decode()


def test_reflection_lists_every_service_of_every_process(grpcurl, network, tmp_path):
    processes = [spec for spec in network.services if not spec.http]
    assert len(processes) == 1 + 3 * len(network.organizations)
    for spec in processes:
        listed = set(run([grpcurl, "-plaintext", spec.addr, "list"], cwd=tmp_path).split())
        assert listed == {f"tessera.{spec.name}.v1.{spec.name.capitalize()}Service", *PUBLIC}, spec.label


def test_describe_a_message(grpcurl, network, tmp_path):
    output = run([grpcurl, "-plaintext", network.services[0].addr, "describe", "tessera.asset.v1.NewComputeTask"],
                 cwd=tmp_path)  # fmt: skip
    assert "tessera.asset.v1.NewComputeTask is a message" in output
    assert "string function_key = 3;" in output
    assert "map<string, .tessera.asset.v1.NewComputeTaskOutput> outputs = 9;" in output


def test_health_of_every_process(grpcurl, network, tmp_path):
    for spec in (spec for spec in network.services if not spec.http):
        output = run([grpcurl, "-plaintext", spec.addr, "grpc.health.v1.Health/Check"], cwd=tmp_path)
        assert json.loads(output) == {"status": "SERVING"}, spec.label


def test_an_authenticated_call_and_one_without_credentials(grpcurl, network, secrets, tmp_path):
    ledger, org = network.services[0].addr, network.organizations[1].id
    method = "tessera.asset.v1.AssetService/ListOrganizations"
    output = run([grpcurl, "-plaintext", "-H", _auth(org, secrets[org]), ledger, method], cwd=tmp_path)
    # grpcurl prints the proto field names (buf curl the JSON names) and leaves false out.
    organizations = {o["id"]: o.get("is_current", False) for o in json.loads(output)["organizations"]}
    assert organizations == {"MyOrg1MSP": False, "MyOrg2MSP": True}, output

    refused = subprocess.run([grpcurl, "-plaintext", ledger, method], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "Code: Unauthenticated" in refused.stderr, refused.stderr
    wrong = subprocess.run([grpcurl, "-plaintext", "-H", _auth(org, "not-the-secret"), ledger, method],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert wrong.returncode != 0 and "Code: Unauthenticated" in wrong.stderr, wrong.stderr


def test_buf_curl_calls_the_ledger(network, secrets, tmp_path):
    org = network.organizations[0].id
    url = f"http://{network.services[0].addr}/tessera.asset.v1.AssetService/ListOrganizations"
    command = [str(build.BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-H", _auth(org, secrets[org]),
               "--data", '{"page_size": 1}', url]  # fmt: skip
    response = json.loads(run(command, cwd=tmp_path))
    # One page of one: the organizations register in either order.
    (first,) = response["organizations"]
    assert first["id"] in {"MyOrg1MSP", "MyOrg2MSP"} and response["totalSize"] == 2
    assert response["nextPageToken"]
