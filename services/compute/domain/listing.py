"""Paging the tasks running on this worker (``ListRunningTasks``).

The list lives in memory and changes while a client pages through it, so a page token names the
last run it returned, not an offset: runs are ordered oldest first (start time, then key), a page
starts after the run its token names, and a run that ends between two calls shifts nothing (one
that starts meanwhile comes last). The token also carries the plan filter it was issued for.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from services.compute.domain.runs import Run
from services.kit.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page:
    """One page of running tasks."""

    runs: list[Run]
    next_page_token: str  # "" on the last page
    total_size: int  # runs matching the filter, on every page


def _order(run: Run) -> tuple[dt.datetime, str]:
    return (run.started, run.key)


def _token(run: Run, plan_key: str) -> str:
    data = {"t": run.started.isoformat(), "k": run.key, "p": plan_key}
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _after(token: str, plan_key: str) -> tuple[dt.datetime, str]:
    """The position a token names; InvalidArgument when it is not one of ours, or was issued for another filter."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        position = (dt.datetime.fromisoformat(data["t"]), str(data["k"]))
        issued_for = str(data["p"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.on("page_token", "is not a token this server issued") from None
    if position[0].tzinfo is None:
        raise InvalidArgument.on("page_token", "is not a token this server issued")
    if issued_for != plan_key:
        raise InvalidArgument.on("page_token", "was issued for a different query")
    return position


def running_page(runs: Iterable[Run], *, plan_key: str = "", page_size: int = 0, page_token: str = "") -> Page:
    """The page of ``runs`` (of plan ``plan_key`` when given) that ``page_size`` and ``page_token`` ask for."""
    if page_size < 0:
        raise InvalidArgument.on("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    matching = sorted((run for run in runs if not plan_key or run.plan_key == plan_key), key=_order)
    remaining = matching
    if page_token:
        after = _after(page_token, plan_key)
        remaining = [run for run in matching if _order(run) > after]
    items = remaining[:size]
    following = _token(items[-1], plan_key) if len(remaining) > size else ""
    return Page(items, following, len(matching))
