"""The execution benchmark's FedAvg scenario: a substrafl experiment over N organizations (10 by default),
each training a tiny numpy model on its own rows, aggregated on the first organization every round.

The experiment goes through the real SDK and substrafl 1.0.0 at the first organization's gateway, on a
dev network of N organizations (every service a separate process, sandboxing on), without evaluation: a
round is N trainings in parallel, one per organization, then the aggregation. A round's time is the
interval between the last DONE of a round and the last DONE of the next one (ledger timestamps); the
steady state is the median of the rounds after the first two (runners are warm by then).

Usage: ``python -m tools.bench execution --fedavg [--orgs N] [--rounds R] [--state-dir DIR] [--statements]``;
``--statements`` also counts the SQL statements per completed task of the steady rounds, by database
(:mod:`tools.bench.statements`).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle
import numpy as np
import substra
from substra.sdk import schemas
from substrafl import nodes
from substrafl.dependency import Dependency
from substrafl.experiment import execute_experiment
from substrafl.strategies import FedAvg
from tessera.asset.v1 import asset_service_pb2 as api

from tools.bench.bench_execution import Ledger, cpu_delta, cpu_snapshot, remote_clients
from tools.bench.statements import StatementLog
from tools.samples import flassets, numpy_algo


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


def _seconds(stamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def phases(tasks) -> dict[str, float]:
    """Where a steady round goes (medians over the rounds after the second, seconds): from an aggregation's
    DONE to the DONE of the last training it feeds (the trainings, in parallel), then to the start of the
    next aggregation (its dispatch and StartTask), then to its DONE (its inputs, its run, its outputs)."""
    by_key = {task.key: task for task in tasks}

    def parents(task) -> list:
        keys = {i.parent_task_output.parent_task_key for i in task.inputs if i.HasField("parent_task_output")}
        return [by_key[k] for k in keys if k in by_key]

    def trains(task) -> bool:
        return any(i.identifier == "opener" for i in task.inputs)

    spans: dict[str, list[float]] = collections.defaultdict(list)
    aggregations = sorted(
        (t for t in tasks if "round_idx" in t.metadata and not trains(t) and t.HasField("end_date")),
        key=lambda t: _seconds(t.end_date),
    )
    aggregated = {t.key for t in aggregations}
    for aggregation in aggregations[2:]:
        trained = [t for t in parents(aggregation) if trains(t)]
        before = [p for t in trained for p in parents(t) if p.key in aggregated]
        if not trained or not before:
            continue
        begin = max(_seconds(p.end_date) for p in before)
        last_training = max(_seconds(t.end_date) for t in trained)
        spans["trainings (aggregation DONE to the last training DONE)"].append(last_training - begin)
        spans["next aggregation dispatched and started"].append(_seconds(aggregation.start_date) - last_training)
        spans["aggregation started to DONE"].append(_seconds(aggregation.end_date) - _seconds(aggregation.start_date))
    return {name: statistics.median(values) for name, values in spans.items() if values}


def round_ends(tasks) -> dict[int, float]:
    """The last DONE of each round (substrafl's ``round_idx`` metadata), in seconds."""
    ends: dict[int, float] = {}
    for task in tasks:
        if "round_idx" in task.metadata:
            end = _seconds(task.end_date)
            r = int(task.metadata["round_idx"])
            ends[r] = max(ends.get(r, 0.0), end)
    return ends


@dataclass
class Steady:
    """What the rounds after the second used: CPU seconds by component, and (when counted) SQL statements by
    database for the ``completed`` tasks that ended meanwhile."""

    cpu: dict[str, float]
    rounds: int
    statements: collections.Counter[str] = field(default_factory=collections.Counter)
    completed: int = 0


def steady_cpu(ledger: Ledger, network, plan_key: str, orgs: int, count_statements: bool = False) -> Steady:
    """Wait for the plan's end; the CPU seconds each component used from the end of the second round on,
    and how many rounds that covers. A round is done when its ``orgs`` trainings and its aggregation
    are (after the ``orgs`` initializations)."""
    warm = orgs + 2 * (orgs + 1)
    before: dict[str, float] = {}
    log = StatementLog(network.postgres) if count_statements else None
    done_at_warm = 0

    def at_warm(plan) -> None:
        nonlocal done_at_warm
        if not before and plan.done_count >= warm:
            before.update(cpu_snapshot(network))
            done_at_warm = plan.done_count
            if log is not None:
                log.start()

    try:
        plan = ledger.wait_done(plan_key, network, on_poll=at_warm)
    finally:
        statements = log.stop() if log is not None else collections.Counter()
    rounds = (plan.task_count - warm) // (orgs + 1)
    return Steady(cpu_delta(before, cpu_snapshot(network)), rounds, statements, plan.done_count - done_at_warm)


def run(orgs: int, rounds: int, state_dir: Path | None, count_statements: bool = False) -> str:
    """Start the network, run the experiment, report the round times (and, with ``count_statements``, the SQL
    statements per task: :mod:`tools.bench.statements`)."""
    steady = Steady({}, 0)
    with remote_clients(state_dir, orgs, timeout=900) as (folder, network, clients):
        aggregator = clients[0].organization_info().organization_id
        train_nodes = [_train_node(c, aggregator, folder / "data", i) for i, c in enumerate(clients)]
        cloudpickle.register_pickle_by_value(numpy_algo)  # shipped like a user's script
        try:
            with contextlib.chdir(folder):  # substrafl makes its temporary folders in the current directory
                started = time.perf_counter()
                plan = execute_experiment(
                    client=clients[0],
                    strategy=FedAvg(algo=numpy_algo.MeanAlgo(dimension=3)),
                    train_data_nodes=train_nodes,
                    aggregation_node=nodes.AggregationNode(aggregator),
                    evaluation_strategy=None,
                    num_rounds=rounds,
                    experiment_folder=folder / "experiment",
                    dependencies=Dependency(pypi_dependencies=[f"numpy=={np.__version__}"], editable_mode=False),
                    clean_models=False,
                    name=f"fedavg-bench-{uuid.uuid4().hex[:6]}",
                )
                ledger = Ledger(network)
                steady = steady_cpu(ledger, network, plan.key, orgs, count_statements)
                wall = time.perf_counter() - started
        finally:
            cloudpickle.unregister_pickle_by_value(numpy_algo)
        tasks = ledger.stub.ListTasks(api.ListTasksRequest(compute_plan_key=[plan.key], page_size=1000)).tasks
    ends = round_ends(tasks)
    order = sorted(ends)
    times = [ends[b] - ends[a] for a, b in itertools.pairwise(order)]
    later = times[2:] or times
    return "\n".join(
        [
            f"FedAvg, {orgs} organizations, {rounds} rounds ({len(tasks)} tasks), aggregation on {aggregator}:",
            "",
            "| submission to DONE (s) | round times (s) | steady-state round, median (s) |",
            "|---|---|---|",
            f"| {wall:.1f} | {', '.join(f'{t:.2f}' for t in times)} | **{statistics.median(later):.2f}** |",
            "",
            *phase_table(phases(tasks)),
            *cpu_table(steady.cpu, steady.rounds),
            *statement_table(steady.statements, steady.completed, ledger_database=network.database("ledger")),
        ]
    )


def statement_table(counts: collections.Counter[str], completed: int, ledger_database: str) -> list[str]:
    """SQL statements per task completed in the counted window: the ledger's, and the organizations' databases."""
    if completed <= 0 or not counts:
        return []
    ledger = counts.get(ledger_database, 0)
    others = sum(n for db, n in counts.items() if db not in (ledger_database, "", "postgres"))
    return [
        "",
        f"SQL statements per completed task over the steady rounds ({completed} tasks; PostgreSQL logged every"
        " statement, so this run's times are not comparable):",
        "",
        "| ledger | organizations' databases (all) |",
        "|---|---|",
        f"| **{ledger / completed:.1f}** | **{others / completed:.1f}** |",
    ]


def phase_table(medians: dict[str, float]) -> list[str]:
    """The round's phases (:func:`phases`), medians over the steady rounds."""
    if not medians:
        return []
    return (
        ["Phases of a steady round, medians (s):", "", "| phase | s |", "|---|---|"]
        + [f"| {name} | {seconds:.3f} |" for name, seconds in medians.items()]
        + [""]
    )


def cpu_table(cpu: dict[str, float], rounds: int) -> list[str]:
    """CPU seconds per round after the second, by component, every organization's processes summed."""
    if rounds <= 0:
        return []
    lines = [
        f"CPU per round over the last {rounds} rounds (s, all organizations):",
        "",
        "| component | CPU s |",
        "|---|---|",
    ]
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        if name != "local-mode tasks":
            lines.append(f"| {name} | {seconds / rounds:.3f} |")
    total = sum(v for k, v in cpu.items() if k != "local-mode tasks")
    lines.append(f"| **total** | **{total / rounds:.3f}** |")
    return lines
