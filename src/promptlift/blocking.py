"""Run a coroutine to its end from sync code, wherever that code runs.

``asyncio.run`` refuses to start inside a running event loop, which is where notebooks (Jupyter,
IPython), async web handlers and many test runners call sync APIs from. There the coroutine runs on
a fresh loop in a worker thread instead, with the caller's context variables (budget scopes), and
the caller waits for it as for any blocking call. An interrupt while waiting (Ctrl-C, the notebook's
stop button) cancels the run on its loop, as it would under ``asyncio.run``, before it is raised.

The caller's loop is blocked meanwhile: a task of that loop holding one of the client's
concurrency slots cannot give it back until the run ends (``await aoptimize`` does not block).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """``coro``'s result: by ``asyncio.run`` here, or on a worker thread's loop when this thread
    already runs one (its exception is raised here either way)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    started = threading.Event()
    running: dict[str, Any] = {}

    async def tracked() -> T:
        running["loop"], running["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await coro

    context = contextvars.copy_context()  # the budget scopes the caller opened hold in the thread
    with ThreadPoolExecutor(1, thread_name_prefix="promptlift-blocking") as pool:
        future = pool.submit(context.run, asyncio.run, tracked())
        try:
            while True:  # a wait with a timeout, so Ctrl-C is raised here at once (a bare one is not)
                try:
                    return future.result(timeout=0.1)
                except concurrent.futures.TimeoutError:
                    if future.done():  # the run's own TimeoutError, not the wait's
                        raise
        except BaseException:
            if started.is_set() and not future.done():  # interrupted while waiting: stop the run too
                running["loop"].call_soon_threadsafe(running["task"].cancel)
            raise  # leaving the pool waits for the cancelled run to unwind (its finally blocks)
