"""Paging the running tasks (ListRunningTasks), in the domain and through the handler."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import pytest
from tessera.compute.v1 import compute_service_pb2 as api

from services.compute.domain.listing import MAX_PAGE_SIZE, running_page
from services.compute.domain.runs import Run
from services.compute.server import ComputeService
from services.kit.errors import InvalidArgument

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _run(key: str, second: int, plan: str = "p1") -> Run:
    return Run(key, "mychannel", started=BASE + dt.timedelta(seconds=second), claimed=0.0, plan_key=plan)


def _pages(runs, **kwargs) -> list[list[str]]:
    pages, token = [], ""
    while True:
        page = running_page(runs, page_token=token, **kwargs)
        pages.append([run.key for run in page.runs])
        token = page.next_page_token
        if not token:
            return pages


def test_pages_go_oldest_first_then_by_key_and_cover_every_run_once():
    runs = [_run("e", 3), _run("a", 1), _run("c", 2), _run("b", 2), _run("d", 0)]
    assert _pages(runs, page_size=2) == [["d", "a"], ["b", "c"], ["e"]]
    assert running_page(runs, page_size=2).total_size == 5


def test_the_plan_filter_applies_to_items_and_total():
    runs = [_run("a", 1, "p1"), _run("b", 2, "p2"), _run("c", 3, "p1")]
    page = running_page(runs, plan_key="p1")
    assert [run.key for run in page.runs] == ["a", "c"]
    assert (page.total_size, page.next_page_token) == (2, "")


def test_a_run_ending_between_two_pages_shifts_nothing_and_a_new_one_comes_last():
    runs = [_run("a", 1), _run("b", 2), _run("c", 3), _run("d", 4)]
    first = running_page(runs, page_size=2)
    assert [run.key for run in first.runs] == ["a", "b"]
    later = [run for run in runs if run.key != "a"] + [_run("z", 9)]  # a ended, z started
    second = running_page(later, page_size=2, page_token=first.next_page_token)
    assert [run.key for run in second.runs] == ["c", "d"]
    third = running_page(later, page_size=2, page_token=second.next_page_token)
    assert [run.key for run in third.runs] == ["z"] and third.next_page_token == ""


def test_page_sizes_default_and_clamp():
    runs = [_run(f"k{i:04d}", i) for i in range(MAX_PAGE_SIZE + 5)]
    assert len(running_page(runs).runs) == 100
    assert len(running_page(runs, page_size=MAX_PAGE_SIZE + 1000).runs) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument) as raised:
        running_page(runs, page_size=-1)
    assert raised.value.violations[0].field == "page_size"


def test_a_token_of_another_filter_or_not_ours_is_refused():
    runs = [_run("a", 1), _run("b", 2)]
    token = running_page(runs, page_size=1).next_page_token
    with pytest.raises(InvalidArgument, match="different query"):
        running_page(runs, page_size=1, page_token=token, plan_key="p2")
    for garbage in ("nonsense", "e30=", "W10=", "eyJ0IjogIjIwMjYtMDEtMDEiLCAiayI6ICJhIiwgInAiOiAiIn0="):
        with pytest.raises(InvalidArgument, match="not a token"):
            running_page(runs, page_token=garbage)


def test_the_handler_pages_what_runs_here():
    runs = SimpleNamespace(running={r.key: r for r in (_run("b", 2), _run("a", 1), _run("c", 3))})
    service = ComputeService("org1", 2, "local", runs)
    first = asyncio.run(service.ListRunningTasks(api.ListRunningTasksRequest(page_size=2), None))
    assert [t.compute_task_key for t in first.running_tasks] == ["a", "b"]
    assert first.total_size == 3 and first.next_page_token
    second = asyncio.run(
        service.ListRunningTasks(api.ListRunningTasksRequest(page_size=2, page_token=first.next_page_token), None)
    )
    assert [t.compute_task_key for t in second.running_tasks] == ["c"] and second.next_page_token == ""
    assert second.running_tasks[0].start_time.ToDatetime(tzinfo=dt.UTC) == BASE + dt.timedelta(seconds=3)
