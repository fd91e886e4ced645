"""The test control plane itself: a real API server at the stamped version, pods and Jobs that end as told,
policy objects accepted, RBAC enforced on a ServiceAccount token, and helm beside the binaries."""

from __future__ import annotations

import os
import subprocess

import pytest
from kubernetes import client

from tools.k8s.cluster import EXIT_CODE_ANNOTATION, watch_until

FINISHED = ("Succeeded", "Failed")


@pytest.fixture(scope="module")
def admin(k8s_cluster):
    with k8s_cluster.api_client() as api:
        yield api


@pytest.fixture(scope="module")
def namespace(k8s_cluster):
    return k8s_cluster.new_namespace("cluster")


def _pod(name: str, annotations: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "example/none:1", "args": ["x"]}]},
    }


def _wait_phase(admin, namespace: str, name: str, phases, timeout: float = 30):
    return watch_until(
        client.CoreV1Api(admin).list_namespaced_pod,
        lambda pod: pod.status.phase in phases,
        timeout,
        namespace=namespace,
        field_selector=f"metadata.name={name}",
    )


def test_api_server_is_the_stamped_release(admin):
    assert client.VersionApi(admin).get_code().git_version == "v1.36.3"


def test_the_fake_node_is_ready_and_keeps_its_lease(admin):
    node = client.CoreV1Api(admin).read_node("kwok-node-0")
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    # kwok renews the Lease as a kubelet would: without it the node lifecycle controller marks the node
    # NotReady 50 s after start and taints it, which would break any longer test run.
    lease = client.CoordinationV1Api(admin).read_namespaced_lease("kwok-node-0", "kube-node-lease")
    assert lease.spec.renew_time is not None


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (3, "Failed")])
def test_a_pod_ends_with_the_exit_code_of_its_annotation(admin, namespace, code, phase):
    name = f"exit-{code}"
    client.CoreV1Api(admin).create_namespaced_pod(namespace, _pod(name, {EXIT_CODE_ANNOTATION: str(code)}))

    pod = _wait_phase(admin, namespace, name, FINISHED)

    assert pod.status.phase == phase
    assert pod.spec.node_name == "kwok-node-0"  # bound by the real scheduler
    (status,) = pod.status.container_statuses
    assert status.state.terminated.exit_code == code


def test_a_pod_without_the_annotation_stays_running_until_its_exit_code_is_set(k8s_cluster, admin, namespace):
    client.CoreV1Api(admin).create_namespaced_pod(namespace, _pod("undecided"))
    assert _wait_phase(admin, namespace, "undecided", ("Running",)).status.phase == "Running"
    with pytest.raises(TimeoutError):  # kwok's finishing stage waits 0.2 s; nothing moves it in 1.5 s
        _wait_phase(admin, namespace, "undecided", FINISHED, timeout=1.5)

    k8s_cluster.set_exit_code(namespace, "undecided", 7)

    pod = _wait_phase(admin, namespace, "undecided", FINISHED)
    assert (pod.status.phase, pod.status.container_statuses[0].state.terminated.exit_code) == ("Failed", 7)


def test_a_job_completes(admin, namespace):
    template = _pod("ignored", {EXIT_CODE_ANNOTATION: "0"})
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"metadata": template["metadata"], "spec": template["spec"]}},
    }
    batch = client.BatchV1Api(admin)
    batch.create_namespaced_job(namespace, job)

    done = watch_until(
        batch.list_namespaced_job,
        lambda j: any(c.type in ("Complete", "Failed") and c.status == "True" for c in j.status.conditions or []),
        30,
        namespace=namespace,
        field_selector="metadata.name=once",
    )
    assert [c.type for c in done.status.conditions if c.status == "True"][-1] == "Complete"
    assert done.status.succeeded == 1


def test_network_policy_and_resource_quota_are_accepted(admin, namespace):
    deny_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "50"}}}
    client.NetworkingV1Api(admin).create_namespaced_network_policy(namespace, deny_all)
    client.CoreV1Api(admin).create_namespaced_resource_quota(namespace, quota)

    stored = client.NetworkingV1Api(admin).read_namespaced_network_policy("deny-all", namespace)
    assert stored.spec.policy_types == ["Ingress", "Egress"]
    assert client.CoreV1Api(admin).read_namespaced_resource_quota("q", namespace).spec.hard == {"pods": "50"}


def test_a_service_account_token_is_authenticated_and_held_to_its_role(k8s_cluster, admin, namespace):
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    kubeconfig = k8s_cluster.kubeconfig_for_token(k8s_cluster.token_for(namespace, "reader"))

    from kubernetes import config

    with config.new_client_from_config(config_file=str(kubeconfig)) as reader:
        review = client.AuthenticationV1Api(reader).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"
        client.CoreV1Api(reader).list_namespaced_pod(namespace)  # allowed
        with pytest.raises(client.ApiException) as refused:
            client.CoreV1Api(reader).create_namespaced_pod(namespace, _pod("not-allowed"))
        assert refused.value.status == 403
        with pytest.raises(client.ApiException) as elsewhere:
            client.CoreV1Api(reader).list_namespaced_pod("default")
        assert elsewhere.value.status == 403


def test_helm_runs_from_bin_dir_against_the_cluster(k8s_cluster):
    helm = str(k8s_cluster.bin_dir / "helm")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(k8s_cluster.state_dir / "helm"),
        "HELM_CONFIG_HOME": str(k8s_cluster.state_dir / "helm"),
    }

    version = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True, env=env)
    assert version.stdout.startswith("v3.21.4")
    listing = subprocess.run(
        [helm, "list", "--all-namespaces", "--kubeconfig", str(k8s_cluster.kubeconfig)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
