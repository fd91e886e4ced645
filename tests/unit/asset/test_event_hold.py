"""Which events a held subscription sends at once (:func:`services.asset.events.wakes`)."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.events import wakes

ME, PEER = "MyOrg2MSP", "MyOrg1MSP"
READABLE = res.Permissions(process=res.Permission(authorized_ids=[PEER, ME]))
PUBLIC = res.Permissions(process=res.Permission(public=True))


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev.Event(compute_task=res.ComputeTask(worker=ME, owner=PEER)), True),
        (ev.Event(compute_task=res.ComputeTask(worker=PEER, owner=ME)), False),  # a peer's task of my plan
        (ev.Event(function=res.Function(owner=ME)), True),  # my build
        (ev.Event(function=res.Function(owner=PEER)), False),
        (ev.Event(model=res.Model(owner=ME)), True),  # e.g. disabled: mine to delete
        (ev.Event(model=res.Model(owner=PEER)), False),
        (ev.Event(model=res.Model(owner=PEER, permissions=READABLE)), True),  # a task here may wait for it
        (ev.Event(model=res.Model(owner=PEER, permissions=PUBLIC)), True),
        (ev.Event(compute_plan=res.ComputePlan(owner=PEER)), True),  # a plan's end stops my runners
        (ev.Event(organization=res.Organization(id=PEER)), True),
        (ev.Event(data_manager=res.DataManager(owner=ME)), False),
        (ev.Event(performance=res.Performance()), False),
        (ev.Event(), False),
    ],
)
def test_an_event_wakes_the_organizations_it_may_ask_to_act(event, expected):
    assert wakes(event, ME) is expected
