"""Service boundaries (docs/adr/0008-service-boundaries.md): a service imports only itself and the kit.

Read from the source with ``ast``, so a forbidden import anywhere in a module (at top level or inside a
function) fails here before it couples two deployables.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (REPO / "services").iterdir() if (p / "__init__.py").exists() and p.name != "kit")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def owner(module: str) -> str | None:
    """The deployable a module belongs to: a service name, ``kit``, ``gateway``, or None (third party)."""
    parts = module.split(".")
    if parts[0] == "gateway":
        return "gateway"
    if parts[0] == "services" and len(parts) > 1:
        return parts[1]
    return None


def violations(package: Path, allowed: set[str]) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        for module in sorted(imported_modules(path)):
            target = owner(module)
            if target is not None and target not in allowed:
                found.append(f"{path.relative_to(REPO)} imports {module}")
    return found


def test_there_are_services_to_check():
    assert {"asset", "compute", "event", "storage"} <= set(SERVICES)


def test_each_service_imports_only_itself_and_the_kit():
    found = []
    for name in SERVICES:
        found += violations(REPO / "services" / name, {name, "kit"})
    assert found == []


def test_the_kit_imports_no_service():
    assert violations(REPO / "services" / "kit", {"kit"}) == []


def test_the_gateway_imports_only_the_kit():
    assert violations(REPO / "gateway", {"gateway", "kit"}) == []


def test_the_check_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.storage import files\n")
    assert "services.storage" in imported_modules(module)
    assert owner("services.storage.files") == "storage"
