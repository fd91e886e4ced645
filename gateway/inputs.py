"""What every request is checked for before any of it reaches a service or a database.

* NUL characters: PostgreSQL's text cannot hold them, so a NUL in a path, a query parameter, a JSON
  string (key or value), a form field or a file name is a 400 here, naming the field.
* Nesting: Python's JSON parser recurses once per level; a body or a ``metadata`` filter nested
  deeper than :data:`MAX_DEPTH` is a 400 (no message of the API nests half as deep).
* Content types: a JSON endpoint takes ``application/json`` (or a ``+json`` type, or no type at
  all); a form endpoint its form types; anything else with a body is a 415.
* Forms: a bounded number of fields, and a multipart type needs its boundary.
* The ``metadata`` query filter must be the SDK's JSON list of ``{"key", "type", "value"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from gateway.errors import HttpError
from services.kit import filters
from services.kit.errors import InvalidArgument
from services.kit.filters import METADATA_SHAPE

MAX_DEPTH = 32
DEFAULT_MAX_JSON_BYTES = 16 << 20
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def no_nul(value: str, what: str) -> str:
    """``value``, unless it holds a NUL character (400)."""
    if "\x00" in value:
        raise HttpError(400, f"{what or 'the request'}: NUL characters are not allowed")
    return value


def check_path_and_query(path: str, query: Iterable[tuple[str, str]]) -> None:
    """The path and the query parameters: no NUL, and a well-formed ``metadata`` filter."""
    no_nul(path, "path")
    for name, value in query:
        no_nul(name, "query parameter name")
        no_nul(value, name)
        if name == "metadata" and value:
            metadata_filter(value)


def metadata_filter(raw: str) -> list[dict[str, Any]]:
    """The SDK's metadata filter (:mod:`services.kit.filters`); 400 otherwise."""
    try:
        conditions = loads(raw, "metadata")
    except HttpError as exc:
        raise HttpError(400, f"metadata: {METADATA_SHAPE} ({exc.detail})") from None
    try:
        return filters.metadata_filter(conditions)
    except InvalidArgument:
        raise HttpError(400, f"metadata: {METADATA_SHAPE}") from None


def loads(raw: bytes | str, what: str) -> Any:
    """Parsed JSON, at most :data:`MAX_DEPTH` levels deep and without NUL characters; 400 otherwise."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise HttpError(400, f"{what}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"{what}: JSON parse error - {exc}") from None
    _walk(value, what)
    return value


def _walk(value: Any, what: str) -> None:
    """Check depth and strings iteratively (a recursive walk would fail where the parser did not)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            no_nul(item, where or what)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise HttpError(400, f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    field = f"{where}.{key}" if where else key
                    no_nul(key, f"{where or what}: a key")
                    stack.append((child, field, depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters ("" when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    """Whether a media type is JSON's."""
    return kind == JSON or (kind.startswith("application/") and kind.endswith("+json"))


async def body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (413)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int = DEFAULT_MAX_JSON_BYTES) -> Any:
    """The JSON body (``{}`` when empty), at most ``limit`` bytes; 415 for a body of another type."""
    raw = await body(request, limit)
    if not raw.strip():
        return {}
    kind = media_type(request)
    if kind and not is_json(kind):
        raise HttpError(415, f'Unsupported media type "{kind}" in request: send {JSON}')
    return loads(raw, "request body")


async def json_object(request: Request, limit: int = DEFAULT_MAX_JSON_BYTES) -> dict:
    """The JSON body, which must be an object; 400 with a detail otherwise."""
    data = await read_json(request, limit)
    if not isinstance(data, dict):
        raise HttpError(400, "expected a JSON object")
    return data


async def form(request: Request, max_fields: int) -> FormData:
    """A url-encoded or multipart form without files (empty without a type), at most ``max_fields``
    fields, checked; 415 for a body of another type."""
    kind = media_type(request)
    if kind not in (FORM, MULTIPART, ""):
        raise HttpError(415, f'Unsupported media type "{kind}" in request: send {FORM}, {MULTIPART} or {JSON}')
    if kind == MULTIPART and not parse_options_header(request.headers["content-type"])[1].get(b"boundary"):
        raise HttpError(400, "a multipart/form-data body needs a boundary parameter")
    try:
        data = await request.form(max_files=0, max_fields=max_fields)
    except HTTPException as exc:  # starlette's refusals of a malformed form: too many fields or files
        raise HttpError(400, f"malformed form body: {exc.detail}") from None
    for name, value in data.multi_items():
        no_nul(name, "form field name")
        if isinstance(value, str):
            no_nul(value, name)
    return data


async def json_or_form(request: Request, max_fields: int) -> dict[str, Any] | FormData:
    """A JSON object for a JSON body, the form otherwise (:func:`form`'s checks and 415)."""
    if is_json(media_type(request)):
        return await json_object(request)
    return await form(request, max_fields)
