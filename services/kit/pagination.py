"""Pagination shared by every list RPC: clamped page sizes, opaque page tokens, page numbers.

A page token encodes the offset of the next page and a fingerprint of the request's filters, so
a token cannot be replayed against another query. ``page`` (1-based) is the offset paging the
gateway needs for Substra's page numbers; a page past the end is NOT_FOUND, as DRF answers 404.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import Message

from services.kit.errors import InvalidArgument, NotFound

PAGE_FIELDS = ("page_size", "page_token", "page")
MAX_OFFSET = 1 << 40  # far past any real list, well inside PostgreSQL's bigint


@dataclass(frozen=True)
class PageRequest:
    """Where a page starts and how long it is."""

    offset: int
    size: int
    fingerprint: str


def _fingerprint(request: Message) -> str:
    filters = type(request)()
    filters.CopyFrom(request)
    for name in PAGE_FIELDS:
        if name in filters.DESCRIPTOR.fields_by_name:
            filters.ClearField(name)
    return hashlib.sha256(filters.SerializeToString(deterministic=True)).hexdigest()[:16]


def page_request(request: Message, default_size: int = 100, max_size: int = 1000) -> PageRequest:
    """Read ``page_size``, ``page_token`` and ``page`` from a list request."""
    size = request.page_size or default_size
    if size < 0:
        raise InvalidArgument.on("page_size", "must not be negative")
    size = min(size, max_size)
    fingerprint = _fingerprint(request)
    if request.page < 0 or request.page * size >= MAX_OFFSET:
        raise InvalidArgument.on("page", "must be 1 or more, and not absurdly large")
    if request.page:
        return PageRequest(offset=(request.page - 1) * size, size=size, fingerprint=fingerprint)
    if not request.page_token:
        return PageRequest(offset=0, size=size, fingerprint=fingerprint)
    try:
        data = json.loads(base64.urlsafe_b64decode(request.page_token.encode()))
        offset, token_fingerprint = int(data["o"]), str(data["f"])
    except (ValueError, KeyError, TypeError, OverflowError):
        raise InvalidArgument.on("page_token", "is not a token this server issued") from None
    if token_fingerprint != fingerprint or not 0 <= offset < MAX_OFFSET:
        raise InvalidArgument.on("page_token", "was issued for a different query")
    return PageRequest(offset=offset, size=size, fingerprint=fingerprint)


def next_token(page: PageRequest, total: int) -> str:
    """The token of the page after ``page``, or "" when it was the last."""
    following = page.offset + page.size
    if following >= total:
        return ""
    return base64.urlsafe_b64encode(json.dumps({"o": following, "f": page.fingerprint}).encode()).decode()


def check_in_range(page: PageRequest, total: int, numbered: bool) -> None:
    """A numbered page past the last one does not exist (the first page always does)."""
    if numbered and page.offset > 0 and page.offset >= total:
        raise NotFound("Invalid page.", reason="INVALID_PAGE")


@dataclass
class Page:
    """One page of results, with what a list response carries besides the items."""

    items: list[Any]
    next_page_token: str
    total_size: int


def paginate(
    session,
    request: Message,
    query: sa.Select,
    convert: Callable[[Any], Any],
    *,
    default_size: int = 100,
    max_size: int = 1000,
) -> Page:
    """Count, then fetch one page of ``query`` (already filtered and ordered) for a list request."""
    page = page_request(request, default_size, max_size)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    check_in_range(page, total, bool(request.page))
    rows = session.execute(query.offset(page.offset).limit(page.size)).scalars().all()
    return Page([convert(row) for row in rows], next_token(page, total), total)
