"""One detached dev network for the chaos tier (``python -m tools.devnet up --detach``, as ``make run
DETACH=1`` starts it: a supervisor process restarts whatever dies), with assets registered once, and
the recovery times the tests measure, written to ``chaos-recovery.json`` and shown after the run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import substra
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.event.v1 import event_service_pb2_grpc as event_grpc

from tests.conftest import REPO
from tools.bench.bench_execution import Assets, register_assets

# Short redelivery and reconciliation periods, as in tests/sdk: a killed compute's task is taken up again
# within seconds instead of the 30 s production ack wait.
# INFO: compute logs each execution of a task ("task <key>: executing"), which the tests count.
ENV = {"TESSERA_ACK_WAIT": "4", "TESSERA_RECONCILE_SECONDS": "3", "TESSERA_LOG_LEVEL": "INFO"}
RECOVERIES: list[dict] = []
WRITTEN: list[Path] = []  # where the recovery times were written


def devnet(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m tools.devnet ARGS`` from the repository, with the tier's environment."""
    return subprocess.run(
        [sys.executable, "-m", "tools.devnet", *args],
        cwd=REPO,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class ChaosNetwork:
    """A running detached network: its state directory, ``network.json``, and clients of MyOrg1MSP."""

    state: Path
    client: substra.Client  # the SDK at MyOrg1MSP's gateway
    assets: Assets
    auth: dict[str, tuple[str, str]]  # each organization's gRPC authorization header
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def description(self) -> dict:
        """``network.json`` as it is now (the supervisor rewrites it after each restart)."""
        return json.loads((self.state / "network.json").read_text())

    def pid(self, label: str) -> int:
        return self.description()["processes"][label]

    def _channel(self, addr: str) -> grpc.Channel:
        """One channel per address (a restarted process keeps its port; the channel reconnects)."""
        if addr not in self.channels:
            self.channels[addr] = grpc.insecure_channel(addr)
        return self.channels[addr]

    def ledger(self) -> api_grpc.AssetServiceStub:
        return api_grpc.AssetServiceStub(self._channel(self.description()["asset"]))

    def event(self, org: dict) -> event_grpc.EventServiceStub:
        return event_grpc.EventServiceStub(self._channel(org["event"]))

    def metadata(self, org: str) -> list[tuple[str, str]]:
        """What a gRPC call made as ``org`` carries."""
        return [self.auth[org]]

    def supervisor_log(self) -> str:
        return (self.state / "devnet.log").read_text(errors="replace")

    def service_logs(self) -> dict[str, str]:
        """Every service's log by name."""
        return {p.stem: p.read_text(errors="replace") for p in sorted((self.state / "logs").glob("*.log"))}


@pytest.fixture(scope="package")
def chaos(tmp_path_factory) -> ChaosNetwork:
    """The network, both organizations registered, a dataset per organization and the functions built."""
    state = tmp_path_factory.mktemp("chaos") / "network"
    started = devnet("up", "--detach", "--state-dir", str(state))
    assert started.returncode == 0, started.stdout + started.stderr
    clients: list[substra.Client] = []
    try:
        description = json.loads((state / "network.json").read_text())
        auth = {}
        for org in description["organizations"]:
            header = devnet("auth", org["id"], "--state-dir", str(state)).stdout.strip()
            key, _, value = header.partition(": ")
            auth[org["id"]] = (key, value)
        clients = [
            substra.Client(url=o["gateway"], backend_type="remote", username=o["username"], password=o["password"])
            for o in description["organizations"]
        ]
        deadline = time.monotonic() + 60
        while len(clients[0].list_organization()) < len(clients):
            assert time.monotonic() < deadline, "the organizations did not register"
            time.sleep(0.2)
        assets = register_assets(clients, state.parent / "assets")
        for function in assets.functions.values():
            clients[0].wait_function(function, timeout=300, polling_period=0.2)
        network = ChaosNetwork(state, clients[0], assets, auth)
        yield network
        for channel in network.channels.values():
            channel.close()
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.logout()
        stopped = devnet("stop", "--state-dir", str(state), timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        if RECOVERIES:
            path = tmp_path_factory.getbasetemp() / "chaos-recovery.json"
            path.write_text(json.dumps(RECOVERIES, indent=2))
            WRITTEN.append(path)


def pytest_terminal_summary(terminalreporter) -> None:
    """The recovery times measured by the chaos tier (not asserted: they depend on the machine)."""
    if not RECOVERIES:
        return
    terminalreporter.section("chaos: recovery after SIGKILL (seconds from the kill)")
    terminalreporter.write_line(f"{'process':<20} {'serving again':>14} {'next task DONE':>15} {'plan DONE':>10}")
    for r in RECOVERIES:
        progress = "-" if r["next_task_done_s"] is None else f"{r['next_task_done_s']:.1f}"
        terminalreporter.write_line(
            f"{r['process']:<20} {r['serving_again_s']:>14.1f} {progress:>15} {r['plan_done_s']:>10.1f}"
        )
    for path in WRITTEN:
        terminalreporter.write_line(f"written to {path}")
