"""Cross-origin requests from the web frontend (frontend contract §1).

The page and the API are on different origins, so the browser only lets the page read an answer
that names the page's origin. Only an **exact** list of origins is allowed (``TESSERA_CORS_ORIGINS``;
a wildcard is refused at start, as it cannot go with credentials). For an allowed origin every
answer, errors included, carries ``Access-Control-Allow-Origin: <origin>`` and
``Access-Control-Allow-Credentials: true``; a refused origin gets no CORS header at all, so its
browser shows the page nothing. Preflights (``OPTIONS`` with ``Access-Control-Request-Method``)
are answered on every path, before routing and authentication, as browsers send them without
credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ALLOWED_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
ALLOWED_HEADERS = "authorization, content-type, accept"
# Headers a page may read beyond the safelisted ones (a download's file name).
EXPOSED_HEADERS = "Content-Disposition"
PREFLIGHT_MAX_AGE = "600"


def parse_origins(values: Iterable[str]) -> frozenset[str]:
    """The configured origins, each ``scheme://host[:port]``; ValueError for a wildcard or a URL with a path."""
    origins = set()
    for value in values:
        origin = value.strip().rstrip("/")
        if not origin:
            continue
        parts = urlsplit(origin)
        if origin == "*" or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an origin (scheme://host[:port]; no wildcard)")
        if parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{value!r} is not an origin: no path, query or credentials")
        origins.add(origin.lower())
    return frozenset(origins)


def own_origin(request: Request) -> str:
    """The origin the request was addressed to (its scheme and Host)."""
    return f"{request.url.scheme}://{request.url.netloc}".lower()


class Cors:
    """The CORS policy of one gateway."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = parse_origins(origins)

    def allowed(self, origin: str | None) -> bool:
        """Whether ``origin`` is one of the configured origins."""
        return origin is not None and origin.lower() in self.origins

    def trusted(self, request: Request) -> bool:
        """Whether a request may use the session cookies: no ``Origin`` (not a cross-origin browser
        request), the gateway's own origin, or an allowed one."""
        origin = request.headers.get("origin")
        return origin is None or origin.lower() == own_origin(request) or self.allowed(origin)

    @staticmethod
    def is_preflight(request: Request) -> bool:
        """An ``OPTIONS`` request a browser sends before a cross-origin call."""
        return (
            request.method == "OPTIONS"
            and "origin" in request.headers
            and "access-control-request-method" in request.headers
        )

    def preflight(self, request: Request) -> Response:
        """The answer to a preflight: 200 with the allowed methods and headers, 403 without CORS headers
        for an origin not in the list."""
        origin = request.headers["origin"]
        if not self.allowed(origin):
            return JSONResponse({"detail": f"Origin {origin} is not allowed"}, status_code=403)
        return Response(
            status_code=200,
            headers={
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            },
        )

    def decorate(self, request: Request, response: Response) -> None:
        """Add the CORS headers an allowed origin needs to ``response`` (none for other origins)."""
        origin = request.headers.get("origin")
        if not self.origins:
            return
        response.headers.append("Vary", "Origin")
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            if not self.is_preflight(request):
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
