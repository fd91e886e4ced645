"""Settings of the compute service."""

from __future__ import annotations

from dataclasses import dataclass

from services.kit.settings import CommonSettings, env, parse_peers


@dataclass(frozen=True)
class ComputeSettings(CommonSettings):
    """Everything compute reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "compute", "Name used in logs and traces.")
    executor: str = env("TESSERA_EXECUTOR", "local", "Where tasks run: local (subprocesses) or kubernetes.")
    slots: int = env("TESSERA_EXECUTION_SLOTS", 2, "How many tasks run at once.")
    work_dir: str = env("TESSERA_WORK_DIR", "/var/lib/tessera/compute", "Sandboxes, caches and build contexts.")
    asset_addr: str = env("ASSET_ADDR", "", "gRPC address of the ledger.")
    storage_addr: str = env("STORAGE_ADDR", "", "gRPC address of this organization's storage service.")
    peers: str = env(
        "TESSERA_PEERS", "", "Storage addresses of the other organizations: 'org2=host:port,org3=host:port'."
    )
    public_url: str = env(
        "TESSERA_PUBLIC_URL", "http://127.0.0.1:8000", "This organization's gateway URL, used in file addresses."
    )
    task_timeout: float = env("TESSERA_TASK_TIMEOUT", 3600.0, "Seconds a task may run before it is killed.")
    build_timeout: float = env("TESSERA_BUILD_TIMEOUT", 1800.0, "Seconds a function build may take.")
    memory_limit_mb: int = env("TESSERA_TASK_MEMORY_MB", 0, "Address-space limit of a task process (0: none).")
    ack_wait: float = env("TESSERA_ACK_WAIT", 30.0, "Seconds before an unacknowledged work message is redelivered.")
    reconcile_every: float = env("TESSERA_RECONCILE_SECONDS", 30.0, "Period of the ledger/running reconciliation.")
    worker_enabled: bool = env("TESSERA_WORKER_ENABLED", True, "Consume work messages (off: API only).")

    def peer_addresses(self) -> dict[str, str]:
        """Storage address by organization, this one's included."""
        return parse_peers(self.peers, self.org_id, self.storage_addr)
