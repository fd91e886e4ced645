"""The event service's rules stay free of I/O: its domain imports no gRPC, NATS or database library."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_boundaries import imported_modules

DOMAIN = Path(__file__).resolve().parents[3] / "services" / "event" / "domain"
FORBIDDEN = ("grpc", "nats", "sqlalchemy", "psycopg2", "asyncio")


def test_the_domain_imports_no_io_library():
    found = [
        f"{path.name} imports {module}"
        for path in sorted(DOMAIN.glob("*.py"))
        for module in sorted(imported_modules(path))
        if module.split(".")[0] in FORBIDDEN
    ]
    assert found == []
    assert len(list(DOMAIN.glob("*.py"))) >= 3  # the rules are there to check
