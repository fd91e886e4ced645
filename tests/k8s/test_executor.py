"""The Kubernetes executor against a real API server (kwok for the nodes, ``stand_in`` for the containers).

Compute authenticates as its chart's ServiceAccount: the chart's ServiceAccount, Role and RoleBinding are
rendered by helm and applied, and every executor here uses a token of that account, not cluster admin.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import kubernetes.watch
import numpy as np
import pytest
import yaml
from kubernetes import client
from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain.builds import BuildError
from services.compute.domain.execution import TaskInput, TaskSpec
from services.compute.kubernetes import specs
from services.compute.kubernetes.api import Api, Conflict, api_client
from services.compute.kubernetes.executor import KubernetesExecutor
from services.compute.kubernetes.images import Images
from services.kit import errors
from tests.k8s.stand_in import StandIn
from tools.k8s.cluster import watch_until
from tools.samples import flassets

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "registry.test:5000"


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def admin(k8s_cluster):
    with k8s_cluster.api_client() as api:
        yield api


def _chart_rbac(k8s_cluster, namespace: str, folder: Path) -> list[dict]:
    """The compute chart's ServiceAccount, Role and RoleBinding for ``namespace``, rendered by helm."""
    charts = folder / "charts"
    shutil.rmtree(charts, ignore_errors=True)
    for name in ("compute", "tessera-common"):
        shutil.copytree(REPO / "charts" / name, charts / name)
    helm = str(k8s_cluster.bin_dir / "helm")
    env = {"HOME": str(folder), "HELM_CACHE_HOME": str(folder / "h"), "HELM_CONFIG_HOME": str(folder / "h")}
    env["HELM_DATA_HOME"] = str(folder / "h")
    subprocess.run([helm, "dependency", "build", str(charts / "compute")], check=True, capture_output=True, env=env)
    values = ["--set", "executor.type=kubernetes", "--set", "executor.kubernetes.workClaim=work"]
    values += ["--set", f"executor.kubernetes.registry={REGISTRY}"]
    rendered = subprocess.run(
        [helm, "template", "org1", str(charts / "compute"), "--namespace", namespace, *values],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    kinds = {"ServiceAccount", "Role", "RoleBinding"}
    return [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] in kinds]


def _apply_rbac(k8s_cluster, admin, namespace: str, folder: Path) -> Path:
    """Apply the chart's RBAC in ``namespace``; a kubeconfig holding a token of its ServiceAccount."""
    account = None
    for doc in _chart_rbac(k8s_cluster, namespace, folder):
        if doc["kind"] == "ServiceAccount":
            client.CoreV1Api(admin).create_namespaced_service_account(namespace, doc)
            account = doc["metadata"]["name"]
        elif doc["kind"] == "Role":
            client.RbacAuthorizationV1Api(admin).create_namespaced_role(namespace, doc)
        else:
            client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(namespace, doc)
    assert account is not None
    return k8s_cluster.kubeconfig_for_token(k8s_cluster.token_for(namespace, account))


@pytest.fixture(scope="module")
def namespace(k8s_cluster):
    return k8s_cluster.new_namespace("exec")


@pytest.fixture(scope="module")
def kubeconfig(k8s_cluster, admin, namespace, tmp_path_factory) -> Path:
    """Compute's identity: a token of the chart's ServiceAccount, bound by the chart's Role."""
    return _apply_rbac(k8s_cluster, admin, namespace, tmp_path_factory.mktemp("rbac"))


@pytest.fixture(scope="module")
def stand_in(k8s_cluster, namespace, tmp_path_factory):
    with StandIn(k8s_cluster, namespace, tmp_path_factory.mktemp("containers")) as playing:
        yield playing


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Compute's work folder, which task pods see as a hostPath volume (a claim in production)."""
    folder = tmp_path_factory.mktemp("work")
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def inputs(work) -> list[TaskInput]:
    """An opener and two data samples in compute's cache (values 1 and 3: the trained mean is 2)."""
    opener = flassets.write(work / "cache" / "openers" / "dm" / "__init__.py", flassets.OPENER)
    found = [TaskInput("opener", opener)]
    for index, value in enumerate((1.0, 3.0)):
        rows = "\n".join(",".join([f"{value}"] * 3) for _ in range(2))
        sample = flassets.write(work / "cache" / "data_samples" / f"s{index}" / "data" / "data.csv", rows + "\n")
        found.append(TaskInput("datasamples", sample.parent, True))
    return found


def _executor(kubeconfig: Path, namespace: str, work: Path, org: str = "org1", grace: float = 30.0, **config):
    api = Api(api_client(str(kubeconfig)), namespace)
    volume = config.pop("volume", {"hostPath": {"path": str(work), "type": "Directory"}})
    settings = specs.Config(namespace=namespace, organization=org, volume=volume, registry=REGISTRY, **config)
    return KubernetesExecutor(api, settings, work, grace=grace), Images(api, settings, work)


@pytest.fixture(scope="module")
def function_key(kubeconfig, namespace, work, stand_in, tmp_path_factory) -> str:
    """A function whose image was built by a Kaniko Job (the stand-in checks its Dockerfile)."""
    key = str(uuid.uuid4())
    archive = flassets.write(tmp_path_factory.mktemp("archives") / "train.tar.gz", flassets.function_archive("train"))
    logs = work / "builds" / f"{key}.log"
    logs.parent.mkdir(parents=True, exist_ok=True)

    async def build():
        _, images = _executor(kubeconfig, namespace, work)
        try:
            return await images.prepare(res.Function(key=key), archive, logs)
        finally:
            await images.close()

    code = asyncio.run(build())
    assert code.entrypoint == ["python3", "function.py", "--function-name", "train"]
    return key


def _spec(function_key: str, inputs: list[TaskInput], function: str = "train", timeout: float = 60) -> TaskSpec:
    return TaskSpec(
        key=str(uuid.uuid4()),
        plan_key=str(uuid.uuid4()),
        function_key=function_key,
        code=Path("/unused"),
        python="",
        entrypoint=["python3", "function.py", "--function-name", function],
        inputs=inputs,
        outputs={"model": "model.model"},
        timeout=timeout,
    )


def _pods(admin, namespace: str, task_key: str) -> list:
    listed = client.CoreV1Api(admin).list_namespaced_pod(namespace, label_selector=f"{specs.TASK}={task_key}")
    return [pod for pod in listed.items if not pod.metadata.deletion_timestamp]


def _running(admin, namespace: str, task_key: str, timeout: float = 30):
    return watch_until(
        client.CoreV1Api(admin).list_namespaced_pod,
        lambda pod: pod.status.phase == "Running",
        timeout,
        namespace=namespace,
        label_selector=f"{specs.TASK}={task_key}",
    )


async def _started(stand_in: StandIn, name: str, timeout: float = 30) -> None:
    """Until the stand-in plays the pod's container."""
    for _ in range(int(timeout * 10)):
        if name in stand_in.runs:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} never ran")


def _gone(admin, namespace: str, name: str, timeout: float = 30) -> None:
    """Until the pod no longer exists."""
    core = client.CoreV1Api(admin)
    try:
        pod = core.read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        assert exc.status == 404
        return
    watch = kubernetes.watch.Watch()
    for event in watch.stream(
        core.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=pod.metadata.resource_version,
        timeout_seconds=int(timeout),
    ):
        if event["type"] == "DELETED":
            watch.stop()
            return
    raise TimeoutError(f"pod {name} still exists")


# --------------------------------------------------------------------------------------------- tests
def test_a_task_pod_is_created_hardened_and_the_deny_all_policy_exists(
    admin, kubeconfig, namespace, work, inputs, function_key, stand_in
):
    spec = _spec(function_key, inputs, "sleep")

    async def scenario():
        executor, _ = _executor(kubeconfig, namespace, work)
        try:
            execution = await executor.start(spec)
            pod = await asyncio.to_thread(_running, admin, namespace, spec.key)
            await execution.cancel()
            return pod
        finally:
            await executor.close()

    pod = asyncio.run(scenario())
    assert pod.metadata.name == f"tessera-task-{spec.key}"
    assert pod.metadata.labels == {
        "app.kubernetes.io/managed-by": "tessera-compute",
        "tessera.dev/organization": "org1",
        "tessera.dev/role": "task",
        "tessera.dev/task": spec.key,
        "tessera.dev/compute-plan": spec.plan_key,
        "tessera.dev/function": function_key,
    }
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.spec.active_deadline_seconds == 60
    [container] = pod.spec.containers
    assert container.image == f"{REGISTRY}/tessera/functions:{function_key}"
    context = container.security_context
    assert (context.read_only_root_filesystem, context.allow_privilege_escalation) == (True, False)
    assert context.capabilities.drop == ["ALL"]
    assert container.resources.limits == {"cpu": "2", "memory": "4Gi"}
    # As stored by the server: no token volume was injected, no secret, only the task's own folders.
    assert {v.name for v in pod.spec.volumes} == {"work", "tmp"}
    assert {(m.mount_path, m.sub_path, bool(m.read_only)) for m in container.volume_mounts} == {
        ("/tessera/in", f"tasks/{spec.key}/in", True),
        ("/tessera/out", f"tasks/{spec.key}/out", False),
        ("/tmp", None, False),
    }
    assert not container.env_from and all(v.value_from is None for v in container.env)
    policy = client.NetworkingV1Api(admin).read_namespaced_network_policy(specs.NETWORK_POLICY, namespace)
    assert policy.spec.pod_selector.match_labels == {"tessera.dev/role": "task"}
    assert sorted(policy.spec.policy_types) == ["Egress", "Ingress"]
    assert not policy.spec.ingress and not policy.spec.egress
    _gone(admin, namespace, pod.metadata.name)


def test_a_successful_task_gives_its_outputs_and_its_pod_is_deleted(
    admin, kubeconfig, namespace, work, inputs, function_key, stand_in
):
    spec = _spec(function_key, inputs)

    async def scenario():
        executor, _ = _executor(kubeconfig, namespace, work)
        try:
            result = await (await executor.start(spec)).wait()
            assert result.succeeded, (result, stand_in.logs.get(specs.pod_name(spec.key)))
            model = json.loads(result.outputs["model"].read_text())
            executor.forget(spec.key)
            return model
        finally:
            await executor.close()

    model = asyncio.run(scenario())
    assert np.allclose(model, [2.0, 2.0, 2.0])
    assert "train rank 0: 4 rows" in stand_in.logs[specs.pod_name(spec.key)]  # it ran in the "container"
    _gone(admin, namespace, specs.pod_name(spec.key))
    assert not (work / "tasks" / spec.key).exists()


WHERE = """
import json
import os

import substratools as tools


@tools.register
def where(inputs, outputs, task_properties):
    with open(outputs["model"], "w") as f:
        json.dump({"cwd": os.getcwd(), "env": {n: os.environ.get(n) for n in ("FOO", "GREETING", "HOME")}}, f)


tools.execute()
"""


def test_a_task_runs_with_its_dockerfile_s_env_in_its_last_workdir(kubeconfig, namespace, work, stand_in, tmp_path):
    dockerfile = (
        'FROM python:3.11-slim\nWORKDIR /workspace\nCOPY . .\nENV FOO=bar GREETING="hello $(there)"\n'
        'WORKDIR sub\nENTRYPOINT ["python3", "../where.py", "--function-name", "where"]\n'
    )
    archive = flassets.function_archive("where", dockerfile, {"where.py": WHERE, "sub/.keep": ""})
    key = str(uuid.uuid4())

    async def scenario():
        executor, images = _executor(kubeconfig, namespace, work)
        try:
            path = flassets.write(tmp_path / "where.tar.gz", archive)
            code = await images.prepare(res.Function(key=key), path, tmp_path / "build.log")
            assert (code.env, code.image_workdir) == ({"FOO": "bar", "GREETING": "hello $(there)"}, "/workspace/sub")
            spec = dataclasses.replace(
                _spec(key, []), entrypoint=code.entrypoint, env=code.env, image_workdir=code.image_workdir
            )
            result = await (await executor.start(spec)).wait()
            assert result.succeeded, (result, stand_in.logs.get(specs.pod_name(spec.key)))
            return json.loads(result.outputs["model"].read_text())
        finally:
            await executor.close()
            await images.close()

    found = asyncio.run(scenario())
    assert found == {"cwd": "/workspace/sub", "env": {"FOO": "bar", "GREETING": "hello $(there)", "HOME": "/tmp"}}


def test_a_failing_function_is_an_execution_error_with_the_pod_s_log(
    admin, kubeconfig, namespace, work, inputs, function_key, stand_in
):
    spec = _spec(function_key, inputs, "explode")

    async def scenario():
        executor, _ = _executor(kubeconfig, namespace, work)
        try:
            result = await (await executor.start(spec)).wait()
            return result, result.log_path.read_text()
        finally:
            await executor.close()

    result, log = asyncio.run(scenario())
    assert (result.exit_code, result.error, result.succeeded) == (1, "exited with status 1", False)
    assert "this function fails on purpose" in stand_in.logs[specs.pod_name(spec.key)]
    # Read through the API (pods/log, as the chart's account), which asks the node: the stand-in serves it.
    assert "RuntimeError: this function fails on purpose" in log
    _gone(admin, namespace, specs.pod_name(spec.key))


def test_cancel_deletes_the_pod(admin, kubeconfig, namespace, work, inputs, function_key, stand_in):
    spec = _spec(function_key, inputs, "sleep")
    name = specs.pod_name(spec.key)

    async def scenario():
        executor, _ = _executor(kubeconfig, namespace, work)
        try:
            execution = await executor.start(spec)
            await _started(stand_in, name)
            await execution.cancel()
            return await execution.wait()
        finally:
            await executor.close()

    result = asyncio.run(scenario())
    assert result.canceled
    _gone(admin, namespace, name)


def test_a_task_past_its_timeout_fails_and_its_pod_is_deleted(
    admin, kubeconfig, namespace, work, inputs, function_key, stand_in
):
    spec = _spec(function_key, inputs, "sleep", timeout=2)

    async def scenario():
        executor, _ = _executor(kubeconfig, namespace, work, grace=1.0)
        try:
            return await (await executor.start(spec)).wait()
        finally:
            await executor.close()

    result = asyncio.run(scenario())
    assert result.timed_out and not result.succeeded
    assert "timed out after 2 s" in result.error
    _gone(admin, namespace, specs.pod_name(spec.key))


def test_a_restarted_executor_re_adopts_the_running_pod_and_the_task_runs_once(
    admin, kubeconfig, namespace, work, inputs, function_key, stand_in
):
    spec = _spec(function_key, inputs, "nap")  # sleeps 4 s, then writes its model
    name = specs.pod_name(spec.key)

    async def scenario():
        first, _ = _executor(kubeconfig, namespace, work)
        execution = await first.start(spec)
        await _started(stand_in, name)
        uid = execution.uid
        await first.close()  # compute stops: the pod goes on
        left = await execution.wait()
        assert left.canceled
        assert [pod.metadata.uid for pod in _pods(admin, namespace, spec.key)] == [uid]
        second, _ = _executor(kubeconfig, namespace, work)
        with pytest.raises(Conflict):  # the name is the task's: a second pod cannot be made
            await second.api.create_pod(specs.task_pod(second.config, spec))
        try:
            again = await second.start(spec)
            result = await again.wait()
            return uid, again, result
        finally:
            await second.close()

    uid, again, result = asyncio.run(scenario())
    assert again.adopted and again.uid == uid  # the same pod, no second one
    assert result.succeeded and "model" in result.outputs
    assert stand_in.runs[name] == 1
    _gone(admin, namespace, name)


def test_a_pod_that_ended_while_compute_was_away_is_read_as_it_ended(
    admin, kubeconfig, namespace, work, inputs, function_key, stand_in
):
    spec = _spec(function_key, inputs)
    name = specs.pod_name(spec.key)

    async def scenario():
        first, _ = _executor(kubeconfig, namespace, work)
        await first.start(spec)
        await _started(stand_in, name)
        await first.close()
        await asyncio.to_thread(
            watch_until,
            client.CoreV1Api(admin).list_namespaced_pod,
            lambda pod: pod.status.phase == "Succeeded",
            30,
            namespace=namespace,
            field_selector=f"metadata.name={name}",
        )
        second, _ = _executor(kubeconfig, namespace, work)
        try:
            again = await second.start(spec)
            return again, await again.wait()
        finally:
            await second.close()

    again, result = asyncio.run(scenario())
    assert again.adopted and result.succeeded
    assert np.allclose(json.loads(result.outputs["model"].read_text()), [2.0, 2.0, 2.0])
    assert stand_in.runs[name] == 1
    _gone(admin, namespace, name)


def test_the_reaper_deletes_its_organization_s_stale_pods_and_never_another_s(
    admin, kubeconfig, namespace, work, inputs, function_key, stand_in, tmp_path
):
    stale, kept, other = (_spec(function_key, inputs, "sleep") for _ in range(3))

    async def scenario():
        dead, _ = _executor(kubeconfig, namespace, work)  # a compute of org1 that dies with two pods running
        for spec in (stale, kept):
            await dead.start(spec)
        org2, _ = _executor(kubeconfig, namespace, work, org="org2")
        theirs = await org2.start(other)
        for spec in (stale, kept, other):
            await _started(stand_in, specs.pod_name(spec.key))
        await dead.close()
        restarted, _ = _executor(kubeconfig, namespace, work)
        try:
            mine = await restarted.api.pods(specs.task_selector("org1"))
            reaped = await restarted.reap(executing={kept.key})
        finally:
            await restarted.close()
        alive = _pods(admin, namespace, other.key)
        await theirs.cancel()
        await org2.close()
        return {p["metadata"]["labels"][specs.TASK] for p in mine}, reaped, alive

    mine, reaped, alive = asyncio.run(scenario())
    assert mine == {stale.key, kept.key}  # org2's pod is not even listed
    assert reaped == [specs.pod_name(stale.key)]
    assert [pod.status.phase for pod in alive] == ["Running"]  # org2's pod was not touched
    _gone(admin, namespace, specs.pod_name(stale.key))
    assert [p.metadata.name for p in _pods(admin, namespace, kept.key)] == [specs.pod_name(kept.key)]
    client.CoreV1Api(admin).delete_namespaced_pod(specs.pod_name(kept.key), namespace)


# (API group, resource, subresource, verb, name) of every call services/compute/kubernetes/api.py makes.
GRANTED = [
    *(("", "pods", "", verb, "") for verb in ("create", "get", "list", "watch", "delete")),
    ("", "pods", "log", "get", ""),
    *(("batch", "jobs", "", verb, "") for verb in ("create", "get", "list", "watch", "delete")),
    ("networking.k8s.io", "networkpolicies", "", "create", ""),
    ("networking.k8s.io", "networkpolicies", "", "get", specs.NETWORK_POLICY),
]
REFUSED = [
    ("", "secrets", "", "get", ""),
    ("", "secrets", "", "list", ""),
    ("", "configmaps", "", "get", ""),
    ("", "serviceaccounts", "token", "create", ""),
    ("", "pods", "", "patch", ""),
    ("", "pods", "", "update", ""),
    ("", "pods", "exec", "create", ""),
    ("", "pods", "status", "patch", ""),
    ("batch", "jobs", "", "patch", ""),
    ("networking.k8s.io", "networkpolicies", "", "delete", specs.NETWORK_POLICY),
    ("networking.k8s.io", "networkpolicies", "", "get", "another-policy"),
    ("rbac.authorization.k8s.io", "roles", "", "create", ""),
]


def _can(api, namespace: str, group: str, resource: str, subresource: str, verb: str, name: str) -> bool:
    attributes = client.V1ResourceAttributes(
        namespace=namespace,
        group=group,
        resource=resource,
        subresource=subresource or None,
        verb=verb,
        name=name or None,
    )
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes))
    return client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed


def test_compute_s_service_account_may_make_its_calls_and_no_other(kubeconfig, namespace):
    with api_client(str(kubeconfig)) as api:
        assert [call for call in GRANTED if not _can(api, namespace, *call)] == []
        assert [call for call in REFUSED if _can(api, namespace, *call)] == []
        assert not _can(api, "default", "", "pods", "", "create", "")  # nothing outside its namespace
        core = client.CoreV1Api(api)
        refused = [
            lambda: core.list_namespaced_secret(namespace),
            lambda: core.read_namespaced_secret("any", namespace),
            lambda: core.list_namespaced_pod("default"),
            lambda: core.patch_namespaced_pod("any", namespace, {"metadata": {"labels": {"a": "b"}}}),
            lambda: client.NetworkingV1Api(api).delete_namespaced_network_policy(specs.NETWORK_POLICY, namespace),
        ]
        for call in refused:
            with pytest.raises(client.ApiException) as info:
                call()
            assert info.value.status == 403


def test_a_task_pod_meets_the_restricted_pod_security_standard(
    k8s_cluster, admin, inputs, function_key, tmp_path_factory
):
    namespace = k8s_cluster.new_namespace("restricted")
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    client.CoreV1Api(admin).patch_namespace(namespace, {"metadata": {"labels": labels}})
    kubeconfig = _apply_rbac(k8s_cluster, admin, namespace, tmp_path_factory.mktemp("rbac"))
    work = tmp_path_factory.mktemp("restricted-work")
    spec = _spec(function_key, inputs, "sleep")
    claim = {"persistentVolumeClaim": {"claimName": "work"}}  # a hostPath would be refused here

    async def scenario():
        executor, _ = _executor(kubeconfig, namespace, work, volume=claim)
        try:
            execution = await executor.start(spec)
            while not execution.uid and not execution._task.done():
                await asyncio.sleep(0.05)
            created = execution.uid
            await execution.cancel()
            return created, execution._task
        finally:
            await executor.close()

    created, task = asyncio.run(scenario())
    assert created, task.exception() if task.done() else None  # admitted by PodSecurity (restricted)
    # The control: the same pod as root is refused by the namespace's admission.
    pod = specs.task_pod(specs.Config(namespace=namespace, organization="org1", volume=claim), spec)
    pod["metadata"]["name"] = "as-root"
    pod["spec"]["securityContext"]["runAsUser"] = 0
    with pytest.raises(client.ApiException) as info:
        client.CoreV1Api(admin).create_namespaced_pod(namespace, client.V1Pod.from_dict(pod))
    assert info.value.status == 403 and "restricted" in info.value.body


def test_a_function_image_builds_once(kubeconfig, namespace, work, function_key, stand_in, tmp_path):
    logs = tmp_path / "build.log"

    async def scenario():
        _, images = _executor(kubeconfig, namespace, work)
        try:
            image = await images.build(function_key, logs)
            return image, images.built
        finally:
            await images.close()

    image, built = asyncio.run(scenario())
    assert image == f"{REGISTRY}/tessera/functions:{function_key}"
    assert built == 0  # the module's build made it: its Job completed, nothing is built again
    assert "was built already" in logs.read_text()


def test_a_failed_build_job_is_a_build_error_with_its_log(admin, kubeconfig, namespace, work, stand_in, tmp_path):
    key = str(uuid.uuid4())
    context = work / specs.context_folder(key)
    flassets.write(context / "function.py", flassets.FUNCTIONS)  # no Dockerfile: Kaniko fails
    logs = tmp_path / "build.log"

    async def scenario():
        _, images = _executor(kubeconfig, namespace, work)
        try:
            with pytest.raises(BuildError) as info:
                await images.build(key, logs)
            return info.value
        finally:
            await images.close()

    error = asyncio.run(scenario())
    assert "the image build failed" in str(error)
    text = logs.read_text()
    assert f"building image {REGISTRY}/tessera/functions:{key}" in text
    assert "stand-in kaniko: error: no Dockerfile in the context" in text  # the build pod's log, through the API
    with pytest.raises(client.ApiException) as gone:  # the failed Job is deleted: the next attempt builds again
        client.BatchV1Api(admin).read_namespaced_job(specs.job_name("org1", key), namespace)
    assert gone.value.status == 404


def test_an_unreachable_api_server_is_unavailable(tmp_path):
    """Compute's work is redelivered, not failed, when the API server is away."""
    config = client.Configuration(host="https://127.0.0.1:9")
    api = Api(client.ApiClient(config), "default")

    async def scenario():
        with pytest.raises(errors.Unavailable):
            await api.pod("tessera-task-x")

    asyncio.run(scenario())
