"""A substrafl 1.0.0 federated experiment (FedAvg, a numpy algorithm) over the two organizations.

substrafl builds its function archives (Dockerfile, cloudpickled code, requirements.txt naming
numpy and substrafl at the versions installed here, so the compute service's interpreter already
satisfies them), registers them through MyOrg1MSP's gateway with the real SDK, and submits the
plan; the compute services run every task. Each round's evaluation gives a performance per test
organization, checked against the same FedAvg computed with numpy.
"""

from __future__ import annotations

import re
import uuid

import cloudpickle
import numpy as np
import pytest
from substra.sdk import models, schemas
from substrafl import model_loading, nodes
from substrafl.dependency import Dependency
from substrafl.evaluation_strategy import EvaluationStrategy
from substrafl.experiment import execute_experiment
from substrafl.strategies import FedAvg

from tests.conftest import REPO
from tests.sdk.conftest import sdk_client
from tools.samples import flassets, numpy_algo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROUNDS = 2
LEARNING_RATE = 0.5


def _locked_version(package: str) -> str:
    """The version requirements.lock pins (the compute service's interpreter has it)."""
    match = re.search(rf"^{package}==(\S+)$", (REPO / "requirements.lock").read_text(), re.MULTILINE)
    assert match, f"{package} is not in requirements.lock"
    return match.group(1)


@pytest.fixture(scope="module")
def clients(organizations):
    c1, c2 = sdk_client(organizations[0]), sdk_client(organizations[1])
    yield c1, c2
    c1.logout()
    c2.logout()


@pytest.fixture(scope="module")
def datasets(clients, tmp_path_factory):
    """Per organization: a dataset MyOrg1MSP may process, two training samples and one test sample."""
    c1, _ = clients
    org1 = c1.organization_info().organization_id
    folder = tmp_path_factory.mktemp("substrafl-data")
    rng = np.random.default_rng(5)
    out = {}
    for index, client in enumerate(clients):
        org = client.organization_info().organization_id
        base = folder / org
        opener = flassets.write(base / "opener.py", flassets.OPENER)
        description = flassets.write(base / "description.md", "# rows\n")
        permissions = schemas.Permissions(public=False, authorized_ids=sorted({org1, org}))
        dm = client.add_dataset(
            schemas.DatasetSpec(
                name=f"substrafl-{org}",
                data_opener=opener,
                description=description,
                permissions=permissions,
                logs_permission=permissions,
            )
        )
        rows, keys = {}, {}
        for name, count in (("train-a", 5), ("train-b", 3), ("test", 4)):
            sample = base / name
            data = rng.normal(2.0 * (index + 1), 1.0, (count, 3))
            flassets.write(sample / "data.csv", "\n".join(",".join(f"{x:.6f}" for x in r) for r in data) + "\n")
            rows[name] = np.loadtxt(sample / "data.csv", delimiter=",", ndmin=2)
            keys[name] = client.add_data_sample(schemas.DataSampleSpec(path=sample, data_manager_keys=[dm]))
        out[org] = (dm, keys, rows)
    return out


def _expected_weights(datasets) -> list[np.ndarray]:
    """FedAvg of MeanAlgo with numpy: the weights every organization holds after each round
    (round 0 evaluates the initialized algo)."""
    train = [np.concatenate([rows["train-a"], rows["train-b"]]) for _, _, rows in datasets.values()]
    total = sum(len(data) for data in train)
    history = [np.zeros(3)]
    for _ in range(ROUNDS):
        weights = history[-1]
        moves = [LEARNING_RATE * (data.mean(axis=0) - weights) * len(data) / total for data in train]
        history.append(weights + sum(moves))
    return history


def _expected_performances(datasets) -> dict[tuple[str, int], float]:
    """The metric of each round's weights on each organization's test rows."""
    return {
        (org, round_idx): numpy_algo.fit(rows["test"], np.broadcast_to(weights, rows["test"].shape))
        for org, (_, _, rows) in datasets.items()
        for round_idx, weights in enumerate(_expected_weights(datasets))
    }


def test_a_fedavg_experiment_completes_with_a_performance_per_round(clients, datasets, network, tmp_path, monkeypatch):
    c1, _ = clients
    monkeypatch.chdir(tmp_path)  # substrafl makes its temporary folders in the current directory
    cloudpickle.register_pickle_by_value(numpy_algo)  # shipped like a user's script, not imported by the tasks
    try:
        train_nodes = [
            nodes.TrainDataNode(
                organization_id=org, data_manager_key=dm, data_sample_keys=[keys["train-a"], keys["train-b"]]
            )
            for org, (dm, keys, _) in datasets.items()
        ]
        test_nodes = [
            nodes.TestDataNode(organization_id=org, data_manager_key=dm, data_sample_keys=[keys["test"]])
            for org, (dm, keys, _) in datasets.items()
        ]
        strategy = FedAvg(
            algo=numpy_algo.MeanAlgo(dimension=3, learning_rate=LEARNING_RATE),
            metric_functions={"fit": numpy_algo.fit},
        )
        dependencies = Dependency(pypi_dependencies=[f"numpy=={_locked_version('numpy')}"], editable_mode=False)
        plan = execute_experiment(
            client=c1,
            strategy=strategy,
            train_data_nodes=train_nodes,
            aggregation_node=nodes.AggregationNode(c1.organization_info().organization_id),
            evaluation_strategy=EvaluationStrategy(test_data_nodes=test_nodes, eval_frequency=1),
            num_rounds=ROUNDS,
            experiment_folder=tmp_path / "experiment",
            dependencies=dependencies,
            clean_models=False,
            name=f"substrafl-e2e-{uuid.uuid4().hex[:6]}",
            task_submission_batch_size=8,
        )
        plan = c1.wait_compute_plan(plan.key, timeout=180, polling_period=0.5)
        assert plan.status == models.ComputePlanStatus.done
        # 2 init + 3 rounds of 2 trainings + 2 aggregations + 3 evaluations on 2 organizations.
        assert plan.task_count == plan.done_count == 2 + 3 * 2 + 2 + 3 * 2
        assert plan.metadata["substrafl_version"] == "1.0.0"
        assert list((tmp_path / "experiment").glob(f"*_{plan.key}.json"))
        # The archives' requirements (numpy, substrafl) were the compute interpreter's own: no virtualenv, no pip.
        for org in network.organizations:
            assert not (network.state_dir / "compute" / org.id / "functions" / "venvs").exists()

        performances = c1.get_performances(plan.key)
        assert set(performances.identifier) == {"fit"}
        measured = dict(
            zip(zip(performances.worker, performances.round_idx, strict=True), performances.performance, strict=True)
        )
        expected = _expected_performances(datasets)
        assert set(measured) == set(expected)  # every round (0..ROUNDS) on each test organization
        # The ledger keeps a performance as a float32, like Substra's orchestrator.
        assert measured == {key: pytest.approx(value, rel=1e-6) for key, value in expected.items()}
        for org in datasets:
            series = [measured[(org, r)] for r in range(ROUNDS + 1)]
            assert len(set(series)) == ROUNDS + 1, "each round evaluates a new model"

        # substrafl reads the final state back through the SDK (list_task, download_function/model).
        algo = model_loading.download_algo_state(c1, plan.key)
        assert isinstance(algo, numpy_algo.MeanAlgo)
        assert algo.model == pytest.approx(_expected_weights(datasets)[-1], rel=1e-9)
        aggregated = model_loading.download_aggregate_shared_state(c1, plan.key)
        assert len(aggregated.avg_parameters_update) == 1
    finally:
        cloudpickle.unregister_pickle_by_value(numpy_algo)
