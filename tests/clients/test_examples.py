"""The Go and the TypeScript example programs against the running network: they list the organizations, register a
compute plan with one task on assets registered with the substra SDK, follow the ledger's events from a cursor until
the task is done, and print its performance."""

from __future__ import annotations

import re

import pytest

from tests.clients.conftest import run
from tools.clients import build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("language", ["go", "ts"])
def test_example_runs_a_task_and_prints_its_performance(language, clients, network, secrets, assets, tmp_path):
    arguments = {
        "asset": network.services[0].addr,
        "org": assets.org,
        "secret": secrets[assets.org],
        "function": assets.function,
        "data-manager": assets.data_manager,
        "samples": ",".join(assets.samples),
    }
    output = run(_command(language, tmp_path, arguments), cwd=tmp_path)
    lines = output.splitlines()

    assert "organization MyOrg1MSP current=true" in lines and "organization MyOrg2MSP current=false" in lines, output
    cursor = int(next(line for line in lines if line.startswith("cursor ")).split()[1])
    assert cursor > 0, "the SDK's registrations are events before the cursor"
    plan, task = re.search(r"^plan (\S+) task (\S+)$", output, re.MULTILINE).groups()
    events = [line.split() for line in lines if line.startswith("event ")]
    positions = [int(event[1]) for event in events]
    assert positions and positions[0] > cursor and positions == sorted(set(positions)), "replayed after the cursor"
    assert ["ASSET_COMPUTE_PLAN", "EVENT_ASSET_CREATED", plan] in [event[2:] for event in events]
    assert ["ASSET_COMPUTE_TASK", "EVENT_ASSET_CREATED", task] in [event[2:] for event in events]
    assert f"task {task} STATUS_DONE" in lines, output
    performance = float(next(line for line in lines if line.startswith("performance ")).split()[1])
    assert performance == pytest.approx(assets.expected, rel=1e-5)


def _command(language: str, tmp_path, arguments: dict[str, str]) -> list[str]:
    """The example's command line: Go flags take one dash, Node's parseArgs two."""
    if language == "go":
        binary = tmp_path / "plan"
        run(["go", "build", "-o", str(binary), "./examples/plan"], cwd=build.GO_CLIENT, env=build.go_env())
        return [str(binary), *(f"-{name}={value}" for name, value in arguments.items())]
    script = build.TS_CLIENT / "dist" / "examples" / "plan.js"
    return ["node", str(script), *(f"--{name}={value}" for name, value in arguments.items())]
