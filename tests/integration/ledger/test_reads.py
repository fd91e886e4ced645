"""Reads of the ledger: Get and List of every resource with the filters of the List*Request
messages, ordering, pagination (clamped sizes, page tokens, page numbers), the task input and
output assets, and the plan counters maintained at write time (contract §1.1-1.2, domain §7.1).

The package's ledger is shared with other test modules, so every list is narrowed to the assets
this module registers (by key, plan, tag or a unique name token).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from tests.integration.ledger.conftest import (
    AGGREGATE_IO,
    ORGS,
    TEST_IO,
    act,
    call_error,
    data_inputs,
    make_data_manager,
    make_function,
    make_plan,
    make_samples,
    new_key,
    parent_input,
    private,
    public,
    run_task,
    task_spec,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
SOURCE_IO = {"inputs": {}, "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)}}


def fields(error) -> list[str]:
    return [v.field for v in error.violations]


def keys(items) -> list[str]:
    return [item.key for item in items]


@dataclass
class Catalog:
    """A small world registered once for the module; see ``catalog``."""

    token: str
    dm_a: res.DataManager
    dm_b: res.DataManager
    dm_c: res.DataManager
    samples_a: list[res.DataSample]
    samples_b: list[res.DataSample]
    samples_c: list[res.DataSample]
    train: res.Function
    aggregate: res.Function
    test: res.Function
    p1: res.ComputePlan
    p2: res.ComputePlan
    p3: res.ComputePlan
    t0: res.ComputeTask
    t1: res.ComputeTask
    agg: res.ComputeTask
    tst: res.ComputeTask
    u0: res.ComputeTask
    u1: res.ComputeTask
    models: dict[str, str]  # task key → model key

    @property
    def dm_keys(self) -> list[str]:
        return [self.dm_a.key, self.dm_b.key, self.dm_c.key]

    @property
    def plan_keys(self) -> list[str]:
        return [self.p1.key, self.p2.key, self.p3.key]

    @property
    def tasks(self) -> list[res.ComputeTask]:
        return [self.t0, self.t1, self.agg, self.tst, self.u0, self.u1]


@pytest.fixture(scope="module")
def catalog(ledger) -> Catalog:
    """Three data managers, three functions and three plans:

    - p1 (org1): t0, t1 train on dm_a, dm_b (org1) → agg on org2 → tst scores on dm_a; all DONE;
    - p2 (org1): u0 trains on dm_a and is EXECUTING, u1 aggregates it and waits;
    - p3 (org2): no task.
    """
    org1, org2 = ledger.org1, ledger.org2
    token = f"reads-{uuid.uuid4().hex[:10]}"
    dm_a = make_data_manager(org1, name=f"{token}-Alpha", permissions=public(), logs=public())
    dm_b = make_data_manager(org1, name=f"{token}-beta", permissions=private(ORGS[1]), logs=private(ORGS[1]))
    dm_c = make_data_manager(org2, name=f"{token}-gamma", permissions=private(), logs=private())
    samples_a = make_samples(org1, dm_a.key, n=3)
    samples_b = make_samples(org1, dm_b.key, n=2)
    samples_c = make_samples(org2, dm_c.key, n=1)
    org1.LinkDataSamples(api.LinkDataSamplesRequest(data_manager_keys=[dm_b.key], data_sample_keys=[samples_a[0].key]))
    train = make_function(org1, name=f"{token}-train")
    aggregate = make_function(org1, io=AGGREGATE_IO, name=f"{token}-aggregate", permissions=private(ORGS[1]))
    test = make_function(org2, io=TEST_IO, name=f"{token}-test")

    p1 = make_plan(org1, name=f"{token}-one", tag=token, metadata={"team": "red", "lr": "0.01"}, creator="alice")
    p2 = make_plan(org1, name=f"{token}-two", tag=token, metadata={"team": "blue"}, creator="bob")
    p3 = make_plan(org2, name=f"{token}-three", tag=token, creator="carol")

    t0 = task_spec(p1.key, train, data_inputs(dm_a.key, samples_a))
    t1 = task_spec(p1.key, train, data_inputs(dm_b.key, samples_b))
    agg = task_spec(p1.key, aggregate, [parent_input("models", t0.key), parent_input("models", t1.key)], worker=ORGS[1])
    t0.tag, t1.tag, agg.tag = "train", "train", "agg"
    tst = task_spec(p1.key, test, [*data_inputs(dm_a.key, samples_a), parent_input("models", agg.key)])
    for spec, round_idx in ((t0, "0"), (t1, "0"), (agg, "1"), (tst, "1")):
        spec.metadata["round_idx"] = round_idx
    tst.metadata["phase"] = "evaluation"
    org1.RegisterTasks(api.RegisterTasksRequest(tasks=[t0, t1, agg, tst]))
    u0 = task_spec(p2.key, train, data_inputs(dm_a.key, samples_a[:1]))
    u1 = task_spec(p2.key, aggregate, [parent_input("models", u0.key)], worker=ORGS[0])
    org1.RegisterTasks(api.RegisterTasksRequest(tasks=[u0, u1]))

    models = {
        t0.key: run_task(org1, t0.key),
        t1.key: run_task(org1, t1.key),
        agg.key: run_task(org2, agg.key),
    }
    run_task(org1, tst.key, model=False, performance=0.75)
    act(org1, u0.key, res.TASK_ACTION_EXECUTING)

    def get(key: str) -> res.ComputeTask:
        return org1.GetTask(api.GetTaskRequest(key=key)).task

    def plan(key: str) -> res.ComputePlan:
        return org1.GetComputePlan(api.GetComputePlanRequest(key=key)).compute_plan

    return Catalog(
        token=token,
        dm_a=dm_a,
        dm_b=dm_b,
        dm_c=dm_c,
        samples_a=samples_a,
        samples_b=samples_b,
        samples_c=samples_c,
        train=train,
        aggregate=aggregate,
        test=test,
        p1=plan(p1.key),
        p2=plan(p2.key),
        p3=plan(p3.key),
        t0=get(t0.key),
        t1=get(t1.key),
        agg=get(agg.key),
        tst=get(tst.key),
        u0=get(u0.key),
        u1=get(u1.key),
        models=models,
    )


# ===================================================================================================== gets
def test_get_every_resource(ledger, catalog):
    c = catalog
    org3 = ledger.org3
    manager = org3.GetDataManager(api.GetDataManagerRequest(key=c.dm_b.key)).data_manager
    assert manager.name == f"{c.token}-beta" and manager.owner == ORGS[0]
    assert sorted(manager.data_sample_keys) == sorted([c.samples_a[0].key, *keys(c.samples_b)])
    sample = org3.GetDataSample(api.GetDataSampleRequest(key=c.samples_a[0].key)).data_sample
    assert list(sample.data_manager_keys) == [c.dm_a.key, c.dm_b.key]
    assert org3.GetFunction(api.GetFunctionRequest(key=c.test.key)).function.owner == ORGS[1]
    plan = org3.GetComputePlan(api.GetComputePlanRequest(key=c.p1.key)).compute_plan
    assert (plan.name, plan.tag, plan.creator) == (f"{c.token}-one", c.token, "alice")
    task = org3.GetTask(api.GetTaskRequest(key=c.agg.key)).task
    assert task.worker == ORGS[1] and task.function.key == c.aggregate.key and task.status == res.STATUS_DONE
    assert task.HasField("start_date") and task.HasField("end_date") and task.HasField("duration")
    model = org3.GetModel(api.GetModelRequest(key=c.models[c.agg.key])).model
    assert model.compute_task_key == c.agg.key and model.owner == ORGS[1]
    assert model.compute_task_output_identifier == "model" and model.HasField("address")

    gets = [
        (org3.GetDataManager, api.GetDataManagerRequest),
        (org3.GetDataSample, api.GetDataSampleRequest),
        (org3.GetFunction, api.GetFunctionRequest),
        (org3.GetComputePlan, api.GetComputePlanRequest),
        (org3.GetTask, api.GetTaskRequest),
        (org3.GetModel, api.GetModelRequest),
    ]
    for call, request in gets:
        assert call_error(call, request(key=new_key())).code == NOT_FOUND
        error = call_error(call, request(key="not-a-key"))
        assert error.code == INVALID and fields(error) == ["key"]
    # Keys are matched whatever their case.
    assert org3.GetTask(api.GetTaskRequest(key=c.agg.key.upper())).task.key == c.agg.key


def test_list_organizations(ledger):
    response = ledger.org2.ListOrganizations(api.ListOrganizationsRequest())
    assert [o.id for o in response.organizations] == list(ORGS) and response.total_size == 3
    assert [o.is_current for o in response.organizations] == [False, True, False]
    assert response.organizations[0].address == "http://myorg1msp.test"
    assert response.next_page_token == ""


def test_list_organizations_pages(ledger):
    first = ledger.org3.ListOrganizations(api.ListOrganizationsRequest(page_size=2))
    assert [o.id for o in first.organizations] == list(ORGS[:2]) and first.total_size == 3
    assert [o.is_current for o in first.organizations] == [False, False]
    second = ledger.org3.ListOrganizations(api.ListOrganizationsRequest(page_size=2, page_token=first.next_page_token))
    assert [(o.id, o.is_current) for o in second.organizations] == [(ORGS[2], True)]
    assert second.next_page_token == "" and second.total_size == 3
    numbered = ledger.org3.ListOrganizations(api.ListOrganizationsRequest(page_size=1, page=2))
    assert [o.id for o in numbered.organizations] == [ORGS[1]]
    assert (
        call_error(ledger.org3.ListOrganizations, api.ListOrganizationsRequest(page_size=2, page=3)).code == NOT_FOUND
    )
    error = call_error(ledger.org3.ListOrganizations, api.ListOrganizationsRequest(page_token="forged"))
    assert error.code == INVALID and fields(error) == ["page_token"]


# ============================================================================================ data managers
def test_list_data_managers_filters(ledger, catalog):
    c = catalog
    a, b, cc = c.dm_a.key, c.dm_b.key, c.dm_c.key

    def listed(**kwargs) -> set[str]:
        kwargs.setdefault("key", c.dm_keys)
        response = ledger.org3.ListDataManagers(api.ListDataManagersRequest(**kwargs))
        assert response.total_size == len(response.data_managers)
        return set(keys(response.data_managers))

    assert listed() == {a, b, cc}
    assert listed(key=[a, cc]) == {a, cc}
    assert listed(key=[], match=c.token) == {a, b, cc}
    assert listed(name=[f"{c.token}-beta"]) == {b}
    assert listed(name=[f"{c.token}-BETA"]) == set()  # names are exact
    assert listed(owner=[ORGS[1]]) == {cc}
    assert listed(match="ALPHA") == {a}  # case-insensitive substring of the name...
    assert listed(match=b[9:20]) == {b}  # ...or of the key
    assert listed(match="%") == set() and listed(match="_") == set()  # wildcards are literal
    assert listed(can_process=[ORGS[0]]) == {a, b}
    assert listed(can_process=[ORGS[1]]) == {a, b, cc}
    assert listed(can_process=[ORGS[1], ORGS[2]]) == {a}  # every listed organization
    assert listed(can_access_logs=[ORGS[1]]) == {a, b, cc}
    assert listed(can_access_logs=[ORGS[0], ORGS[2]]) == {a}
    assert listed(data_sample_key=[c.samples_a[0].key]) == {a, b}
    assert listed(data_sample_key=[c.samples_c[0].key, c.samples_b[1].key]) == {b, cc}
    assert listed(creation_date_after=c.dm_b.creation_date) == {b, cc}
    assert listed(creation_date_before=c.dm_b.creation_date) == {a, b}
    assert listed(creation_date_after=c.dm_b.creation_date, creation_date_before=c.dm_b.creation_date) == {b}

    listed_b = ledger.org1.ListDataManagers(api.ListDataManagersRequest(key=[b])).data_managers[0]
    got_b = ledger.org1.GetDataManager(api.GetDataManagerRequest(key=b)).data_manager
    assert listed_b == got_b  # with data_sample_keys, as Get


def test_list_data_managers_ordering(ledger, catalog):
    c = catalog

    def ordered(ordering: str) -> list[str]:
        request = api.ListDataManagersRequest(key=c.dm_keys, ordering=ordering)
        return keys(ledger.org1.ListDataManagers(request).data_managers)

    assert ordered("creation_date") == c.dm_keys
    assert ordered("-creation_date") == c.dm_keys[::-1]
    assert ordered("") == c.dm_keys
    a, b, g = c.dm_a.key, c.dm_b.key, c.dm_c.key
    assert ordered("name") == [a, b, g]  # Alpha, beta, gamma
    assert ordered("-name") == [g, b, a]
    assert ordered("owner") == [*sorted([a, b]), g]  # org1's two (by key), then org2's
    assert ordered("-owner") == [g, *sorted([a, b], reverse=True)]
    assert ordered("key") == sorted(c.dm_keys)
    for bad in ("status", "-foo", "-", "creation_date,key", "name,owner"):
        error = call_error(ledger.org1.ListDataManagers, api.ListDataManagersRequest(ordering=bad))
        assert error.code == INVALID and fields(error) == ["ordering"], bad


# ============================================================================================= data samples
def test_list_data_samples_filters(ledger, catalog):
    c = catalog
    # Oldest first; the samples of one batch share their date and come by key.
    mine = sorted(keys(c.samples_a)) + sorted(keys(c.samples_b)) + keys(c.samples_c)

    def listed(**kwargs) -> list[str]:
        kwargs.setdefault("key", mine)
        return keys(ledger.org2.ListDataSamples(api.ListDataSamplesRequest(**kwargs)).data_samples)

    assert listed() == mine  # oldest first
    assert listed(ordering="-creation_date") == mine[::-1]
    assert set(listed(owner=[ORGS[1]])) == set(keys(c.samples_c))
    assert set(listed(key=[], dataset_key=[c.dm_b.key])) == {c.samples_a[0].key, *keys(c.samples_b)}
    assert set(listed(dataset_key=[c.dm_a.key, c.dm_c.key])) == set(keys(c.samples_a) + keys(c.samples_c))
    assert listed(creation_date_after=c.samples_c[0].creation_date) == keys(c.samples_c)
    assert listed(creation_date_before=c.samples_a[0].creation_date) == sorted(keys(c.samples_a))  # one batch
    error = call_error(ledger.org2.ListDataSamples, api.ListDataSamplesRequest(ordering="start_date"))
    assert error.code == INVALID and fields(error) == ["ordering"]


# ================================================================================================ functions
def test_list_functions_filters(ledger, catalog):
    c = catalog
    mine = [c.train.key, c.aggregate.key, c.test.key]

    def listed(**kwargs) -> list[str]:
        kwargs.setdefault("key", mine)
        return keys(ledger.org3.ListFunctions(api.ListFunctionsRequest(**kwargs)).functions)

    assert listed() == mine
    assert listed(ordering="-creation_date") == mine[::-1]
    assert listed(owner=[ORGS[1]]) == [c.test.key]
    assert listed(name=[f"{c.token}-aggregate"]) == [c.aggregate.key]
    assert listed(key=[], match=c.token.upper()) == mine
    assert listed(match="-TR") == [c.train.key]
    assert listed(can_process=[ORGS[2]]) == [c.train.key, c.test.key]
    assert listed(can_process=[ORGS[0], ORGS[1]]) == mine
    assert listed(key=[], compute_plan_key=[c.p1.key]) == mine
    assert listed(key=[], compute_plan_key=[c.p2.key]) == [c.train.key, c.aggregate.key]
    assert listed(key=[], compute_plan_key=[c.p3.key]) == []
    assert listed(creation_date_after=c.aggregate.creation_date) == [c.aggregate.key, c.test.key]
    assert listed(creation_date_before=c.aggregate.creation_date) == [c.train.key, c.aggregate.key]
    assert listed(ordering="name") == [c.aggregate.key, c.test.key, c.train.key]
    assert listed(ordering="-name") == [c.train.key, c.test.key, c.aggregate.key]
    assert listed(ordering="owner") == [*sorted([c.train.key, c.aggregate.key]), c.test.key]
    assert listed(ordering="-owner")[0] == c.test.key
    assert call_error(ledger.org3.ListFunctions, api.ListFunctionsRequest(ordering="rank")).code == INVALID
    function = ledger.org3.ListFunctions(api.ListFunctionsRequest(key=[c.test.key])).functions[0]
    assert function == ledger.org3.GetFunction(api.GetFunctionRequest(key=c.test.key)).function


# ============================================================================================ compute plans
def test_list_plans_filters(ledger, catalog):
    c = catalog
    p1, p2, p3 = c.plan_keys

    def listed(**kwargs) -> set[str]:
        kwargs.setdefault("tag", [c.token])
        response = ledger.org3.ListComputePlans(api.ListComputePlansRequest(**kwargs))
        assert response.total_size == len(response.compute_plans)
        return set(keys(response.compute_plans))

    assert listed() == {p1, p2, p3}
    assert listed(tag=[], key=[p1, p3]) == {p1, p3}
    assert listed(owner=[ORGS[1]]) == {p3}
    assert listed(name=[f"{c.token}-two"]) == {p2}
    assert listed(status=[res.PLAN_STATUS_DONE]) == {p1}
    assert listed(status=[res.PLAN_STATUS_DOING, res.PLAN_STATUS_CREATED]) == {p2, p3}
    assert listed(function_key=[c.test.key]) == {p1}
    assert listed(function_key=[c.aggregate.key]) == {p1, p2}
    assert listed(creator=["bob", "carol"]) == {p2, p3}
    assert listed(tag=[], match=f"{c.token}-TWO") == {p2}
    assert listed(match=p3[4:12]) == {p3}
    assert listed(creation_date_after=c.p2.creation_date) == {p2, p3}
    assert listed(creation_date_before=c.p2.creation_date) == {p1, p2}
    # Dates and durations: p1 ran and ended, p2 runs, p3 never started.
    assert listed(start_date_after=c.p1.start_date) == {p1, p2}
    assert listed(start_date_before=c.p1.start_date) == {p1}
    assert listed(end_date_after=c.p1.end_date) == {p1}
    assert listed(end_date_before=c.p1.end_date) == {p1}
    # A plan that never started lasted 0 seconds, as shown (Substra's value): the filters see the same.
    assert listed(duration_min=0) == {p1, p2, p3}
    assert listed(duration_max=3600) == {p1, p2, p3}
    assert listed(duration_min=1, duration_max=3600) <= {p1, p2}
    assert listed(duration_min=3600) == set()


def metadata(*conditions) -> str:
    return json.dumps([{"key": k, "type": t, "value": v} for k, t, v in conditions])


def test_list_plans_metadata_filters(ledger, catalog):
    c = catalog
    p1, p2, _ = c.plan_keys

    def listed(raw: str) -> set[str]:
        request = api.ListComputePlansRequest(tag=[c.token], metadata=raw)
        return set(keys(ledger.org1.ListComputePlans(request).compute_plans))

    assert listed(metadata(("team", "is", "red"))) == {p1}
    assert listed(metadata(("team", "is", "RED"))) == set()
    assert listed(metadata(("team", "contains", "e"))) == {p1, p2}
    assert listed(metadata(("team", "contains", "lu"))) == {p2}
    assert listed(metadata(("lr", "exists", ""))) == {p1}
    assert listed(json.dumps([{"key": "lr", "type": "exists"}])) == {p1}  # exists needs no value
    assert listed(metadata(("team", "contains", "e"), ("lr", "exists", ""))) == {p1}  # all must hold
    assert listed(metadata(("team", "is", "blue"), ("lr", "exists", ""))) == set()
    assert listed(metadata(("lr", "is", "0.01"))) == {p1}
    assert listed("[]") == {p1, p2, c.p3.key}


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '{"key": "team", "type": "is", "value": "red"}',
        '[{"key": "team", "type": "equals", "value": "red"}]',
        '[{"key": "team", "type": "is"}]',
        '[{"type": "exists"}]',
        '["team"]',
        "[1]",
    ],
)
def test_malformed_metadata_filters_are_invalid(ledger, raw):
    for call, request in (
        (ledger.org1.ListComputePlans, api.ListComputePlansRequest(metadata=raw)),
        (ledger.org1.ListTasks, api.ListTasksRequest(metadata=raw)),
    ):
        error = call_error(call, request)
        assert error.code == INVALID and fields(error) == ["metadata"], raw


def test_list_plans_ordering(ledger, catalog):
    c = catalog
    p1, p2, p3 = c.plan_keys

    def ordered(ordering: str) -> list[str]:
        request = api.ListComputePlansRequest(tag=[c.token], ordering=ordering)
        return keys(ledger.org1.ListComputePlans(request).compute_plans)

    assert ordered("") == [p3, p2, p1]  # newest first by default
    assert ordered("-creation_date") == [p3, p2, p1]
    assert ordered("creation_date") == [p1, p2, p3]
    assert ordered("start_date") == [p1, p2, p3]  # never started: last
    assert ordered("-start_date") == [p2, p1, p3]
    assert ordered("end_date")[0] == p1 and ordered("-end_date")[0] == p1
    assert ordered("name") == [p1, p3, p2]  # one, three, two
    assert ordered("-name") == [p2, p3, p1]
    assert ordered("creator") == [p1, p2, p3]  # alice, bob, carol
    assert ordered("-creator") == [p3, p2, p1]
    assert ordered("metadata__team")[:2] == [p2, p1]  # blue, red; p3 has none: last
    assert ordered("-metadata__team") == [p1, p2, p3]
    assert ordered("owner")[2] == p3 and ordered("-owner")[0] == p3  # org1's, then org2's
    assert ordered("status") == [p3, p2, p1]  # by name: CREATED, DOING, DONE
    assert ordered("-status") == [p1, p2, p3]
    assert ordered("tag") == sorted([p1, p2, p3])  # one tag: the key decides
    for bad in ("worker", "-rank", "metadata__", "--creation_date"):
        error = call_error(ledger.org1.ListComputePlans, api.ListComputePlansRequest(ordering=bad))
        assert error.code == INVALID and fields(error) == ["ordering"], bad


def test_plan_counters_and_status_after_registration(ledger, catalog):
    c = catalog
    p1 = ledger.org2.GetComputePlan(api.GetComputePlanRequest(key=c.p1.key)).compute_plan
    assert p1.status == res.PLAN_STATUS_DONE
    assert (p1.task_count, p1.done_count, p1.executing_count, p1.failed_count) == (4, 4, 0, 0)
    assert p1.HasField("start_date") and p1.HasField("end_date") and p1.estimated_end_date == p1.end_date
    assert p1.HasField("duration") and p1.duration >= 0
    assert not p1.HasField("cancelation_date") and not p1.HasField("failure_date") and not p1.failed_task_key
    p2 = ledger.org2.GetComputePlan(api.GetComputePlanRequest(key=c.p2.key)).compute_plan
    assert p2.status == res.PLAN_STATUS_DOING
    assert (p2.task_count, p2.executing_count, p2.waiting_parent_tasks_count, p2.done_count) == (2, 1, 1, 0)
    assert p2.HasField("start_date") and not p2.HasField("end_date")
    p3 = ledger.org2.GetComputePlan(api.GetComputePlanRequest(key=c.p3.key)).compute_plan
    assert p3.status == res.PLAN_STATUS_CREATED and p3.task_count == 0
    assert not p3.HasField("start_date") and p3.duration == 0
    # The counters agree with the tasks themselves.
    counters = {
        res.STATUS_WAITING_FOR_BUILDER_SLOT: "waiting_builder_slot_count",
        res.STATUS_BUILDING: "building_count",
        res.STATUS_WAITING_FOR_PARENT_TASKS: "waiting_parent_tasks_count",
        res.STATUS_WAITING_FOR_EXECUTOR_SLOT: "waiting_executor_slot_count",
        res.STATUS_EXECUTING: "executing_count",
        res.STATUS_DONE: "done_count",
        res.STATUS_CANCELED: "canceled_count",
        res.STATUS_FAILED: "failed_count",
    }
    for plan in (p1, p2, p3):
        for status, counter in counters.items():
            request = api.ListTasksRequest(compute_plan_key=[plan.key], status=[status])
            assert ledger.org1.ListTasks(request).total_size == getattr(plan, counter), (plan.name, counter)
    # List and Get agree.
    listed = ledger.org2.ListComputePlans(api.ListComputePlansRequest(key=[c.p2.key])).compute_plans[0]
    assert (listed.status, listed.task_count, listed.start_date) == (p2.status, p2.task_count, p2.start_date)


# ==================================================================================================== tasks
def test_list_tasks_filters(ledger, catalog):
    c = catalog
    t0, t1, agg, tst, u0, u1 = keys(c.tasks)

    def listed(**kwargs) -> set[str]:
        kwargs.setdefault("compute_plan_key", [c.p1.key, c.p2.key])
        response = ledger.org3.ListTasks(api.ListTasksRequest(**kwargs))
        assert response.total_size == len(response.tasks)
        return set(keys(response.tasks))

    assert listed() == {t0, t1, agg, tst, u0, u1}
    assert listed(compute_plan_key=[c.p2.key]) == {u0, u1}
    assert listed(compute_plan_key=[], key=[t0, u1]) == {t0, u1}
    assert listed(owner=[ORGS[0]]) == {t0, t1, agg, tst, u0, u1}
    assert listed(owner=[ORGS[1]]) == set()
    assert listed(worker=[ORGS[1]]) == {agg}
    assert listed(rank=[0]) == {t0, t1, u0}
    assert listed(rank=[1, 2]) == {agg, tst, u1}
    assert listed(status=[res.STATUS_DONE]) == {t0, t1, agg, tst}
    assert listed(status=[res.STATUS_EXECUTING, res.STATUS_WAITING_FOR_PARENT_TASKS]) == {u0, u1}
    assert listed(function_key=[c.aggregate.key]) == {agg, u1}
    assert listed(tag=["train"]) == {t0, t1}
    assert listed(tag=["train", "agg"]) == {t0, t1, agg}
    assert listed(match=agg[10:20].upper()) == {agg}  # key only, case-insensitive
    assert listed(match="train") == set()  # not the tag or the function name
    assert listed(metadata=metadata(("round_idx", "is", "1"))) == {agg, tst}
    assert listed(metadata=metadata(("phase", "contains", "valu"))) == {tst}
    assert listed(metadata=metadata(("phase", "exists", ""), ("round_idx", "is", "0"))) == set()
    # Dates: creation is per batch; t0, t1, agg, tst started and ended in that order, then u0 started.
    assert listed(creation_date_after=c.u0.creation_date) == {u0, u1}
    assert listed(creation_date_before=c.t0.creation_date) == {t0, t1, agg, tst}
    assert listed(start_date_after=c.agg.start_date) == {agg, tst, u0}
    assert listed(start_date_before=c.t1.start_date) == {t0, t1}
    assert listed(end_date_after=c.agg.end_date) == {agg, tst}
    assert listed(end_date_before=c.t0.end_date) == {t0}
    # Durations exist once a task started.
    assert listed(duration_min=0) == {t0, t1, agg, tst, u0}
    assert listed(duration_max=3600) == {t0, t1, agg, tst, u0}
    assert listed(duration_min=3600) == set()
    # Each task carries its function.
    task = ledger.org3.ListTasks(api.ListTasksRequest(key=[tst])).tasks[0]
    assert task.function.key == c.test.key and task == c.tst


def test_list_tasks_ordering(ledger, catalog):
    c = catalog
    t0, t1, agg, tst, u0, u1 = keys(c.tasks)

    def ordered(ordering: str) -> list[str]:
        request = api.ListTasksRequest(compute_plan_key=[c.p1.key, c.p2.key], ordering=ordering)
        return keys(ledger.org1.ListTasks(request).tasks)

    assert ordered("") == [t0, t1, agg, tst, u0, u1]  # oldest first, then registration order
    assert ordered("creation_date") == [t0, t1, agg, tst, u0, u1]
    assert ordered("-creation_date") == [u1, u0, tst, agg, t1, t0]
    assert ordered("start_date") == [t0, t1, agg, tst, u0, u1]  # never started: last
    assert ordered("-start_date") == [u0, tst, agg, t1, t0, u1]
    assert ordered("end_date")[:4] == [t0, t1, agg, tst]
    assert ordered("-end_date")[:4] == [tst, agg, t1, t0]
    assert ordered("rank")[:3] == [t0, t1, u0]
    assert ordered("function__name") == [agg, u1, tst, t0, t1, u0]  # aggregate, test, train
    assert ordered("-function__name") == [u0, t1, t0, tst, u1, agg]
    # By the status's name (DONE, EXECUTING, WAITING_FOR_PARENT_TASKS), not its number; then registration order.
    assert ordered("status") == [t0, t1, agg, tst, u0, u1]
    assert ordered("-status") == [u1, u0, tst, agg, t1, t0]
    assert ordered("owner") == ordered("creation_date")  # one owner
    assert ordered("key") == sorted([t0, t1, agg, tst, u0, u1])
    for bad in ("name", "-foo", "function__key", "metadata__round_idx"):
        error = call_error(ledger.org1.ListTasks, api.ListTasksRequest(ordering=bad))
        assert error.code == INVALID and fields(error) == ["ordering"], bad


def test_match_wildcards_are_literal(ledger, catalog):
    c = catalog
    for text in ("%", "_", "\\", "%%", "\\%"):
        plans = ledger.org1.ListComputePlans(api.ListComputePlansRequest(tag=[c.token], match=text))
        assert plans.total_size == 0, text
        tasks = ledger.org1.ListTasks(api.ListTasksRequest(compute_plan_key=[c.p1.key], match=text))
        assert tasks.total_size == 0, text
        functions = ledger.org1.ListFunctions(api.ListFunctionsRequest(key=[c.train.key], match=text))
        assert functions.total_size == 0, text
    # ...and still found where they appear.
    manager = make_data_manager(ledger.org1, name="50%_off\\now")
    for text, found in (("0%_o", True), ("F\\N", True), ("0%o", False), ("50_", False), ("%off", False)):
        request = api.ListDataManagersRequest(key=[manager.key], match=text)
        assert ledger.org1.ListDataManagers(request).total_size == int(found), text


@pytest.mark.parametrize(
    "stamp",
    [Timestamp(seconds=253402300800), Timestamp(seconds=-62135596801), Timestamp(seconds=0, nanos=-1)],
)
def test_out_of_range_dates_are_invalid(ledger, stamp):
    cases = [
        (ledger.org1.ListTasks, api.ListTasksRequest(end_date_before=stamp), "end_date_before"),
        (ledger.org1.ListComputePlans, api.ListComputePlansRequest(start_date_after=stamp), "start_date_after"),
        (ledger.org1.ListDataManagers, api.ListDataManagersRequest(creation_date_after=stamp), "creation_date_after"),
        (ledger.org1.ListModels, api.ListModelsRequest(creation_date_before=stamp), "creation_date_before"),
    ]
    for call, request, field in cases:
        error = call_error(call, request)
        assert error.code == INVALID and fields(error) == [field]


# =============================================================================== models and performances
def test_list_models_and_performances(ledger, catalog):
    c = catalog
    produced = [c.t0.key, c.t1.key, c.agg.key]

    def listed(**kwargs) -> list[str]:
        kwargs.setdefault("compute_task_key", produced)
        return keys(ledger.org3.ListModels(api.ListModelsRequest(**kwargs)).models)

    model_keys = [c.models[k] for k in produced]
    assert listed() == model_keys  # oldest first
    assert listed(ordering="-creation_date") == model_keys[::-1]
    assert listed(compute_task_key=[c.agg.key]) == [c.models[c.agg.key]]
    assert listed(owner=[ORGS[1]]) == [c.models[c.agg.key]]
    assert listed(compute_task_key=[], key=model_keys[:2]) == model_keys[:2]
    agg_model = ledger.org3.GetModel(api.GetModelRequest(key=c.models[c.agg.key])).model
    assert listed(creation_date_after=agg_model.creation_date) == [agg_model.key]
    assert listed(compute_task_key=[c.tst.key, c.u0.key]) == []
    error = call_error(ledger.org3.ListModels, api.ListModelsRequest(ordering="end_date"))
    assert error.code == INVALID and fields(error) == ["ordering"]

    performances = ledger.org2.ListPerformances(api.ListPerformancesRequest(compute_plan_key=[c.p1.key]))
    assert performances.total_size == 1
    (performance,) = performances.performances
    assert (performance.compute_task_key, performance.compute_task_output_identifier) == (c.tst.key, "performance")
    assert abs(performance.performance_value - 0.75) < 1e-6
    by_task = ledger.org2.ListPerformances(
        api.ListPerformancesRequest(compute_task_key=[c.tst.key], compute_task_output_identifier=["performance"])
    )
    assert list(by_task.performances) == [performance]
    empty = ledger.org2.ListPerformances(api.ListPerformancesRequest(compute_plan_key=[c.p2.key]))
    assert empty.total_size == 0 and not empty.performances


def test_task_output_assets(ledger, catalog):
    c = catalog
    org1 = ledger.org1

    def outputs(key: str, **kwargs) -> list[res.OutputAsset]:
        response = org1.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=key, **kwargs))
        assert response.total_size == len(response.assets)
        return list(response.assets)

    (model,) = outputs(c.t0.key)
    assert (model.identifier, model.kind, model.model.key) == ("model", res.ASSET_MODEL, c.models[c.t0.key])
    assert model.model.compute_task_key == c.t0.key
    assert outputs(c.t0.key, identifier="model") == [model]
    assert outputs(c.t0.key, identifier="performance") == []
    assert outputs(c.t0.key, kind=res.ASSET_PERFORMANCE) == []
    (perf,) = outputs(c.tst.key, kind=res.ASSET_PERFORMANCE)
    assert perf.identifier == "performance" and perf.WhichOneof("asset") == "performance"
    assert abs(perf.performance.performance_value - 0.75) < 1e-6
    assert outputs(c.u0.key) == []  # still executing
    error = call_error(org1.ListTaskOutputAssets, api.ListTaskOutputAssetsRequest(key=new_key()))
    assert error.code == NOT_FOUND
    error = call_error(org1.ListTaskOutputAssets, api.ListTaskOutputAssetsRequest(key="nope"))
    assert error.code == INVALID and fields(error) == ["key"]


def test_task_input_assets(ledger, catalog):
    c = catalog
    org1 = ledger.org1

    def inputs(key: str, **kwargs) -> list[res.ComputeTaskInputAsset]:
        response = org1.GetTaskInputAssets(api.GetTaskInputAssetsRequest(key=key, **kwargs))
        assert response.total_size == len(response.assets)
        return list(response.assets)

    resolved = inputs(c.tst.key)
    assert [(a.identifier, a.kind) for a in resolved] == [
        ("opener", res.ASSET_DATA_MANAGER),
        *[("datasamples", res.ASSET_DATA_SAMPLE)] * 3,
        ("models", res.ASSET_MODEL),
    ]
    assert resolved[0].data_manager.key == c.dm_a.key
    assert [a.data_sample.key for a in resolved[1:4]] == keys(c.samples_a)
    assert resolved[4].model.key == c.models[c.agg.key] and resolved[4].model.owner == ORGS[1]
    assert inputs(c.tst.key, identifier="datasamples") == resolved[1:4]
    assert inputs(c.tst.key, kind=res.ASSET_MODEL) == resolved[4:]
    assert inputs(c.tst.key, identifier="models", kind=res.ASSET_DATA_SAMPLE) == []
    # A parent reference expands to the models of that output, in input order.
    aggregated = inputs(c.agg.key)
    assert [a.model.key for a in aggregated] == [c.models[c.t0.key], c.models[c.t1.key]]
    # Paged.
    first = org1.GetTaskInputAssets(api.GetTaskInputAssetsRequest(key=c.tst.key, page_size=2))
    assert list(first.assets) == resolved[:2] and first.total_size == 5 and first.next_page_token
    rest = org1.GetTaskInputAssets(
        api.GetTaskInputAssetsRequest(key=c.tst.key, page_size=3, page_token=first.next_page_token)
    )
    assert list(rest.assets) == resolved[2:] and not rest.next_page_token
    # Inputs are defined only once the task may run.
    error = call_error(org1.GetTaskInputAssets, api.GetTaskInputAssetsRequest(key=c.u1.key))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "INPUTS_NOT_DEFINED"
    error = call_error(org1.GetTaskInputAssets, api.GetTaskInputAssetsRequest(key=new_key()))
    assert error.code == NOT_FOUND


# =============================================================================================== pagination
@dataclass
class Big:
    plan: res.ComputePlan
    task_keys: list[str]  # in registration order


@pytest.fixture(scope="module")
def big(ledger) -> Big:
    """A plan of 1001 tasks, registered in batches as the SDK does."""
    function = make_function(ledger.org1, io=SOURCE_IO)
    plan = make_plan(ledger.org1)
    specs = [task_spec(plan.key, function, [], worker=ORGS[0]) for _ in range(1001)]
    for start in range(0, len(specs), 500):
        ledger.org1.RegisterTasks(api.RegisterTasksRequest(tasks=specs[start : start + 500]))
    return Big(plan=plan, task_keys=[s.key for s in specs])


def page_of(ledger, big: Big, **kwargs) -> api.ListTasksResponse:
    return ledger.org2.ListTasks(api.ListTasksRequest(compute_plan_key=[big.plan.key], **kwargs))


def test_task_pages_are_clamped(ledger, big):
    default = page_of(ledger, big)
    assert len(default.tasks) == 100 and default.total_size == 1001 and default.next_page_token
    assert keys(default.tasks) == big.task_keys[:100]
    clamped = page_of(ledger, big, page_size=5000)
    assert len(clamped.tasks) == 1000 and clamped.total_size == 1001 and clamped.next_page_token
    last = page_of(ledger, big, page_size=5000, page_token=clamped.next_page_token)
    assert keys(last.tasks) == big.task_keys[1000:] and not last.next_page_token


def test_page_tokens_walk_every_task_once(ledger, big):
    seen, token, pages = [], "", 0
    while True:
        page = page_of(ledger, big, page_size=300, page_token=token)
        assert page.total_size == 1001
        seen += keys(page.tasks)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 4 and seen == big.task_keys
    # Descending works the same way.
    seen, token = [], ""
    while True:
        page = page_of(ledger, big, page_size=400, page_token=token, ordering="-creation_date")
        seen += keys(page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert seen == big.task_keys[::-1]


def test_page_tokens_belong_to_their_query(ledger, big):
    token = page_of(ledger, big, page_size=10).next_page_token
    assert keys(page_of(ledger, big, page_size=10, page_token=token).tasks) == big.task_keys[10:20]
    for changed in ({"status": [res.STATUS_DONE]}, {"ordering": "-creation_date"}, {"rank": [0]}):
        error = call_error(page_of, ledger, big, page_size=10, page_token=token, **changed)
        assert error.code == INVALID and fields(error) == ["page_token"], changed
    error = call_error(ledger.org2.ListTasks, api.ListTasksRequest(page_token=token))
    assert error.code == INVALID and fields(error) == ["page_token"]


def forged(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!!",
        "eyJv",  # truncated
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        forged([1, 2]),
        forged({"o": "x", "f": "y"}),
        forged({"f": "y"}),
        forged({"o": -10, "f": "y"}),
        forged({"o": 10, "f": "y"}),
    ],
)
def test_garbage_page_tokens_are_invalid(ledger, token):
    for call, request in (
        (ledger.org1.ListTasks, api.ListTasksRequest(page_token=token)),
        (ledger.org1.ListDataManagers, api.ListDataManagersRequest(page_token=token)),
        (ledger.org1.ListComputePlans, api.ListComputePlansRequest(page_token=token)),
    ):
        error = call_error(call, request)
        assert error.code == INVALID and fields(error) == ["page_token"], token


def test_page_token_with_an_infinite_offset_is_invalid(ledger):
    token = base64.urlsafe_b64encode(b'{"o": 1e999, "f": "y"}').decode()
    error = call_error(ledger.org1.ListTasks, api.ListTasksRequest(page_token=token))
    assert error.code == INVALID
    error = call_error(ledger.org1.ListTasks, api.ListTasksRequest(page=2**31 - 1, page_size=1000))
    assert error.code == INVALID


def test_page_numbers(ledger, big):
    second = page_of(ledger, big, page_size=10, page=2)
    assert keys(second.tasks) == big.task_keys[10:20] and second.total_size == 1001
    last = page_of(ledger, big, page=11)
    assert keys(last.tasks) == big.task_keys[1000:] and not last.next_page_token
    # page wins over page_token.
    token = page_of(ledger, big, page_size=10).next_page_token
    assert keys(page_of(ledger, big, page_size=10, page=3, page_token=token).tasks) == big.task_keys[20:30]
    error = call_error(page_of, ledger, big, page=12)
    assert error.code == NOT_FOUND and error.reason == "INVALID_PAGE"
    error = call_error(page_of, ledger, big, page_size=1000, page=3)
    assert error.code == NOT_FOUND
    # The first page always exists, even empty.
    empty = ledger.org1.ListTasks(api.ListTasksRequest(compute_plan_key=[new_key()], page=1))
    assert empty.total_size == 0 and not empty.tasks and not empty.next_page_token
    error = call_error(ledger.org1.ListTasks, api.ListTasksRequest(compute_plan_key=[new_key()], page=2))
    assert error.code == NOT_FOUND
    error = call_error(page_of, ledger, big, page=-1)
    assert error.code == INVALID and fields(error) == ["page"]
    error = call_error(page_of, ledger, big, page_size=-5)
    assert error.code == INVALID and fields(error) == ["page_size"]


def test_plan_pages_default_to_10_and_clamp_at_100(ledger):
    tag = f"many-{uuid.uuid4().hex[:10]}"
    plan_keys = [make_plan(ledger.org2, tag=tag).key for _ in range(101)]
    newest_first = plan_keys[::-1]
    default = ledger.org1.ListComputePlans(api.ListComputePlansRequest(tag=[tag]))
    assert keys(default.compute_plans) == newest_first[:10] and default.total_size == 101
    clamped = ledger.org1.ListComputePlans(api.ListComputePlansRequest(tag=[tag], page_size=5000))
    assert keys(clamped.compute_plans) == newest_first[:100] and clamped.next_page_token
    rest = ledger.org1.ListComputePlans(
        api.ListComputePlansRequest(tag=[tag], page_size=5000, page_token=clamped.next_page_token)
    )
    assert keys(rest.compute_plans) == newest_first[100:] and not rest.next_page_token
    eleventh = ledger.org1.ListComputePlans(api.ListComputePlansRequest(tag=[tag], page=11))
    assert keys(eleventh.compute_plans) == newest_first[100:]
    error = call_error(ledger.org1.ListComputePlans, api.ListComputePlansRequest(tag=[tag], page=12))
    assert error.code == NOT_FOUND


def test_asset_pages_round_trip(ledger):
    manager = make_data_manager(ledger.org1)
    samples = keys(make_samples(ledger.org1, manager.key, n=25))
    seen, token, sizes = [], "", []
    while True:
        request = api.ListDataSamplesRequest(dataset_key=[manager.key], page_size=10, page_token=token)
        page = ledger.org2.ListDataSamples(request)
        assert page.total_size == 25
        sizes.append(len(page.data_samples))
        seen += keys(page.data_samples)
        token = page.next_page_token
        if not token:
            break
    assert sizes == [10, 10, 5] and sorted(seen) == sorted(samples) and len(set(seen)) == 25
    # Several assets share one registration date: the key breaks ties, so pages never overlap.
    descending = []
    for page in (1, 2, 3):
        request = api.ListDataSamplesRequest(
            dataset_key=[manager.key], page_size=10, page=page, ordering="-creation_date"
        )
        descending += keys(ledger.org2.ListDataSamples(request).data_samples)
    assert sorted(descending) == sorted(samples) and len(set(descending)) == 25

    functions = [make_function(ledger.org3, io=SOURCE_IO, ready=False).key for _ in range(5)]
    first = ledger.org1.ListFunctions(api.ListFunctionsRequest(key=functions, page_size=3))
    second = ledger.org1.ListFunctions(
        api.ListFunctionsRequest(key=functions, page_size=3, page_token=first.next_page_token)
    )
    assert keys(first.functions) + keys(second.functions) == functions and not second.next_page_token
    managers = [make_data_manager(ledger.org3).key for _ in range(3)]
    page = ledger.org1.ListDataManagers(api.ListDataManagersRequest(key=managers, page_size=2, page=2))
    assert keys(page.data_managers) == managers[2:] and page.total_size == 3
