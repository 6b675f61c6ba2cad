"""Run a coroutine to its end from sync code, wherever that code runs.

``asyncio.run`` refuses to start inside a running event loop, which is where notebooks (Jupyter,
IPython), async web handlers and many test runners call sync APIs from. There the coroutine runs on
a fresh loop in a worker thread instead, with the caller's context variables (budget scopes), and
the caller waits for it as for any blocking call.
"""

from __future__ import annotations

import asyncio
import contextvars
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
    context = contextvars.copy_context()  # the budget scopes the caller opened hold in the thread
    with ThreadPoolExecutor(1, thread_name_prefix="promptlift-blocking") as pool:
        return pool.submit(context.run, asyncio.run, coro).result()
