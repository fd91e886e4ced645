"""A dependency that is down is a 503 with ``Retry-After``, never a 500, and the gateway recovers by
itself: its own PostgreSQL stopped and started again (a server of this test's own, the session's
being shared), and a ledger that cannot be reached."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import requests

from services.kit.db import ensure_database
from tests.gateway.conftest import GatewayThread
from tests.gateway.test_auth import headers, login
from tools.devnet.embedded import EmbeddedPostgres, free_port

pytestmark = pytest.mark.timeout(120)


def unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["detail"]


@pytest.fixture
def own_postgres(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    server.start()
    yield server
    server.stop()


def test_the_gateway_database_down_is_a_503_then_heals(net, own_postgres):
    url = own_postgres.url(f"gw_{uuid.uuid4().hex[:8]}")
    ensure_database(url)
    # No token cache: every request reads the database, as a replica that never saw the token would.
    settings = dataclasses.replace(
        net.org1.settings, http_addr=f"127.0.0.1:{free_port()}", database_url=url, token_cache_seconds=0
    )
    admin = net.org1.admin
    with GatewayThread(settings) as gateway:
        token = login(gateway.url, admin.username, admin.password).json()["token"]
        assert requests.get(f"{gateway.url}/task/", headers=headers(token)).status_code == 200
        own_postgres.stop()
        unavailable(login(gateway.url, admin.username, admin.password))
        unavailable(requests.get(f"{gateway.url}/task/", headers=headers(token)))
        unavailable(requests.post(f"{gateway.url}/me/login/", json={"username": admin.username,
                                                                      "password": admin.password}))  # fmt: skip
        own_postgres.start()
        assert login(gateway.url, admin.username, admin.password).status_code == 200
        assert requests.get(f"{gateway.url}/task/", headers=headers(token)).status_code == 200


def test_an_unreachable_ledger_is_a_503(net):
    settings = dataclasses.replace(
        net.org1.settings, http_addr=f"127.0.0.1:{free_port()}", asset_addr=f"127.0.0.1:{free_port()}"
    )
    with GatewayThread(settings) as gateway:
        token = login(gateway.url, net.org1.admin.username, net.org1.admin.password).json()["token"]
        unavailable(requests.get(f"{gateway.url}/task/", headers=headers(token)))
        links = {"data_manager_keys": [str(uuid.uuid4())], "data_sample_keys": ["k"]}
        unavailable(requests.post(f"{gateway.url}/data_sample/bulk_update/", json=links, headers=headers(token)))
