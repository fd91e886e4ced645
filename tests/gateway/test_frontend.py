"""The web frontend's authentication against a real gateway over HTTP (frontend contract §1 to §3, §5), with
a cookie-keeping client that behaves like the page (:class:`tests.gateway.browser.Browser`): the login
walk and its cookies, the start-up sequence, a refresh after losing ``header.payload``, logout, CORS from
an allowed and a refused origin, the users' rules, API tokens under the JWT, login throttling, and hostile
tokens (forged, expired, revoked, foreign, half-sent, replayed)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from gateway.webtokens import Signer
from tests.gateway.browser import Browser
from tests.gateway.conftest import CHANNEL, FRONTEND_ORIGIN, REFRESH_GRACE, GatewayThread
from tests.gateway.helpers import client, dataset_spec, files
from tools.devnet.embedded import free_port

pytestmark = pytest.mark.timeout(120)

LOGIN_FAILED = {"detail": "No active account found with the given credentials"}
PUBLIC_CLAIMS = {"token_type", "exp", "iat", "jti", "user_id"}


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str]]:
    """The cookies a response sets, each with its attributes (lower-cased names; flags as "")."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            attributes = {k: str(v) for k, v in morsel.items() if v}
            flags = {part.strip().lower() for part in header.split(";")[1:]}
            attributes.update({flag: "" for flag in ("httponly", "secure") if flag in flags})
            found[name] = {"value": morsel.value, **attributes}
    return found


def key_of(net, org) -> bytes:
    return Path(org.settings.jwt_secret_file).read_bytes().strip()


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def dataset(net, tmp_path_factory) -> str:
    """A dataset of MyOrg1MSP, so the walk can download a file with the frontend's credentials."""
    paths = files(tmp_path_factory.mktemp("frontend-files"))
    return client(net.org1).add_dataset(dataset_spec(paths, name="frontend-ds"))


# --------------------------------------------------------------------------------------- the walk
def test_the_login_walk_cookies_start_up_refresh_and_logout(net, dataset):
    org = net.org1
    with Browser(org.url) as page:
        # Start-up without a session: the anonymous /info/, then a refresh that fails: the login page.
        info = page.anonymous_get("/info/")
        assert info.status_code == 200 and "channel" not in info.json()
        assert info.headers["access-control-allow-origin"] == FRONTEND_ORIGIN
        assert page.refresh().status_code == 401

        # A wrong password shows the error and sets no cookie.
        wrong = page.login(org.admin.username, "wrong-password")
        assert (wrong.status_code, wrong.json()) == (401, LOGIN_FAILED)
        assert set_cookies(wrong) == {} and list(page.http.cookies.jar) == []
        assert wrong.headers["access-control-allow-credentials"] == "true"  # the page can read the error

        right = page.login(org.admin.username, org.admin.password)
        assert right.status_code == 200, right.text
        body = right.json()
        assert set(body) == PUBLIC_CLAIMS and body["token_type"] == "access" and body["exp"] - body["iat"] == 86400
        cookies = set_cookies(right)
        assert set(cookies) == {"header.payload", "signature", "refresh"}
        for name, cookie in cookies.items():
            assert cookie["path"] == "/" and cookie["samesite"].lower() == "lax", name
            assert "secure" not in cookie, name  # plain http here; Secure over https
            assert "domain" not in cookie, name  # no cookie domain configured: the gateway's host only
        assert "httponly" not in cookies["header.payload"]  # the page reads it
        assert "httponly" in cookies["signature"] and "httponly" in cookies["refresh"]
        assert cookies["header.payload"]["max-age"] == cookies["signature"]["max-age"] == "86400"
        assert cookies["refresh"]["max-age"] == str(7 * 86400)
        assert cookies["header.payload"]["value"].count(".") == 1 and "." not in cookies["signature"]["value"]

        # The start-up sequence with a session: refresh (rotated), organizations, the authenticated /info/,
        # the plans' metadata keys.
        page.calls.clear()
        refreshed = page.refresh()
        assert refreshed.status_code == 200 and set(refreshed.json()) == PUBLIC_CLAIMS
        assert page.cookie("refresh") != cookies["refresh"]["value"]
        organizations = page.get("/organization/")
        assert {o["id"] for o in organizations.json()} >= {"MyOrg1MSP", "MyOrg2MSP"}
        me = page.get("/info/").json()
        assert (me["channel"], me["user"], me["user_role"]) == (CHANNEL, org.admin.username, "ADMIN")
        assert isinstance(page.get("/compute_plan_metadata/").json(), list)
        # The pages' lists and a file download, with the JWT only.
        for path in ("/compute_plan/", "/task/", "/function/", "/data_manager/", "/news_feed/", "/users/"):
            assert page.get(path).status_code == 200, path
        opener = page.get(f"/data_manager/{dataset}/opener/")
        assert opener.status_code == 200 and b"class Opener" in opener.content
        assert "content-disposition" in opener.headers["access-control-expose-headers"].lower()
        assert all(status < 400 for _, _, status in page.calls), page.calls

        # Losing header.payload: the next GET is a 401, then one refresh, then the retry succeeds.
        page.drop_cookie("header.payload")
        page.calls.clear()
        assert page.get("/compute_plan/").status_code == 200
        assert page.calls == [
            ("GET", "/compute_plan/", 401),
            ("POST", "/me/refresh/", 200),
            ("GET", "/compute_plan/", 200),
        ]
        stale = {"header.payload": page.cookie("header.payload"), "refresh": page.cookie("refresh")}

        # Logout removes the three cookies and ends the session.
        out = page.logout()
        assert out.status_code == 200
        expired = set_cookies(out)
        assert set(expired) == {"header.payload", "signature", "refresh"}
        assert all(c["max-age"] == "0" and c["path"] == "/" for c in expired.values())
        assert list(page.http.cookies.jar) == []
        assert page.get("/compute_plan/").status_code == 401
        assert page.get("/info/").json().get("channel") is None  # back to anonymous: the login screen
    # The session is over for whoever kept its cookies.
    with httpx.Client(base_url=org.url, cookies=stale) as kept:
        assert kept.post("/me/refresh/").status_code == 401
        again = kept.get("/task/", headers={"Authorization": f"JWT {stale['header.payload']}"})
        assert again.status_code == 401


def test_a_session_survives_a_restart_of_the_gateway(net):
    with Browser(net.org1.url) as page:
        assert page.login(net.org1.admin.username, net.org1.admin.password).status_code == 200
        settings = dataclasses.replace(net.org1.settings, http_addr=f"127.0.0.1:{free_port()}")
        with GatewayThread(settings) as replica:  # same database and key: a restart, or another replica
            cookies = {c.name: c.value for c in page.http.cookies.jar}
            with httpx.Client(base_url=replica.url, cookies=cookies) as moved:
                header = {"Authorization": f"JWT {cookies['header.payload']}"}
                assert moved.get("/task/", headers=header).status_code == 200
                assert moved.post("/me/refresh/").status_code == 200


# --------------------------------------------------------------------------------------- CORS
def test_cors_preflights_from_an_allowed_and_a_refused_origin(net):
    url = net.org1.url
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    for path in ("/me/login/", "/users/", "/compute_plan/", "/task/abc/logs/", "/no/such/route/"):
        allowed = httpx.options(f"{url}{path}", headers={"Origin": FRONTEND_ORIGIN, **preflight})
        assert allowed.status_code == 200, path
        assert allowed.headers["access-control-allow-origin"] == FRONTEND_ORIGIN
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert set(allowed.headers["access-control-allow-methods"].split(", ")) == {
            "GET", "POST", "PUT", "DELETE", "OPTIONS"}  # fmt: skip
        assert set(allowed.headers["access-control-allow-headers"].split(", ")) == {
            "authorization", "content-type", "accept"}  # fmt: skip
        for origin in ("http://localhost:3000", "http://127.0.0.1:3001", "https://evil.example"):
            refused = httpx.options(f"{url}{path}", headers={"Origin": origin, **preflight})
            assert refused.status_code == 403 and "detail" in refused.json()
            assert not [h for h in refused.headers if h.lower().startswith("access-control-")]
    # Actual answers, errors included, carry the headers for the allowed origin only.
    for origin, expected in ((FRONTEND_ORIGIN, FRONTEND_ORIGIN), ("https://evil.example", None)):
        for path in ("/info/", "/task/", "/no/such/route/"):
            response = httpx.get(f"{url}{path}", headers={"Origin": origin})
            assert response.headers.get("access-control-allow-origin") == expected, (origin, path)
            assert "Origin" in response.headers.get("vary", "")
    # A plain OPTIONS (no preflight) lists the verbs of the route.
    assert httpx.options(f"{url}/users/someone/").headers["allow"] == "DELETE, GET, PUT, OPTIONS"
    assert httpx.options(f"{url}/no/such/route/").status_code == 404


def test_the_session_routes_refuse_a_foreign_origin(net):
    org = net.org1
    with Browser(org.url, origin="https://evil.example") as page:
        refused = page.login(org.admin.username, org.admin.password)
        assert refused.status_code == 403 and set_cookies(refused) == {}
    with Browser(org.url) as page:
        page.login(org.admin.username, org.admin.password)
        cookies = {c.name: c.value for c in page.http.cookies.jar}
    with httpx.Client(base_url=org.url, cookies=cookies, headers={"Origin": "https://evil.example"}) as evil:
        assert evil.post("/me/refresh/").status_code == 403
        assert evil.get("/me/logout/").status_code == 403
    with httpx.Client(base_url=org.url, cookies=cookies) as same:  # the session was left alone
        assert same.post("/me/refresh/").status_code == 200


# --------------------------------------------------------------------------------------- hostile tokens
def test_half_sent_forged_expired_and_foreign_tokens(net):
    org1, org2 = net.org1, net.org2
    with Browser(org1.url) as page:
        page.login(org1.admin.username, org1.admin.password)
        header_payload, signature = page.cookie("header.payload"), page.cookie("signature")
    url = f"{org1.url}/task/"

    def status(authorization: str | None, cookies: dict | None = None) -> tuple[int, str]:
        headers = {"Authorization": authorization} if authorization else {}
        response = httpx.get(url, headers=headers, cookies=cookies or {})
        return response.status_code, response.json().get("detail", "")

    assert status(f"JWT {header_payload}", {"signature": signature})[0] == 200
    # The cookies without the header: refused (another site's page would send the cookies too).
    assert status(None, {"signature": signature, "header.payload": header_payload}) == (
        401, "Authentication credentials were not provided.")  # fmt: skip
    # The header without the signature cookie, or the whole token in the header: refused.
    assert status(f"JWT {header_payload}") == (401, "The signature cookie is missing.")
    assert status(f"JWT {header_payload}.{signature}")[0] == 401
    assert status(f"JWT {header_payload}.{signature}", {"signature": signature})[0] == 401
    # Forged: the payload made another user, alg none, another key, a stranger's signature.
    header, payload = header_payload.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for forged, cookie in (
        (f"{header}.{b64({**claims, 'user_id': claims['user_id'] + 1})}", signature),
        (f"{header}.{b64({**claims, 'role': 'ADMIN', 'exp': claims['exp'] + 10**6})}", signature),
        (f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}", signature),
        (f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}", "x"),
        (header_payload, "A" * 43),
    ):
        assert status(f"JWT {forged}", {"signature": cookie}) == (401, "The token is invalid"), forged
    signed_elsewhere = Signer(b"k" * 32, org1.id).access_token(claims).split(".")
    assert status(f"JWT {'.'.join(signed_elsewhere[:2])}", {"signature": signed_elsewhere[2]})[0] == 401
    # Expired: signed with this organization's own key, an hour ago.
    old = Signer(key_of(net, org1), org1.id).access_token({**claims, "exp": int(time.time()) - 3600}).split(".")
    assert status(f"JWT {'.'.join(old[:2])}", {"signature": old[2]}) == (401, "The token is expired")
    # Foreign: a session of MyOrg2MSP's gateway, and a token of its key naming this organization.
    with Browser(org2.url) as foreign:
        foreign.login(org2.admin.username, org2.admin.password)
        assert foreign.get("/task/").status_code == 200
        cookies = {"signature": foreign.cookie("signature")}
        assert status(f"JWT {foreign.cookie('header.payload')}", cookies) == (401, "The token is invalid")
    spoofed = Signer(key_of(net, org2), org1.id).access_token(claims).split(".")
    assert status(f"JWT {'.'.join(spoofed[:2])}", {"signature": spoofed[2]})[0] == 401
    # Even with one key for both by mistake, the issuer tells them apart.
    crossed = Signer(key_of(net, org1), org2.id).access_token(claims).split(".")
    assert status(f"JWT {'.'.join(crossed[:2])}", {"signature": crossed[2]}) == (
        401, "The token was not issued by this organization")  # fmt: skip
    # Other schemes and junk.
    for junk in ("JWT", "JWT a.b c", "Bearer x.y", f"jwt {header_payload} extra", "JWT ..", "JWT " + "a" * 5000 + ".b"):
        assert status(junk, {"signature": signature})[0] == 401, junk


def test_a_revoked_session_and_a_token_without_channel(net):
    org = net.org1
    with Browser(org.url) as page:
        page.login(org.admin.username, org.admin.password)
        auth = {"Authorization": f"JWT {page.cookie('header.payload')}"}
        cookies = {"signature": page.cookie("signature")}
        page.logout()
    assert httpx.get(f"{org.url}/task/", headers=auth, cookies=cookies).json() == {
        "detail": "The session has ended: log in again"
    }
    # /info/ with a revoked token is a 401 too, so the page refreshes (and then shows the login).
    assert httpx.get(f"{org.url}/info/", headers=auth, cookies=cookies).status_code == 401
    # A user without a channel logs in and sees "awaiting approval"; the data routes are a 403.
    with Browser(org.url) as lost:
        assert lost.login("org1-lost", "lost-password").status_code == 200
        info = lost.get("/info/").json()
        assert info["channel"] == "" and info["user"] == "org1-lost"
        assert lost.get("/task/").status_code == 403


def test_a_refresh_token_replayed_after_rotation_revokes_its_family(net):
    org = net.org1
    with Browser(org.url) as page:
        page.login(org.admin.username, org.admin.password)
        first = page.cookie("refresh")
        # Parallel refreshes of one page (the same cookie twice within the grace) both succeed.
        with httpx.Client(base_url=org.url, cookies={"refresh": first}) as twin:
            assert page.refresh().status_code == 200
            assert twin.post("/me/refresh/").status_code == 200
        second = page.cookie("refresh")
        assert page.get("/task/").status_code == 200
        time.sleep(REFRESH_GRACE + 0.2)
        # The stolen, rotated cookie comes back: refused, and the whole family with it.
        with httpx.Client(base_url=org.url, cookies={"refresh": first}) as thief:
            replay = thief.post("/me/refresh/")
            assert replay.status_code == 401 and "already used" in replay.json()["detail"]
            assert set_cookies(replay)["refresh"]["max-age"] == "0"
        page.calls.clear()
        assert page.http.get("/task/", headers=page._auth()).status_code == 401  # the access token is dead
        with httpx.Client(base_url=org.url, cookies={"refresh": second}) as owner:
            assert owner.post("/me/refresh/").json()["detail"] == "The refresh token is invalid or revoked"


# --------------------------------------------------------------------------------------- users
def admin_page(org) -> Browser:
    page = Browser(org.url)
    assert page.login(org.admin.username, org.admin.password).status_code == 200
    return page


def test_users_crud_and_rules(net):
    org = net.org1
    with admin_page(org) as admin:
        created = admin.post("/users/", json={"username": "fe-alice", "password": "alice-password-1", "role": "USER"})
        assert created.status_code == 201, created.text
        assert created.json() == {"username": "fe-alice", "role": "USER", "channel": CHANNEL, "is_external_user": False}
        assert admin.post("/users/", json={"username": "fe-alice", "password": "alice-password-1"}).status_code == 409
        for bad in (
            {"username": "fe-bob", "password": "short"},
            {"username": "fe bob", "password": "bob-password-12"},
            {"username": "fe-bob", "password": "bob-password-12", "role": "ROOT"},
            {"password": "bob-password-12"},
        ):
            refused = admin.post("/users/", json=bad)
            assert refused.status_code == 400 and refused.json()["detail"], bad
        assert admin.post("/users/", content=b"[1]", headers={"content-type": "application/json"}).status_code == 400
        listed = admin.get("/users/", params={"match": "FE-ALI", "page_size": 1}).json()
        assert listed["count"] == 1 and listed["results"][0]["username"] == "fe-alice" and listed["next"] is None
        names = [u["username"] for u in admin.get("/users/").json()["results"]]
        assert names == sorted(names) and org.admin.username in names and "org1-lost" not in names
        assert admin.get("/users/", params={"page": "x"}).status_code == 400
        assert admin.get("/users/", params={"page": 99}).status_code == 404
        assert admin.get("/users/fe-alice/").json()["role"] == "USER"
        assert admin.get("/users/org2-admin/").status_code == 404
        assert admin.put("/users/fe-alice/", json={"role": "ADMIN"}).json()["role"] == "ADMIN"
        assert admin.put("/users/fe-alice/", json={"role": 3}).status_code == 400
        # The file's users are changed in the file; no one deletes itself.
        file_user = admin.put(f"/users/{org.user.username}/", json={"role": "ADMIN"})
        assert file_user.status_code == 409 and "users file" in file_user.json()["detail"]
        assert admin.delete(f"/users/{org.admin.username}/").status_code == 409
        assert admin.get("/users-awaiting-approval/").json()["results"] == []

        # Password reset: an admin gets a token, the user checks it and sets a password once.
        token = admin.post("/users/fe-alice/reset_password/").json()["reset_password_token"]
        with Browser(org.url) as alice:
            assert alice.login("fe-alice", "alice-password-1").status_code == 200
            anonymous = httpx.Client(base_url=org.url)
            assert anonymous.get("/users/fe-alice/verify_token/", params={"token": token}).json() == {}
            assert anonymous.get("/users/fe-alice/verify_token/", params={"token": "x.y.z"}).status_code == 401
            assert anonymous.get("/users/nobody/verify_token/", params={"token": token}).status_code == 401
            set_password = anonymous.post("/users/fe-alice/set_password/", json={"token": token, "password": "p"})
            assert set_password.status_code == 400
            done = anonymous.post(
                "/users/fe-alice/set_password/", json={"token": token, "password": "alice-new-pass-2"}
            )
            assert done.status_code == 200 and done.json()["username"] == "fe-alice"
            assert anonymous.get("/users/fe-alice/verify_token/", params={"token": token}).status_code == 401  # spent
            assert alice.http.get("/task/", headers=alice._auth()).status_code == 401  # its sessions ended
            anonymous.close()
        with Browser(org.url) as alice:
            assert alice.login("fe-alice", "alice-password-1").status_code == 401
            assert alice.login("fe-alice", "alice-new-pass-2").status_code == 200
            # Demoted: its token stops working; a refresh gives one with the new role, which may not manage users.
            assert admin.put("/users/fe-alice/", json={"role": "USER"}).status_code == 200
            demoted = alice.http.get("/users/", headers=alice._auth())
            assert demoted.status_code == 401 and "role" in demoted.json()["detail"]
            assert alice.get("/users/").status_code == 200  # the refresh and the retry
            forbidden = alice.post("/users/", json={"username": "fe-x", "password": "x-password-123"})
            assert forbidden.status_code == 403
            assert alice.delete("/users/fe-alice/").status_code == 403
            assert alice.post(f"/users/{org.admin.username}/reset_password/").status_code == 403
            # Deleted: its tokens (the SDK's too) and its refresh cookie stop working.
            sdk = httpx.post(
                f"{org.url}/api-token-auth/", data={"username": "fe-alice", "password": "alice-new-pass-2"}
            )
            sdk_auth = {"Authorization": f"Token {sdk.json()['token']}"}
            assert httpx.get(f"{org.url}/task/", headers=sdk_auth).status_code == 200
            assert admin.delete("/users/fe-alice/").status_code == 204
            assert alice.http.get("/task/", headers=alice._auth()).status_code == 401
            assert alice.refresh().status_code == 401
            assert httpx.get(f"{org.url}/task/", headers=sdk_auth).status_code == 401
        assert admin.get("/users/fe-alice/").status_code == 404
        assert admin.delete("/users/fe-alice/").status_code == 404


def test_users_made_through_the_api_persist_across_restarts(net):
    org = net.org1
    with admin_page(org) as admin:
        assert admin.post("/users/", json={"username": "fe-kept", "password": "kept-password-1"}).status_code == 201
    # A new gateway process on the same database provisions the same users file: the API's user stays.
    settings = dataclasses.replace(org.settings, http_addr=f"127.0.0.1:{free_port()}")
    with GatewayThread(settings) as restarted, Browser(restarted.url) as page:
        assert page.login("fe-kept", "kept-password-1").status_code == 200
        assert page.get("/info/").json()["user_role"] == "USER"


def test_api_tokens_under_the_jwt(net):
    org = net.org1
    with admin_page(org) as admin:
        made = admin.post("/api-token/", json={"note": "from the web UI", "expires_at": None})
        assert made.status_code == 201 and made.json()["note"] == "from the web UI"
        token = made.json()
        listed = admin.get("/active-api-tokens/").json()["tokens"]
        assert token["id"] in [t["id"] for t in listed] and all("token" not in t for t in listed)
        sdk = {"Authorization": f"Token {token['token']}"}
        assert httpx.get(f"{org.url}/function/", headers=sdk).status_code == 200
        assert admin.delete(f"/active-api-tokens/?id={token['id']}").json() == {"detail": "Token removed"}
        assert httpx.get(f"{org.url}/function/", headers=sdk).status_code == 401


# --------------------------------------------------------------------------------------- throttling
@pytest.fixture(scope="module")
def strict(net):
    """A gateway of MyOrg1MSP allowing 4 logins a minute per address and 2 failures per user name."""
    settings = dataclasses.replace(
        net.org1.settings, http_addr=f"127.0.0.1:{free_port()}", login_rate=4, login_user_rate=2
    )
    with GatewayThread(settings) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def proxied(net):
    """A gateway of MyOrg1MSP behind a trusted proxy on 127.0.0.1, allowing 2 logins a minute per address."""
    settings = dataclasses.replace(
        net.org1.settings, http_addr=f"127.0.0.1:{free_port()}", login_rate=2, trusted_proxies=("127.0.0.1",)
    )
    with GatewayThread(settings) as gateway:
        yield gateway


def test_logins_are_throttled_per_user_name_and_per_address(net, strict):
    with Browser(strict.url) as page:
        user = net.org1.user
        assert [page.login(user.username, "wrong").status_code for _ in range(2)] == [401, 401]
        throttled = page.login(user.username, user.password)  # even the right password now
        assert throttled.status_code == 429 and "throttled" in throttled.json()["detail"]
        # X-Forwarded-For is not believed from an untrusted peer: the address is still the same.
        spoofed = page.http.post("/me/login/", json={"username": "x", "password": "y"},
                                 headers={"X-Forwarded-For": "203.0.113.9"})  # fmt: skip
        assert spoofed.status_code == 401
        assert page.login(net.org1.admin.username, net.org1.admin.password).status_code == 429  # 4 attempts
        assert httpx.post(f"{strict.url}/api-token-auth/", data={"username": "a", "password": "b"},
                          headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 429  # fmt: skip


def test_a_trusted_proxy_names_the_client(net, proxied):
    def attempt(address: str) -> int:
        return httpx.post(f"{proxied.url}/me/login/", json={"username": "nobody", "password": "x"},
                          headers={"X-Forwarded-For": address}).status_code  # fmt: skip

    assert [attempt("203.0.113.1") for _ in range(3)] == [401, 401, 429]
    assert attempt("203.0.113.2") == 401  # another client behind the proxy
    # The proxy's own scheme header makes the cookies Secure.
    over_https = httpx.post(
        f"{proxied.url}/me/login/",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.3"},
        json={"username": net.org1.admin.username, "password": net.org1.admin.password},
    )
    assert over_https.status_code == 200
    assert all("secure" in cookie for cookie in set_cookies(over_https).values())


# --------------------------------------------------------------------------------------- errors
def test_mistakes_are_clear_4xx_never_500(net):
    url = net.org1.url
    with Browser(url) as page:
        for body in (b"{", b"[]", b'"x"'):
            response = page.http.post("/me/login/", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400 and "detail" in response.json()
        assert page.http.post("/me/login/", json={"username": "x"}).status_code == 400
        assert page.http.post("/me/login/", json={"username": ["x"], "password": {"p": 1}}).status_code == 400
        assert httpx.post(f"{url}/me/refresh/", cookies={"refresh": "x" * 5000}).status_code == 401
        assert page.http.post("/me/login/", json={"username": "a\x00b", "password": "p"}).status_code == 400
        assert httpx.post(f"{url}/api-token-auth/", data={"username": "a\x00b", "password": "p"}).status_code == 400
        assert page.http.get("/me/login/").status_code == 405
        page.login(net.org1.admin.username, net.org1.admin.password)
        assert page.put("/users/nobody/", json={"role": "USER"}).status_code == 404
        assert page.post("/users/nobody/reset_password/").status_code == 404
        assert page.put("/users/%00/", json={}).status_code in (400, 404)
        statuses = [status for _, _, status in page.calls]
        assert statuses and all(status < 500 for status in statuses)


def test_openapi_lists_the_frontend_routes(net):
    paths = httpx.get(f"{net.org1.url}/openapi.json").json()["paths"]
    for path, verbs in {
        "/me/login/": {"post"},
        "/me/refresh/": {"post"},
        "/me/logout/": {"get"},
        "/users/": {"get", "post"},
        "/users/{username}/": {"get", "put", "delete"},
        "/users/{username}/reset_password/": {"post"},
        "/users/{username}/verify_token/": {"get"},
        "/users/{username}/set_password/": {"post"},
        "/users-awaiting-approval/": {"get"},
    }.items():
        assert verbs <= set(paths[path]), path
    assert "security" not in paths["/me/login/"]["post"]
    assert paths["/users/"]["get"]["security"] == [{"token": []}, {"jwt": []}]


def test_openapi_describes_kind_on_input_assets_as_a_comma_separated_list(net):
    """The route binds ``kind=A,B`` to the request's repeated ``kinds``: the document shows the REST name only."""
    operation = httpx.get(f"{net.org1.url}/openapi.json").json()["paths"]["/task/{key}/input_assets/"]["get"]
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert "kinds" not in query
    assert query["kind"]["schema"]["type"] == "array"
    assert (query["kind"]["style"], query["kind"]["explode"]) == ("form", False)
