"""The ledger's per-plan queue of task transitions (an in-process optimization, see the module)."""

from __future__ import annotations

import asyncio

from tessera.asset.v1 import resources_pb2 as res

from services.asset.plan_locks import PlanLocks


def test_transitions_of_one_plan_take_turns_while_other_plans_go_on():
    async def scenario():
        locks, log = PlanLocks(), []

        async def transition(plan: str, name: str, pause: float) -> None:
            async with locks.held("ch", plan):
                log.append(f"{name} in")
                await asyncio.sleep(pause)
                log.append(f"{name} out")

        await asyncio.gather(transition("p1", "a", 0.05), transition("p1", "b", 0.0), transition("p2", "c", 0.0))
        return log, locks._locks

    log, left = asyncio.run(scenario())
    assert log.index("a out") < log.index("b in")  # b waited for a (same plan)
    assert log.index("c out") < log.index("a out")  # c did not (another plan)
    assert left == {}  # nothing kept once nobody holds or waits


def test_the_plan_of_a_task_is_remembered_within_bounds():
    locks = PlanLocks(known=2)
    locks.learn("ch", [res.ComputeTask(key=f"t{i}", compute_plan_key=f"p{i}") for i in range(3)])
    assert locks.plan_of("ch", "t0") is None  # the oldest went past the bound
    assert (locks.plan_of("ch", "t2"), locks.plan_of("other", "t2")) == ("p2", None)
