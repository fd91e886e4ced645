"""The CORS policy (no I/O): exact origins only, headers for an allowed origin and none for another,
preflights, and which requests may use the session cookies."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response

from gateway.cors import Cors, parse_origins

PAGE = "http://127.0.0.1:3000"


def request(method: str = "GET", **headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": method, "path": "/x/", "query_string": b"", "headers": raw,
             "scheme": "http", "server": ("127.0.0.1", 8000)}  # fmt: skip
    return Request(scope)


def test_only_exact_origins_are_accepted_in_the_settings():
    assert parse_origins(["http://127.0.0.1:3000/", " https://Front.example ", ""]) == {
        "http://127.0.0.1:3000",
        "https://front.example",
    }
    for bad in ("*", "127.0.0.1:3000", "http://x.example/app", "ftp://x.example", "http://user:pw@x.example"):
        with pytest.raises(ValueError):
            parse_origins([bad])


def test_an_allowed_origin_gets_credentials_and_a_refused_one_nothing():
    cors = Cors([PAGE])
    allowed = Response()
    cors.decorate(request(origin=PAGE), allowed)
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert allowed.headers["vary"] == "Origin"
    for origin in ("http://localhost:3000", "http://127.0.0.1:3001", "null"):
        refused = Response()
        cors.decorate(request(origin=origin), refused)
        assert not [h for h in refused.headers if h.startswith("access-control-")]


def test_preflights():
    cors = Cors([PAGE])
    ok = cors.preflight(request("OPTIONS", origin=PAGE, access_control_request_method="POST"))
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE, OPTIONS"
    assert ok.headers["access-control-allow-headers"] == "authorization, content-type, accept"
    refused = cors.preflight(request("OPTIONS", origin="http://evil.example", access_control_request_method="GET"))
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert Cors.is_preflight(request("OPTIONS", origin=PAGE, access_control_request_method="GET"))
    assert not Cors.is_preflight(request("OPTIONS"))


def test_which_requests_may_use_the_session_cookies():
    cors = Cors([PAGE])
    assert cors.trusted(request())  # no Origin: not a cross-origin browser request
    assert cors.trusted(request(origin=PAGE))
    assert cors.trusted(request(origin="http://127.0.0.1:8000", host="127.0.0.1:8000"))  # the gateway's own
    assert not cors.trusted(request(origin="http://127.0.0.1:4000", host="127.0.0.1:8000"))
