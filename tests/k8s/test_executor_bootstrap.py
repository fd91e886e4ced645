"""Compute chosen with ``TESSERA_EXECUTOR=kubernetes``, built by its composition root: on an in-process ledger,
the session's PostgreSQL and NATS, and the test control plane, as the compute chart's ServiceAccount."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from tessera.compute.v1 import compute_service_pb2 as api
from tessera.compute.v1 import compute_service_pb2_grpc as api_grpc

from services.asset.bootstrap import build as build_ledger
from services.asset.settings import AssetSettings
from services.compute.bootstrap import build as build_compute
from services.compute.domain.execution import TaskSpec
from services.compute.kubernetes import specs
from services.compute.settings import ComputeSettings
from services.kit.client import sync_channel
from services.kit.db import ensure_database
from services.kit.identity import OrgCredentials
from tests.k8s.test_executor import _apply_rbac, _gone, _running
from tests.support import ServerThread
from tools.devnet.credentials import new_secret, write_org_credentials


def _left_pod(admin, namespace: str, org: str, work: Path) -> str:
    """A task pod as a compute of ``org`` that died would have left it (its task is in no ledger)."""
    config = specs.Config(namespace=namespace, organization=org, volume={"hostPath": {"path": str(work)}})
    spec = TaskSpec(
        key=str(uuid.uuid4()),
        plan_key=str(uuid.uuid4()),
        function_key=str(uuid.uuid4()),
        code=work,
        python="",
        entrypoint=["python3", "function.py"],
        inputs=[],
        outputs={},
    )
    client.CoreV1Api(admin).create_namespaced_pod(namespace, client.V1Pod.from_dict(specs.task_pod(config, spec)))
    _running(admin, namespace, spec.key)
    return spec.key


def test_compute_with_the_kubernetes_executor_starts_makes_the_policy_and_reaps_what_a_dead_compute_left(
    k8s_cluster, postgres, nats_server, tmp_path
):
    suffix = uuid.uuid4().hex[:8]
    org = f"K8sOrg{suffix}"
    credentials = write_org_credentials(tmp_path / "credentials", {org: new_secret()})
    common = {"nats_url": nats_server.url}
    ledger_url, compute_url = postgres.url(f"k8s_ledger_{suffix}"), postgres.url(f"k8s_compute_{suffix}")
    ensure_database(ledger_url)
    ensure_database(compute_url)
    work = tmp_path / "work"
    work.mkdir()
    with k8s_cluster.api_client() as admin:
        namespace = k8s_cluster.new_namespace("boot")
        kubeconfig = _apply_rbac(k8s_cluster, admin, namespace, tmp_path / "rbac")
        left = _left_pod(admin, namespace, org, work)
        other = _left_pod(admin, namespace, "another-org", work)
        with ServerThread(
            lambda: build_ledger(
                AssetSettings(grpc_addr="127.0.0.1:0", database_url=ledger_url, **common, **credentials.settings())
            )
        ) as ledger:
            settings = ComputeSettings(
                grpc_addr="127.0.0.1:0",
                database_url=compute_url,
                org_id=org,
                asset_addr=ledger.addr,
                storage_addr="127.0.0.1:9",
                work_dir=str(work),
                executor="kubernetes",
                k8s_kubeconfig=str(kubeconfig),
                k8s_namespace=namespace,
                k8s_work_host_path=str(work),
                k8s_registry="registry.test:5000",
                reconcile_every=0.5,
                **common,
                **credentials.settings(org),
            )
            with ServerThread(lambda: build_compute(settings)) as compute:
                own = OrgCredentials(org, credentials.secret(org))
                stub = api_grpc.ComputeServiceStub(sync_channel(compute.addr, own))
                status = stub.GetStatus(api.GetStatusRequest())
                _gone(admin, namespace, specs.pod_name(left))  # the reaper: its task is not EXECUTING
                policy = client.NetworkingV1Api(admin).read_namespaced_network_policy(specs.NETWORK_POLICY, namespace)
                others = client.CoreV1Api(admin).read_namespaced_pod(specs.pod_name(other), namespace)
        assert status.executor == "kubernetes"
        assert policy.spec.pod_selector.match_labels == {specs.ROLE: specs.TASK_ROLE}
        assert others.status.phase == "Running" and not others.metadata.deletion_timestamp  # not its organization's
        client.CoreV1Api(admin).delete_namespaced_pod(specs.pod_name(other), namespace)


def test_an_unknown_executor_is_refused_at_start(tmp_path):
    settings = ComputeSettings(work_dir=str(tmp_path), executor="docker")
    with pytest.raises(ValueError, match="local or kubernetes"):
        asyncio.run(build_compute(settings))
