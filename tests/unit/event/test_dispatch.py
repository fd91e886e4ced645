"""The dispatcher's decisions: which ledger events ask this organization for work, and what work."""

from __future__ import annotations

import uuid

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2

from services.event.domain.dispatch import (
    BuildIfWaiting,
    CancelRun,
    DeleteModel,
    DispatchRules,
    FetchModel,
    KnownTasks,
    OutputRef,
    ReleaseInputs,
    Work,
    message_id,
)

ME, PEER = "MyOrg1MSP", "MyOrg2MSP"
CHANNEL = "mychannel"


def key() -> str:
    return str(uuid.uuid4())


def event(kind: int = ev.EVENT_ASSET_UPDATED, **asset) -> ev.Event:
    """An event carrying one asset snapshot, e.g. ``event(compute_task=task)``."""
    ((field, snapshot),) = asset.items()
    message = ev.Event(id=key(), channel=CHANNEL, event_kind=kind, asset_key=snapshot.key)
    getattr(message, field).CopyFrom(snapshot)
    return message


READY = res.STATUS_WAITING_FOR_EXECUTOR_SLOT


def task(worker: str = ME, status: int = READY, parents=(), **outputs) -> res.ComputeTask:
    """A task; ``parents`` are (task key, output identifier) it reads; ``outputs`` name=transient."""
    snapshot = res.ComputeTask(key=key(), compute_plan_key=key(), worker=worker, status=status)
    for parent_key, identifier in parents:
        ref = snapshot.inputs.add(identifier="models").parent_task_output
        ref.parent_task_key, ref.output_identifier = parent_key, identifier
    for name, transient in outputs.items():
        snapshot.outputs[name].transient = transient
    return snapshot


def rules() -> DispatchRules:
    return DispatchRules(ME, CHANNEL)


# ----------------------------------------------------------------------------------------------- build
def test_a_function_of_this_organization_asks_for_a_build_if_it_still_waits():
    function = res.Function(key=key(), owner=ME, status=res.FUNCTION_STATUS_WAITING)
    created = event(ev.EVENT_ASSET_CREATED, function=function)
    (action,) = rules().decide(created)
    assert isinstance(action, BuildIfWaiting)
    assert action.work.kind == "build" and action.work.message_id == f"{ME}:{created.id}:build"
    expected = work_pb2.BuildFunction(function_key=function.key, channel=CHANNEL, event_id=created.id)
    assert action.work.message == expected


def test_a_function_of_another_organization_asks_nothing():
    function = res.Function(key=key(), owner=PEER, status=res.FUNCTION_STATUS_WAITING)
    assert rules().decide(event(ev.EVENT_ASSET_CREATED, function=function)) == []


def test_only_a_function_still_waiting_is_built():
    assert DispatchRules.needs_build(res.Function(status=res.FUNCTION_STATUS_WAITING))
    for status in (res.FUNCTION_STATUS_BUILDING, res.FUNCTION_STATUS_READY, res.FUNCTION_STATUS_FAILED):
        assert not DispatchRules.needs_build(res.Function(status=status))


# ------------------------------------------------------------------------------------------------- run
def test_a_task_of_this_organization_waiting_for_a_slot_is_queued_from_the_event():
    ready = task()
    shown = event(compute_task=ready)
    (action,) = rules().decide(shown)
    assert action == Work(
        "run",
        ready.key,
        work_pb2.RunTask(
            compute_task_key=ready.key, compute_plan_key=ready.compute_plan_key, channel=CHANNEL, event_id=shown.id
        ),
        f"{ME}:{shown.id}:run",
    )


def test_tasks_of_other_organizations_or_not_ready_ask_no_run():
    assert rules().decide(event(compute_task=task(worker=PEER))) == []
    assert rules().decide(event(compute_task=task(status=res.STATUS_WAITING_FOR_PARENT_TASKS))) == []
    assert rules().decide(event(compute_task=task(status=res.STATUS_EXECUTING))) == []


def test_replaying_an_event_asks_the_same_message_and_another_event_another():
    ready = task()
    first = event(compute_task=ready)
    again = rules().decide(first), rules().decide(first)
    assert again[0] == again[1]
    requeued = event(compute_task=ready)  # e.g. back to the slot queue after its worker died
    assert rules().decide(requeued)[0].message_id != again[0][0].message_id
    assert message_id(ME, first.id, "run") == again[0][0].message_id


def model(owner: str, producer: str, identifier: str = "model") -> res.Model:
    return res.Model(key=key(), compute_task_key=producer, compute_task_output_identifier=identifier, owner=owner)


def test_a_run_message_names_the_models_of_other_organizations_its_task_reads():
    decide = rules()
    theirs, mine, other_output = key(), key(), key()
    peer_model = model(PEER, theirs)
    for registered in (peer_model, model(ME, mine), model(PEER, other_output, "other")):
        assert decide.decide(event(ev.EVENT_ASSET_CREATED, model=registered)) == []
    decide.decide(event(ev.EVENT_ASSET_CREATED, model=peer_model))  # a replayed event adds nothing
    # Its own models are in compute's cache already; an output the task does not read is not named.
    aggregate = task(parents=[(theirs, "model"), (mine, "model"), (other_output, "model")])
    (action,) = decide.decide(event(compute_task=aggregate))
    assert list(action.message.peer_models) == [peer_model]
    # A model not seen (a restarted event service) is simply not named: StartTask's answer has it.
    assert list(rules().decide(event(compute_task=aggregate))[0].message.peer_models) == []


def test_work_both_organizations_ask_for_on_one_event_gets_two_message_ids():
    """The WORK stream deduplicates on Nats-Msg-Id across its subjects: each organization's teardown of a plan
    (and its runner for a plan's function) must survive the other's."""
    plan = res.ComputePlan(key=key(), status=res.PLAN_STATUS_DONE)
    ended = event(compute_plan=plan)
    (mine,), (theirs,) = rules().decide(ended), DispatchRules(PEER, CHANNEL).decide(ended)
    assert mine.kind == theirs.kind == "teardown" and mine.message_id != theirs.message_id
    waiting = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS)
    waiting.function_key = key()
    created = event(ev.EVENT_ASSET_CREATED, compute_task=waiting)
    (mine,) = rules().decide(created)
    waiting.worker = PEER
    (theirs,) = DispatchRules(PEER, CHANNEL).decide(event(ev.EVENT_ASSET_CREATED, compute_task=waiting))
    assert mine.kind == theirs.kind == "prepare" and mine.message_id != theirs.message_id


# --------------------------------------------------------------------------------------------- prepare
def test_the_first_task_registered_here_of_each_plan_and_function_asks_for_a_runner_once():
    decide = rules()
    waiting = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS)
    waiting.function_key = key()
    created = event(ev.EVENT_ASSET_CREATED, compute_task=waiting)
    (action,) = decide.decide(created)
    pair = f"{waiting.compute_plan_key}:{waiting.function_key}"
    assert action == Work(
        "prepare",
        pair,
        work_pb2.PrepareRunner(
            compute_plan_key=waiting.compute_plan_key,
            function_key=waiting.function_key,
            channel=CHANNEL,
            event_id=created.id,
        ),
        f"{ME}:prepare:{pair}",
    )
    sibling = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS)
    sibling.compute_plan_key, sibling.function_key = waiting.compute_plan_key, waiting.function_key
    assert decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=sibling)) == []  # asked once per pair
    other = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS)
    other.compute_plan_key, other.function_key = waiting.compute_plan_key, key()
    assert [a.kind for a in decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=other))] == ["prepare"]


def test_a_runner_is_asked_only_for_new_tasks_of_this_organization():
    assert rules().decide(event(ev.EVENT_ASSET_CREATED, compute_task=task(worker=PEER))) == []
    canceled = task(status=res.STATUS_CANCELED)  # born canceled: its plan ended
    assert "prepare" not in [
        getattr(a, "kind", "") for a in rules().decide(event(ev.EVENT_ASSET_CREATED, compute_task=canceled))
    ]
    moved = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS)
    assert rules().decide(event(ev.EVENT_ASSET_UPDATED, compute_task=moved)) == []
    ready = task()  # a root task registered ready: its runner and its run, in that order
    assert [a.kind for a in rules().decide(event(ev.EVENT_ASSET_CREATED, compute_task=ready))] == ["prepare", "run"]


# ---------------------------------------------------------------------------------------------- cancel
def test_a_canceled_task_of_this_organization_is_stopped_with_the_ledger_reason():
    canceled = task(status=res.STATUS_CANCELED)
    shown = event(compute_task=canceled)
    shown.metadata["reason"] = "compute plan canceled"
    assert rules().decide(shown) == [CancelRun(canceled.key, "compute plan canceled")]
    assert rules().decide(event(compute_task=task(worker=PEER, status=res.STATUS_CANCELED))) == []


# ----------------------------------------------------------------------------------- transient outputs
def test_a_final_consumer_releases_its_parents_outputs_once_each_in_order():
    a, b = sorted([key(), key()])
    done = task(worker=PEER, status=res.STATUS_DONE, parents=[(b, "model"), (a, "model"), (b, "model")])
    assert rules().decide(event(compute_task=done)) == [
        ReleaseInputs(done.key, (OutputRef(a, "model"), OutputRef(b, "model")))
    ]


def test_only_an_update_to_a_final_status_releases_inputs():
    parents = [(key(), "model")]
    assert rules().decide(event(compute_task=task(worker=PEER, status=res.STATUS_EXECUTING, parents=parents))) == []
    created = event(ev.EVENT_ASSET_CREATED, compute_task=task(worker=PEER, status=res.STATUS_DONE, parents=parents))
    assert rules().decide(created) == []
    assert rules().decide(event(compute_task=task(worker=PEER, status=res.STATUS_FAILED))) == []  # no parents


def test_only_transient_outputs_this_organization_computed_are_disabled():
    decide = rules()
    mine_transient = task(status=res.STATUS_DONE, model=True, local=False)
    mine_kept = task(status=res.STATUS_DONE, model=False)
    peers_transient = task(worker=PEER, status=res.STATUS_DONE, model=True)
    for parent in (mine_transient, mine_kept, peers_transient):
        decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=parent))  # remembered from their events
    consumer = task(
        worker=PEER,
        status=res.STATUS_DONE,
        parents=[(mine_transient.key, "model"), (mine_transient.key, "local"), (mine_kept.key, "model"),
                 (peers_transient.key, "model")],
    )  # fmt: skip
    (release,) = decide.decide(event(compute_task=consumer))
    assert decide.unknown_parents(release) == []
    assert decide.to_disable(release) == [OutputRef(mine_transient.key, "model")]


def test_parents_never_seen_must_be_read_before_deciding():
    decide = rules()
    unseen = task(status=res.STATUS_DONE, model=True)
    (release,) = decide.decide(event(compute_task=task(status=res.STATUS_DONE, parents=[(unseen.key, "model")])))
    assert decide.unknown_parents(release) == [unseen.key]
    assert decide.to_disable(release) == []
    decide.known.remember(unseen)  # what the dispatcher does after reading it from the ledger
    assert decide.to_disable(release) == [OutputRef(unseen.key, "model")]


def test_known_tasks_forget_the_least_recently_seen_past_their_capacity():
    known = KnownTasks(capacity=2)
    first, second, third = task(), task(), task()
    known.remember(first)
    known.remember(second)
    known.remember(first)  # seen again: now the most recent
    known.remember(third)
    assert len(known) == 2
    assert known.get(second.key) is None and known.get(first.key) and known.get(third.key)


# --------------------------------------------------------------------------------------- models, plans
def test_a_disabled_model_of_this_organization_is_deleted_from_its_storage():
    model = res.Model(key=key(), owner=ME)
    assert rules().decide(event(ev.EVENT_ASSET_DISABLED, model=model)) == [DeleteModel(model.key)]
    assert rules().decide(event(ev.EVENT_ASSET_CREATED, model=model)) == []
    assert rules().decide(event(ev.EVENT_ASSET_DISABLED, model=res.Model(key=key(), owner=PEER))) == []


def test_every_ending_of_a_plan_asks_this_organization_for_a_teardown():
    for status in (res.PLAN_STATUS_DONE, res.PLAN_STATUS_FAILED, res.PLAN_STATUS_CANCELED):
        plan = res.ComputePlan(key=key(), owner=PEER, status=status)
        ended = event(compute_plan=plan)
        (action,) = rules().decide(ended)
        assert action == Work(
            "teardown",
            plan.key,
            work_pb2.Teardown(compute_plan_key=plan.key, channel=CHANNEL, event_id=ended.id),
            f"{ME}:{ended.id}:teardown",
        )
    for status in (res.PLAN_STATUS_CREATED, res.PLAN_STATUS_DOING):
        assert rules().decide(event(compute_plan=res.ComputePlan(key=key(), owner=ME, status=status))) == []


def test_datasets_ask_nothing():
    manager = res.DataManager(key=key(), owner=ME)
    assert rules().decide(event(ev.EVENT_ASSET_CREATED, data_manager=manager)) == []


def _stored(registered: res.Model) -> res.Model:
    registered.address.checksum = "a" * 64
    return registered


def test_a_peer_s_model_that_a_task_waiting_here_reads_is_fetched_ahead_until_the_task_starts():
    decide = rules()
    producer = key()
    waiting = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS, parents=[(producer, "model")])
    decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=waiting))
    decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=task(PEER, res.STATUS_WAITING_FOR_PARENT_TASKS)))
    peer_model = _stored(model(PEER, producer))
    registered = event(ev.EVENT_ASSET_CREATED, model=peer_model)
    (fetch,) = decide.decide(registered)
    assert fetch == FetchModel(peer_model)
    assert decide.waiting_readers.still_waiting(fetch) == (waiting.key, waiting.compute_plan_key)
    # Its own models are in compute's cache; another output is read by nothing here; a disabled one has no file.
    assert decide.decide(event(ev.EVENT_ASSET_CREATED, model=_stored(model(ME, producer)))) == []
    assert decide.decide(event(ev.EVENT_ASSET_CREATED, model=_stored(model(PEER, producer, "other")))) == []
    assert decide.decide(event(ev.EVENT_ASSET_CREATED, model=model(PEER, producer))) == []
    # Once the reader has started, StartTask's answer names its inputs: no more fetching ahead.
    started = res.ComputeTask()
    started.CopyFrom(waiting)
    started.status = res.STATUS_EXECUTING
    decide.decide(event(compute_task=started))
    assert decide.decide(event(ev.EVENT_ASSET_CREATED, model=_stored(model(PEER, producer)))) == []


def test_a_peer_s_task_waiting_for_a_model_asks_this_organization_nothing():
    decide = rules()
    producer = key()
    theirs = task(PEER, res.STATUS_WAITING_FOR_PARENT_TASKS, parents=[(producer, "model")])
    decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=theirs))
    assert decide.decide(event(ev.EVENT_ASSET_CREATED, model=_stored(model(PEER, producer)))) == []


def test_a_reader_made_ready_after_the_model_event_is_fetched_for_by_its_run_message_instead():
    """Within one ledger transaction a model is registered, then the task reading it becomes ready: the run
    message names the model, so the early fetch asked by the model's event is dropped (Dispatcher.flush)."""
    decide = rules()
    producer = key()
    waiting = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS, parents=[(producer, "model")])
    decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=waiting))
    (fetch,) = decide.decide(event(ev.EVENT_ASSET_CREATED, model=_stored(model(PEER, producer))))
    ready = res.ComputeTask()
    ready.CopyFrom(waiting)
    ready.status = READY
    (run,) = decide.decide(event(compute_task=ready))
    assert run.kind == "run" and decide.waiting_readers.still_waiting(fetch) is None


def test_an_early_fetch_goes_for_the_reader_that_still_waits():
    """Two tasks here read a peer's model: one becomes ready with it, the other still waits for another parent."""
    decide = rules()
    producer, other_parent = key(), key()
    first = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS, parents=[(producer, "model")])
    second = task(status=res.STATUS_WAITING_FOR_PARENT_TASKS, parents=[(producer, "model"), (other_parent, "model")])
    for reader in (first, second):
        decide.decide(event(ev.EVENT_ASSET_CREATED, compute_task=reader))
    (fetch,) = decide.decide(event(ev.EVENT_ASSET_CREATED, model=_stored(model(PEER, producer))))
    ready = res.ComputeTask()
    ready.CopyFrom(first)
    ready.status = READY
    decide.decide(event(compute_task=ready))
    assert decide.waiting_readers.still_waiting(fetch) == (second.key, second.compute_plan_key)
