"""PostgreSQL access: one schema per service, a unit of work, Alembic migrations per service.

Every service owns one schema (``asset``, ``storage``, ...) in its organization's database; its
engine sets ``search_path`` to it, and its Alembic history (``services/<name>/migrations``)
keeps its version table there too. SQLAlchemy 2.0 on psycopg2 is synchronous: async servicers
call :meth:`UnitOfWork.run`, which runs the work in a worker thread, in one transaction,
retrying serialization failures. The work receives the service's *repositories* (its store, built
on the transaction's session by the factory the composition root passes), never a raw session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.engine import Engine, make_url

from services.kit.errors import Aborted, Unavailable

log = logging.getLogger("tessera.db")
T = TypeVar("T")
R = TypeVar("R")

# psycopg2 SQLSTATEs that mean "run the transaction again".
RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
# The server went away or refuses connections for now: admin_shutdown, crash_shutdown, cannot_connect_now.
SERVER_DOWN_SQLSTATES = {"57P01", "57P02", "57P03"}
# How many dead pooled connections one unit of work replaces before it reports the database unavailable (a
# disconnect invalidates the whole pool, so a second dead one means the server is going away again).
STALE_RECONNECTS = 2
SERIALIZABLE_OPTION = "tessera_serializable"


def server_down(exc: sa.exc.DBAPIError) -> bool:
    """True when ``exc`` says the database cannot be reached (refused, lost or shutting down connection),
    not that the statement was wrong: the same call may succeed once the server is back."""
    sqlstate = getattr(exc.orig, "pgcode", None)
    if isinstance(exc, sa.exc.InterfaceError) or exc.connection_invalidated:
        return True
    if sqlstate is None:
        return isinstance(exc, sa.exc.OperationalError)
    return sqlstate.startswith("08") or sqlstate in SERVER_DOWN_SQLSTATES


def create_engine(
    url: str, schema: str, *, pool_size: int = 5, serializable: bool = False, autocommit: bool = False
) -> Engine:
    """An engine whose connections see ``schema`` first on their search path (and run every transaction
    SERIALIZABLE with ``serializable``; with ``autocommit``, every statement on its own, for reads only).

    Autocommit suits a unit of work that only reads: under READ COMMITTED every statement already sees its
    own snapshot, so a transaction around reads adds nothing but its ``BEGIN`` and ``COMMIT``, two round trips
    of three for the common single-query read.

    The isolation level belongs to the engine, set once per connection: a level chosen per transaction costs a
    ``SET`` when the connection is checked out and another when it is given back. Connections are not pinged
    before use either (one more round trip per transaction): :class:`UnitOfWork` runs its work again on a fresh
    connection when a pooled one turns out dead before anything was committed.
    """
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        isolation_level="AUTOCOMMIT" if autocommit else "SERIALIZABLE" if serializable else "READ COMMITTED",
        execution_options={SERIALIZABLE_OPTION: serializable},  # a mark for UnitOfWork, which SQLAlchemy ignores
        connect_args={"options": f"-c search_path={schema},public"},
    )


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist (dev network and tests)."""
    target = make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database})
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


def migrate(engine: Engine, schema: str, script_location: Path, revision: str = "head") -> None:
    """Bring ``schema`` to the head (or ``revision``) of the Alembic history in ``script_location``.

    An advisory lock keyed on the schema name serializes replicas that start together.
    """
    from alembic import command  # imported on use: only needed while migrating, at start

    lock_key = zlib.crc32(schema.encode())
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": lock_key})
        try:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            conn.commit()
            command.upgrade(alembic_config(conn, schema, script_location), revision)
            conn.commit()
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})
            conn.commit()


def check_schema(engine: Engine, schema: str, script_location: Path) -> None:
    """Raise ``alembic.util.AutogenerateDiffsDetected`` when ``schema`` (migrated to head) differs from the
    tables the service's code declares (the metadata its ``migrations/env.py`` names): Alembic's
    autogenerate comparison, so a table changed in code without a migration, or the reverse, is caught."""
    from alembic import command

    with engine.connect() as conn:
        command.check(alembic_config(conn, schema, script_location))


def alembic_config(conn, schema: str, script_location: Path):
    """The Alembic configuration of the history in ``script_location``, run on ``conn`` in ``schema``
    (what each service's ``migrations/env.py`` reads)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = conn
    config.attributes["schema"] = schema
    return config


def migrate_in_child(url: str, schema: str, script_location: Path) -> None:
    """:func:`migrate`, run by a short-lived child interpreter (``python -m services.kit.db``).

    Alembic and its dependencies stay resident once imported (about 9 MB that unloading the modules does
    not give back); a service that must stay small (storage) migrates this way and never imports them.
    The URL travels in the child's environment, not on its command line (``ps`` shows command lines).
    """
    env = {**os.environ, _CHILD_URL: url}
    result = subprocess.run(
        [sys.executable, "-m", "services.kit.db", schema, str(script_location)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"migrating schema {schema} failed:\n{result.stderr[-4000:]}")


_CHILD_URL = "TESSERA_MIGRATE_DATABASE_URL"


def run_alembic_env(target_metadata: sa.MetaData | None = None) -> None:
    """Body of every service's ``migrations/env.py``: online migrations on the given connection."""
    from alembic import context

    config = context.config
    connection = config.attributes["connection"]
    schema = config.attributes["schema"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=False,
        # Autogenerate must not offer to drop Alembic's own bookkeeping table.
        include_object=lambda obj, name, type_, reflected, compare_to: (
            not (type_ == "table" and name == "alembic_version")
        ),
    )
    with context.begin_transaction():
        context.run_migrations()


def _session_itself(session: orm.Session):
    return session


class UnitOfWork(Generic[R]):
    """Opens one transaction per unit of work; commits on success, rolls back on any error.

    ``repositories(session)`` builds what the work is given (a service's store over the transaction);
    without it the work gets the session itself, which only tests and tools should want. ``serializable``
    work needs an engine made with ``create_engine(..., serializable=True)``; its serialization failures are
    retried with backoff. Work that failed because its pooled connection was dead (the server restarted
    since it was last used) runs again at once on a new one, unless the failure came while committing:
    then the outcome is unknown, and the caller gets ``Unavailable``.
    """

    def __init__(
        self,
        engine: Engine,
        repositories: Callable[[orm.Session], R] = _session_itself,
        *,
        serializable: bool = False,
        retries: int = 8,
    ) -> None:
        if serializable and not engine.get_execution_options().get(SERIALIZABLE_OPTION):
            raise ValueError("serializable work needs an engine made with create_engine(..., serializable=True)")
        self._engine = engine
        self._sessions = orm.sessionmaker(engine, expire_on_commit=False)
        self._repositories = repositories
        self._retries = retries

    def run_sync(self, work: Callable[[R], T]) -> T:
        """Run ``work(repositories)`` in a transaction, retrying serialization failures with backoff."""
        attempt = reconnects = 0
        while True:
            attempt += 1
            session = self._sessions()
            committing = False
            try:
                result = work(self._repositories(session))
                committing = True
                session.commit()
                return result
            except sa.exc.DBAPIError as exc:
                session.rollback()
                if exc.connection_invalidated and not committing and reconnects < STALE_RECONNECTS:
                    reconnects += 1  # a pooled connection the server dropped: nothing was written
                    attempt -= 1
                    log.info("database connection lost; running the transaction again on a new one")
                    continue
                sqlstate = getattr(exc.orig, "pgcode", None)
                if sqlstate in RETRYABLE_SQLSTATES and attempt <= self._retries:
                    # The first retry is immediate: the conflict is reported once the other transaction has
                    # committed, so running again now usually succeeds; later ones back off, with jitter.
                    delay = 0.0 if attempt == 1 else min(0.2, 0.001 * 2**attempt) * (0.5 + random.random())
                    log.debug("retrying transaction after %s", sqlstate, extra={"fields": {"attempt": attempt}})
                    if delay:
                        time.sleep(delay)
                    continue
                if sqlstate in RETRYABLE_SQLSTATES:  # nothing was written: the caller may try again
                    raise Aborted(
                        f"the transaction conflicted with concurrent ones {attempt} times; try again",
                        reason="CONTENTION",
                    ) from exc
                if server_down(exc):
                    raise Unavailable(
                        "the database cannot be reached; try again", reason="DATABASE_UNAVAILABLE"
                    ) from exc
                raise
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    async def run(self, work: Callable[[R], T]) -> T:
        """:meth:`run_sync` in a worker thread, for async servicers."""
        return await asyncio.to_thread(self.run_sync, work)


if __name__ == "__main__":  # the child of migrate_in_child
    _schema, _location = sys.argv[1:3]
    _engine = create_engine(os.environ[_CHILD_URL], _schema, pool_size=1)
    try:
        migrate(_engine, _schema, Path(_location))
    finally:
        _engine.dispose()
