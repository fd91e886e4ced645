"""`make run`'s command: the dev network comes up healthy, writes network.json, and stops clean."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tools.devnet.embedded import free_port_block


def _listening(addr: str) -> bool:
    host, _, port = addr.replace("http://", "").replace("nats://", "").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _endpoints(description: dict) -> list[str]:
    addrs = [description["asset"], description["nats"]]
    for org in description["organizations"]:
        addrs += [org["gateway"], org["storage"], org["compute"], org["event"]]
    return addrs


def _wait_closed(addrs: list[str], timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    still_open = addrs
    while still_open and time.monotonic() < deadline:
        still_open = [a for a in addrs if _listening(a)]
        time.sleep(0.2)
    return still_open


def _devnet(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.devnet", *args], cwd=REPO, capture_output=True, text=True, **kwargs
    )


@pytest.mark.slow
def test_detached_network_comes_up_and_stop_leaves_nothing_running(tmp_path):
    state = tmp_path / "state"
    base = free_port_block()
    started = _devnet("up", "--detach", "--state-dir", str(state), "--base-port", str(base), timeout=240)
    assert started.returncode == 0, started.stdout + started.stderr
    description = json.loads((state / ".." / "state" / "network.json").read_text())
    assert description["asset"] == f"127.0.0.1:{base + 2}"
    assert len(description["organizations"]) == 2
    for org in description["organizations"]:
        assert set(org) >= {"id", "gateway", "username", "password", "storage", "compute", "event"}
        assert org["gateway"].startswith("http://127.0.0.1:")
    assert "MyOrg1MSP" in started.stdout and description["organizations"][0]["password"] in started.stdout
    addrs = _endpoints(description)
    assert all(_listening(a) for a in addrs)

    # A crash is healed: the supervisor starts the killed process again and says so in network.json.
    label = "MyOrg1MSP/compute"
    killed = description["processes"][label]
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        current = json.loads((state / "network.json").read_text())["processes"][label]
        if current != killed and _listening(description["organizations"][0]["compute"]):
            break
        assert time.monotonic() < deadline, "the killed service was not restarted"
        time.sleep(0.3)
    assert f"{label} exited with status -9; restarting" in (state / "devnet.log").read_text()
    assert all(_listening(a) for a in addrs)

    stopped = _devnet("stop", "--state-dir", str(state), timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert _wait_closed(addrs) == []
    assert not (state / "network.json").exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_foreground_network(tmp_path):
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.devnet", "up", "--state-dir", str(state), "--orgs", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (state / "network.json").exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "network did not come up"
            time.sleep(0.3)
        description = json.loads((state / "network.json").read_text())
        addrs = _endpoints(description)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output
    assert "healthy" in output and "stopped" in output
    assert _wait_closed(addrs) == []
