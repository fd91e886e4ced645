"""Hostile functions: a partner's code run by organization 1 tries to take what it should not.

Organization 2 registers the function; organization 1 runs it on its public dataset, while it also
holds a private dataset (cached by an earlier task of its own) and its secrets. Each attack is one
task; each is contained, the task ends as it should (DONE with a report of failed attempts, or
FAILED with EXECUTION_ERROR and a readable log), and the next tasks run as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.storage.v1 import storage_pb2

from services.compute.domain.places import Places
from services.kit import trees
from tests.execution.conftest import download, wait_function_ready, wait_plan_final
from tests.hostile.hostile_functions import HOSTILE, probe_wheel
from tools.samples import flassets

DATA_IN = {
    "opener": res.FunctionInput(kind=res.ASSET_DATA_MANAGER),
    "datasamples": res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True),
}
MODEL_OUT = {"model": res.FunctionOutput(kind=res.ASSET_MODEL)}
PUBLIC = res.NewPermissions(public=True)
MARKER = f"tessera-linger-{uuid.uuid4().hex}"
ATTACKS = (
    "snoop",
    "connect",
    "tamper",
    "linger",
    "hog_memory",
    "fork_bomb",
    "spin",
    "hang",
    "fill",
    "link_out",
    "escape",
    "deep_tree",
    "forge_nested",
    "forge_long",
)


def _targets(network, org1_id: str, private_sample: str) -> dict:
    state = network.state_dir
    work = state / "compute" / org1_id
    postgres = network.postgres
    return {
        "files": [
            str(network.credentials.secret_files[org1_id]),
            str(network.credentials.verifiers),
            str(state / f"users-{org1_id}.json"),
            str(state / "network.json"),
            str(Places(work).data_sample(private_sample) / "data.csv"),
            str(postgres.data_dir / "PG_VERSION"),
            "/etc/shadow",
            "/etc/passwd",
            "/root/.bash_history",
        ],
        "state_dir": str(state),
        "work_dir": str(work),
        "addresses": [s.addr for s in network.services]
        + [f"127.0.0.1:{postgres.port}", network.nats.url.rsplit("/", 1)[-1]],
        "postgres_socket": str(postgres.data_dir / "sockets" / f".s.PGSQL.{postgres.port}"),
        "marker": MARKER,
    }


@pytest.fixture(scope="module")
def setup(network, orgs):
    org1, org2 = orgs
    public_dm, public_samples = org1.dataset([np.ones((3, 3)), np.zeros((2, 3))], PUBLIC)
    private = res.NewPermissions(public=False, authorized_ids=[org1.id])
    private_dm, private_samples = org1.dataset([np.full((2, 3), 7.0)], private)
    own = org1.function("train", DATA_IN, MODEL_OUT)
    assert wait_function_ready(org1, own).status == res.FUNCTION_STATUS_READY
    # Organization 1's own task on its private data: its samples are now in its compute's cache.
    plan = _run(org1, own, private_dm, private_samples)
    assert wait_plan_final(org1, plan).status == res.PLAN_STATUS_DONE

    targets = _targets(network, org1.id, private_samples[0])
    extra = {"function.py": HOSTILE, "targets.json": json.dumps(targets)}
    keys = {}
    for attack in ATTACKS:
        dockerfile = (
            "FROM python:3.11-slim\nRUN pip install substratools\nCOPY . .\n"
            f'ENTRYPOINT ["python3", "function.py", "--function-name", "{attack}"]\n'
        )
        data = flassets.function_archive(attack, dockerfile=dockerfile, extra=extra)
        keys[attack] = org2.function(attack, DATA_IN, MODEL_OUT, archive=data)
    # A function whose environment installs a package with a .pth file: code that runs at every start
    # of the function's interpreter, before any of ours in it.
    wheel, wheel_bytes = probe_wheel()
    dockerfile = (
        "FROM python:3.11-slim\nCOPY . .\nRUN pip install -r requirements.txt\n"
        'ENTRYPOINT ["python3", "function.py", "--function-name", "probe_environment"]\n'
    )
    probe_extra = {**extra, "requirements.txt": f"file:{wheel}\n", wheel: wheel_bytes}
    keys["probe_environment"] = org2.function(
        "probe_environment",
        DATA_IN,
        MODEL_OUT,
        archive=flassets.function_archive("probe_environment", dockerfile=dockerfile, extra=probe_extra),
    )
    for key in keys.values():
        assert wait_function_ready(org2, key).status == res.FUNCTION_STATUS_READY
    work = network.state_dir / "compute" / org1.id
    return {
        "org1": org1,
        "org2": org2,
        "dm": public_dm,
        "samples": public_samples,
        "functions": keys,
        "own": own,
        "work": work,
        "state": network.state_dir,
    }


def _run(creator, function_key: str, dm: str, samples: list[str]) -> str:
    """One task of ``function_key`` on the dataset, in a plan of its own made by ``creator``."""
    plan = str(uuid.uuid4())
    inputs = [api.NewComputeTaskInput(identifier="opener", asset_key=dm)]
    inputs += [api.NewComputeTaskInput(identifier="datasamples", asset_key=s) for s in samples]
    task = api.NewComputeTask(key=str(uuid.uuid4()), compute_plan_key=plan, function_key=function_key, inputs=inputs)
    task.outputs["model"].CopyFrom(api.NewComputeTaskOutput(permissions=PUBLIC))
    creator.ledger.RegisterComputePlan(api.RegisterComputePlanRequest(key=plan, name="hostile"))
    creator.ledger.RegisterTasks(api.RegisterTasksRequest(tasks=[task]))
    return plan


def _attack(setup, name: str):
    """Run one attack; returns (task, report or None, logs or None)."""
    org1, org2 = setup["org1"], setup["org2"]
    plan = _run(org2, setup["functions"][name], setup["dm"], setup["samples"])
    wait_plan_final(org2, plan)
    (task,) = org2.ledger.ListTasks(api.ListTasksRequest(compute_plan_key=[plan])).tasks
    report = logs = None
    if task.status == res.STATUS_DONE:
        (model,) = org1.ledger.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=task.key)).assets
        report = json.loads(download(org1.storage, storage_pb2.FILE_KIND_MODEL, model.model.key))
    elif task.status == res.STATUS_FAILED:
        logs = download(org1.storage, storage_pb2.FILE_KIND_LOGS, task.key).decode(errors="replace")
    return task, report, logs


def _still_serves(setup) -> None:
    """Organization 1's own function still runs on the same data, with the right result."""
    org1 = setup["org1"]
    plan = _run(org1, setup["own"], setup["dm"], setup["samples"])
    assert wait_plan_final(org1, plan).status == res.PLAN_STATUS_DONE


def test_nothing_of_the_organization_is_readable(setup):
    task, report, logs = _attack(setup, "snoop")
    assert task.status == res.STATUS_DONE, logs
    assert all(outcome != "OK" for outcome in report["files"].values()), report["files"]
    listing = report["listing"]
    interpreter = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix)}
    system = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "proc", "dev", "tmp", "tessera", "etc"}
    assert set(listing["/"]) <= system | interpreter, listing["/"]
    assert set(listing["/etc"]) <= {"ld.so.cache", "localtime"}, listing["/etc"]
    assert sorted(listing["/tessera"]) == ["in", "out", "runner.py", "work"]
    assert listing["/tessera/in"] == [task.key] and listing["/tessera/out"] == [task.key]
    assert not isinstance(listing[str(setup["state"])], list)
    assert not isinstance(listing[str(setup["work"])], list)
    assert not any(name.startswith("TESSERA_") for name in report["environment"]), report["environment"]
    assert report["uid"] != 0
    assert len(report["processes"]) <= 3  # its own pid namespace: bwrap's init, the runner, nothing else
    assert report["host_init"] != "OK"


def test_no_service_database_or_message_bus_is_reachable(setup):
    task, report, logs = _attack(setup, "connect")
    assert task.status == res.STATUS_DONE, logs
    assert len(report) >= 10 and all(outcome != "OK" for outcome in report.values()), report


def test_inputs_interpreter_and_runner_cannot_be_changed(setup):
    task, report, logs = _attack(setup, "tamper")
    assert task.status == res.STATUS_DONE, logs
    assert len(report) >= 10 and all(outcome != "OK" for outcome in report.values()), report
    # The cached opener is still what the ledger says, and organization 1's next task runs on it.
    org1 = setup["org1"]
    dm = org1.ledger.GetDataManager(api.GetDataManagerRequest(key=setup["dm"])).data_manager
    cached = setup["work"] / "cache" / "openers" / dm.key / "__init__.py"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == dm.opener.checksum
    sample = Places(setup["work"]).data_sample(setup["samples"][0]) / "data.csv"
    assert b"injected" not in sample.read_bytes()
    _still_serves(setup)


def test_no_process_outlives_its_task(setup):
    task, report, logs = _attack(setup, "linger")
    assert task.status == res.STATUS_DONE and report == {"spawned": True}, logs
    assert not _processes_with(MARKER)


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_memory_is_bounded(setup):
    task, _, logs = _attack(setup, "hog_memory")
    assert task.status == res.STATUS_FAILED and task.error_type == res.EXECUTION_ERROR
    assert "MemoryError" in logs


def test_processes_are_bounded(setup):
    task, report, logs = _attack(setup, "fork_bomb")
    assert task.status == res.STATUS_DONE, logs
    assert report["forked"] < 24 and report["errno"] is not None


def test_cpu_time_is_bounded(setup):
    task, _, logs = _attack(setup, "spin")
    assert task.status == res.STATUS_FAILED and task.error_type == res.EXECUTION_ERROR
    assert "SIGXCPU" in logs or "SIGKILL" in logs, logs[-500:]
    _still_serves(setup)


def test_wall_clock_is_bounded(setup):
    started = time.monotonic()
    task, _, logs = _attack(setup, "hang")
    assert task.status == res.STATUS_FAILED and task.error_type == res.EXECUTION_ERROR
    assert "timed out" in logs and "waiting forever" in logs  # what it printed before is kept
    assert time.monotonic() - started < 60


def test_tmp_and_file_sizes_are_bounded(setup):
    task, report, logs = _attack(setup, "fill")
    assert task.status == res.STATUS_DONE, logs
    assert report == {"tmp": "OSError", "big_file": "OSError"}


def test_an_output_that_links_elsewhere_is_refused(setup):
    task, _, logs = _attack(setup, "link_out")
    assert task.status == res.STATUS_FAILED and task.error_type == res.EXECUTION_ERROR
    assert "not a regular file" in logs
    _still_serves(setup)


def test_no_privilege_can_be_regained(setup):
    task, report, logs = _attack(setup, "escape")
    assert task.status == res.STATUS_DONE, logs
    assert all(outcome != "OK" for outcome in report["attempts"].values()), report["attempts"]
    assert report["capabilities"] == ["0000000000000000", "0000000000000000"]
    assert report["niceness"] == 10  # the default: organization 1's services come first on a busy core
    # Its own user namespace, mapping one unprivileged uid (the host's full map would be "0 0 4294967295").
    inner, outer, count = report["uid_map"]
    assert inner == outer and int(inner) >= 1000 and count == "1"


def test_the_function_s_own_packages_never_run_as_root(setup):
    task, report, logs = _attack(setup, "probe_environment")
    assert task.status == res.STATUS_DONE, logs
    uid, capabilities = report["pth"].split()
    assert int(uid) >= 1000 and capabilities == "0000000000000000", report


def _deep_or_changing(work: Path) -> list[str]:
    """Folders of the runners and the trash nested deeper than a task's code would be, or being deleted."""
    found = []
    for folder in ("runners", "trash", "results"):
        if not (work / folder).is_dir():
            continue
        for entry in os.scandir(work / folder):
            if entry.name.endswith(".removing"):  # what services.kit.trees takes apart
                found.append(entry.path)
                continue
            try:
                for _ in trees.walk(entry.path, max_depth=64):
                    pass
            except (trees.TooDeep, FileNotFoundError):  # FileNotFoundError: moved while walked
                found.append(entry.path)
    return found


def _cleaned_up(work: Path, within: float = 30) -> bool:
    """Whether nothing deep is left, in three polls in a row: a walk racing a deletion can see a folder
    emptied before its turn, and a tree as shallower than it is."""
    clean, deadline = 0, time.monotonic() + within
    while time.monotonic() < deadline:
        clean = 0 if _deep_or_changing(work) else clean + 1
        if clean == 3:
            return True
        time.sleep(0.2)
    return False


def test_a_tree_too_deep_to_delete_recursively_is_deleted_and_its_runner_s_uid_returned(setup):
    task, report, logs = _attack(setup, "deep_tree")
    assert task.status == res.STATUS_DONE and report == {"depth": 1500}, logs
    # The plan ended: its runner stops, and its folders and the task's outbox go.
    assert _cleaned_up(setup["work"]), _deep_or_changing(setup["work"])
    _still_serves(setup)


@pytest.mark.parametrize("attack", ["forge_nested", "forge_long"])
def test_an_answer_forged_by_the_script_s_top_level_fails_its_task_not_compute(setup, attack):
    task, _, logs = _attack(setup, attack)
    assert task.status == res.STATUS_FAILED and task.error_type == res.EXECUTION_ERROR, task
    assert "the task wrote on its runner's answer pipe" in logs, logs[-500:]
    _still_serves(setup)


def test_a_build_step_that_leaves_a_tree_too_deep_fails_the_build(setup):
    """The step's folder goes back to compute by walking it: a tree deeper than compute walks fails the
    build, naming the step, instead of escaping from the jail's cleanup (which kept its uid) and having the
    build retried for ever."""
    org2 = setup["org2"]
    dockerfile = (
        "FROM python:3.11-slim\nCOPY . .\nRUN python3 function.py --nest-here\n"
        'ENTRYPOINT ["python3", "function.py", "--function-name", "snoop"]\n'
    )
    extra = {"function.py": HOSTILE, "targets.json": "{}"}
    archive = flassets.function_archive("deep_build", dockerfile=dockerfile, extra=extra)
    key = org2.function("deep_build", DATA_IN, MODEL_OUT, archive=archive)
    assert wait_function_ready(org2, key).status == res.FUNCTION_STATUS_FAILED
    report = org2.ledger.GetFailureReport(api.GetFailureReportRequest(asset_key=key)).failure_report
    assert report.error_type == res.BUILD_ERROR
    logs = download(org2.storage, storage_pb2.FILE_KIND_LOGS, key).decode(errors="replace")
    assert "RUN python3 function.py --nest-here" in logs and "nested more than 256 levels deep" in logs, logs[-800:]
    _still_serves(setup)
