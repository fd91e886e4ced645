"""A stand-in for the web frontend's HTTP layer (``src/api/request.ts``), on httpx's cookie jar.

Like the page: every request carries the page's ``Origin`` and the cookies of the gateway's host;
an authenticated request adds ``Authorization: JWT <header.payload cookie>`` when that cookie
exists; an authenticated GET answered 401 triggers one ``POST /me/refresh/`` and one retry.
Every exchange is recorded (method, path, status) so a test can assert the calls a page made.
"""

from __future__ import annotations

import httpx

from tests.gateway.conftest import FRONTEND_ORIGIN

ACCEPT = "application/json;version=0.0"


class Browser:
    """One browser tab of the frontend talking to one gateway."""

    def __init__(self, url: str, origin: str = FRONTEND_ORIGIN) -> None:
        self.http = httpx.Client(base_url=url, headers={"Origin": origin, "Accept": ACCEPT}, timeout=30)
        self.calls: list[tuple[str, str, int]] = []
        self.http.event_hooks["response"] = [self._record]

    def _record(self, response: httpx.Response) -> None:
        self.calls.append((response.request.method, response.request.url.path, response.status_code))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cookie(self, name: str) -> str | None:
        """A cookie of the jar (what ``universal-cookie`` reads, for ``header.payload``)."""
        return next((c.value for c in self.http.cookies.jar if c.name == name), None)

    def drop_cookie(self, name: str) -> None:
        """Lose one cookie (it expired, or the user cleared it)."""
        for cookie in list(self.http.cookies.jar):
            if cookie.name == name:
                self.http.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)

    def _auth(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        header_payload = self.cookie("header.payload")
        auth = {"Authorization": f"JWT {header_payload}"} if header_payload else {}
        return {**auth, **(extra or {})}

    # -------------------------------------------------------------------------------- the API object
    def anonymous_get(self, path: str, **kwargs) -> httpx.Response:
        """``API.anonymousGet``: no credentials at all."""
        with httpx.Client(base_url=self.http.base_url, timeout=30) as bare:
            response = bare.get(path, headers={"Origin": self.http.headers["Origin"], "Accept": ACCEPT}, **kwargs)
        self._record(response)
        return response

    def get(self, path: str, **kwargs) -> httpx.Response:
        """``API.authenticatedGet``: a 401 triggers one refresh and one retry."""
        extra = kwargs.pop("headers", None)
        response = self.http.get(path, headers=self._auth(extra), **kwargs)
        if response.status_code == 401 and self.refresh().status_code == 200:
            response = self.http.get(path, headers=self._auth(extra), **kwargs)
        return response

    def post(self, path: str, json=None, **kwargs) -> httpx.Response:
        return self.http.post(path, json=json, headers=self._auth(kwargs.pop("headers", None)), **kwargs)

    def put(self, path: str, json=None, **kwargs) -> httpx.Response:
        return self.http.put(path, json=json, headers=self._auth(kwargs.pop("headers", None)), **kwargs)

    def delete(self, path: str, **kwargs) -> httpx.Response:
        return self.http.delete(path, headers=self._auth(kwargs.pop("headers", None)), **kwargs)

    # -------------------------------------------------------------------------------- MeApi
    def login(self, username: str, password: str) -> httpx.Response:
        return self.post("/me/login/?format=json", json={"username": username, "password": password})

    def refresh(self) -> httpx.Response:
        return self.post("/me/refresh/")

    def logout(self) -> httpx.Response:
        return self.http.get("/me/logout/", headers=self._auth())
