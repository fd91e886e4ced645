"""Test helpers: run an asyncio gRPC server on a background thread, call it with sync clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from services.kit.server import GrpcServer


class ServerThread:
    """Builds and serves a :class:`GrpcServer` on its own event loop in a daemon thread."""

    def __init__(self, build: Callable[[], Awaitable[GrpcServer]]) -> None:
        self._build = build
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: GrpcServer | None = None
        self.port: int | None = None

    def _call(self, coroutine, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def __enter__(self) -> ServerThread:
        self._thread.start()

        async def start():
            self.server = await self._build()
            self.port = await self.server.start()

        self._call(start())
        return self

    @property
    def addr(self) -> str:
        """Where the server listens."""
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self._call(self.server.stop(0.5))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
