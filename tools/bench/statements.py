"""Count the SQL statements each database of a dev network receives over a window of a benchmark.

PostgreSQL logs every statement while the window is open (``log_statement = all``, each line prefixed with
its database), and the log's new lines are counted when it closes. The count depends far less on how busy
the machine is than CPU seconds on a shared host do; what still moves it is timing-dependent batching (the
ledger's groups of transitions, the event services' feed batches): a few per cent for the ledger's figure, up
to ~15 % for the organizations'. Logging every statement costs PostgreSQL time, so the round times of a
counting run are not comparable with others.
"""

from __future__ import annotations

import collections
import contextlib
import re
import time

from tools.devnet.embedded import EmbeddedPostgres

PREFIX = "@@"  # log_line_prefix is PREFIX + the database + "|"
STATEMENT = re.compile(rf"^{PREFIX}([^|]*)\|.*?\b(?:statement|execute [^:]*): ")


def _configure(postgres: EmbeddedPostgres, *statements: str, logging: str) -> None:
    """Run ``statements`` (``ALTER SYSTEM``), reload, and wait until a new session sees ``log_statement`` at
    ``logging`` (the reload is asynchronous: the server rereads its settings after the call returns)."""
    import psycopg2

    def session():
        conn = psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname="postgres")
        conn.autocommit = True  # ALTER SYSTEM refuses to run in a transaction
        return conn

    with contextlib.closing(session()) as conn, conn.cursor() as cursor:
        for statement in (*statements, "SELECT pg_reload_conf()"):
            cursor.execute(statement)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.closing(session()) as conn, conn.cursor() as cursor:
            cursor.execute("SHOW log_statement")
            if cursor.fetchone()[0] == logging:
                return
        time.sleep(0.05)
    raise TimeoutError(f"PostgreSQL did not take log_statement = {logging}")


class StatementLog:
    """:meth:`start`, then :meth:`stop` for the statements per database in between."""

    def __init__(self, postgres: EmbeddedPostgres) -> None:
        self._postgres = postgres
        self._offset: int | None = None

    def start(self) -> None:
        self._offset = self._postgres.log_path.stat().st_size
        _configure(
            self._postgres,
            f"ALTER SYSTEM SET log_line_prefix = '{PREFIX}%d|'",
            "ALTER SYSTEM SET log_statement = 'all'",
            logging="all",
        )

    def stop(self) -> collections.Counter[str]:
        """Switch the logging off (the server's settings as they were) and count what it wrote."""
        if self._offset is None:
            return collections.Counter()
        _configure(
            self._postgres, "ALTER SYSTEM RESET log_statement", "ALTER SYSTEM RESET log_line_prefix", logging="none"
        )
        counts: collections.Counter[str] = collections.Counter()
        with open(self._postgres.log_path, "rb") as log:
            log.seek(self._offset)
            for raw in log:
                found = STATEMENT.match(raw.decode(errors="replace"))
                if found:
                    counts[found.group(1)] += 1
        self._offset = None
        return counts
