"""Where Tessera answered differently from Substra with the real SDK (issue 13), each checked with
``substra==1.0.0`` on two organizations: what a function sees, how every organization renders the
same asset, the plan's duration, permission refusals, profiling steps, builds.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from substra.sdk import exceptions, models, schemas

from tests.sdk.conftest import sdk_client
from tools.samples import flassets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POLL = 0.3
PUBLIC = schemas.Permissions(public=True, authorized_ids=[])
MODEL = schemas.AssetKind.model

# An opener that hands the function the names of its sample folders.
NAMES_OPENER = """
import os

import substratools as tools


class FolderNames(tools.Opener):
    def get_data(self, folders):
        return [os.path.basename(os.path.normpath(f)) for f in folders]

    def fake_data(self, n_samples=None):
        return []
"""

COMPAT_FUNCTIONS = """
import json
import os

import substratools as tools


@tools.register
def names(inputs, outputs, task_properties):
    with open(outputs["model"], "w") as f:
        json.dump(inputs["datasamples"], f)


@tools.register
def score(inputs, outputs, task_properties):
    tools.save_performance(0.5, outputs["performance"])


@tools.register
def built(inputs, outputs, task_properties):
    # Started in the Dockerfile's last WORKDIR (sub), with its ENV.
    found = {name: open(name).read() for name in ("../model/flag.txt", "../copied/extra.txt", "where.txt")}
    found.update(cwd=os.getcwd(), env={name: os.environ.get(name) for name in ("FOO", "GREETING", "PATH", "HOME")})
    with open(outputs["model"], "w") as f:
        json.dump(found, f)


tools.execute()
"""

# Declared in an order no sorting gives, so that any reordering shows.
DECLARED_INPUTS = ["opener", "datasamples", "zeta", "models", "alpha", "middle", "beta"]
DECLARED_OUTPUTS = ["model", "omega", "extra", "aux"]
METADATA = {"zulu": "1", "alpha": "2", "mike": "3", "bravo": "4", "yankee": "5", "charlie": "6"}


def _archive(name: str, dockerfile: str | None = None, functions: str = COMPAT_FUNCTIONS) -> bytes:
    entrypoint = f'ENTRYPOINT ["python3", "function.py", "--function-name", "{name}"]\n'
    dockerfile = dockerfile or f"FROM python:3.11-slim\nCOPY function.py .\n{entrypoint}"
    return flassets.function_archive(name, dockerfile, {"function.py": functions})


def _headers(client) -> dict:
    return {"Authorization": f"Token {client._token}", "Accept": "application/json;version=0.0"}


def _get(url: str, client) -> requests.Response:
    return requests.get(url, headers=_headers(client), timeout=30)


@pytest.fixture(scope="module")
def world(organizations, tmp_path_factory):
    """Both organizations' clients; MyOrg1MSP's dataset (opener listing folder names) with three
    samples, processable by both organizations."""
    folder = tmp_path_factory.mktemp("sdk-compat")
    c1, c2 = sdk_client(organizations[0]), sdk_client(organizations[1])
    org1, org2 = c1.organization_info().organization_id, c2.organization_info().organization_id
    dm = c1.add_dataset(
        schemas.DatasetSpec(
            name="compat-names",
            data_opener=flassets.write(folder / "opener.py", NAMES_OPENER),
            description=flassets.write(folder / "description.md", "# names\n"),
            permissions=PUBLIC,
            logs_permission=PUBLIC,
            metadata=METADATA,
        )
    )
    samples = []
    for i in range(3):
        sample = folder / f"sample-{i}"
        flassets.write(sample / "data.csv", "1,2,3\n")
        samples.append(c1.add_data_sample(schemas.DataSampleSpec(path=sample, data_manager_keys=[dm])))
    world = SimpleNamespace(
        c1=c1, c2=c2, org1=org1, org2=org2, dm=dm, samples=samples, folder=folder, gateways=organizations
    )  # fmt: skip
    yield world
    for client in (c1, c2):
        if client._token is not None:
            client.logout()


def _function(world, name: str, inputs, outputs, archive: bytes | None = None, metadata=None) -> str:
    path = flassets.write(
        world.folder / "functions" / f"{name}-{uuid.uuid4().hex[:6]}.tar.gz", archive or _archive(name)
    )
    description = flassets.write(world.folder / "functions" / f"{name}.md", f"# {name}\n")
    return world.c1.add_function(
        schemas.FunctionSpec(
            name=name,
            description=description,
            file=path,
            permissions=PUBLIC,
            inputs=inputs,
            outputs=outputs,
            metadata=metadata or {},
        )
    )


DATA_IN = [
    schemas.FunctionInputSpec(identifier="opener", kind=schemas.AssetKind.data_manager, multiple=False, optional=False),
    schemas.FunctionInputSpec(
        identifier="datasamples", kind=schemas.AssetKind.data_sample, multiple=True, optional=False
    ),
]
MODEL_OUT = [schemas.FunctionOutputSpec(identifier="model", kind=MODEL, multiple=False)]


def _data(dm: str, *samples: str) -> list[schemas.InputRef]:
    return [schemas.InputRef(identifier="opener", asset_key=dm)] + [
        schemas.InputRef(identifier="datasamples", asset_key=s) for s in samples
    ]


@pytest.fixture(scope="module")
def names_plan(world) -> SimpleNamespace:
    """A plan (with metadata) of one task whose function writes the names of its sample folders as
    its model, run to DONE."""
    function = _function(world, "names", DATA_IN, MODEL_OUT, metadata=METADATA)
    assert world.c1.wait_function(function, timeout=60, polling_period=POLL).status == models.FunctionStatus.ready
    task = str(uuid.uuid4())
    spec = schemas.ComputePlanSpec(
        key=str(uuid.uuid4()),
        name="compat-names",
        metadata=METADATA,
        tasks=[
            schemas.ComputePlanTaskSpec(
                task_id=task,
                function_key=function,
                worker=world.org1,
                inputs=_data(world.dm, *world.samples),
                outputs={"model": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)},
                metadata=METADATA,
            )
        ],
    )
    world.c1.add_compute_plan(spec)
    plan = world.c1.wait_compute_plan(spec.key, timeout=90, polling_period=POLL)
    assert plan.status == models.ComputePlanStatus.done
    return SimpleNamespace(key=spec.key, task=task, function=function)


# ------------------------------------------------------------------------------------------ 1. sample folders
def test_a_function_sees_each_data_sample_in_a_folder_named_by_its_key(world, names_plan, tmp_path):
    path = world.c1.download_model_from_task(names_plan.task, "model", tmp_path)
    assert json.loads(Path(path).read_text()) == world.samples


# ------------------------------------------------------------------------------ 2. one rendering per asset
UNSHARED = {"storage_address", "host", "creator", "status"}  # per organization, or moving


def _shared(value):
    """``value`` without what may differ from one organization to another; dicts as lists of pairs,
    so that comparing them compares their order too."""
    if isinstance(value, dict):
        return [(k, _shared(v)) for k, v in value.items() if k not in UNSHARED]
    if isinstance(value, list):
        return [_shared(v) for v in value]
    return value


def test_every_organization_renders_an_asset_identically(world, names_plan):
    wide_inputs = [
        schemas.FunctionInputSpec(
            identifier=name,
            kind={"opener": schemas.AssetKind.data_manager, "datasamples": schemas.AssetKind.data_sample}.get(
                name, MODEL
            ),
            multiple=name in ("datasamples", "models"),
            optional=name not in ("opener", "datasamples"),
        )
        for name in DECLARED_INPUTS
    ]
    wide_outputs = [
        schemas.FunctionOutputSpec(identifier=name, kind=MODEL, multiple=False) for name in DECLARED_OUTPUTS
    ]
    wide = _function(world, "names", wide_inputs, wide_outputs, metadata=METADATA)
    model = world.c1.get_task_output_asset(names_plan.task, "model").asset.key
    routes = [
        f"function/{wide}",
        f"function/{names_plan.function}",
        f"data_manager/{world.dm}",
        f"data_sample/{world.samples[0]}",
        f"compute_plan/{names_plan.key}",
        f"task/{names_plan.task}",
        f"model/{model}",
        f"task/{names_plan.task}/output_assets",
        f"task/{names_plan.task}/input_assets",
        f"compute_plan/{names_plan.key}/perf",
    ]
    g1, g2 = (org.gateway for org in world.gateways)
    for route in routes:
        first, second = _get(f"{g1}/{route}/", world.c1), _get(f"{g2}/{route}/", world.c2)
        assert first.status_code == second.status_code == 200, route
        assert _shared(first.json()) == _shared(second.json()), route
    for gateway, client in ((g1, world.c1), (g2, world.c2)):
        function = _get(f"{gateway}/function/{wide}/", client).json()
        assert list(function["inputs"]) == DECLARED_INPUTS and list(function["outputs"]) == DECLARED_OUTPUTS
        assert list(function["metadata"]) == list(METADATA)
        assert not any(name.endswith("_order") for name in function)
        task = _get(f"{gateway}/task/{names_plan.task}/", client).json()
        assert list(task["metadata"]) == list(METADATA)
        assert list(_get(f"{gateway}/compute_plan/{names_plan.key}/", client).json()["metadata"]) == list(METADATA)
        assert list(_get(f"{gateway}/data_manager/{world.dm}/", client).json()["metadata"]) == list(METADATA)
    assert [i.identifier for i in world.c2.get_function(wide).inputs] == DECLARED_INPUTS  # as the SDK reads them


# ------------------------------------------------------------------- 3. plan duration, permission refusals
def test_a_plan_that_has_not_started_lasted_zero_seconds_on_every_organization(world):
    key = world.c1.add_compute_plan(schemas.ComputePlanSpec(key=str(uuid.uuid4()), name="compat-empty")).key
    assert world.c1.get_compute_plan(key).duration == 0
    assert world.c2.get_compute_plan(key).duration == 0
    g1, g2 = (org.gateway for org in world.gateways)
    assert _get(f"{g1}/compute_plan/{key}/", world.c1).json()["duration"] == 0
    assert _shared(_get(f"{g1}/compute_plan/{key}/", world.c1).json()) == _shared(
        _get(f"{g2}/compute_plan/{key}/", world.c2).json()
    )


def test_an_unknown_organization_in_a_permission_is_refused_in_substra_s_words(world):
    spec = schemas.DatasetSpec(
        name="compat-stranger",
        data_opener=flassets.write(world.folder / "stranger" / "opener.py", NAMES_OPENER),
        description=flassets.write(world.folder / "stranger" / "description.md", "# stranger\n"),
        permissions=schemas.Permissions(public=False, authorized_ids=[world.org2, "StrangerMSP"]),
        logs_permission=PUBLIC,
    )
    with pytest.raises(exceptions.InvalidRequest) as refused:
        world.c1.add_dataset(spec)
    detail = refused.value.errors["detail"]
    assert "invalid permission input values" in detail
    assert "permissions.authorized_ids[1]" in detail and "StrangerMSP" in detail


# ------------------------------------------------------------------------------------------- 4. profiling
def _rundown(gateway: str, client, route: str) -> list[str]:
    answer = _get(f"{gateway}/{route}/", client)
    assert answer.status_code == 200, answer.text
    steps = answer.json()["execution_rundown"]
    assert all(isinstance(step["duration"], int) and step["duration"] >= 0 for step in steps)
    return [step["step"] for step in steps]


def test_tasks_and_builds_are_profiled_with_substra_s_steps(world, names_plan):
    score_out = [
        schemas.FunctionOutputSpec(identifier="performance", kind=schemas.AssetKind.performance, multiple=False)
    ]
    score = _function(world, "score", [], score_out)
    assert world.c1.wait_function(score, timeout=60, polling_period=POLL).status == models.FunctionStatus.ready
    # MyOrg2MSP runs MyOrg1MSP's function: it fetches the function from its owner first.
    on_peer = world.c1.add_task(
        schemas.TaskSpec(
            function_key=score,
            worker=world.org2,
            inputs=[],
            outputs={"performance": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)},
        )
    )
    assert world.c1.wait_task(on_peer, timeout=60, polling_period=POLL).status == models.ComputeTaskStatus.done
    g1, g2 = (org.gateway for org in world.gateways)
    for gateway, client in ((g1, world.c1), (g2, world.c2)):
        assert _rundown(gateway, client, f"function/{names_plan.function}/profiling") == [
            "build_image",
            "save_function",
        ]
        assert _rundown(gateway, client, f"task_profiling/{names_plan.task}") == [
            "prepare_inputs",
            "task_execution",
            "save_outputs",
        ]
        assert _rundown(gateway, client, f"task_profiling/{on_peer}") == [
            "prepare_inputs",
            "download_function",
            "task_execution",
            "save_outputs",
        ]


# ------------------------------------------------------------------------------------------------ 5. builds
SCORE_OUT = [schemas.FunctionOutputSpec(identifier="performance", kind=schemas.AssetKind.performance, multiple=False)]


def _dockerfile(name: str, *lines: str, script: str = "function.py") -> str:
    body = "\n".join(lines)
    return f'FROM python:3.11-slim\n{body}\nENTRYPOINT ["python3", "{script}", "--function-name", "{name}"]\n'


def _status(world, key: str) -> str:
    return _get(f"{world.gateways[0].gateway}/function/{key}/", world.c1).json()["status"]


def test_builds_run_one_at_a_time_in_submission_order(world):
    seconds = 2
    keys = [
        _function(
            world,
            "score",
            [],
            SCORE_OUT,
            _archive("score", _dockerfile("score", f"# build {i}", f"RUN sleep {seconds}")),
        )
        for i in range(3)
    ]
    seen, deadline = [], time.monotonic() + 90
    while True:
        statuses = tuple(_status(world, key) for key in keys)
        seen.append(statuses)
        if all(s in ("FUNCTION_STATUS_READY", "FUNCTION_STATUS_FAILED") for s in statuses):
            break
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.1)
    assert all(s == "FUNCTION_STATUS_READY" for s in seen[-1])
    assert all(snapshot.count("FUNCTION_STATUS_BUILDING") <= 1 for snapshot in seen), "two builds at once"
    waiting = ("FUNCTION_STATUS_BUILDING", "FUNCTION_STATUS_WAITING", "FUNCTION_STATUS_WAITING")
    assert waiting in seen  # the later ones wait for the first, and say so
    started = [next(i for i, snap in enumerate(seen) if snap[n] != "FUNCTION_STATUS_WAITING") for n in range(3)]
    assert started == sorted(started) and len(set(started)) == 3  # in submission order
    for key in keys:  # RUN sleep takes its time, inside build_image
        steps = _get(f"{world.gateways[0].gateway}/function/{key}/profiling/", world.c1).json()["execution_rundown"]
        assert steps[0]["step"] == "build_image" and steps[0]["duration"] >= seconds * 1_000_000


def test_a_dockerfile_s_build_steps_take_effect_for_the_task(world, tmp_path):
    """RUN, COPY, ENV and WORKDIR at build time; ENV and the last WORKDIR for the task too (the
    ENTRYPOINT's script is found from that WORKDIR, as in the image)."""
    dockerfile = _dockerfile(
        "built",
        "WORKDIR /usr/src/app",
        'ENV GREETING="hello from the build"',
        "COPY function.py .",
        "COPY extra.txt copied/",
        'RUN mkdir model && echo "$GREETING" > model/flag.txt',
        "ARG TOOL=/opt/tool",
        "ENV FOO=bar PATH=${TOOL}/bin:$PATH",
        "WORKDIR sub",
        "RUN pwd > where.txt",
        script="../function.py",
    )
    archive = flassets.function_archive("built", dockerfile, {"function.py": COMPAT_FUNCTIONS, "extra.txt": "extra\n"})
    function = _function(world, "built", [], MODEL_OUT, archive)
    assert world.c1.wait_function(function, timeout=60, polling_period=POLL).status == models.FunctionStatus.ready
    task = world.c1.add_task(
        schemas.TaskSpec(
            function_key=function,
            worker=world.org1,
            inputs=[],
            outputs={"model": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)},
        )
    )
    assert world.c1.wait_task(task, timeout=60, polling_period=POLL).status == models.ComputeTaskStatus.done
    found = json.loads(Path(world.c1.download_model_from_task(task, "model", tmp_path)).read_text())
    assert found["../model/flag.txt"] == "hello from the build\n"
    assert found["../copied/extra.txt"] == "extra\n"
    assert found["where.txt"].endswith("/sub\n") and found["cwd"] == found["where.txt"].strip()
    env = found["env"]
    assert (env["FOO"], env["GREETING"], env["HOME"]) == ("bar", "hello from the build", "/tmp")
    assert env["PATH"].startswith("/opt/tool/bin:") and env["PATH"].endswith(":/usr/bin:/bin")


def _task_on(world, function: str) -> str:
    return world.c1.add_task(
        schemas.TaskSpec(
            function_key=function,
            worker=world.org1,
            inputs=[],
            outputs={"performance": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)},
        )
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("RUN invalid_command", "invalid_command: not found"),
        ("RUN apt-get update && apt-get install -y libgomp1", "cannot install system packages"),
    ],
    ids=["shell", "system-package"],
)
def test_a_build_failure_s_log_reaches_both_organizations(world, line, expected):
    function = _function(world, "score", [], SCORE_OUT, _archive("score", _dockerfile("score", line)))
    waiting = _task_on(world, function)  # registered while the function waits for its build (or builds)
    assert world.c1.wait_function(function, timeout=60, polling_period=POLL, raise_on_failure=False).status == (
        models.FunctionStatus.failed
    )
    late = _task_on(world, function)  # registered once the build has failed
    for task in (waiting, late):
        failed = world.c1.wait_task(task, timeout=30, polling_period=POLL, raise_on_failure=False)
        assert failed.status == models.ComputeTaskStatus.failed and failed.error_type == models.TaskErrorType.build
        for client in (world.c1, world.c2):
            logs = client.get_logs(task)
            assert expected in logs and line in logs, logs


def test_what_a_build_step_leaves_cannot_block_the_function_s_tasks(world):
    """A FIFO, a locked folder and a link out, left by RUN: the task still runs (nothing of it is
    followed, opened or left unreadable when compute copies the function's directory)."""
    line = "RUN mkfifo pipe && mkdir locked && chmod 000 locked && ln -s /etc/hostname link && chmod 000 ."
    function = _function(world, "score", [], SCORE_OUT, _archive("score", _dockerfile("score", line)))
    assert world.c1.wait_function(function, timeout=60, polling_period=POLL).status == models.FunctionStatus.ready
    task = _task_on(world, function)
    assert world.c1.wait_task(task, timeout=60, polling_period=POLL).status == models.ComputeTaskStatus.done


def test_a_function_whose_tasks_were_all_canceled_before_its_build_is_canceled_not_built(world):
    def function(tag: str, *lines: str) -> str:
        return _function(world, "score", [], SCORE_OUT, _archive("score", _dockerfile("score", f"# {tag}", *lines)))

    blocker = function("blocker", "RUN sleep 5")  # holds the build queue meanwhile
    unneeded, after = function("unneeded"), function("after")
    plan = schemas.ComputePlanSpec(
        key=str(uuid.uuid4()),
        name="canceled-before-its-build",
        tasks=[
            schemas.ComputePlanTaskSpec(
                task_id=str(uuid.uuid4()),
                function_key=unneeded,
                worker=world.org1,
                inputs=[],
                outputs={"performance": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)},
            )
        ],
    )
    world.c1.add_compute_plan(plan)
    assert _status(world, unneeded) == "FUNCTION_STATUS_WAITING"
    world.c1.cancel_compute_plan(plan.key)
    assert _status(world, unneeded) == "FUNCTION_STATUS_CANCELED"
    # Builds run in submission order: once the one submitted after it is READY, its turn has passed.
    for key in (blocker, after):
        assert world.c1.wait_function(key, timeout=60, polling_period=POLL).status == models.FunctionStatus.ready
    assert _status(world, unneeded) == "FUNCTION_STATUS_CANCELED"
    profiling = _get(f"{world.gateways[0].gateway}/function/{unneeded}/profiling/", world.c1).json()
    assert profiling["execution_rundown"] == []  # never built
