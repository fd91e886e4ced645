"""The ledger's rules are free of transport and storage: no module of ``services/asset/domain`` imports
grpc, the gRPC request messages (``asset_service_pb2``), sqlalchemy, NATS or the store, neither itself
nor through the project's modules it imports. Read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
DOMAIN = REPO / "services" / "asset" / "domain"
FORBIDDEN = ("grpc", "sqlalchemy", "nats", "tessera.asset.v1.asset_service_pb2", "services.asset.store")


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``), relative ones resolved."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def source_of(module: str) -> Path | None:
    """The file of one of the project's modules, or None (third party, or a name inside a module)."""
    if not module.startswith("services."):
        return None
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def forbidden_imports(roots: list[Path]) -> list[str]:
    """``file imports module`` for each forbidden import reachable from ``roots``."""
    found, seen, pending = [], set(), list(roots)
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in sorted(imports_of(path)):
            if any(module == bad or module.startswith(f"{bad}.") for bad in FORBIDDEN):
                found.append(f"{path.relative_to(REPO)} imports {module}")
            source = source_of(module)
            if source is not None:
                pending.append(source)
    return found


def test_the_domain_imports_no_transport_and_no_storage():
    modules = sorted(DOMAIN.glob("*.py"))
    assert len(modules) >= 8  # the check reads the rules, not an empty folder
    assert forbidden_imports(modules) == []


def test_the_check_sees_forbidden_imports_direct_and_indirect():
    rules = DOMAIN / "tasks.py"
    assert "tessera.asset.v1.resources_pb2" in imports_of(rules)
    assert "services.asset.domain.plans" in imports_of(rules)
    found = forbidden_imports([REPO / "services" / "asset" / "server.py"])
    assert "services/asset/server.py imports tessera.asset.v1.asset_service_pb2" in found  # the handlers may
    assert "services/asset/store/sql.py imports sqlalchemy" in found  # reached through the relay's module


def test_the_handlers_import_no_sqlalchemy():
    server = imports_of(REPO / "services" / "asset" / "server.py")
    assert not [m for m in server if m == "sqlalchemy" or m.startswith("sqlalchemy.")]
