"""The benchmarks' statement count (tools/bench/statements.py) on a real PostgreSQL: what each database received
inside the window, nothing outside it, and the server's settings restored."""

from __future__ import annotations

import sqlalchemy as sa

from services.kit.db import ensure_database
from tools.bench.statements import StatementLog


def test_statements_are_counted_per_database_inside_the_window_only(postgres):
    engines = {}
    for name in ("count_a", "count_b"):
        ensure_database(postgres.url(name))
        engines[name] = sa.create_engine(postgres.url(name), isolation_level="AUTOCOMMIT")

    def run(name: str, n: int) -> None:
        with engines[name].connect() as conn:
            for i in range(n):
                conn.execute(sa.text("SELECT :i"), {"i": i})

    run("count_a", 5)  # before: not counted (the first connections' own queries neither)
    run("count_b", 1)
    log = StatementLog(postgres)
    log.start()
    run("count_a", 3)
    run("count_b", 7)
    counts = log.stop()
    run("count_b", 4)  # after: not counted (and the server logs statements no more)
    assert (counts["count_a"], counts["count_b"]) == (3, 7)
    assert StatementLog(postgres).stop() == {}  # never started: nothing
    with engines["count_a"].connect() as conn:
        assert conn.scalar(sa.text("SHOW log_statement")) == "none"
    for engine in engines.values():
        engine.dispose()
