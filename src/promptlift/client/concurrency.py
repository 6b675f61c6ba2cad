"""One concurrency limit shared by every thread and event loop that calls through a client.

``asyncio.Semaphore`` belongs to one event loop, so a client used from its sync API (a private
loop thread) and from a caller's own loop at once would need two semaphores — and the limit would
double. ``SharedLimit`` keeps its count under a ``threading.Lock`` and wakes each waiter on the
waiter's own loop, so the limit holds however many loops and threads call. Waiters are served in
arrival order.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass

from promptlift.errors import ConfigError


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SharedLimit:
    """At most ``limit`` holders at once, across threads and event loops. Use ``async with``."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ConfigError(f"concurrency must be at least 1 (calls in flight), got {limit}")
        self.limit = limit
        self._in_use = 0
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._in_use

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_use < self.limit and not self._waiters:
                self._in_use += 1
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # the slot was handed over as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Hand the slot to the longest waiter, or free it."""
        while True:
            with self._lock:
                if not self._waiters:
                    self._in_use -= 1
                    return
                waiter = self._waiters.popleft()
                waiter.granted = True
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                return
            except RuntimeError:  # that waiter's loop is closed: try the next one
                continue

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
