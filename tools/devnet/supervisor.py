"""Restart policy of the dev network's supervisor, as Kubernetes treats a pod's container.

A process that exits is started again after a back-off that doubles from ``first_delay`` up to
``max_delay`` (Kubernetes: 10 s doubling to 5 min; a dev network wants seconds). A process that then
stays up for ``stable_after`` seconds has its back-off reset. ``crash_loop`` exits within ``window``
seconds is a crash loop: the supervisor gives up on the network, because restarting again would only
hide a bug. The policy is pure (it is given the clock), so its decisions are unit-tested.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


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
