"""The Kubernetes executor's rules as data: task pods and build Jobs, pod status → result, reaping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.compute.domain.execution import TaskInput, TaskSpec
from services.compute.kubernetes import rules, specs
from services.compute.kubernetes.rules import Ending
from services.compute.settings import ComputeSettings
from services.kit.settings import load

KEY = "0b8f5c1e-7d42-4f4a-9a57-2c1f0e3d9b10"
FUNCTION = "5d7e2a90-1b1c-4d6e-8f00-aa11bb22cc33"
NOW = 1_800_000_000.0


def _config(**changes) -> specs.Config:
    values = {
        "namespace": "tessera",
        "organization": "org1",
        "volume": {"persistentVolumeClaim": {"claimName": "compute-work"}},
        "registry": "registry.example:5000",
    }
    return specs.Config(**{**values, **changes})


def _spec(**changes) -> TaskSpec:
    values = {
        "key": KEY,
        "plan_key": "plan-1",
        "function_key": FUNCTION,
        "code": Path("/work/images") / FUNCTION,
        "python": "",
        "entrypoint": ["python3", "function.py", "--function-name", "train"],
        "inputs": [
            TaskInput("opener", Path("/work/cache/openers/dm/__init__.py")),
            TaskInput("datasamples", Path("/work/cache/data_samples/s1/data"), True),
        ],
        "outputs": {"model": "model.model"},
        "rank": 3,
        "timeout": 90.5,
    }
    return TaskSpec(**{**values, **changes})


def _container(pod: dict) -> dict:
    [container] = pod["spec"]["containers"]
    return container


# ------------------------------------------------------------------------------------ task pods
def test_a_task_pod_is_hardened():
    pod = specs.task_pod(_config(), _spec())
    spec, container = pod["spec"], _container(pod)
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    for field in ("hostNetwork", "hostPID", "hostIPC", "serviceAccountName"):
        assert field not in spec


def test_a_task_pod_sees_its_own_folders_and_a_private_tmp_and_no_secret():
    pod = specs.task_pod(_config(), _spec())
    container = _container(pod)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/tessera/in", "/tessera/out", "/tmp"}
    assert mounts["/tessera/in"]["subPath"] == f"tasks/{KEY}/in"
    assert mounts["/tessera/in"]["readOnly"] is True
    assert mounts["/tessera/out"]["subPath"] == f"tasks/{KEY}/out"
    assert not mounts["/tessera/out"].get("readOnly")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["work"]["persistentVolumeClaim"] == {"claimName": "compute-work"}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "256Mi"}
    text = json.dumps(pod)
    assert "secret" not in text.lower()
    assert all(set(variable) == {"name", "value"} for variable in container["env"])  # no valueFrom


def test_a_task_pod_runs_the_function_image_with_its_entrypoint_and_arguments_file():
    pod = specs.task_pod(_config(), _spec())
    container = _container(pod)
    assert container["image"] == f"registry.example:5000/tessera/functions:{FUNCTION}"
    assert container["command"] == ["python3", "function.py", "--function-name", "train"]
    assert container["args"] == ["@/tessera/in/arguments.txt"]
    assert pod["spec"]["activeDeadlineSeconds"] == 91
    assert pod["metadata"]["name"] == f"tessera-task-{KEY}"
    assert pod["metadata"]["namespace"] == "tessera"


def test_a_task_pod_states_the_dockerfile_s_env_and_workdir():
    plain = _container(specs.task_pod(_config(), _spec()))
    assert "workingDir" not in plain  # the image's own, if any
    assert {v["name"]: v["value"] for v in plain["env"]}["HOME"] == "/tmp"
    env = {"FOO": "bar", "HOME": "/home/app", "PRICE": "$(NOT_A_REFERENCE) $5"}
    container = _container(specs.task_pod(_config(), _spec(env=env, image_workdir="/usr/src/app/sub")))
    assert container["workingDir"] == "/usr/src/app/sub"
    given = {v["name"]: v["value"] for v in container["env"]}
    assert (given["FOO"], given["HOME"], given["TMPDIR"]) == ("bar", "/home/app", "/tmp")  # the Dockerfile's win
    assert given["PRICE"] == "$$(NOT_A_REFERENCE) $$5"  # Kubernetes reads it back as written


def test_a_task_pod_carries_the_labels_its_organization_selects_it_by():
    labels = specs.task_pod(_config(), _spec())["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "tessera-compute",
        "tessera.dev/organization": "org1",
        "tessera.dev/role": "task",
        "tessera.dev/task": KEY,
        "tessera.dev/compute-plan": "plan-1",
        "tessera.dev/function": FUNCTION,
    }
    selector = specs.task_selector("org1")
    assert all(
        f"{k}={v}" in selector.split(",")
        for k, v in labels.items()
        if k not in (specs.TASK, specs.PLAN, specs.FUNCTION)
    )
    assert "tessera.dev/organization=org1" in selector.split(",")


def test_resources_gpus_node_selector_tolerations_and_pull_secret_come_from_settings():
    plain = specs.task_pod(_config(), _spec())
    assert _container(plain)["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert not {"nodeSelector", "tolerations", "imagePullSecrets"} & set(plain["spec"])
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    config = _config(
        gpus=2,
        cpu_limit="4",
        node_selector={"pool": "gpu"},
        tolerations=(toleration,),
        pull_secret="regcred",
    )
    pod = specs.task_pod(config, _spec())
    resources = _container(pod)["resources"]
    assert resources["limits"] == {"cpu": "4", "memory": "4Gi", "nvidia.com/gpu": "2"}
    assert resources["requests"]["nvidia.com/gpu"] == "2"
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert pod["spec"]["tolerations"] == [toleration]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]  # for the kubelet; nothing is mounted
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"work", "tmp"}


def test_a_host_path_volume_is_used_as_given():
    volume = {"hostPath": {"path": "/srv/compute", "type": "Directory"}}
    pod = specs.task_pod(_config(volume=volume), _spec())
    assert pod["spec"]["volumes"][0] == {"name": "work", **volume}


def test_the_arguments_file_names_the_paths_the_pod_sees():
    text, staged = specs.arguments(_spec())
    lines = text.splitlines()
    inputs = json.loads(lines[lines.index("--inputs") + 1])
    outputs = json.loads(lines[lines.index("--outputs") + 1])
    assert inputs == [
        {"id": "opener", "value": "/tessera/in/__init__.py", "multiple": False},
        {"id": "datasamples", "value": "/tessera/in/data", "multiple": True},
        {"id": "chainkeys", "value": "/tmp/chainkeys", "multiple": False},  # the root filesystem is read-only
    ]
    assert lines[lines.index("--log-path") + 1] == "/tmp/substratools.log"
    assert outputs == [{"id": "model", "value": "/tessera/out/model.model", "multiple": False}]
    assert json.loads(lines[lines.index("--task-properties") + 1]) == {"rank": 3}
    assert staged == {
        "__init__.py": "/work/cache/openers/dm/__init__.py",
        "data": "/work/cache/data_samples/s1/data",
    }


def test_names_are_deterministic_and_refuse_what_cannot_name_an_object():
    assert specs.pod_name(KEY) == specs.pod_name(KEY) == f"tessera-task-{KEY}"
    with pytest.raises(ValueError):
        specs.pod_name("Task_1")
    assert specs.job_name("org1", FUNCTION) == specs.job_name("org1", FUNCTION)
    assert specs.job_name("org1", FUNCTION) != specs.job_name("org2", FUNCTION)
    assert len(specs.job_name("a-very-long-organization-name", FUNCTION)) <= 63


def test_an_organization_that_cannot_be_a_label_value_is_refused():
    with pytest.raises(ValueError):
        _config(organization="org 1")
    with pytest.raises(ValueError):
        _config(uid=0)


def test_the_deny_all_policy_selects_task_pods_and_allows_nothing():
    policy = specs.deny_all_policy("tessera")
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"tessera.dev/role": "task"}},
        "policyTypes": ["Ingress", "Egress"],
    }
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]


# ---------------------------------------------------------------------------------- build Jobs
def test_a_build_job_runs_kaniko_on_the_function_s_context_and_pushes_its_image():
    job = specs.build_job(_config(), FUNCTION)
    assert job["metadata"]["name"] == specs.job_name("org1", FUNCTION)
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["image"].startswith("gcr.io/kaniko-project/executor:")
    assert f"--destination=registry.example:5000/tessera/functions:{FUNCTION}" in container["args"]
    assert "--dockerfile=/workspace/Dockerfile" in container["args"]
    assert "--insecure" not in container["args"]
    assert container["volumeMounts"] == [
        {"name": "work", "mountPath": "/workspace", "subPath": f"images/{FUNCTION}", "readOnly": True}
    ]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["tessera.dev/role"] == "build"  # not selected by the deny-all policy: it pulls and pushes


def test_the_registry_secret_is_mounted_in_build_pods_only():
    config = _config(registry_secret="push-creds", registry_insecure=True)
    job = specs.build_job(config, FUNCTION)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "registry", "mountPath": "/kaniko/.docker", "readOnly": True} in container["volumeMounts"]
    assert "--insecure" in container["args"]
    assert "push-creds" not in json.dumps(specs.task_pod(config, _spec()))


# ------------------------------------------------------------------------------ pod → result
def _pod(phase: str, *, terminated: dict | None = None, waiting: dict | None = None, **status) -> dict:
    container: dict = {"name": "task"}
    if terminated is not None:
        container["state"] = {"terminated": terminated}
    if waiting is not None:
        container["state"] = {"waiting": waiting}
    return {
        "metadata": {"name": "p", "uid": "u1", "creationTimestamp": "2027-01-15T08:00:00Z"},
        "status": {"phase": phase, "containerStatuses": [container], **status},
    }


def test_a_succeeded_pod_is_a_success():
    verdict = rules.verdict(_pod("Succeeded", terminated={"exitCode": 0}), NOW)
    assert verdict.ending is Ending.SUCCEEDED and verdict.exit_code == 0 and verdict.succeeded


def test_a_failed_container_gives_its_exit_status_and_last_words():
    pod = _pod("Failed", terminated={"exitCode": 3, "reason": "Error", "message": "Traceback: boom"})
    verdict = rules.verdict(pod, NOW)
    assert (verdict.ending, verdict.exit_code, verdict.error) == (Ending.FAILED, 3, "exited with status 3")
    assert verdict.last_words == "Traceback: boom"
    assert not verdict.succeeded


def test_out_of_memory_and_signals_are_said_in_words():
    oom = rules.verdict(_pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"}), NOW)
    assert "out of memory" in oom.error and oom.exit_code == 137
    killed = rules.verdict(_pod("Failed", terminated={"exitCode": 137, "reason": "Error"}), NOW)
    assert "SIGKILL" in killed.error


def test_a_pod_past_its_deadline_timed_out():
    verdict = rules.verdict(_pod("Failed", reason="DeadlineExceeded", message="Pod was active too long"), NOW)
    assert verdict.ending is Ending.TIMED_OUT and verdict.exit_code is None


def test_a_pod_failed_without_a_container_status_says_why():
    pod = _pod("Failed", reason="Evicted", message="low on memory")
    pod["status"]["containerStatuses"] = []
    verdict = rules.verdict(pod, NOW)
    assert verdict.ending is Ending.FAILED and "Evicted: low on memory" in verdict.error


@pytest.mark.parametrize("phase", ["Pending", "Running", "Unknown"])
def test_a_pod_that_has_not_ended_has_no_verdict(phase):
    assert rules.verdict(_pod(phase), NOW) is None


def test_an_image_that_cannot_be_pulled_ends_the_task_after_some_patience():
    created = rules._timestamp("2027-01-15T08:00:00Z")
    pulling = _pod("Pending", waiting={"reason": "ImagePullBackOff", "message": "not found"})
    assert rules.verdict(pulling, created + 10, pull_patience=300) is None
    late = rules.verdict(pulling, created + 301, pull_patience=300)
    assert late.ending is Ending.UNSTARTABLE and "ImagePullBackOff" in late.error
    invalid = _pod("Pending", waiting={"reason": "InvalidImageName"})
    assert rules.verdict(invalid, created + 1).ending is Ending.UNSTARTABLE


def test_compute_s_own_deadline_counts_from_the_pod_s_start():
    pod = _pod("Running", startTime="2027-01-15T08:00:30Z")
    start = rules._timestamp("2027-01-15T08:00:30Z")
    assert rules.deadline(pod, 100, 60, NOW) == start + 160
    del pod["status"]["startTime"]
    assert rules.deadline(pod, 100, 60, NOW) == rules._timestamp("2027-01-15T08:00:00Z") + 160
    assert rules.deadline({}, 100, 60, NOW) == NOW + 160


def test_a_job_is_done_when_complete_or_failed():
    assert rules.job_outcome({"status": {}}) is None
    complete = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert rules.job_outcome(complete) is True
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    assert rules.job_outcome(failed) is False
    assert rules.job_failure(failed) == "BackoffLimitExceeded"
    assert rules.job_outcome({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) is None


# --------------------------------------------------------------------------------------- reaping
def _task_pod(name: str, org: str, task: str, *, deleting: bool = False, role: str = "task") -> dict:
    metadata = {
        "name": name,
        "labels": {specs.MANAGED_BY: specs.MANAGER, specs.ORGANIZATION: org, specs.ROLE: role, specs.TASK: task},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    return {"metadata": metadata}


def test_the_reaper_removes_only_its_organization_s_pods_of_tasks_no_longer_executing():
    pods = [
        _task_pod("a", "org1", "t-executing"),
        _task_pod("b", "org1", "t-done"),
        _task_pod("c", "org2", "t-done"),  # another organization's, whatever the listing held
        _task_pod("d", "org1", "t-held"),  # an execution of this process holds it
        _task_pod("e", "org1", "t-gone", deleting=True),
        _task_pod("f", "org1", "t-build", role="build"),
    ]
    assert rules.to_reap(pods, "org1", executing={"t-executing"}, attached={"t-held"}) == ["b"]
    assert rules.to_reap(pods, "org2", executing=set(), attached=set()) == ["c"]


def test_staged_folders_without_a_pod_or_an_execution_are_stale():
    pods = [_task_pod("a", "org1", "t1")]
    assert rules.stale_folders(["t1", "t2", "t3"], pods, attached={"t3"}) == ["t2"]


# -------------------------------------------------------------------------------------- settings
def test_node_selector_and_tolerations_parse_or_are_refused():
    assert specs.parse_node_selector("pool=gpu, zone = a") == {"pool": "gpu", "zone": "a"}
    assert specs.parse_node_selector("") == {}
    with pytest.raises(ValueError):
        specs.parse_node_selector("pool")
    assert specs.parse_tolerations('[{"key": "gpu", "operator": "Exists"}]') == ({"key": "gpu", "operator": "Exists"},)
    with pytest.raises(ValueError):
        specs.parse_tolerations('[{"key": "gpu", "command": "x"}]')
    with pytest.raises(ValueError):
        specs.parse_tolerations('{"key": "gpu"}')


def test_settings_need_exactly_one_shared_volume_and_a_registry():
    base = {"TESSERA_EXECUTOR": "kubernetes", "TESSERA_ORG_ID": "org1", "TESSERA_K8S_NAMESPACE": "tessera"}
    base["TESSERA_K8S_REGISTRY"] = "registry.example"
    with pytest.raises(ValueError):
        load(ComputeSettings, base).kubernetes()
    without_registry = {**base, "TESSERA_K8S_WORK_CLAIM": "c", "TESSERA_K8S_REGISTRY": ""}
    with pytest.raises(ValueError, match="TESSERA_K8S_REGISTRY"):
        load(ComputeSettings, without_registry).kubernetes()
    both = {**base, "TESSERA_K8S_WORK_CLAIM": "c", "TESSERA_K8S_WORK_HOST_PATH": "/srv"}
    with pytest.raises(ValueError):
        load(ComputeSettings, both).kubernetes()
    config = load(ComputeSettings, {**base, "TESSERA_K8S_WORK_CLAIM": "c", "TESSERA_K8S_GPUS": "1"}).kubernetes()
    assert config.volume == {"persistentVolumeClaim": {"claimName": "c"}}
    assert (config.namespace, config.organization, config.gpus) == ("tessera", "org1", 1)
