"""The cookies of the web frontend's session (no I/O): names, halves of the token, flags, the cookie
domain and Secure over https; and their expiry at logout."""

from __future__ import annotations

import datetime as dt
from http.cookies import SimpleCookie

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.auth import LoginThrottle
from gateway.cors import Cors
from gateway.me import MeEndpoints
from gateway.sessions import Issued


def request(scheme: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/me/login/", "query_string": b"", "headers": [],
                    "scheme": scheme, "server": ("api.example.org", 443)})  # fmt: skip


def cookies(response) -> dict[str, str]:
    return {
        SimpleCookie(header).popitem()[0]: header.lower()
        for header in (v.decode() for k, v in response.raw_headers if k == b"set-cookie")
    }


def issued() -> Issued:
    moment = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    claims = {"token_type": "access", "exp": int(moment.timestamp()) + 3600, "iat": int(moment.timestamp()),
              "jti": "j", "user_id": 7, "sid": "s", "role": "USER"}  # fmt: skip
    return Issued("aaa.bbb.ccc", claims, "r" * 43, moment + dt.timedelta(hours=1), moment + dt.timedelta(days=7))


def test_the_token_is_split_and_flagged():
    me = MeEndpoints(None, LoginThrottle(1), Cors(()), cookie_domain="example.org")
    response = me._answer(request("https"), issued())
    assert response.body == b'{"token_type":"access","exp":1893459600,"iat":1893456000,"jti":"j","user_id":7}'
    set_cookies = cookies(response)
    assert set_cookies["header.payload"].startswith("header.payload=aaa.bbb;")
    assert set_cookies["signature"].startswith("signature=ccc;")
    for name, header in set_cookies.items():
        assert "domain=example.org" in header and "secure" in header and "samesite=lax" in header and "path=/" in header
        assert ("httponly" in header) == (name != "header.payload")
    assert "max-age=3600" in set_cookies["signature"] and "max-age=604800" in set_cookies["refresh"]
    plain = cookies(MeEndpoints(None, LoginThrottle(1), Cors(()))._answer(request("http"), issued()))
    assert not any("secure" in h or "domain=" in h for h in plain.values())


def test_logout_expires_the_three_cookies_where_they_were_set():
    me = MeEndpoints(None, LoginThrottle(1), Cors(()), cookie_domain="example.org")
    response = JSONResponse({})
    me._expire(request("https"), response)
    expired = cookies(response)
    assert set(expired) == {"header.payload", "signature", "refresh"}
    assert all("max-age=0" in h and "domain=example.org" in h and "path=/" in h for h in expired.values())
