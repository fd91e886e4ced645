"""Storage's domain is rules only: no transport, database, filesystem or network module, and nothing of
storage outside the domain (ADR 0008's reading of imports, applied one room deeper)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_boundaries import REPO, imported_modules

DOMAIN = REPO / "services" / "storage" / "domain"
FORBIDDEN = ("grpc", "sqlalchemy", "nats", "os", "io", "socket", "subprocess", "shutil", "pathlib", "asyncio")


def test_the_domain_imports_no_i_o_and_no_other_room_of_storage():
    found = []
    for path in sorted(DOMAIN.rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            outside = module.startswith("services.storage.") and not module.startswith("services.storage.domain")
            if top in FORBIDDEN or outside or module.startswith("tessera."):
                found.append(f"{Path(path).name} imports {module}")
    assert found == []
