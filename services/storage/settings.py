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
    chunk_bytes: int = env(
        "TESSERA_STORAGE_CHUNK_BYTES",
        256 << 10,
        "Bytes per download message (256 KiB: as fast as larger chunks in the benchmark, with less memory).",
    )
    max_archive_members: int = env(
        "TESSERA_MAX_ARCHIVE_MEMBERS", 100_000, "Most entries a function archive or data sample may hold."
    )
    max_unpacked_bytes: int = env(
        "TESSERA_MAX_UNPACKED_BYTES", 10 << 30, "Most bytes a function archive or data sample may unpack to."
    )
    public_url: str = env(
        "TESSERA_PUBLIC_URL",
        "",
        "Base URL of this organization's gateway; files' storage_address is built on it (empty: not built).",
    )
    model_export_channels: tuple[str, ...] = env(
        "TESSERA_MODEL_EXPORT_CHANNELS",
        (),
        "Channels whose users may export (download) models, Substra's model_export_enabled (comma separated).",
    )
    ledger_timeout: float = env("TESSERA_LEDGER_TIMEOUT", 10.0, "Seconds a permission check may wait for the ledger.")
    durable: bool = env(
        "TESSERA_STORAGE_FSYNC", True, "fsync each file and its folder before an upload succeeds (off: tests only)."
    )
    direct_io: bool = env(
        "TESSERA_STORAGE_DIRECT_IO",
        True,
        "Write and read blobs with O_DIRECT, bypassing the page cache (ignored where the filesystem lacks it).",
    )
    staging_max_age: float = env(
        "TESSERA_STAGING_MAX_AGE", 3600.0, "Seconds after which a staged upload left by a crash is removed at start."
    )
