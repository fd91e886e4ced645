"""``python -m tools.devnet up|stop|status`` — the dev network behind ``make run`` and ``make stop``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.kit.identity import OrgCredentials
from tools.devnet import supervisor
from tools.devnet.network import Network


def _say(message: str) -> None:
    print(f"devnet: {message}", flush=True)


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "devnet.pid"


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int(_pid_file(state_dir).read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def _write_description(network: Network, path: Path) -> None:
    """network.json: the endpoints and logins, and each process's current id. Replaced whole (written
    aside, then renamed), so that a reader never sees it half-written when a restart rewrites it."""
    description = network.description()
    description["processes"] = supervisor.pids(network)
    aside = path.with_suffix(".json.tmp")
    aside.write_text(json.dumps(description, indent=2))
    aside.replace(path)


def up(args: argparse.Namespace) -> int:
    """Start the network; in the foreground until Ctrl-C, or detached with ``--detach``."""
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if _running_pid(state_dir):
        _say(f"already running (pid {_running_pid(state_dir)}); `make stop` first")
        return 1
    if args.detach:
        return _up_detached(args, state_dir)

    network = Network(state_dir, orgs=args.orgs, base_port=args.base_port, log=_say)
    network_json = state_dir / "network.json"
    network_json.unlink(missing_ok=True)
    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    _pid_file(state_dir).write_text(str(os.getpid()))
    status = 1
    try:
        network.plan()
        network.start()
        _write_description(network, network_json)
        print("\n" + network.table() + "\n", flush=True)
        _say(f"endpoints written to {network_json}")
        _say("explore a service: grpcurl -plaintext " + network.services[0].addr + " list")
        _say("a process that exits (a service, PostgreSQL, NATS) is restarted with a back-off;")
        _say("a crash loop (5 exits in 2 minutes) stops the network")
        _say("press Ctrl-C to stop" if not args.supervised else "running detached; `make stop` stops it")
        status = supervisor.supervise(
            network, lambda: stop_requested, lambda: _write_description(network, network_json), _say
        )
    except Exception as exc:  # noqa: BLE001 - reported, then everything is stopped
        _say(f"failed: {exc}")
        status = 1
    finally:
        _say("stopping")
        network.stop()
        network_json.unlink(missing_ok=True)
        _pid_file(state_dir).unlink(missing_ok=True)
        _say("stopped")
    return status


def _up_detached(args: argparse.Namespace, state_dir: Path) -> int:
    log_path = state_dir / "devnet.log"
    network_json = state_dir / "network.json"
    network_json.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "tools.devnet", "up", "--supervised",
        "--orgs", str(args.orgs), "--state-dir", str(state_dir),
    ]  # fmt: skip
    if args.base_port is not None:
        command += ["--base-port", str(args.base_port)]
    with open(log_path, "ab") as log:
        supervisor = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    _say(f"supervisor pid {supervisor.pid}, log {log_path}")
    shown = 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        lines = text.splitlines()
        for line in lines[shown:]:
            print(line, flush=True)
        shown = len(lines)
        if network_json.exists() and "endpoints written" in text:
            return 0
        if supervisor.poll() is not None:
            _say(f"supervisor exited with status {supervisor.returncode}")
            return 1
        time.sleep(0.3)
    _say("timed out waiting for the network; stopping it")
    supervisor.terminate()
    supervisor.wait()
    return 1


def stop(args: argparse.Namespace) -> int:
    """Stop a detached network and wait until every process is gone."""
    state_dir = Path(args.state_dir).resolve()
    pid = _running_pid(state_dir)
    if pid is None:
        _say("not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _say("stopped")
            return 0
        time.sleep(0.2)
    _say(f"supervisor {pid} did not stop in 60s; killing it")
    os.kill(pid, signal.SIGKILL)
    return 1


def status(args: argparse.Namespace) -> int:
    """Print network.json if the network is up."""
    state_dir = Path(args.state_dir).resolve()
    if _running_pid(state_dir) and (state_dir / "network.json").exists():
        print((state_dir / "network.json").read_text())
        return 0
    _say("not running")
    return 1


def auth(args: argparse.Namespace) -> int:
    """Print the gRPC authorization header of an organization of the dev network (for grpcurl -H)."""
    state_dir = Path(args.state_dir).resolve()
    folder = state_dir / "credentials"
    secret_file = folder / f"{args.org}.secret"
    if not secret_file.is_file():
        known = sorted(path.stem for path in folder.glob("*.secret"))
        _say(f"unknown organization {args.org!r}; known: {', '.join(known)}")
        return 1
    secret = secret_file.read_text().strip()
    ((key, value),) = [e for e in OrgCredentials(args.org, secret).metadata() if e[0] == "authorization"]
    print(f"{key}: {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.devnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the network")
    up_parser.add_argument("--orgs", type=int, default=2, help="number of organizations (default 2)")
    up_parser.add_argument("--base-port", type=int, default=None, help="first port (default: free ports)")
    up_parser.add_argument("--state-dir", default=".devnet", help="where data, logs and network.json go")
    up_parser.add_argument("--detach", action="store_true", help="return once healthy; `stop` stops it")
    up_parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health (detach)")
    up_parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    up_parser.set_defaults(func=up)
    for name, func in (("stop", stop), ("status", status)):
        sub = commands.add_parser(name, help=func.__doc__.splitlines()[0])
        sub.add_argument("--state-dir", default=".devnet")
        sub.set_defaults(func=func)
    auth_parser = commands.add_parser("auth", help=auth.__doc__.splitlines()[0])
    auth_parser.add_argument("org", help="organization id, e.g. MyOrg1MSP")
    auth_parser.add_argument("--state-dir", default=".devnet")
    auth_parser.set_defaults(func=auth)
    args = parser.parse_args(argv)
    if args.command == "up" and args.orgs < 1:
        parser.error("--orgs must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
