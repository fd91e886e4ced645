"""Event feed benchmark: the event service's hottest write, a batch of events kept in the feed.

On an embedded PostgreSQL (durable, as the dev network runs it), writes batches of ``--events`` task
events (the size of one federated round's burst at one organization) through the event store's
``add_to_feed`` (psycopg2's ``execute_values``: one multi-row INSERT, values adapted in C), alternated
with the same rows through SQLAlchemy's multi-row INSERT (``insert().on_conflict_do_nothing().returning()``,
the store's statement before it), each batch in its own transaction. Prints the client's CPU and the
wall time per batch, and their ratio.

Usage: ``python -m tools.bench feed [--events N] [--batches N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy.dialects.postgresql import insert
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

import services.event
from services.event.store import sql as feed_sql
from services.kit import db
from tools.devnet.embedded import EmbeddedPostgres, free_port

REFERENCE = insert(feed_sql.FEED).on_conflict_do_nothing().returning(feed_sql.FEED.c.position)


def _events(start: int, count: int) -> list[ev.Event]:
    """``count`` task events, as a round's completions emit them."""
    events = []
    for position in range(start, start + count):
        event = ev.Event(
            id=str(uuid.uuid4()),
            channel="mychannel",
            position=position,
            asset_kind=res.ASSET_COMPUTE_TASK,
            asset_key=str(uuid.uuid4()),
            event_kind=ev.EVENT_ASSET_UPDATED,
        )
        event.timestamp.GetCurrentTime()
        task = event.compute_task
        task.key, task.function_key, task.compute_plan_key = event.asset_key, str(uuid.uuid4()), str(uuid.uuid4())
        task.owner, task.worker, task.status = "MyOrg1MSP", "MyOrg2MSP", res.STATUS_DONE
        for i in range(3):
            task.metadata[f"key{i}"] = "value" * 4
        event.status_change.previous, event.status_change.current = res.STATUS_EXECUTING, res.STATUS_DONE
        events.append(event)
    return events


def _reference(store: feed_sql.SqlStore, events: list[ev.Event]) -> None:
    """The same rows through SQLAlchemy's multi-row INSERT."""
    rows = [dict(zip(feed_sql.FEED_COLUMNS, feed_sql.feed_row(e), strict=True)) for e in events]
    store._session.execute(REFERENCE, rows)


def run(events: int, batches: int) -> str:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-feed-") as folder:
        postgres = EmbeddedPostgres(Path(folder), free_port(), durable=True)
        postgres.start()
        try:
            url = postgres.url("feed")
            db.ensure_database(url)
            engine = db.create_engine(url, "event")
            db.migrate(engine, "event", Path(services.event.__file__).parent / "migrations")
            uow = db.UnitOfWork(engine, repositories=feed_sql.SqlStore)
            ways = {"execute_values (the store)": lambda s, e: s.add_to_feed(e), "SQLAlchemy multi-row": _reference}
            cpu: dict[str, list[float]] = {name: [] for name in ways}
            wall: dict[str, list[float]] = {name: [] for name in ways}
            position = 1
            for _ in range(batches):  # alternated, so that both see the same machine
                for name, write in ways.items():
                    batch = _events(position, events)
                    position += events
                    c0, w0 = time.process_time(), time.perf_counter()
                    uow.run_sync(lambda store, batch=batch, write=write: write(store, batch))
                    cpu[name].append(time.process_time() - c0)
                    wall[name].append(time.perf_counter() - w0)
            engine.dispose()
        finally:
            postgres.stop()
    ours, reference = ways
    lines = [
        f"Event feed, {batches} alternated batches of {events} task events each way (medians per batch):",
        "",
        "| write | client CPU (ms) | wall (ms) |",
        "|---|---|---|",
    ]
    for name in ways:
        cpu_ms, wall_ms = 1e3 * statistics.median(cpu[name]), 1e3 * statistics.median(wall[name])
        lines.append(f"| {name} | {cpu_ms:.2f} | {wall_ms:.2f} |")
    ratio = statistics.median(cpu[ours]) / statistics.median(cpu[reference])
    lines += ["", f"client CPU ratio (store / SQLAlchemy multi-row): **{ratio:.2f}**"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench feed")
    parser.add_argument("--events", type=int, default=75, help="events per batch (default 75: one FedAvg round)")
    parser.add_argument("--batches", type=int, default=60, help="batches written each way (default 60)")
    args = parser.parse_args(argv)
    print(run(args.events, args.batches), flush=True)
    return 0
