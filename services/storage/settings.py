"""Settings of the storage service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env


@dataclass(frozen=True)
class StorageSettings(CommonSettings):
    """Everything storage reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "storage", "Name used in logs and traces.")
    storage_root: str = env("TESSERA_STORAGE_ROOT", "/var/lib/tessera/storage", "Root directory of the files.")
    max_file_bytes: int = env("TESSERA_MAX_FILE_BYTES", 1 << 30, "Largest accepted upload (default 1 GiB).")
    asset_addr: str = env("ASSET_ADDR", "", "gRPC address of the ledger (permission checks).")
