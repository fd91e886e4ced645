"""Users, tokens and login (contract §2): implicit and named tokens, logout, expiry, the token
scheme, throttling, and the declarative provisioning of the users file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
import requests

from gateway.bootstrap import MIGRATIONS
from gateway.store.sql import SqlUserStore
from gateway.store.tables import SCHEMA
from gateway.users import Accounts, UserEntry, parse_users_file
from services.kit import db
from tests.gateway.conftest import GatewayThread
from tools.devnet.embedded import free_port

pytestmark = pytest.mark.timeout(60)


def login(url: str, username: str, password: str, **kwargs) -> requests.Response:
    return requests.post(f"{url}/api-token-auth/", data={"username": username, "password": password}, **kwargs)


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}", "Accept": "application/json;version=0.0"}


def test_login_issues_an_implicit_token_that_expires_in_a_day(net):
    org = net.org1
    response = login(
        org.url, org.admin.username, org.admin.password, headers={"Accept": "application/json;version=0.0"}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "token", "expires_at", "created_at"}
    lifetime = dt.datetime.fromisoformat(body["expires_at"]) - dt.datetime.fromisoformat(body["created_at"])
    assert dt.timedelta(hours=23, minutes=59) < lifetime <= dt.timedelta(hours=24)
    assert requests.get(f"{org.url}/data_manager/", headers=headers(body["token"])).status_code == 200
    # JSON credentials work too; bad ones are a 400 (the SDK's BadLoginException).
    assert requests.post(f"{org.url}/api-token-auth/", json={"username": org.admin.username,
                         "password": org.admin.password}).status_code == 200  # fmt: skip
    assert login(org.url, org.admin.username, "wrong").status_code == 400
    assert login(org.url, "nobody", "wrong").status_code == 400
    assert requests.post(f"{org.url}/api-token-auth/", data={}).status_code == 400


def test_token_scheme_and_errors(net):
    url = net.org1.url
    anonymous = requests.get(f"{url}/task/")
    assert anonymous.status_code == 401 and anonymous.json() == {
        "detail": "Authentication credentials were not provided."
    }
    assert anonymous.headers["WWW-Authenticate"] == "Token"
    token = login(url, net.org1.admin.username, net.org1.admin.password).json()["token"]
    assert requests.get(f"{url}/task/", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert requests.get(f"{url}/task/", headers=headers("None")).json() == {"detail": "Invalid token."}
    lost = login(url, "org1-lost", "lost-password").json()
    assert requests.get(f"{url}/task/", headers=headers(lost["token"])).status_code == 403
    # A user without a channel still manages its own tokens.
    logout = requests.delete(f"{url}/active-api-tokens/", params={"id": lost["id"]}, headers=headers(lost["token"]))
    assert logout.status_code == 200
    # /info/ answers anonymous callers with the organization only.
    info = requests.get(f"{url}/info/").json()
    assert info["organization_id"] == "MyOrg1MSP" and "channel" not in info and info["config"] == {}


def test_named_tokens_listing_expiry_and_logout(net):
    url = net.org1.url
    implicit = login(url, net.org1.user.username, net.org1.user.password).json()
    auth = headers(implicit["token"])
    named = requests.post(f"{url}/api-token/", json={"note": "ci", "expires_at": None}, headers=auth)
    assert named.status_code == 201 and named.json()["note"] == "ci" and named.json()["expires_at"] is None
    assert requests.get(f"{url}/function/", headers=headers(named.json()["token"])).status_code == 200
    active = requests.get(f"{url}/active-api-tokens/", headers=auth).json()
    assert [t["id"] for t in active["tokens"]] == [named.json()["id"]]
    assert implicit["id"] in [t["id"] for t in active["implicit_tokens"]]
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    expired = requests.post(f"{url}/api-token/", json={"note": "old", "expires_at": past}, headers=auth).json()
    assert requests.get(f"{url}/function/", headers=headers(expired["token"])).json() == {
        "detail": "The token is expired"
    }
    assert requests.post(f"{url}/api-token/", json={"expires_at": "soon"}, headers=auth).status_code == 400
    # Logout: the SDK's DELETE; a second one is a 404; the token no longer works.
    gone = requests.delete(f"{url}/active-api-tokens/", params={"id": named.json()["id"]}, headers=auth)
    assert gone.status_code == 200 and gone.json() == {"detail": "Token removed"}
    again = requests.delete(f"{url}/active-api-tokens/", params={"id": named.json()["id"]}, headers=auth)
    assert again.status_code == 404 and again.json() == {"detail": "Token not found"}
    assert requests.get(f"{url}/function/", headers=headers(named.json()["token"])).status_code == 401


@pytest.fixture(scope="module")
def tight(net):
    """A second gateway of MyOrg1MSP with small limits: 3 logins a minute, 2 KiB files, 4 KiB JSON."""
    settings = dataclasses.replace(
        net.org1.settings,
        http_addr=f"127.0.0.1:{free_port()}",
        login_rate=3,
        max_upload_bytes=2048,
        max_json_bytes=4096,
    )
    with GatewayThread(settings) as gateway:
        yield gateway


def test_logins_are_throttled(net, tight):
    statuses = [login(tight.url, net.org1.admin.username, "wrong").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    throttled = login(tight.url, net.org1.admin.username, net.org1.admin.password)
    assert throttled.status_code == 429 and "throttled" in throttled.json()["detail"]


def test_users_file_formats(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"username": "a", "password": "p", "role": "user", "channel": "c"}]}))
    assert parse_users_file(str(path)) == [UserEntry("a", "p", "USER", "c")]
    path.write_text("# the account operator's format\nalice secret mychannel\nbob other\n")
    assert parse_users_file(str(path)) == [UserEntry("alice", "secret", "ADMIN", "mychannel"),
                                           UserEntry("bob", "other", "ADMIN", "")]  # fmt: skip
    for bad in ('{"users": [{"username": "a"}]}', '{"users": [{"username": "a", "password": "p", "role": "ROOT"}]}',
                '{"users": {}}', "one two three four\n"):  # fmt: skip
        path.write_text(bad)
        with pytest.raises(ValueError):
            parse_users_file(str(path))


def test_provisioning_creates_updates_and_removes(database_url):
    engine = db.create_engine(database_url, SCHEMA)
    db.migrate(engine, SCHEMA, MIGRATIONS)
    accounts = Accounts(db.UnitOfWork(engine, repositories=SqlUserStore))
    try:
        counts = accounts.provision_sync(
            [UserEntry("ann", "pw1", "ADMIN", "c1"), UserEntry("ben", "pw2", "USER", "c1")]
        )
        assert counts == {"created": 2, "updated": 0, "removed": 0}
        _, raw = accounts.login_sync("ann", "pw1", dt.timedelta(hours=1))
        assert accounts.provision_sync(
            [UserEntry("ann", "pw1", "ADMIN", "c1"), UserEntry("ben", "pw2", "USER", "c1")]
        ) == {
            "created": 0,
            "updated": 0,
            "removed": 0,
        }
        # A new password revokes the user's tokens; an absent user is removed.
        counts = accounts.provision_sync([UserEntry("ann", "new", "USER", "c2")])
        assert counts == {"created": 0, "updated": 1, "removed": 1}
        assert accounts.login_sync("ann", "pw1", dt.timedelta(hours=1)) is None
        assert accounts.login_sync("ben", "pw2", dt.timedelta(hours=1)) is None
        assert accounts.login_sync("ann", "new", dt.timedelta(hours=1)) is not None
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT token_hash FROM tokens").scalars().all() != [raw]
            assert conn.exec_driver_sql("SELECT role, channel FROM users").all() == [("USER", "c2")]
            hashes = conn.exec_driver_sql("SELECT password_hash FROM users").scalars().all()
        assert hashes[0].startswith("$argon2id$")
    finally:
        engine.dispose()
