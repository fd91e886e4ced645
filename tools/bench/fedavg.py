"""The execution benchmark's FedAvg scenario: a substrafl experiment over N organizations (10 by default),
each training a tiny numpy model on its own rows, aggregated on the first organization every round.

The experiment goes through the real SDK and substrafl 1.0.0 at the first organization's gateway, on a
dev network of N organizations (every service a separate process, sandboxing on), without evaluation: a
round is N trainings in parallel, one per organization, then the aggregation. A round's time is the
interval between the last DONE of a round and the last DONE of the next one (ledger timestamps); the
steady state is the median of the rounds after the first two (runners are warm by then).

Usage: ``python -m tools.bench execution --fedavg [--orgs N] [--rounds R] [--state-dir DIR]``.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cloudpickle
import numpy as np
import substra
from substra.sdk import schemas
from substrafl import nodes
from substrafl.algorithms.algo import Algo
from substrafl.dependency import Dependency
from substrafl.experiment import execute_experiment
from substrafl.remote.decorators import remote_data
from substrafl.strategies import FedAvg
from substrafl.strategies.schemas import FedAvgAveragedState, FedAvgSharedState, StrategyName
from tessera.asset.v1 import asset_service_pb2 as api

from tools.bench.bench_execution import Ledger, wait_ready
from tools.devnet.network import Network
from tools.samples import flassets

POLL = 0.2


class MeanAlgo(Algo):
    """The tiny model: a vector moved towards the mean of the local rows (shipped by value)."""

    def __init__(self, dimension: int = 3):
        super().__init__(dimension=dimension)
        self._weights = np.zeros(dimension)

    @property
    def model(self) -> np.ndarray:
        return self._weights

    @property
    def strategies(self) -> list[StrategyName]:
        return [StrategyName.FEDERATED_AVERAGING]

    @remote_data
    def train(self, data_from_opener: np.ndarray, shared_state: FedAvgAveragedState | None = None) -> FedAvgSharedState:
        if shared_state is not None:
            self._weights = self._weights + shared_state.avg_parameters_update[0]
        update = 0.5 * (data_from_opener.mean(axis=0) - self._weights)
        return FedAvgSharedState(n_samples=len(data_from_opener), parameters_update=[update])

    def predict(self, data_from_opener: np.ndarray, shared_state=None) -> np.ndarray:
        return np.broadcast_to(self._weights, data_from_opener.shape)

    def save_local_state(self, path: Path) -> None:
        with open(path, "wb") as out:
            np.save(out, self._weights)

    def load_local_state(self, path: Path) -> MeanAlgo:
        with open(path, "rb") as src:
            self._weights = np.load(src)
        return self


def _train_node(client: substra.Client, aggregator: str, folder: Path, index: int) -> nodes.TrainDataNode:
    """One organization's dataset (the aggregator may process it) and one sample of a few rows."""
    org = client.organization_info().organization_id
    base = folder / org
    permissions = schemas.Permissions(public=False, authorized_ids=sorted({aggregator, org}))
    dm = client.add_dataset(
        schemas.DatasetSpec(
            name=f"fedavg-{org}",
            data_opener=flassets.write(base / "opener.py", flassets.OPENER),
            description=flassets.write(base / "description.md", "# rows\n"),
            permissions=permissions,
            logs_permission=permissions,
        )
    )
    rows = np.random.default_rng(index).normal(index, 1.0, (4, 3))
    flassets.write(base / "sample" / "data.csv", "\n".join(",".join(f"{x:.6f}" for x in r) for r in rows) + "\n")
    sample = client.add_data_sample(schemas.DataSampleSpec(path=base / "sample", data_manager_keys=[dm]))
    return nodes.TrainDataNode(organization_id=org, data_manager_key=dm, data_sample_keys=[sample])


def round_ends(tasks) -> dict[int, float]:
    """The last DONE of each round (substrafl's ``round_idx`` metadata), in seconds."""
    ends: dict[int, float] = {}
    for task in tasks:
        if "round_idx" in task.metadata:
            end = task.end_date.seconds + task.end_date.nanos / 1e9
            r = int(task.metadata["round_idx"])
            ends[r] = max(ends.get(r, 0.0), end)
    return ends


def run(orgs: int, rounds: int, state_dir: Path | None) -> str:
    """Start the network, run the experiment, report the round times."""
    log = lambda message: print(f"  [network] {message}", file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="tessera-bench-fedavg-") as tmp:
        folder = Path(tmp) if state_dir is None else state_dir.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        network = Network(folder / "network", orgs=orgs, log=log)
        network.plan()
        clients: list[substra.Client] = []
        try:
            network.start(timeout=900)
            wait_ready(network)
            clients = [
                substra.Client(url=o.gateway, backend_type="remote", username=o.username, password=o.password)
                for o in network.organizations
            ]
            aggregator = clients[0].organization_info().organization_id
            train_nodes = [_train_node(c, aggregator, folder / "data", i) for i, c in enumerate(clients)]
            cloudpickle.register_pickle_by_value(sys.modules[__name__])
            with contextlib.chdir(folder):  # substrafl makes its temporary folders in the current directory
                started = time.perf_counter()
                plan = execute_experiment(
                    client=clients[0],
                    strategy=FedAvg(algo=MeanAlgo()),
                    train_data_nodes=train_nodes,
                    aggregation_node=nodes.AggregationNode(aggregator),
                    evaluation_strategy=None,
                    num_rounds=rounds,
                    experiment_folder=folder / "experiment",
                    dependencies=Dependency(pypi_dependencies=[f"numpy=={np.__version__}"], editable_mode=False),
                    clean_models=False,
                    name=f"fedavg-bench-{uuid.uuid4().hex[:6]}",
                )
                clients[0].wait_compute_plan(plan.key, timeout=1800, polling_period=POLL)
                wall = time.perf_counter() - started
            ledger = Ledger(network)
            tasks = ledger.stub.ListTasks(api.ListTasksRequest(compute_plan_key=[plan.key], page_size=1000)).tasks
            ends = round_ends(tasks)
            order = sorted(ends)
            times = [ends[b] - ends[a] for a, b in itertools.pairwise(order)]
            steady = times[2:] or times
            return "\n".join(
                [
                    f"FedAvg, {orgs} organizations, {rounds} rounds ({len(tasks)} tasks), aggregation on {aggregator}:",
                    "",
                    "| submission to DONE (s) | round times (s) | steady-state round, median (s) |",
                    "|---|---|---|",
                    f"| {wall:.1f} | {', '.join(f'{t:.2f}' for t in times)} | **{statistics.median(steady):.2f}** |",
                ]
            )
        finally:
            with contextlib.suppress(ValueError):  # registered only once the network was up
                cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
            for client in clients:
                with contextlib.suppress(Exception):
                    client.logout()
            network.stop()
