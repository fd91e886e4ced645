"""A two-organization network, every service a real process, on the session's PostgreSQL and NATS."""

from __future__ import annotations

import uuid

import pytest

from tools.devnet.network import Network


@pytest.fixture(scope="session")
def network(postgres, nats_server, tmp_path_factory):
    """The dev network of ``make run``, started once for the end-to-end tests."""
    net = Network(
        tmp_path_factory.mktemp("network"),
        orgs=2,
        postgres=postgres,
        nats=nats_server,
        database_prefix=f"n{uuid.uuid4().hex[:6]}_",
        log=lambda message: None,
    )
    net.plan()
    try:
        net.start(timeout=120)
        yield net
    finally:
        net.stop()
