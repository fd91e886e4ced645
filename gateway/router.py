"""The route table: transcoded RPCs and hand-written adapters, matched by compiled template.

Endpoints are indexed by the first literal segment of their template, then tried from the most
specific (most literal segments) to the least; a path that matches only other verbs is a 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import HttpError
from gateway.httprule import Template, compile_template
from gateway.transcoder import RpcRoute
from gateway.upstreams import Principal

Handler = Callable[[Request, Principal | None, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One verb on one template, and what serves it."""

    verb: str
    template: Template
    handler: Handler
    name: str
    public: bool = False
    # Whether the user must belong to a channel (everything but the token endpoints).
    channel: bool = True
    rpc: RpcRoute | None = None
    # OpenAPI operation fields of an adapter (summary, requestBody, responses...).
    openapi: dict[str, Any] = field(default_factory=dict)


def adapter(
    verb: str, path: str, handler: Handler, name: str, public: bool = False, channel: bool = True, **openapi: Any
) -> Endpoint:
    """An endpoint served by a hand-written handler."""
    return Endpoint(verb, compile_template(path), handler, name, public=public, channel=channel, openapi=openapi)


def _first_literal(template: Template) -> str:
    first = template.source.lstrip("/").split("/")[0]
    return "" if first.startswith(("{", "*")) else first.split(":")[0]


class Router:
    """Finds the endpoint of a request."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        seen: set[tuple[str, str]] = set()
        for endpoint in endpoints:
            identity = (endpoint.verb, endpoint.template.openapi_path())
            if identity in seen:
                raise ValueError(f"two endpoints for {identity[0]} {identity[1]}")
            seen.add(identity)
        ordered = sorted(endpoints, key=lambda e: e.template.specificity, reverse=True)
        self.endpoints = ordered
        self._by_segment: dict[str, list[Endpoint]] = {}
        self._wild: list[Endpoint] = []
        for endpoint in ordered:
            literal = _first_literal(endpoint.template)
            (self._by_segment.setdefault(literal, []) if literal else self._wild).append(endpoint)

    def verbs(self, path: str) -> list[str]:
        """The verbs some endpoint serves on ``path``, sorted."""
        first = path.lstrip("/").split("/", 1)[0]
        candidates = (*self._by_segment.get(first, ()), *self._wild)
        return sorted({e.verb for e in candidates if e.template.match(path) is not None})

    def match(self, verb: str, path: str) -> tuple[Endpoint, dict[str, str]]:
        """The endpoint and its path variables; 404 or 405 otherwise."""
        first = path.lstrip("/").split("/", 1)[0]
        allowed: list[str] = []
        for endpoint in (*self._by_segment.get(first, ()), *self._wild):
            params = endpoint.template.match(path)
            if params is None:
                continue
            if endpoint.verb == verb or (verb == "HEAD" and endpoint.verb == "GET"):
                return endpoint, params
            allowed.append(endpoint.verb)
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            raise HttpError(405, f'Method "{verb}" not allowed.', headers={"Allow": methods})
        raise HttpError(404, "Not found.")
