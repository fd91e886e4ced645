"""The dev network supervisor's restart policy: back-off, reset after a stable run, crash-loop give-up."""

from __future__ import annotations

from tools.devnet.supervisor import RestartPolicy


def test_back_off_doubles_up_to_its_cap():
    policy = RestartPolicy(first_delay=1, max_delay=4, crash_loop=99, window=1000)
    delays = []
    now = 0.0
    for _ in range(5):
        policy.started(now)
        now += 1
        delays.append(policy.exited(now))
    assert delays == [1, 2, 4, 4, 4]


def test_a_stable_run_resets_the_back_off():
    policy = RestartPolicy(first_delay=1, stable_after=60, crash_loop=99, window=1000)
    policy.started(0)
    assert policy.exited(1) == 1
    policy.started(2)
    assert policy.exited(3) == 2
    policy.started(4)
    assert policy.exited(100) == 1  # ran 96 s: a new failure, not the same crash


def test_too_many_exits_in_the_window_is_a_crash_loop():
    policy = RestartPolicy(crash_loop=3, window=60)
    policy.started(0)
    assert policy.exited(1) is not None
    assert policy.exited(2) is not None
    assert policy.exited(3) is None


def test_exits_older_than_the_window_are_forgotten():
    policy = RestartPolicy(crash_loop=3, window=60, stable_after=1000)
    policy.started(0)
    assert policy.exited(1) is not None
    assert policy.exited(2) is not None
    assert policy.exited(200) is not None  # the first two are out of the window
    assert policy.restarts == 1
