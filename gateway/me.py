"""``/me/login/``, ``/me/refresh/`` and ``/me/logout/``: the web frontend's session, in cookies
(frontend contract §2).

The access token is split across two cookies, both ``Path=/``, ``SameSite=Lax``, ``Secure`` when the
request came over https, and expiring with the token:

* ``header.payload``: its first two parts, readable by the page's scripts, which send them back as
  ``Authorization: JWT <header.payload>`` (:class:`gateway.auth.Authenticator` joins them);
* ``signature``: the third part, ``HttpOnly``, so a script injected in the page never holds a whole token;

and ``refresh`` (``HttpOnly``, 7 days by default) carries the refresh token. These routes take no
``Authorization`` header (a stale one is ignored): their cookies are the credential, which is why a
request carrying an ``Origin`` that is neither the gateway's nor an allowed one is refused here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.auth import SIGNATURE_COOKIE, LoginThrottle, client_address, credentials
from gateway.cors import Cors
from gateway.errors import HttpError
from gateway.sessions import Issued, SessionRefused, Sessions
from gateway.upstreams import Principal

HEADER_PAYLOAD_COOKIE = "header.payload"
REFRESH_COOKIE = "refresh"
COOKIES = (HEADER_PAYLOAD_COOKIE, SIGNATURE_COOKIE, REFRESH_COOKIE)
LOGIN_FAILED = "No active account found with the given credentials"


class MeEndpoints:
    """The three ``/me/`` routes."""

    def __init__(self, sessions: Sessions, throttle: LoginThrottle, cors: Cors, cookie_domain: str = "") -> None:
        self._sessions = sessions
        self._throttle = throttle
        self._cors = cors
        self._domain = cookie_domain or None

    def _check_origin(self, request: Request) -> None:
        if not self._cors.trusted(request):
            raise HttpError(403, f"Origin {request.headers.get('origin')} is not allowed")

    async def login(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``POST /me/login/`` ``{"username", "password"}``: the access token's public claims and three cookies."""
        self._check_origin(request)
        self._throttle.check(client_address(request))
        data = await credentials(request)
        username, password = data.get("username", ""), data.get("password", "")
        if not username or not password:
            raise HttpError(400, 'Must include "username" and "password".')
        self._throttle.check_user(username)
        issued = await self._sessions.login(username, password)
        if issued is None:
            self._throttle.failed(username)
            raise HttpError(401, LOGIN_FAILED)
        return self._answer(request, issued)

    async def refresh(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``POST /me/refresh/``: rotate the ``refresh`` cookie; new cookies, or 401."""
        self._check_origin(request)
        raw = request.cookies.get(REFRESH_COOKIE, "")
        if not raw:
            raise HttpError(401, "The refresh cookie is missing", headers={"WWW-Authenticate": 'JWT realm="api"'})
        try:
            issued = await self._sessions.refresh(raw)
        except SessionRefused as exc:
            response = HttpError(401, exc.detail, headers={"WWW-Authenticate": 'JWT realm="api"'}).response()
            self._expire(request, response)
            return response
        return self._answer(request, issued)

    async def logout(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``GET /me/logout/``: end the session (its refresh and access tokens) and expire the cookies."""
        self._check_origin(request)
        await self._sessions.logout(request.cookies.get(REFRESH_COOKIE, ""))
        response = JSONResponse({})
        self._expire(request, response)
        return response

    # ------------------------------------------------------------------------------------ cookies
    def _answer(self, request: Request, issued: Issued) -> JSONResponse:
        response = JSONResponse(issued.public_claims())
        header, payload, signature = issued.access.split(".")
        secure = request.url.scheme == "https"
        access_age = _seconds_until(issued.access_expires, issued.claims["iat"])
        refresh_age = _seconds_until(issued.refresh_expires, issued.claims["iat"])
        for name, value, max_age, http_only in (
            (HEADER_PAYLOAD_COOKIE, f"{header}.{payload}", access_age, False),
            (SIGNATURE_COOKIE, signature, access_age, True),
            (REFRESH_COOKIE, issued.refresh, refresh_age, True),
        ):
            response.set_cookie(
                name,
                value,
                max_age=max_age,
                expires=max_age,
                path="/",
                domain=self._domain,
                secure=secure,
                httponly=http_only,
                samesite="lax",
            )
        return response

    def _expire(self, request: Request, response: JSONResponse) -> None:
        for name in COOKIES:
            response.delete_cookie(
                name,
                path="/",
                domain=self._domain,
                secure=request.url.scheme == "https",
                httponly=name != HEADER_PAYLOAD_COOKIE,
                samesite="lax",
            )


def _seconds_until(moment, issued_at: int) -> int:
    return max(0, int(moment.timestamp()) - issued_at)
