"""Authentication of HTTP requests and the token endpoints (contract §2).

* ``Authorization: Token <key>`` (DRF's keyword; ``Bearer`` is not accepted, as in Substra).
  A verified token is trusted for ``TESSERA_TOKEN_CACHE_SECONDS`` without a database lookup;
  revoking one on this replica evicts it at once, other replicas within that delay.
* ``POST /api-token-auth/`` (form or JSON ``username``/``password``) → an implicit token,
  throttled per client address (40/min by default → 429).
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

from gateway.errors import HttpError, json_object
from gateway.store import API, Token
from gateway.upstreams import Principal
from gateway.users import Accounts, now

KEYWORD = "token"
_CACHE_LIMIT = 10_000


class Authenticator:
    """Turns an ``Authorization`` header into the :class:`Principal` it stands for."""

    def __init__(self, accounts: Accounts, cache_seconds: float) -> None:
        self._accounts = accounts
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, dt.datetime | None, float]] = {}

    async def authenticate(self, request: Request, require_channel: bool = True) -> Principal:
        """The request's user; 401 without a valid token, 403 for a user without a channel (if required)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != KEYWORD:
            raise _unauthenticated("Authentication credentials were not provided.")
        value = value.strip()
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
        if require_channel and not principal.channel:
            raise HttpError(403, "Your account is not attached to any channel")
        return principal

    def forget(self, token_id: str) -> None:
        """Evict a revoked token from the cache."""
        for key in [k for k, (p, _, _) in self._cache.items() if p.token_id == token_id]:
            del self._cache[key]


def _unauthenticated(detail: str) -> HttpError:
    return HttpError(401, detail, headers={"WWW-Authenticate": "Token"})


class LoginThrottle:
    """At most ``rate`` attempts per client address in any sliding minute."""

    def __init__(self, rate: int, period: float = 60.0) -> None:
        self._rate = rate
        self._period = period
        self._hits: dict[str, collections.deque[float]] = {}

    def check(self, client: str) -> None:
        """Count one attempt; 429 when over the rate."""
        moment = time.monotonic()
        hits = self._hits.setdefault(client, collections.deque())
        while hits and hits[0] <= moment - self._period:
            hits.popleft()
        if len(hits) >= self._rate:
            wait = int(hits[0] + self._period - moment) + 1
            raise HttpError(429, f"Request was throttled. Expected available in {wait} seconds.")
        hits.append(moment)
        if len(self._hits) > _CACHE_LIMIT:
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > moment - self._period}


def describe(token: Token) -> dict:
    """A token as ``/active-api-tokens/`` lists it (never its value)."""
    data = {"id": token.id, "expires_at": _iso(token.expires_at), "created_at": _iso(token.created_at)}
    if token.kind == API:
        data["note"] = token.note
    return data


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


async def _credentials(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        data = await json_object(request)
        return {k: v for k, v in data.items() if isinstance(v, str)}
    form = await request.form(max_files=0, max_fields=10)
    return {k: v for k, v in form.items() if isinstance(v, str)}


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
        self._throttle.check(request.client.host if request.client else "unknown")
        data = await _credentials(request)
        username, password = data.get("username", ""), data.get("password", "")
        if not username or not password:
            raise HttpError(400, 'Must include "username" and "password".')
        issued = await self._accounts.login(username, password, self._lifetime)
        if issued is None:
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
