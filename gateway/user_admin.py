"""``/users/``: the administration pages' users (frontend contract §3), over :class:`gateway.users.Accounts`.

A user is shown as ``{"username", "role", "channel", "is_external_user"}`` (Substra's serializer;
no external users without OIDC). Every user of the caller's channel may read; only an ADMIN changes
anything, and the rules (no self-deletion, never zero ADMINs in a channel, the users file's users
changed in the file) are in :mod:`gateway.users`. Password resets follow Substra: an ADMIN gets a
reset token (``POST …/reset_password/``), the user checks it (``GET …/verify_token/?token=``) and
sets a new password with it (``POST …/set_password/``); those two take no credentials, the token is
the credential, and are throttled like logins.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.auth import Authenticator, LoginThrottle, client_address
from gateway.errors import HttpError
from gateway.inputs import json_object
from gateway.store import User
from gateway.transcoder import page_links
from gateway.upstreams import Principal
from gateway.users import Accounts, BadToken, Conflict, Forbidden, Invalid, Missing, Refused

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000
STATUS = {Invalid: 400, BadToken: 401, Forbidden: 403, Missing: 404, Conflict: 409}
ORDERINGS = {"username": False, "-username": True, "role": False, "-role": True}


def describe(user: User) -> dict[str, Any]:
    """A user as the frontend reads it."""
    return {"username": user.username, "role": user.role, "channel": user.channel, "is_external_user": False}


def _refused(exc: Refused) -> HttpError:
    return HttpError(STATUS.get(type(exc), 400), exc.detail)


def _positive(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name) or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise HttpError(400, f"{name}: {raw!r} is not a positive number")
    return int(raw)


class UserEndpoints:
    """The ``/users/`` routes and ``/users-awaiting-approval/``."""

    def __init__(self, accounts: Accounts, authenticator: Authenticator, throttle: LoginThrottle) -> None:
        self._accounts = accounts
        self._authenticator = authenticator
        self._throttle = throttle

    async def list(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /users/``: the users of the caller's channel, paginated (``match``, ``role``, ``ordering``)."""
        users = await self._accounts.list_users(principal)
        match = request.query_params.get("match", "").casefold()
        if match:
            users = [u for u in users if match in u.username.casefold()]
        roles = {r.strip().upper() for r in request.query_params.get("role", "").split(",") if r.strip()}
        if roles:
            users = [u for u in users if u.role in roles]
        ordering = request.query_params.get("ordering", "username")
        if ordering not in ORDERINGS:
            raise HttpError(400, f"ordering: one of {', '.join(ORDERINGS)}")
        users.sort(key=lambda u: (getattr(u, ordering.lstrip("-")), u.username), reverse=ORDERINGS[ordering])
        page = _positive(request, "page", 1)
        size = min(_positive(request, "page_size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
        start = (page - 1) * size
        if page > 1 and start >= len(users):
            raise HttpError(404, "Invalid page.")
        following, previous = page_links(request, page, start + size < len(users))
        results = [describe(u) for u in users[start : start + size]]
        return JSONResponse({"count": len(users), "next": following, "previous": previous, "results": results})

    async def create(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``POST /users/`` ``{"username", "password", "role"}``: a user of the ADMIN's channel (201)."""
        data = await json_object(request)
        try:
            user = await asyncio.to_thread(
                self._accounts.create_user_sync, principal, data.get("username"), data.get("password"), data.get("role")
            )
        except Refused as exc:
            raise _refused(exc) from None
        return JSONResponse(describe(user), status_code=201)

    async def retrieve(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /users/{username}/``."""
        try:
            return JSONResponse(describe(await self._accounts.get_user(principal, params["username"])))
        except Refused as exc:
            raise _refused(exc) from None

    async def update(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``PUT /users/{username}/`` ``{"role"}``: change the role (the last ADMIN stays one)."""
        data = await json_object(request)
        try:
            user = await self._accounts.set_role(principal, params["username"], data.get("role"))
        except Refused as exc:
            raise _refused(exc) from None
        self._authenticator.forget_user(user.id)
        return JSONResponse(describe(user))

    async def delete(self, request: Request, principal: Principal, params: dict) -> Response:
        """``DELETE /users/{username}/``: 204; the user's tokens and sessions go with it."""
        try:
            user = await self._accounts.delete_user(principal, params["username"])
        except Refused as exc:
            raise _refused(exc) from None
        self._authenticator.forget_user(user.id)
        return Response(status_code=204)

    async def reset_password(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``POST /users/{username}/reset_password/``: ``{"reset_password_token"}``, valid 7 days, once."""
        try:
            token = await self._accounts.reset_token(principal, params["username"])
        except Refused as exc:
            raise _refused(exc) from None
        return JSONResponse({"reset_password_token": token})

    async def verify_token(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``GET /users/{username}/verify_token/?token=``: 200 ``{}`` for a valid reset token, 401 otherwise."""
        self._throttle.check(client_address(request))
        try:
            await self._accounts.check_reset_token(params["username"], request.query_params.get("token", ""))
        except Refused as exc:
            raise _refused(exc) from None
        return JSONResponse({})

    async def set_password(self, request: Request, principal: Principal | None, params: dict) -> JSONResponse:
        """``POST /users/{username}/set_password/`` ``{"token", "password"}``: the new password; every token
        and session of the user is revoked."""
        self._throttle.check(client_address(request))
        data = await json_object(request)
        try:
            user = await asyncio.to_thread(
                self._accounts.set_password_sync, params["username"], data.get("token"), data.get("password")
            )
        except Refused as exc:
            raise _refused(exc) from None
        self._authenticator.forget_user(user.id)
        return JSONResponse(describe(user))

    async def awaiting_approval(self, request: Request, principal: Principal, params: dict) -> JSONResponse:
        """``GET /users-awaiting-approval/``: users waiting for an OIDC approval; none without OIDC."""
        return JSONResponse({"count": 0, "next": None, "previous": None, "results": []})
