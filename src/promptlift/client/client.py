"""The one entry point for model calls: ``Client.complete`` / ``acomplete`` / ``batch`` / ``abatch``.

A client is a stack of providers with one interface (``Provider.acomplete``); each concern the
client adds is one wrapper around the next, assembled in ``promptlift.client.stack``.

Sync calls run on a private event loop in a background thread, so ``complete`` works the same
inside and outside a running event loop (a notebook, an async web handler).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from promptlift.client.config import ClientConfig
from promptlift.client.stack import build_stack
from promptlift.errors import PromptliftError
from promptlift.providers.base import Provider
from promptlift.types import Completion, CompletionRequest, Message, messages_from

T = TypeVar("T")

DEFAULT_MODEL = "local/gemma-3-270m"


class _LoopThread:
    """An event loop running forever in a daemon thread, for the sync API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="promptlift-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result()


class Client:
    """Calls models. Thread-safe; one concurrency limit shared by every caller of this client.

    ``config`` holds every knob (retry, fallback, cache, rate limits, budget); ``provider``
    replaces the LiteLLM provider at the bottom of the stack (a scripted provider in tests).
    """

    def __init__(self, config: ClientConfig | None = None, *, provider: Provider | None = None):
        self.config = config or ClientConfig()
        self._stack, self.parts = build_stack(self.config, provider)
        self._loop_thread: _LoopThread | None = None
        self._loop_lock = threading.Lock()
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    @property
    def model(self) -> str:
        return self.config.models[0] if self.config.models else DEFAULT_MODEL

    def request(
        self, messages: Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> CompletionRequest:
        """Build a request with this client's defaults: model, timeout, api_base."""
        params.setdefault("model", self.model)
        params.setdefault("timeout", self.config.timeout)
        params.setdefault("api_base", self.config.api_base)
        if isinstance(params.get("stop"), (list, str)):
            stop = params["stop"]
            params["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        return CompletionRequest(messages=messages_from(messages), **params)

    # -- async API ---------------------------------------------------------------------------
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.config.concurrency)
        return sem

    async def acomplete(
        self, request: CompletionRequest | Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> Completion:
        """One call through the whole stack. Raises a ``promptlift.errors`` error on failure."""
        if not isinstance(request, CompletionRequest):
            request = self.request(request, **params)
        async with self._semaphore():
            return await self._stack.acomplete(request)

    async def abatch(self, requests: Sequence[CompletionRequest]) -> list[Completion | PromptliftError]:
        """Many calls, results in input order; a failure is returned in place, never raised."""

        async def one(req: CompletionRequest) -> Completion | PromptliftError:
            try:
                return await self.acomplete(req)
            except PromptliftError as exc:
                return exc

        return list(await asyncio.gather(*(one(r) for r in requests)))

    # -- sync API ----------------------------------------------------------------------------
    def _loop(self) -> _LoopThread:
        if self._loop_thread is None:
            with self._loop_lock:
                if self._loop_thread is None:
                    self._loop_thread = _LoopThread()
        return self._loop_thread

    def complete(
        self, request: CompletionRequest | Iterable[Message | Mapping[str, Any]] | str, **params: Any
    ) -> Completion:
        return self._loop().run(self.acomplete(request, **params))

    def batch(self, requests: Sequence[CompletionRequest]) -> list[Completion | PromptliftError]:
        return self._loop().run(self.abatch(requests))

    def close(self) -> None:
        if self._loop_thread is not None:
            self._loop_thread.run(self._stack.aclose())
            self._loop_thread.loop.call_soon_threadsafe(self._loop_thread.loop.stop)
            self._loop_thread = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
