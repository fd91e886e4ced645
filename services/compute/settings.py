"""Settings of the compute service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env


@dataclass(frozen=True)
class ComputeSettings(CommonSettings):
    """Everything compute reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "compute", "Name used in logs and traces.")
    executor: str = env("TESSERA_EXECUTOR", "local", "Where tasks run: local (subprocesses) or kubernetes.")
    slots: int = env("TESSERA_EXECUTION_SLOTS", 2, "How many tasks run at once.")
    work_dir: str = env("TESSERA_WORK_DIR", "/var/lib/tessera/compute", "Sandboxes, caches and build contexts.")
    asset_addr: str = env("ASSET_ADDR", "", "gRPC address of the ledger.")
    storage_addr: str = env("STORAGE_ADDR", "", "gRPC address of this organization's storage service.")
