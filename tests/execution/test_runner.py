"""The local executor on its own: warm runners in real jails, no network of services."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from services.compute.executor import TaskInput, TaskSpec
from services.compute.isolation import Limits, UidPool
from services.compute.local_executor import LocalExecutor, open_jail_proc
from tools.samples import flassets


@pytest.fixture
def assets(tmp_path) -> dict:
    code = tmp_path / "code"
    flassets.write(code / "function.py", flassets.FUNCTIONS)
    opener = flassets.write(tmp_path / "cache" / "opener" / "__init__.py", flassets.OPENER)
    samples = []
    for index, value in enumerate((1.0, 3.0)):
        rows = "\n".join(",".join([f"{value}"] * 3) for _ in range(2))
        samples.append(flassets.write(tmp_path / "cache" / f"sample{index}" / "data.csv", rows + "\n").parent)
    return {"code": code, "opener": opener, "samples": samples, "work": tmp_path / "work"}


def _spec(assets, key: str, function: str = "train", plan: str = "plan-1", models: list[Path] = ()) -> TaskSpec:
    inputs = [TaskInput("opener", assets["opener"])]
    inputs += [TaskInput("datasamples", s, True) for s in assets["samples"]]
    inputs += [TaskInput("models", m, True) for m in models]
    return TaskSpec(
        key=key,
        plan_key=plan,
        function_key=f"f-{function}",
        code=assets["code"],
        python=sys.executable,
        entrypoint=["python3", "function.py", "--function-name", function],
        inputs=inputs,
        outputs={"model": "model.model"},
        rank=int(key.rsplit("-", 1)[-1]) if key[-1].isdigit() else 0,
        timeout=60,
    )


def _executor(assets) -> LocalExecutor:
    assets["work"].mkdir(exist_ok=True)
    return LocalExecutor(assets["work"], Limits(), UidPool(250000, 8), idle_seconds=30)


def test_a_plan_s_tasks_of_one_function_share_one_runner(assets):
    async def scenario():
        executor = _executor(assets)
        try:
            results, previous = [], []
            for index in range(3):
                spec = _spec(assets, f"task-{index}", models=previous)
                result = await (await executor.start(spec)).wait()
                assert result.succeeded, result.error
                kept = assets["work"].parent / f"model-{index}"
                kept.write_bytes(result.outputs["model"].read_bytes())
                results.append((result, result.log_path.read_text()))
                executor.forget(spec.key)
                previous = [kept]
            return results, executor.runners_started
        finally:
            await executor.close()

    results, started = asyncio.run(scenario())
    assert started == 1
    # The mean of the data (2.0), then averaged with the previous model: still 2.0 every round.
    for index, (_result, log) in enumerate(results):
        assert f"train rank {index}: 4 rows" in log
        assert all(f"train rank {other}:" not in log for other in range(3) if other != index)
    model = json.loads((assets["work"].parent / "model-2").read_text())
    assert np.allclose(model, [2.0, 2.0, 2.0])


def _two_at_once(assets, function: str, cold_start: float) -> tuple[list, int]:
    """Two tasks of one plan and function started together; the runners it took."""

    async def scenario():
        executor = _executor(assets)
        executor.cold_start = cold_start
        try:
            executions = [await executor.start(_spec(assets, f"task-{i}", function)) for i in range(2)]
            results = [await execution.wait() for execution in executions]
            return results, executor.runners_started
        finally:
            await executor.close()

    return asyncio.run(scenario())


def test_a_task_waits_for_its_functions_busy_runner_rather_than_start_another(assets):
    results, started = _two_at_once(assets, "train", cold_start=30.0)
    assert all(r.succeeded for r in results), [r.error for r in results]
    assert started == 1  # the second ran in the first's runner once it was free


def test_a_task_starts_its_own_runner_when_the_busy_one_takes_longer_than_a_cold_start(assets):
    started_at = time.monotonic()
    results, started = _two_at_once(assets, "nap", cold_start=0.2)
    assert all(r.succeeded for r in results), [r.error for r in results]
    assert started == 2  # the 4-second naps ran side by side
    assert time.monotonic() - started_at < 7.5


def test_a_failed_task_fails_alone_and_its_runner_serves_on(assets):
    async def scenario():
        executor = _executor(assets)
        try:
            failed = await (await executor.start(_spec(assets, "task-0", "explode"))).wait()
            again = await (await executor.start(_spec(assets, "task-1", "explode"))).wait()
            fine = await (await executor.start(_spec(assets, "task-2"))).wait()
            return failed, again, fine, executor.runners_started
        finally:
            await executor.close()

    failed, again, fine, started = asyncio.run(scenario())
    assert not failed.succeeded and "RuntimeError: this function fails on purpose" in failed.error
    assert "Traceback" in failed.log_path.read_text()
    assert not again.succeeded
    assert fine.succeeded
    assert started == 2  # one runner per function: each task ran in a child of it, the failure stayed there


STATEFUL = """
import json
import substratools as tools

SEEN = []


@tools.register
def remember(inputs, outputs, task_properties):
    SEEN.append(task_properties["rank"])
    with open(outputs["model"], "w") as out:
        json.dump(SEEN, out)


tools.execute()
"""


def test_each_task_starts_from_the_loaded_function_not_from_the_previous_task(assets):
    flassets.write(assets["code"] / "function.py", STATEFUL)

    async def scenario():
        executor = _executor(assets)
        try:
            seen = []
            for index in range(3):
                spec = _spec(assets, f"task-{index}", "remember")
                result = await (await executor.start(spec)).wait()
                assert result.succeeded, result.error
                seen.append(json.loads(result.outputs["model"].read_text()))
            return seen, executor.runners_started
        finally:
            await executor.close()

    seen, started = asyncio.run(scenario())
    assert started == 1
    assert seen == [[0], [1], [2]]  # the module was loaded once, and no task saw another's state


def test_ending_the_plan_stops_its_jails_and_frees_their_folders(assets):
    async def scenario():
        executor = _executor(assets)
        try:
            result = await (await executor.start(_spec(assets, "task-0"))).wait()
            assert result.succeeded
            (runner,) = executor._idle
            pid = runner.process.pid
            await executor.release("plan-1")
            return pid, runner.root
        finally:
            await executor.close()

    pid, root = asyncio.run(scenario())
    assert not Path(f"/proc/{pid}").exists()
    assert not root.exists()


def test_a_canceled_task_stops_at_once(assets):
    async def scenario():
        executor = _executor(assets)
        try:
            execution = await executor.start(_spec(assets, "task-0", "sleep"))
            await asyncio.sleep(1.5)
            started = asyncio.get_running_loop().time()
            await execution.cancel()
            result = await execution.wait()
            return result, asyncio.get_running_loop().time() - started
        finally:
            await executor.close()

    result, seconds = asyncio.run(scenario())
    assert result.canceled and not result.succeeded
    assert seconds < 5


def test_outputs_are_owned_by_compute_not_the_jail(assets):
    async def scenario():
        executor = _executor(assets)
        try:
            return await (await executor.start(_spec(assets, "task-0"))).wait()
        finally:
            await executor.close()

    result = asyncio.run(scenario())
    assert result.succeeded
    assert result.outputs["model"].stat().st_uid == os.geteuid()
    assert not result.outputs["model"].is_relative_to(assets["work"] / "runners")


LINGER = """
import os
import sys
import time
import substratools as tools


@tools.register
def linger(inputs, outputs, task_properties):
    if os.fork() == 0:
        os.setsid()  # out of the task's session, then orphaned: only the jail's init is left above it
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)  # {marker}"])
        os._exit(0)
    os.wait()
    with open(outputs["model"], "w") as out:
        out.write("[]")


tools.execute()
"""


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and marker in Path(entry.path, "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_what_a_task_leaves_running_is_killed_before_its_runner_serves_again(assets):
    marker = f"lingering-{os.getpid()}-{id(assets)}"
    flassets.write(assets["code"] / "function.py", LINGER.replace("{marker}", marker))

    async def scenario():
        executor = _executor(assets)
        try:
            left = []
            for index in range(2):
                result = await (await executor.start(_spec(assets, f"task-{index}", "linger"))).wait()
                assert result.succeeded, result.error
                left.append(_processes_with(marker.encode()))
            return left, executor.runners_started, executor._idle[0].process.returncode
        finally:
            await executor.close()

    left, started, returncode = asyncio.run(scenario())
    assert started == 1 and returncode is None  # one runner, still serving: its jail did not end
    assert left == [[], []]


def test_an_entrypoint_that_is_not_a_script_runs_once_per_task_with_its_arguments(assets):
    async def scenario():
        executor = _executor(assets)
        try:
            results = []
            for index in range(2):
                spec = _spec(assets, f"task-{index}")
                # Not ``python SCRIPT``: a process per task rather than a fork of the loaded function.
                spec = dataclasses.replace(spec, entrypoint=["python3", "-u", *spec.entrypoint[1:]])
                results.append(await (await executor.start(spec)).wait())
            return results, executor.runners_started
        finally:
            await executor.close()

    results, started = asyncio.run(scenario())
    assert started == 1
    for index, result in enumerate(results):
        assert result.succeeded, result.error
        assert f"train rank {index}: 4 rows" in result.log_path.read_text()
        assert np.allclose(json.loads(result.outputs["model"].read_text()), [2.0, 2.0, 2.0])


ENV_PROBE = """
import json
import os

import substratools as tools


@tools.register
def probe(inputs, outputs, task_properties):
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    with open(outputs["model"], "w") as out:
        json.dump({name: os.environ.get(name) for name in names}, out)


tools.execute()
"""


def test_a_task_s_environment_starts_from_the_executor_s_and_its_function_s_env_comes_over_it(assets):
    flassets.write(assets["code"] / "function.py", ENV_PROBE)
    default = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    async def scenario():
        assets["work"].mkdir(exist_ok=True)
        executor = LocalExecutor(assets["work"], Limits(), UidPool(250000, 8), task_env=default)
        try:
            spec = dataclasses.replace(_spec(assets, "task-0", "probe"), env={"MKL_NUM_THREADS": "4"})
            result = await (await executor.start(spec)).wait()
            assert result.succeeded, result.error
            return json.loads(result.outputs["model"].read_text())
        finally:
            await executor.close()

    assert asyncio.run(scenario()) == {**default, "MKL_NUM_THREADS": "4"}


def test_the_sweep_never_looks_at_processes_outside_a_jail():
    # A process with one child, as bwrap has, but no jail: its child's /proc is compute's own.
    process = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        while not children.read_text().split():
            time.sleep(0.01)
        assert open_jail_proc(process.pid) is None
    finally:
        process.kill()
        process.wait()


def test_a_finished_task_s_folders_leave_its_runner_s_view_and_are_deleted(assets):
    async def scenario():
        executor = _executor(assets)
        try:
            result = await (await executor.start(_spec(assets, "task-0"))).wait()
            assert result.succeeded, result.error
            (runner,) = executor._idle
            seen = sorted(os.listdir(runner.inbox)) + sorted(os.listdir(runner.outbox))
            executor.forget("task-0")
            return seen, result.log_path.parent
        finally:
            await executor.close()

    seen, results = asyncio.run(scenario())
    assert seen == []  # what the runner's jail sees: nothing of a task that has ended
    assert not results.exists()
    assert os.listdir(assets["work"] / "trash") == []


def _runner_of(spec: TaskSpec) -> TaskSpec:
    """What compute prepares a runner from: the plan and function of ``spec``, no task."""
    return dataclasses.replace(spec, key="", inputs=[], outputs={}, rank=0, timeout=0.0)


def _serve_after_prepare(assets, function: str = "train", tasks: int = 2, *, again: bool = True):
    async def scenario():
        executor = _executor(assets)
        try:
            await executor.prepare(_runner_of(_spec(assets, "task-0", function)))
            prepared = executor.runners_started
            if again:
                await executor.prepare(_runner_of(_spec(assets, "task-0", function)))  # one is there: nothing more
            results = []
            for index in range(tasks):
                results.append(await (await executor.start(_spec(assets, f"task-{index}", function))).wait())
            return prepared, executor.runners_started, results
        finally:
            await executor.close()

    return asyncio.run(scenario())


def test_a_prepared_runner_loads_the_function_and_serves_the_plans_first_tasks(assets):
    """The function's script calls substratools' execute at its top level: loading it starts the loop."""
    prepared, started, results = _serve_after_prepare(assets)
    assert (prepared, started) == (1, 1)
    assert all(r.succeeded for r in results), [r.error for r in results]
    assert "train rank 1: 4 rows" in results[1].log_path.read_text()


def test_a_prepared_script_is_loaded_once_and_its_tasks_run_from_the_loaded_module(assets):
    """A script that guards its execute call with ``__name__ == "__main__"``: the load runs its top level
    under another name (imports, definitions), and the tasks run substratools' execute on the loaded module
    without running the script again (substratools would refuse its functions registered twice)."""
    guarded = flassets.FUNCTIONS.replace(
        "\ntools.execute()\n", '\nprint("top level as", __name__)\nif __name__ == "__main__":\n    tools.execute()\n'
    )
    assert guarded != flassets.FUNCTIONS
    flassets.write(assets["code"] / "function.py", guarded)
    prepared, started, results = _serve_after_prepare(assets)
    assert (prepared, started) == (1, 1)
    assert all(r.succeeded for r in results), [r.error for r in results]
    assert "train rank 1: 4 rows" in results[1].log_path.read_text()
    assert all("top level as" not in r.log_path.read_text() for r in results)  # the script ran once, at the load


def test_a_function_that_cannot_load_is_not_kept_and_its_task_fails_with_why(assets):
    flassets.write(assets["code"] / "function.py", "raise ImportError('no such module: missing_dependency')\n")
    prepared, started, results = _serve_after_prepare(assets, tasks=1, again=False)
    assert prepared == 1 and started == 2  # the failed runner was stopped; the task started its own
    (result,) = results
    assert not result.succeeded and "missing_dependency" in result.error


def test_each_task_sees_its_own_command_line(assets):
    """``sys.argv`` is the task's own in every task a runner serves, not the first task's."""
    script = flassets.FUNCTIONS.replace(
        "\ntools.execute()\n",
        "\n@tools.register\ndef argv(inputs, outputs, task_properties):\n"
        '    with open(outputs["model"], "w") as out:\n        json.dump(sys.argv, out)\n\n\ntools.execute()\n',
    )
    flassets.write(assets["code"] / "function.py", script)

    async def scenario():
        executor = _executor(assets)
        try:
            seen = []
            for index in range(2):
                result = await (await executor.start(_spec(assets, f"task-{index}", "argv"))).wait()
                assert result.succeeded, result.error
                seen.append(json.loads(result.outputs["model"].read_text()))
            return seen
        finally:
            await executor.close()

    first, second = asyncio.run(scenario())
    assert "@/tessera/in/task-0/arguments.txt" in first and "@/tessera/in/task-1/arguments.txt" in second
