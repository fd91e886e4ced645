"""Settings of the compute service."""

from __future__ import annotations

from dataclasses import dataclass

from services.compute.isolation import MIB, Limits
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
    memory_limit_mb: int = env("TESSERA_TASK_MEMORY_MB", 2048, "Address-space limit of each process of a jail.")
    cpu_seconds: int = env("TESSERA_TASK_CPU_SECONDS", 3600, "CPU seconds a task's processes may use each.")
    processes: int = env("TESSERA_TASK_PROCESSES", 64, "Processes and threads a jail may have at once.")
    open_files: int = env("TESSERA_TASK_OPEN_FILES", 1024, "Open files per process of a jail.")
    file_size_mb: int = env("TESSERA_TASK_FILE_MB", 4096, "Largest file a jail may write (outputs included).")
    tmp_mb: int = env("TESSERA_TASK_TMP_MB", 256, "Size of a jail's private /tmp and /dev/shm (memory).")
    sandbox_uid_base: int = env(
        "TESSERA_SANDBOX_UID_BASE", 200000, "First uid of the jails' pool (compute as root); one pool per organization."
    )
    sandbox_uid_count: int = env("TESSERA_SANDBOX_UID_COUNT", 256, "How many uids the pool holds (one per live jail).")
    runner_idle_seconds: float = env(
        "TESSERA_RUNNER_IDLE_SECONDS", 60.0, "Seconds a warm runner waits for its plan's next task before it stops."
    )
    ack_wait: float = env("TESSERA_ACK_WAIT", 30.0, "Seconds before an unacknowledged work message is redelivered.")
    reconcile_every: float = env("TESSERA_RECONCILE_SECONDS", 30.0, "Period of the ledger/running reconciliation.")
    worker_enabled: bool = env("TESSERA_WORKER_ENABLED", True, "Consume work messages (off: API only).")

    def limits(self) -> Limits:
        """The limits of every jail (refused at start when one is not positive)."""
        return Limits(
            memory_bytes=self.memory_limit_mb * MIB,
            cpu_seconds=self.cpu_seconds,
            processes=self.processes,
            open_files=self.open_files,
            file_bytes=self.file_size_mb * MIB,
            tmp_bytes=self.tmp_mb * MIB,
        )

    def peer_addresses(self) -> dict[str, str]:
        """Storage address by organization, this one's included."""
        return parse_peers(self.peers, self.org_id, self.storage_addr)
