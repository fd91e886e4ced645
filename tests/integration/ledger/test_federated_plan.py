"""A 3-round federated plan driven through the calls a worker makes: train on two organizations,
aggregate on a third, test on both; performances, counters, dates and plan status at the end."""

from __future__ import annotations

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from tests.integration.ledger.conftest import (
    AGGREGATE_IO,
    ORGS,
    TEST_IO,
    data_inputs,
    make_data_manager,
    make_function,
    make_plan,
    make_samples,
    parent_input,
    private,
    run_task,
    status,
    task_spec,
)

ROUNDS = 3


def test_three_round_federated_plan_completes(ledger):
    org1, org2, org3 = ledger.org1, ledger.org2, ledger.org3
    # Each data organization keeps its data; only org1 (the plan owner) may process it.
    dm1 = make_data_manager(org1, permissions=private(ORGS[0]))
    dm2 = make_data_manager(org2, permissions=private(ORGS[0]))
    samples1, samples2 = make_samples(org1, dm1.key), make_samples(org2, dm2.key)
    train = make_function(org1)
    aggregate = make_function(org1, io=AGGREGATE_IO)
    test = make_function(org1, io=TEST_IO)
    plan = make_plan(org1, name="fl", tag="experiment")
    assert plan.status == res.PLAN_STATUS_CREATED and plan.task_count == 0

    shared = api.NewComputeTaskOutput(permissions=private(*ORGS))
    specs, trains, aggregates, tests = [], [], [], []
    previous = None
    for round_idx in range(ROUNDS):
        round_trains = []
        for dm, samples in ((dm1, samples1), (dm2, samples2)):
            inputs = data_inputs(dm.key, samples) + ([parent_input("models", previous.key)] if previous else [])
            spec = task_spec(plan.key, train, inputs, model=shared)
            spec.metadata["round_idx"] = str(round_idx)
            round_trains.append(spec)
        agg = task_spec(
            plan.key, aggregate, [parent_input("models", t.key) for t in round_trains], worker=ORGS[2], model=shared
        )
        agg.metadata["round_idx"] = str(round_idx)
        for dm, samples in ((dm1, samples1), (dm2, samples2)):
            spec = task_spec(plan.key, test, [*data_inputs(dm.key, samples), parent_input("models", agg.key)])
            spec.metadata["round_idx"] = str(round_idx)
            tests.append(spec)
            specs.append(spec)
        specs.extend([*round_trains, agg])
        trains.append(round_trains)
        aggregates.append(agg)
        previous = agg

    # Children come before their parents in the batch: the ledger sorts it.
    created = org1.RegisterTasks(api.RegisterTasksRequest(tasks=specs)).tasks
    by_key = {t.key: t for t in created}
    assert len(created) == ROUNDS * 5
    # Workers are inferred from the data managers; ranks from the graph.
    assert by_key[trains[0][0].key].worker == ORGS[0] and by_key[trains[0][1].key].worker == ORGS[1]
    assert [by_key[a.key].rank for a in aggregates] == [1, 3, 5]
    assert by_key[trains[1][0].key].rank == 2
    assert by_key[trains[0][0].key].status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert by_key[aggregates[0].key].status == res.STATUS_WAITING_FOR_PARENT_TASKS

    stubs = {ORGS[0]: org1, ORGS[1]: org2, ORGS[2]: org3}
    perf = 0.5
    for round_idx in range(ROUNDS):
        for t in trains[round_idx]:
            run_task(stubs[by_key[t.key].worker], t.key)
        assert status(org3, aggregates[round_idx].key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
        run_task(org3, aggregates[round_idx].key)
        for t in tests[2 * round_idx : 2 * round_idx + 2]:
            perf += 0.1
            run_task(stubs[by_key[t.key].worker], t.key, model=False, performance=perf)

    done = org2.GetComputePlan(api.GetComputePlanRequest(key=plan.key)).compute_plan
    assert done.status == res.PLAN_STATUS_DONE
    assert (done.task_count, done.done_count, done.executing_count) == (15, 15, 0)
    assert done.HasField("start_date") and done.HasField("end_date") and done.HasField("duration")

    results = org1.GetComputePlanPerformances(api.GetComputePlanPerformancesRequest(key=plan.key))
    assert len(results.results) == ROUNDS * 2
    assert sorted({r.compute_task.round_idx for r in results.results}) == [0, 1, 2]
    assert list(results.compute_plan_statistics.compute_tasks_distinct_rounds) == [0, 1, 2]
    assert abs(max(r.perf for r in results.results) - (0.5 + 0.1 * 6)) < 1e-5

    # The test task of the last round consumed the last aggregate's model.
    inputs = org1.GetTaskInputAssets(api.GetTaskInputAssetsRequest(key=tests[-1].key)).assets
    models = [a.model for a in inputs if a.WhichOneof("asset") == "model"]
    assert len(models) == 1 and models[0].compute_task_key == aggregates[-1].key and models[0].owner == ORGS[2]
    kinds = [a.kind for a in inputs]
    assert kinds.count(res.ASSET_DATA_SAMPLE) == 2 and kinds[0] == res.ASSET_DATA_MANAGER
