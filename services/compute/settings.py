"""Settings of the compute service."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.compute.isolation import MIB, Limits
from services.compute.kubernetes import specs
from services.kit.settings import CommonSettings, env, parse_peers

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace(configured: str) -> str:
    """The namespace compute works in: the configured one, else its pod's own, else ``default``."""
    if configured:
        return configured
    try:
        return NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


@dataclass(frozen=True)
class ComputeSettings(CommonSettings):
    """Everything compute reads from its environment (plus :class:`CommonSettings`)."""

    service_name: str = env("TESSERA_SERVICE_NAME", "compute", "Name used in logs and traces.")
    executor: str = env(
        "TESSERA_EXECUTOR",
        "local",
        "Where tasks run: local (jails in this process's machine or pod) or kubernetes (a pod per task).",
    )
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
    task_nice: int = env(
        "TESSERA_TASK_NICE", 10, "Scheduling niceness of every jail (1-19): the services come first on a busy core."
    )
    sandbox_uid_base: int = env(
        "TESSERA_SANDBOX_UID_BASE", 200000, "First uid of the jails' pool (compute as root); one pool per organization."
    )
    sandbox_uid_count: int = env("TESSERA_SANDBOX_UID_COUNT", 256, "How many uids the pool holds (one per live jail).")
    runner_idle_seconds: float = env(
        "TESSERA_RUNNER_IDLE_SECONDS", 60.0, "Seconds a warm runner waits for its plan's next task before it stops."
    )
    idle_runners: int = env(
        "TESSERA_IDLE_RUNNERS",
        12,
        "Warm runners that may wait idle at once, across plans (beyond it the longest idle stops first).",
    )
    task_threads: int = env(
        "TESSERA_TASK_THREADS",
        0,
        "Threads of a task's math libraries (OpenMP, OpenBLAS, MKL); 0: the cores over the execution slots. "
        "A function's Dockerfile ENV sets its own.",
    )
    ack_wait: float = env("TESSERA_ACK_WAIT", 30.0, "Seconds before an unacknowledged work message is redelivered.")
    reconcile_every: float = env("TESSERA_RECONCILE_SECONDS", 30.0, "Period of the ledger/running reconciliation.")
    worker_enabled: bool = env("TESSERA_WORKER_ENABLED", True, "Consume work messages (off: API only).")

    # The Kubernetes executor (TESSERA_EXECUTOR=kubernetes), ADR 0010.
    k8s_kubeconfig: str = env("TESSERA_K8S_KUBECONFIG", "", "Kubeconfig file; empty: the pod's ServiceAccount.")
    k8s_namespace: str = env("TESSERA_K8S_NAMESPACE", "", "Namespace of task pods and builds; empty: compute's own.")
    k8s_work_claim: str = env(
        "TESSERA_K8S_WORK_CLAIM", "", "PersistentVolumeClaim mounted at TESSERA_WORK_DIR and shared with task pods."
    )
    k8s_work_host_path: str = env(
        "TESSERA_K8S_WORK_HOST_PATH",
        "",
        "Instead of a claim: a node folder that is TESSERA_WORK_DIR (tests, one node).",
    )
    k8s_task_uid: int = env("TESSERA_K8S_TASK_UID", 10001, "Non-root uid of task pods (compute's own by default).")
    k8s_task_gid: int = env("TESSERA_K8S_TASK_GID", 10001, "Group id of task pods.")
    k8s_cpu_request: str = env("TESSERA_K8S_CPU_REQUEST", "500m", "CPU request of a task pod.")
    k8s_cpu_limit: str = env("TESSERA_K8S_CPU_LIMIT", "2", "CPU limit of a task pod.")
    k8s_memory_request: str = env("TESSERA_K8S_MEMORY_REQUEST", "512Mi", "Memory request of a task pod.")
    k8s_memory_limit: str = env("TESSERA_K8S_MEMORY_LIMIT", "4Gi", "Memory limit of a task pod.")
    k8s_gpus: int = env("TESSERA_K8S_GPUS", 0, "nvidia.com/gpu of each task pod (0: none).")
    k8s_node_selector: str = env("TESSERA_K8S_NODE_SELECTOR", "", "Node selector of task pods: 'key=value,...'.")
    k8s_tolerations: str = env("TESSERA_K8S_TOLERATIONS", "", "Tolerations of task pods, a JSON list.")
    k8s_pull_secret: str = env(
        "TESSERA_K8S_PULL_SECRET", "", "Image pull Secret of task pods (read by the kubelet, never mounted)."
    )
    k8s_registry: str = env("TESSERA_K8S_REGISTRY", "", "Registry of function images, e.g. registry.example:5000.")
    k8s_image_prefix: str = env("TESSERA_K8S_IMAGE_PREFIX", "tessera/functions", "Repository of function images.")
    k8s_kaniko_image: str = env(
        "TESSERA_K8S_KANIKO_IMAGE", "gcr.io/kaniko-project/executor:v1.23.2", "Image of the build Jobs."
    )
    k8s_registry_secret: str = env(
        "TESSERA_K8S_REGISTRY_SECRET", "", "dockerconfigjson Secret Kaniko pushes with (mounted in build pods only)."
    )
    k8s_registry_insecure: bool = env(
        "TESSERA_K8S_REGISTRY_INSECURE", False, "Plain HTTP registry (Kaniko --insecure)."
    )
    k8s_grace: float = env(
        "TESSERA_K8S_GRACE_SECONDS", 60.0, "Compute waits a task pod's timeout plus this before deleting it."
    )

    def limits(self) -> Limits:
        """The limits of every jail (refused at start when one is not positive)."""
        return Limits(
            memory_bytes=self.memory_limit_mb * MIB,
            cpu_seconds=self.cpu_seconds,
            processes=self.processes,
            open_files=self.open_files,
            file_bytes=self.file_size_mb * MIB,
            tmp_bytes=self.tmp_mb * MIB,
            nice=self.task_nice,
        )

    def task_env(self) -> dict[str, str]:
        """What every task's environment starts from (a function's Dockerfile ``ENV`` comes over it): math
        libraries sized to a task's share of the cores, so that parallel tasks do not each start a thread per
        core (and a runner starts faster)."""
        if self.task_threads < 0:
            raise ValueError(f"TESSERA_TASK_THREADS must not be negative, not {self.task_threads}")
        threads = str(self.task_threads or max(1, (os.cpu_count() or 1) // max(1, self.slots)))
        return {name: threads for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

    def kubernetes(self) -> specs.Config:
        """How the Kubernetes executor uses its namespace (ValueError on a bad combination)."""
        if bool(self.k8s_work_claim) == bool(self.k8s_work_host_path):
            raise ValueError("set exactly one of TESSERA_K8S_WORK_CLAIM and TESSERA_K8S_WORK_HOST_PATH")
        if not self.k8s_registry:
            raise ValueError("TESSERA_K8S_REGISTRY is required: function images are pushed there and pulled from it")
        if self.k8s_work_claim:
            volume = {"persistentVolumeClaim": {"claimName": self.k8s_work_claim}}
        else:
            volume = {"hostPath": {"path": self.k8s_work_host_path, "type": "Directory"}}
        return specs.Config(
            namespace=own_namespace(self.k8s_namespace),
            organization=self.org_id,
            volume=volume,
            uid=self.k8s_task_uid,
            gid=self.k8s_task_gid,
            cpu_request=self.k8s_cpu_request,
            cpu_limit=self.k8s_cpu_limit,
            memory_request=self.k8s_memory_request,
            memory_limit=self.k8s_memory_limit,
            gpus=self.k8s_gpus,
            node_selector=specs.parse_node_selector(self.k8s_node_selector),
            tolerations=specs.parse_tolerations(self.k8s_tolerations),
            tmp_mb=self.tmp_mb,
            pull_secret=self.k8s_pull_secret,
            registry=self.k8s_registry,
            image_prefix=self.k8s_image_prefix,
            kaniko_image=self.k8s_kaniko_image,
            registry_secret=self.k8s_registry_secret,
            registry_insecure=self.k8s_registry_insecure,
            build_timeout=self.build_timeout,
        )

    def peer_addresses(self) -> dict[str, str]:
        """Storage address by organization, this one's included."""
        return parse_peers(self.peers, self.org_id, self.storage_addr)
