"""Wake waiters when new records are committed in this process; others poll.

Read :attr:`Hub.generation` before querying, then :meth:`Hub.wait` for a change: a commit that
happens between the two is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib


class Hub:
    """A generation counter and a condition to wait on."""

    def __init__(self) -> None:
        self._generation = 0
        self._changed = asyncio.Condition()

    @property
    def generation(self) -> int:
        """Read before querying; :meth:`wait` returns once it moved past this value."""
        return self._generation

    async def notify(self) -> None:
        """Signal that something was committed."""
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()

    async def wait(self, seen: int, timeout: float) -> None:
        """Wait until something was committed after ``seen`` was read, or ``timeout``.

        ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11, ``wait_for`` swallows a
        cancellation that lands as the condition is met (a closed subscription would keep polling),
        and it waits in a separate task that can be left holding the condition's lock."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self._generation != seen)
