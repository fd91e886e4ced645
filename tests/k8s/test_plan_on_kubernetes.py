"""Issue 12, item 5: a two-organization network in which MyOrg1MSP's compute runs its tasks as pods of the test
control plane and MyOrg2MSP's with the local executor, driven through each gateway by the real ``substra`` SDK.

Every service is a real process (``running_network``). MyOrg1MSP's compute authenticates with a token of the compute
chart's ServiceAccount (the chart's Role, rendered by helm), shares its work folder with its pods as a hostPath, and
builds function images as Kaniko Jobs. kwok runs no container: ``stand_in.StandIn`` plays the pods' containers (the
task's command in a jail, with the pod's mounts of the work folder) and serves their logs to the API server.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import substra
from kubernetes import client
from substra.sdk import exceptions, models, schemas
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.compute.kubernetes import specs
from services.kit.client import sync_channel
from tests.conftest import running_network
from tests.k8s.stand_in import StandIn
from tests.k8s.test_executor import _apply_rbac, _gone
from tests.sdk.test_sequence import SIGNATURES, _data, _output, _parents, _write_sample
from tools.devnet.network import KubernetesTarget, org_name
from tools.k8s.cluster import watch_until
from tools.samples import flassets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POLL = 0.3
PUBLIC = schemas.Permissions(public=True, authorized_ids=[])
FUNCTIONS = {**SIGNATURES, "nap": SIGNATURES["sleep"]}  # nap: sleeps 4 s, then writes a zero model


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def admin(k8s_cluster):
    with k8s_cluster.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module")
def namespace(k8s_cluster):
    return k8s_cluster.new_namespace("plan")


@pytest.fixture(scope="module")
def stand_in(k8s_cluster, namespace, tmp_path_factory):
    with StandIn(k8s_cluster, namespace, tmp_path_factory.mktemp("containers")) as playing:
        yield playing


@pytest.fixture(scope="module")
def network(k8s_cluster, admin, namespace, stand_in, postgres, tmp_path_factory):
    """The two organizations; MyOrg1MSP's compute on Kubernetes, as the compute chart's ServiceAccount."""
    kubeconfig = _apply_rbac(k8s_cluster, admin, namespace, tmp_path_factory.mktemp("rbac"))
    target = KubernetesTarget(str(kubeconfig), namespace, env={"TESSERA_K8S_GRACE_SECONDS": "20"})
    yield from running_network(
        postgres,
        tmp_path_factory,
        extra_env={"compute": {"TESSERA_ACK_WAIT": "4", "TESSERA_RECONCILE_SECONDS": "3"}},
        kubernetes={org_name(1): target},
    )


def _client(org) -> substra.Client:
    return substra.Client(url=org.gateway, backend_type="remote", username=org.username, password=org.password)


@pytest.fixture(scope="module")
def world(network, tmp_path_factory):
    """Logins, a dataset of three samples per organization, the functions (registered by MyOrg1MSP, whose
    compute builds each image as a Kaniko Job), and MyOrg1MSP's view of the ledger."""
    folder = tmp_path_factory.mktemp("plan-assets")
    c1, c2 = _client(network.organizations[0]), _client(network.organizations[1])
    deadline = time.monotonic() + 30
    while len(c1.list_organization()) < 2:
        assert time.monotonic() < deadline, "the organizations did not register"
        time.sleep(0.2)
    o1, o2 = network.organizations[0].id, network.organizations[1].id
    rng = np.random.default_rng(12)
    datasets, samples, rows = {}, {}, {}
    for index, (sdk, org) in enumerate(((c1, o1), (c2, o2))):
        base = folder / org
        dm = sdk.add_dataset(
            schemas.DatasetSpec(
                name=f"k8s-{org}",
                data_opener=flassets.write(base / "opener.py", flassets.OPENER),
                description=flassets.write(base / "description.md", f"# {org}\n"),
                permissions=PUBLIC,
                logs_permission=PUBLIC,
            )
        )
        rows[org] = {name: _write_sample(base / name, rng.normal(index + 1, 1.0, (4, 3))) for name in "abc"}
        keys = sdk.add_data_samples(
            schemas.DataSampleSpec(paths=[base / name for name in "abc"], data_manager_keys=[dm])
        )
        datasets[org], samples[org] = dm, dict(zip("abc", keys, strict=True))
    functions = {}
    for name, (inputs, outputs) in FUNCTIONS.items():
        functions[name] = c1.add_function(
            schemas.FunctionSpec(
                name=f"k8s-{name}",
                description=flassets.write(folder / f"{name}.md", f"# {name}\n"),
                file=flassets.write(folder / f"{name}.tar.gz", flassets.function_archive(name)),
                permissions=PUBLIC,
                inputs=inputs,
                outputs=outputs,
            )
        )
    for key in functions.values():
        assert c1.wait_function(key, timeout=90, polling_period=POLL).status == models.FunctionStatus.ready
    ledger = api_grpc.AssetServiceStub(sync_channel(network.services[0].addr, network.org_credentials(o1)))
    yield type("World", (), dict(c1=c1, c2=c2, o1=o1, o2=o2, datasets=datasets, samples=samples, rows=rows,
                                 functions=functions, ledger=ledger))  # fmt: skip
    for sdk in (c1, c2):
        sdk.logout()


def _task(world, key: str, function: str, worker: str, inputs: list, output: str = "model"):
    return schemas.ComputePlanTaskSpec(
        task_id=key, function_key=world.functions[function], worker=worker, inputs=inputs, outputs={output: _output()}
    )


def _plan(world, tasks: list, name: str) -> str:
    spec = schemas.ComputePlanSpec(key=str(uuid.uuid4()), name=name, tasks=tasks)
    return world.c1.add_compute_plan(spec).key


def _org1_pods(admin, namespace: str) -> list:
    listed = client.CoreV1Api(admin).list_namespaced_pod(namespace, label_selector=specs.task_selector(org_name(1)))
    return listed.items


def _done_events(world, task_key: str) -> int:
    events = world.ledger.QueryEvents(api.QueryEventsRequest(asset_key=task_key, page_size=1000)).events
    return sum(
        1 for e in events if e.WhichOneof("asset") == "compute_task" and e.compute_task.status == res.STATUS_DONE
    )


# --------------------------------------------------------------------------------------------- tests
def test_function_images_are_built_by_kaniko_jobs_on_organization_1(world, admin, namespace, stand_in):
    jobs = client.BatchV1Api(admin).list_namespaced_job(namespace).items
    built = {job.metadata.name for job in jobs if job.status.succeeded}
    assert {specs.job_name(world.o1, key) for key in world.functions.values()} <= built
    played = [pod for pod in stand_in.runs if pod.startswith("tessera-build-")]
    assert len(played) == len(world.functions)  # each function built once, by the stand-in's "Kaniko"
    assert {stand_in.logs[pod] for pod in played} == {"stand-in kaniko: built"}


def test_a_federated_plan_completes_with_the_expected_performances(world, network, admin, namespace, stand_in):
    o1, o2, dm, s = world.o1, world.o2, world.datasets, world.samples
    keys = {n: str(uuid.uuid4()) for n in ("train1", "train2", "aggregate", "predict1", "predict2", "score1", "score2")}
    tasks = [
        _task(world, keys["train1"], "train", o1, _data(dm[o1], s[o1]["a"], s[o1]["b"])),
        _task(world, keys["train2"], "train", o2, _data(dm[o2], s[o2]["a"], s[o2]["b"])),
        _task(world, keys["aggregate"], "aggregate", o1,
              _parents("models", (keys["train1"], "model"), (keys["train2"], "model"))),
    ]  # fmt: skip
    for i, org in ((1, o1), (2, o2)):
        inputs = [*_data(dm[org], s[org]["c"]), *_parents("models", (keys["aggregate"], "model"))]
        tasks.append(_task(world, keys[f"predict{i}"], "predict", org, inputs, "predictions"))
        inputs = _parents("predictions", (keys[f"predict{i}"], "predictions"))
        tasks.append(_task(world, keys[f"score{i}"], "score", org, inputs, "performance"))
    plan_key = _plan(world, tasks, "k8s-federated")
    plan = world.c1.wait_compute_plan(plan_key, timeout=150, polling_period=POLL)
    assert plan.status == models.ComputePlanStatus.done and plan.done_count == 7

    rows = world.rows
    train = {org: np.concatenate([rows[org]["a"], rows[org]["b"]]).mean(axis=0) for org in (o1, o2)}
    aggregate = np.mean([train[o1], train[o2]], axis=0)
    expected = {
        keys[f"score{i}"]: pytest.approx(
            1.0 / (1.0 + float(np.square(np.abs(rows[org]["c"] - aggregate).mean(0)).mean()))
        )
        for i, org in ((1, o1), (2, o2))
    }
    performances = world.c1.get_performances(plan_key)
    assert dict(zip(performances.task_key, performances.performance, strict=True)) == expected
    # MyOrg1MSP's four tasks ran as pods, once each, and MyOrg2MSP's three did not.
    ran = {name: stand_in.runs.get(specs.pod_name(keys[name])) for name in keys}
    assert ran == {"train1": 1, "aggregate": 1, "predict1": 1, "score1": 1, "train2": None, "predict2": None,
                   "score2": None}  # fmt: skip
    assert "train rank 0: 8 rows" in stand_in.logs[specs.pod_name(keys["train1"])]
    # The images were built by this compute at registration: its tasks did not look for them again.
    builds = network.state_dir / "compute" / o1 / "builds"
    for name in ("train", "aggregate", "predict", "score"):
        assert "was built already" not in (builds / f"{world.functions[name]}.log").read_text()
    for name in ("train1", "aggregate", "predict1", "score1"):  # finished pods are deleted
        _gone(admin, namespace, specs.pod_name(keys[name]))


def test_a_failing_function_on_organization_1_is_an_execution_error_with_its_logs(world, admin, namespace):
    task_key = world.c1.add_task(
        schemas.TaskSpec(
            function_key=world.functions["explode"],
            worker=world.o1,
            inputs=_data(world.datasets[world.o1], world.samples[world.o1]["a"]),
            outputs={"model": _output()},
        )
    )
    with pytest.raises(exceptions.FutureFailureError):
        world.c1.wait_task(task_key, timeout=60, polling_period=POLL)
    task = world.c1.get_task(task_key)
    assert task.status == models.ComputeTaskStatus.failed
    assert task.error_type == models.TaskErrorType.execution
    # The container's log, read by compute through the API server (pods/log), which asked the stand-in's kubelet.
    logs = world.c1.get_logs(task_key)
    assert "Traceback" in logs and "RuntimeError: this function fails on purpose" in logs
    assert "exited with status 1" in logs
    _gone(admin, namespace, specs.pod_name(task_key))


def test_cancelling_a_plan_removes_its_pods(world, admin, namespace, stand_in):
    o1, dm, s = world.o1, world.datasets[world.o1], world.samples[world.o1]
    keys = [str(uuid.uuid4()) for _ in range(2)]
    tasks = [_task(world, key, "sleep", o1, _data(dm, s[name])) for key, name in zip(keys, "ab", strict=True)]
    plan_key = _plan(world, tasks, "k8s-cancel")
    for key in keys:  # both sleep in a running pod (compute has two slots)
        watch_until(
            client.CoreV1Api(admin).list_namespaced_pod,
            lambda pod: pod.status.phase == "Running",
            60,
            namespace=namespace,
            field_selector=f"metadata.name={specs.pod_name(key)}",
        )
    started = time.monotonic()
    world.c1.cancel_compute_plan(plan_key)
    for key in keys:
        _gone(admin, namespace, specs.pod_name(key), timeout=30)
    assert time.monotonic() - started < 30
    plan = world.c1.wait_compute_plan(plan_key, timeout=30, polling_period=POLL, raise_on_failure=False)
    assert plan.status == models.ComputePlanStatus.canceled and plan.canceled_count == 2
    assert all(stand_in.runs[specs.pod_name(key)] == 1 for key in keys)
    assert not [pod for pod in _org1_pods(admin, namespace) if pod.metadata.labels[specs.PLAN] == plan_key]


def test_killing_compute_mid_plan_and_restarting_it_completes_each_task_once(
    world, network, admin, namespace, stand_in
):
    o1, o2, dm, s = world.o1, world.o2, world.datasets, world.samples
    nap, train1, train2, aggregate = (str(uuid.uuid4()) for _ in range(4))
    tasks = [
        _task(world, nap, "nap", o1, _data(dm[o1], s[o1]["a"])),
        _task(world, train1, "train", o1, [*_data(dm[o1], s[o1]["b"]), *_parents("models", (nap, "model"))]),
        _task(world, train2, "train", o2, [*_data(dm[o2], s[o2]["b"]), *_parents("models", (nap, "model"))]),
        _task(world, aggregate, "aggregate", o1, _parents("models", (train1, "model"), (train2, "model"))),
    ]
    plan_key = _plan(world, tasks, "k8s-kill")
    deadline = time.monotonic() + 60
    while specs.pod_name(nap) not in stand_in.runs:  # the nap's container is playing (4 s)
        assert time.monotonic() < deadline, "the nap's pod never ran"
        time.sleep(0.1)
    compute = network.service("compute", o1)
    network.restart(compute, kill=True)  # SIGKILL: no goodbye, the pod is left running
    plan = world.c1.wait_compute_plan(plan_key, timeout=120, polling_period=POLL)
    assert plan.status == models.ComputePlanStatus.done and plan.done_count == 4
    assert [_done_events(world, key) for key in (nap, train1, train2, aggregate)] == [1, 1, 1, 1]
    assert stand_in.runs[specs.pod_name(nap)] == 1  # re-adopted, not run again
    log = network.log_path(compute).read_text()
    assert f"task {nap}: its pod {specs.pod_name(nap)} exists" in log
    outputs = world.ledger.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=nap)).assets
    assert len(outputs) == 1  # one model registered, not two
    for key in (nap, train1, aggregate):
        _gone(admin, namespace, specs.pod_name(key))
    # Nothing staged for a pod is left behind, the re-adopted pod's folders included.
    work = network.state_dir / "compute" / o1
    deadline = time.monotonic() + 15
    while left := [*(work / "tasks").iterdir(), *(work / "results").iterdir()]:
        assert time.monotonic() < deadline, f"left in compute's work folder: {left}"
        time.sleep(0.2)
