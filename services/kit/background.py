"""Background asyncio tasks of a service: stopping one the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel(task: asyncio.Task | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended; its cancellation is not raised here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
