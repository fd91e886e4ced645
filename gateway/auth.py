"""Authentication of HTTP requests and the token endpoints (contract §2, frontend contract §2).

Two schemes, on every route that is not public (file downloads and an authenticated ``/info/``
included):

* ``Authorization: Token <key>`` (the SDK's; DRF's keyword; ``Bearer`` is not accepted, as in
  Substra). A verified token is trusted for ``TESSERA_TOKEN_CACHE_SECONDS`` without a database
  lookup; revoking one, or changing or removing its user, on this replica evicts it at once, other
  replicas within that delay.
* ``Authorization: JWT <header.payload>`` (the web frontend's), joined with the ``signature``
  cookie into the access token, verified by :mod:`gateway.webtokens` and :mod:`gateway.sessions`
  on every call (no cache). Both halves are required: the cookie alone would let any page the
  browser visits act for the user, the header alone is a token cut in two.

* ``POST /api-token-auth/`` (form or JSON ``username``/``password``) → an implicit token,
  throttled per client address (40/min by default) and per user name (10 failures a minute) → 429.
* ``POST /api-token/`` makes a named token; ``GET /active-api-tokens/`` lists the user's tokens;
  ``DELETE /active-api-tokens/?id=`` revokes one (the SDK's logout).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.errors import HttpError
from gateway.inputs import json_object, json_or_form
from gateway.sessions import SessionRefused, Sessions
from gateway.store import API, Token
from gateway.upstreams import Principal
from gateway.users import Accounts, now
from gateway.webtokens import Signer, TokenRefused

KEYWORD = "token"
JWT_KEYWORD = "jwt"
SIGNATURE_COOKIE = "signature"
_CACHE_LIMIT = 10_000


class Authenticator:
    """Turns an ``Authorization`` header (and, for a JWT, the ``signature`` cookie) into the
    :class:`Principal` it stands for."""

    def __init__(
        self, accounts: Accounts, cache_seconds: float, signer: Signer | None = None, sessions: Sessions | None = None
    ) -> None:
        self._accounts = accounts
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, dt.datetime | None, float]] = {}
        self._signer = signer
        self._sessions = sessions

    async def authenticate(self, request: Request, require_channel: bool = True) -> Principal:
        """The request's user; 401 without valid credentials, 403 for a user without a channel (if required)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == JWT_KEYWORD and self._sessions is not None:
            principal = await self._jwt(request, value)
        elif scheme.lower() == KEYWORD:
            principal = await self._token(value)
        else:
            raise _unauthenticated("Authentication credentials were not provided.")
        if require_channel and not principal.channel:
            raise HttpError(403, "Your account is not attached to any channel")
        return principal

    async def _jwt(self, request: Request, value: str) -> Principal:
        parts = value.split(".")
        if len(parts) != 2 or not all(parts) or " " in value:
            raise _unauthenticated("Invalid token header: expected JWT <header.payload>.", JWT_KEYWORD)
        signature = request.cookies.get(SIGNATURE_COOKIE)
        if not signature:
            raise _unauthenticated("The signature cookie is missing.", JWT_KEYWORD)
        try:
            claims = self._signer.verify_access(f"{value}.{signature}")
            return await self._sessions.principal(claims)
        except (TokenRefused, SessionRefused) as exc:
            raise _unauthenticated(exc.detail, JWT_KEYWORD) from None

    async def _token(self, value: str) -> Principal:
        if not value or " " in value:
            raise _unauthenticated("Invalid token header.")
        key = hashlib.sha256(value.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[2] > time.monotonic():
            principal, expires_at, _ = cached
        else:
            found = await self._accounts.resolve(value)
            if found is None:
                self._cache.pop(key, None)
                raise _unauthenticated("Invalid token.")
            principal, expires_at = found
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = (principal, expires_at, time.monotonic() + self._cache_seconds)
        if expires_at is not None and expires_at <= now():
            raise _unauthenticated("The token is expired")
        return principal

    def forget(self, token_id: str) -> None:
        """Evict a revoked token from the cache."""
        for key in [k for k, (p, _, _) in self._cache.items() if p.token_id == token_id]:
            del self._cache[key]

    def forget_user(self, user_id: int) -> None:
        """Evict every cached token of a user whose role, password or existence changed."""
        for key in [k for k, (p, _, _) in self._cache.items() if p.user_id == user_id]:
            del self._cache[key]


def _unauthenticated(detail: str, scheme: str = KEYWORD) -> HttpError:
    challenge = "Token" if scheme == KEYWORD else 'JWT realm="api"'
    return HttpError(401, detail, headers={"WWW-Authenticate": challenge})


class _Window:
    """Events per key in a sliding period, in memory."""

    def __init__(self, rate: int, period: float) -> None:
        self.rate = rate
        self._period = period
        self._hits: dict[str, collections.deque[float]] = {}

    def wait(self, key: str, moment: float) -> int:
        """Seconds until ``key`` may have one more event (0: now)."""
        hits = self._hits.get(key)
        if hits is None:
            return 0
        while hits and hits[0] <= moment - self._period:
            hits.popleft()
        if len(hits) < self.rate:
            return 0
        return int(hits[0] + self._period - moment) + 1

    def add(self, key: str, moment: float) -> None:
        self._hits.setdefault(key, collections.deque()).append(moment)
        if len(self._hits) > _CACHE_LIMIT:
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > moment - self._period}


class LoginThrottle:
    """At most ``rate`` login attempts per client address, and ``user_rate`` failed ones per user name, in
    any sliding minute (in memory, per replica). A name over its rate is refused even with the right
    password, so a guesser spreading over many addresses learns nothing more; the price is that
    someone failing on purpose can hold a name's logins back for that minute."""

    def __init__(self, rate: int, period: float = 60.0, user_rate: int = 10) -> None:
        self._addresses = _Window(rate, period)
        self._failures = _Window(user_rate, period)

    def check(self, client: str) -> None:
        """Count one attempt from ``client``; 429 when over its rate."""
        moment = time.monotonic()
        _throttled(self._addresses.wait(client, moment))
        self._addresses.add(client, moment)

    def check_user(self, username: str) -> None:
        """429 when ``username`` failed too often lately."""
        _throttled(self._failures.wait(username, time.monotonic()))

    def failed(self, username: str) -> None:
        """Count one failed attempt for ``username``."""
        self._failures.add(username, time.monotonic())


def _throttled(wait: int) -> None:
    if wait:
        raise HttpError(429, f"Request was throttled. Expected available in {wait} seconds.")


def client_address(request: Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy forwarded (resolved before the
    application sees the request: ``TESSERA_TRUSTED_PROXIES``, :func:`gateway.bootstrap.build`)."""
    return request.client.host if request.client else "unknown"


def describe(token: Token) -> dict:
    """A token as ``/active-api-tokens/`` lists it (never its value)."""
    data = {"id": token.id, "expires_at": _iso(token.expires_at), "created_at": _iso(token.created_at)}
    if token.kind == API:
        data["note"] = token.note
    return data


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


async def credentials(request: Request) -> dict[str, str]:
    """The string fields of a login body, JSON or form-encoded."""
    data = await json_or_form(request, max_fields=10)
    return {k: v for k, v in data.items() if isinstance(v, str)}


class TokenEndpoints:
    """``/api-token-auth/``, ``/api-token/`` and ``/active-api-tokens/``."""

    def __init__(
        self, accounts: Accounts, authenticator: Authenticator, throttle: LoginThrottle, lifetime_minutes: int
    ):
        self._accounts = accounts
        self._authenticator = authenticator
        self._throttle = throttle
        self._lifetime = dt.timedelta(minutes=lifetime_minutes)

    async def login(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``POST /api-token-auth/``: an implicit token for valid credentials (400 otherwise)."""
        self._throttle.check(client_address(request))
        data = await credentials(request)
        username, password = data.get("username", ""), data.get("password", "")
        if not username or not password:
            raise HttpError(400, 'Must include "username" and "password".')
        self._throttle.check_user(username)
        issued = await self._accounts.login(username, password, self._lifetime)
        if issued is None:
            self._throttle.failed(username)
            raise HttpError(400, "Unable to log in with provided credentials.")
        token, raw = issued
        return JSONResponse({**describe(token), "token": raw})

    async def create(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``POST /api-token/`` ``{"note", "expires_at"}``: a named token."""
        data = await json_object(request)
        note = data.get("note") or ""
        if not isinstance(note, str) or len(note) > 255:
            raise HttpError(400, "note: must be a string of at most 255 characters")
        expires_at = data.get("expires_at")
        if expires_at is not None:
            try:
                expires_at = dt.datetime.fromisoformat(str(expires_at))
            except ValueError:
                raise HttpError(400, "expires_at: must be an ISO 8601 date-time or null") from None
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=dt.UTC)
        token, raw = await self._accounts.create_token(principal.user_id, API, expires_at, note)
        return JSONResponse({**describe(token), "note": note, "token": raw}, status_code=201)

    async def active(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /active-api-tokens/``: the user's named and implicit tokens."""
        tokens = await self._accounts.tokens(principal.user_id)
        return JSONResponse(
            {
                "tokens": [describe(t) for t in tokens if t.kind == API],
                "implicit_tokens": [describe(t) for t in tokens if t.kind != API],
            }
        )

    async def delete(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``DELETE /active-api-tokens/?id=``: revoke one of the user's tokens."""
        token_id = request.query_params.get("id", "")
        if not token_id or not await self._accounts.delete_token(principal.user_id, token_id):
            raise HttpError(404, "Token not found")
        self._authenticator.forget(token_id)
        return JSONResponse({"detail": "Token removed"})
