"""What compute asks of Kubernetes, as plain API objects (camelCase dicts): task pods, image-build
Jobs, the deny-all NetworkPolicy, their names and labels. No I/O, no client: unit-tested as data.

Names are deterministic: a task's pod is ``tessera-task-<task key>``, so a second create for the same
task is refused (409) rather than starting a second pod; a build's Job is named after the
organization and the function, so a function builds once per organization.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.compute.domain import layout
from services.compute.domain.execution import TaskSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "tessera-compute"
ORGANIZATION = "tessera.dev/organization"
ROLE = "tessera.dev/role"
TASK = "tessera.dev/task"
PLAN = "tessera.dev/compute-plan"
FUNCTION = "tessera.dev/function"
TASK_ROLE = "task"
BUILD_ROLE = "build"

CONTAINER = "task"
BUILD_CONTAINER = "kaniko"
IN = "/tessera/in"
OUT = "/tessera/out"
CHAINKEYS = "chainkeys"
SCRATCH_CHAINKEYS = "/tmp/chainkeys"
SCRATCH_LOG = "/tmp/substratools.log"
NETWORK_POLICY = "tessera-tasks-deny-all"
DELETE_GRACE_SECONDS = 5

TASK_ENV = {"HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
"""A task container's environment before its Dockerfile's ENV (the root file system is read-only)."""

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
GPU_RESOURCE = "nvidia.com/gpu"
TOLERATION_FIELDS = {"key", "operator", "value", "effect", "tolerationSeconds"}


@dataclass(frozen=True)
class Config:
    """How this organization's compute uses its namespace (from :class:`~services.compute.settings.ComputeSettings`)."""

    namespace: str
    organization: str
    volume: Mapping  # the shared volume's source: {"persistentVolumeClaim": ...} or {"hostPath": ...}
    uid: int = 10001
    gid: int = 10001
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "4Gi"
    gpus: int = 0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple = ()
    tmp_mb: int = 256
    pull_secret: str = ""
    registry: str = ""
    image_prefix: str = "tessera/functions"
    kaniko_image: str = "gcr.io/kaniko-project/executor:v1.23.2"
    registry_secret: str = ""
    registry_insecure: bool = False
    build_timeout: float = 1800.0

    def __post_init__(self) -> None:
        if not label_value_ok(self.organization):
            raise ValueError(f"organization {self.organization!r} cannot be a Kubernetes label value")
        if self.uid < 1 or self.gid < 0:
            raise ValueError("task pods run as a non-root uid (TESSERA_K8S_TASK_UID >= 1)")
        if self.gpus < 0:
            raise ValueError("TESSERA_K8S_GPUS must be >= 0")


def label_value_ok(value: str) -> bool:
    """Whether ``value`` may be a label value (63 characters at most, alphanumeric ends)."""
    return len(value) <= 63 and LABEL_VALUE.fullmatch(value) is not None


def parse_node_selector(text: str) -> dict[str, str]:
    """``'key=value,key2=value2'`` as a node selector (ValueError on a part without ``=``)."""
    selector = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"node selector part {part!r} is not key=value")
        selector[key.strip()] = value.strip()
    return selector


def parse_tolerations(text: str) -> tuple[dict, ...]:
    """A JSON list of tolerations (``[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]``)."""
    if not text.strip():
        return ()
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("tolerations must be a JSON list of objects")
    for toleration in value:
        unknown = set(toleration) - TOLERATION_FIELDS
        if unknown:
            raise ValueError(f"unknown toleration field(s): {', '.join(sorted(unknown))}")
    return tuple(value)


# ----------------------------------------------------------------------------------------- names
def pod_name(task_key: str) -> str:
    """The one pod a task may have (ValueError when the key cannot name one; the ledger's are UUIDs)."""
    name = f"tessera-task-{task_key}"
    if len(name) > 63 or not DNS_LABEL.fullmatch(name):
        raise ValueError(f"task key {task_key!r} cannot name a pod")
    return name


def job_name(organization: str, function_key: str) -> str:
    """The build Job of a function for one organization (63 characters at most: it becomes a label)."""
    org = hashlib.sha256(organization.encode()).hexdigest()[:8]
    name = f"tessera-build-{org}-{function_key}"
    if len(name) > 63 or not DNS_LABEL.fullmatch(name):
        raise ValueError(f"function key {function_key!r} cannot name a Job")
    return name


def image_ref(config: Config, function_key: str) -> str:
    """Where a function's image is pushed and pulled from, keyed by the function."""
    registry = config.registry.rstrip("/")
    repository = f"{registry}/{config.image_prefix.strip('/')}" if registry else config.image_prefix.strip("/")
    return f"{repository}:{function_key}"


def function_of_image(image: str) -> str:
    """The function key an image reference names (its tag)."""
    return image.rsplit(":", 1)[-1]


def task_folder(task_key: str) -> str:
    """A task's staged folder, relative to the shared volume's root (``in`` and ``out`` below it)."""
    return f"tasks/{task_key}"


def context_folder(function_key: str) -> str:
    """A function's build context (its unpacked archive), relative to the shared volume's root."""
    return f"images/{function_key}"


# ---------------------------------------------------------------------------------------- labels
def owned(organization: str) -> dict[str, str]:
    """The labels every object this organization's compute makes carries."""
    return {MANAGED_BY: MANAGER, ORGANIZATION: organization}


def selector(labels: Mapping[str, str]) -> str:
    """A label selector matching all of ``labels``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def task_selector(organization: str) -> str:
    """This organization's task pods, and nobody else's."""
    return selector({**owned(organization), ROLE: TASK_ROLE})


def build_selector(organization: str) -> str:
    """This organization's build Jobs."""
    return selector({**owned(organization), ROLE: BUILD_ROLE})


def task_labels(config: Config, spec: TaskSpec) -> dict[str, str]:
    labels = {**owned(config.organization), ROLE: TASK_ROLE, TASK: spec.key, PLAN: spec.plan_key}
    if label_value_ok(spec.function_key):
        labels[FUNCTION] = spec.function_key
    return labels


# ----------------------------------------------------------------------------------- task pods
def arguments(spec: TaskSpec) -> tuple[str, dict[str, str]]:
    """The substratools arguments file of a task as its pod sees it, and the inputs to stage:
    ``in`` folder entry name → host path (as a string) of the cached file or folder.

    substratools writes its own log and a ``chainkeys`` folder under the working directory unless told
    otherwise; the image's root filesystem is read-only, so both are pointed at the pod's ``/tmp``."""
    staged: dict[str, str] = {}
    inputs = []
    names = layout.staged_names([item.path.name for item in spec.inputs])  # a sample keeps its key as its name
    for item, name in zip(spec.inputs, names, strict=True):
        staged[name] = str(item.path)
        inputs.append(layout.input_entry(item.identifier, f"{IN}/{name}", item.multiple))
    if not any(item.identifier == CHAINKEYS for item in spec.inputs):
        inputs.append(layout.input_entry(CHAINKEYS, SCRATCH_CHAINKEYS, False))
    outputs = [
        layout.input_entry(identifier, f"{OUT}/{filename}", False)
        for identifier, filename in sorted(spec.outputs.items())
    ]
    text = layout.arguments(spec.rank, inputs, outputs) + f"--log-path\n{SCRATCH_LOG}\n"
    return text, staged


def _resources(config: Config) -> dict:
    requests = {"cpu": config.cpu_request, "memory": config.memory_request}
    limits = {"cpu": config.cpu_limit, "memory": config.memory_limit}
    if config.gpus:
        # Extended resources are not overcommitted: requests, if given, must equal limits.
        requests[GPU_RESOURCE] = str(config.gpus)
        limits[GPU_RESOURCE] = str(config.gpus)
    return {"requests": requests, "limits": limits}


def deadline_seconds(timeout: float) -> int:
    """``activeDeadlineSeconds`` for a task timeout (a positive whole number of seconds)."""
    return max(1, math.ceil(timeout))


def _shared_volume(config: Config) -> dict:
    return {"name": "work", **dict(config.volume)}


def task_pod(config: Config, spec: TaskSpec) -> dict:
    """The pod of one task: the function's image with its ENTRYPOINT, ENV and WORKDIR, and the arguments
    file; the task's ``in`` (read-only) and ``out`` folders of the shared volume and a private ``/tmp``,
    nothing else; non-root, read-only root, no capability, no token, no service links; resources from
    settings."""
    folder = task_folder(spec.key)
    restricted = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": CONTAINER,
        "image": image_ref(config, spec.function_key),
        "imagePullPolicy": "IfNotPresent",
        "command": list(spec.entrypoint),
        "args": [f"@{IN}/{layout.ARGUMENTS}"],
        # The Dockerfile's ENV after ours: its values win, "$" doubled so Kubernetes expands no $(NAME) in them.
        "env": [{"name": name, "value": value.replace("$", "$$")} for name, value in {**TASK_ENV, **spec.env}.items()],
        "resources": _resources(config),
        "securityContext": restricted,
        # Without a kubelet's logs (rotated away, node gone), the last lines still reach the pod's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "work", "mountPath": IN, "subPath": f"{folder}/in", "readOnly": True},
            {"name": "work", "mountPath": OUT, "subPath": f"{folder}/out"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if spec.image_workdir:
        container["workingDir"] = spec.image_workdir  # the image's own, stated
    pod_spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": deadline_seconds(spec.timeout),
        "terminationGracePeriodSeconds": DELETE_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.uid,
            "runAsGroup": config.gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            _shared_volume(config),
            {"name": "tmp", "emptyDir": {"sizeLimit": f"{config.tmp_mb}Mi"}},
        ],
    }
    if config.node_selector:
        pod_spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in config.tolerations]
    if config.pull_secret:
        # Read by the kubelet to pull the image; never mounted, never in the container.
        pod_spec["imagePullSecrets"] = [{"name": config.pull_secret}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name(spec.key), "namespace": config.namespace, "labels": task_labels(config, spec)},
        "spec": pod_spec,
    }


def deny_all_policy(namespace: str) -> dict:
    """Selects every task pod of the namespace (any organization's) and allows no traffic in or out."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": NETWORK_POLICY, "namespace": namespace, "labels": {MANAGED_BY: MANAGER}},
        "spec": {"podSelector": {"matchLabels": {ROLE: TASK_ROLE}}, "policyTypes": ["Ingress", "Egress"]},
    }


# ------------------------------------------------------------------------------------ image builds
def build_job(config: Config, function_key: str) -> dict:
    """A Kaniko Job that builds a function's image from its unpacked archive (the context, read-only)
    and pushes it to the organization's registry. Kaniko runs as root (it unpacks base images and runs
    the Dockerfile's RUN steps in its own container) and needs the network to pull and push: a build
    pod is not a task pod, the deny-all policy does not select it."""
    labels = {**owned(config.organization), ROLE: BUILD_ROLE}
    if label_value_ok(function_key):
        labels[FUNCTION] = function_key
    args = [
        "--context=dir:///workspace",
        "--dockerfile=/workspace/Dockerfile",
        f"--destination={image_ref(config, function_key)}",
        "--single-snapshot",
    ]
    if config.registry_insecure:
        args += ["--insecure", "--insecure-pull"]
    mounts = [{"name": "work", "mountPath": "/workspace", "subPath": context_folder(function_key), "readOnly": True}]
    volumes = [_shared_volume(config)]
    if config.registry_secret:
        mounts.append({"name": "registry", "mountPath": "/kaniko/.docker", "readOnly": True})
        volumes.append(
            {
                "name": "registry",
                "secret": {
                    "secretName": config.registry_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    pod_spec: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [
            {
                "name": BUILD_CONTAINER,
                "image": config.kaniko_image,
                "args": args,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {"allowPrivilegeEscalation": False},
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(config.organization, function_key),
            "namespace": config.namespace,
            "labels": labels,
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds(config.build_timeout),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
