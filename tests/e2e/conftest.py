"""A two-organization network, every service a real process, on the session's PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import running_network


@pytest.fixture(scope="session")
def network(postgres, tmp_path_factory):
    """The dev network of ``make run``, started once for the end-to-end tests."""
    yield from running_network(postgres, tmp_path_factory)
