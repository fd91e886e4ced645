"""Restart policy of the dev network's supervisor, as Kubernetes treats a pod's container.

A process that exits is started again after a back-off that doubles from ``first_delay`` up to
``max_delay`` (Kubernetes: 10 s doubling to 5 min; a dev network wants seconds). A process that then
stays up for ``stable_after`` seconds has its back-off reset. ``crash_loop`` exits within ``window``
seconds is a crash loop: the supervisor gives up on the network, because restarting again would only
hide a bug. The policy is pure (it is given the clock), so its decisions are unit-tested; :func:`supervise`
applies it to every process of a network: the services, and the PostgreSQL and NATS servers when the
network owns them (restarted on the same data directory and port).
"""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tools.devnet.network import Network, ServiceSpec


@dataclass
class RestartPolicy:
    """When to restart one process, and when to give up."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0
    crash_loop: int = 5
    window: float = 120.0
    _exits: deque = field(default_factory=deque)
    _delay: float = 0.0
    _started_at: float = 0.0

    def started(self, now: float) -> None:
        """The process was (re)started at ``now``."""
        self._started_at = now

    def exited(self, now: float) -> float | None:
        """The process exited at ``now``: seconds to wait before starting it again, or None to give up."""
        if self._started_at and now - self._started_at >= self.stable_after:
            self._delay = 0.0  # it ran long enough: the next failure starts the back-off again
        self._exits.append(now)
        while self._exits and now - self._exits[0] > self.window:
            self._exits.popleft()
        if len(self._exits) >= self.crash_loop:
            return None
        self._delay = self.first_delay if not self._delay else min(self._delay * 2, self.max_delay)
        return self._delay

    @property
    def restarts(self) -> int:
        """Exits counted in the current window."""
        return len(self._exits)


class Supervised(Protocol):
    """A process the supervisor watches: its name, its current process, how to start it again."""

    label: str
    process: subprocess.Popen | None

    @property
    def log_path(self) -> Path: ...

    def launch(self) -> None: ...


@dataclass
class _Service:
    """A service of the network, seen as :class:`Supervised`."""

    network: Network
    spec: ServiceSpec

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def process(self) -> subprocess.Popen | None:
        return self.spec.process

    @property
    def log_path(self) -> Path:
        return self.network.log_path(self.spec)

    def launch(self) -> None:
        self.network.launch(self.spec)


def processes(network: Network) -> list[Supervised]:
    """Every process ``network`` started: PostgreSQL and NATS (when it owns them), then its services."""
    servers = [network.postgres, network.nats] if network._owns_servers else []
    return [*servers, *(_Service(network, spec) for spec in network.services)]


def pids(network: Network) -> dict[str, int]:
    """The current process id of each process by label: ``postgres``, ``nats``, ``asset``, ``MyOrg1MSP/storage``..."""
    return {p.label: p.process.pid for p in processes(network) if p.process is not None}


def supervise(
    network: Network,
    stopping: Callable[[], bool],
    restarted: Callable[[], None],
    say: Callable[[str], None],
    period: float = 0.5,
) -> int:
    """Restart the processes of ``network`` that exit, as a kubelet restarts a pod's container, until
    ``stopping()``; ``restarted()`` after each restart. 1 after a crash loop, 0 on stop."""
    watched = processes(network)
    policies = {p.label: RestartPolicy() for p in watched}
    for policy in policies.values():
        policy.started(time.monotonic())
    due: dict[str, float] = {}
    while not stopping():
        now = time.monotonic()
        for proc in watched:
            if proc.label in due or proc.process is None or proc.process.poll() is None:
                continue
            delay = policies[proc.label].exited(now)
            if delay is None:
                say(
                    f"{proc.label} keeps exiting (status {proc.process.returncode}, see {proc.log_path}); "
                    "crash loop: stopping the network"
                )
                return 1
            say(
                f"{proc.label} exited with status {proc.process.returncode}; restarting in {delay:.0f} s "
                f"(exit {policies[proc.label].restarts} in the last 2 minutes)"
            )
            due[proc.label] = now + delay
        for proc in watched:
            if proc.label in due and now >= due[proc.label]:
                del due[proc.label]
                proc.launch()
                policies[proc.label].started(now)
                restarted()
                say(f"{proc.label} restarted (pid {proc.process.pid})")
        time.sleep(period)
    return 0
