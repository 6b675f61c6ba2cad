"""Test doubles that ship with promptlift: providers that answer without any network.

``FunctionProvider`` answers with a function of the request; ``GatedProvider`` also records the
most calls in flight at once and can hold calls until enough run together; ``ScriptedProvider``
plays a script of answers and errors in order and records every request it saw. All obey the
``Provider`` contract, so every client wrapper and every optimizer can be tested against them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable

from promptlift.errors import PromptliftError
from promptlift.providers.base import Provider
from promptlift.types import Completion, CompletionRequest, Usage

Reply = str | Completion | PromptliftError


def _completion(request: CompletionRequest, reply: str | Completion, provider: str) -> Completion:
    if isinstance(reply, Completion):
        return reply
    words = sum(len(m.text.split()) for m in request.messages)
    return Completion(
        content=reply,
        model=request.model,
        provider=provider,
        usage=Usage(input_tokens=words, output_tokens=len(reply.split())),
    )


class FunctionProvider(Provider):
    """Answers every request with ``fn(request)``: a string, a Completion, or an error to raise.

    ``delay`` (seconds) simulates latency without blocking the event loop.
    """

    name = "function"

    def __init__(self, fn: Callable[[CompletionRequest], Reply], *, delay: float = 0.0):
        self.fn = fn
        self.delay = delay
        self.requests: list[CompletionRequest] = []
        self._lock = threading.Lock()

    async def acomplete(self, request: CompletionRequest) -> Completion:
        with self._lock:
            self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = self.fn(request)
        if isinstance(reply, PromptliftError):
            raise reply
        return _completion(request, reply, self.name)


class GatedProvider(FunctionProvider):
    """A ``FunctionProvider`` that shows calls really run side by side.

    ``peak`` is the most calls ever in flight at once (counted across threads and loops). With
    ``until``, each call ``gate`` selects (default: every call) is held until ``until`` of them are in
    flight together; if that does not happen within ``timeout`` seconds it is answered with
    ``on_timeout`` (or raises ``TimeoutError``). Calls serialized by the code under test then show as
    timeouts, not as a hung test. The hold works within one event loop.
    """

    def __init__(
        self,
        fn: Callable[[CompletionRequest], Reply],
        *,
        until: int | None = None,
        gate: Callable[[CompletionRequest], bool] | None = None,
        timeout: float = 30.0,
        on_timeout: str | None = None,
        delay: float = 0.0,
    ):
        super().__init__(fn, delay=delay)
        self.until, self.gate, self.timeout, self.on_timeout = until, gate, timeout, on_timeout
        self.in_flight = self.peak = 0
        self._count = threading.Lock()
        self._all_in: asyncio.Event | None = None

    async def acomplete(self, request: CompletionRequest) -> Completion:
        if self.gate is not None and not self.gate(request):
            return await super().acomplete(request)
        with self._count:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            now = self.in_flight
        try:
            if self.until is not None:
                if self._all_in is None:
                    self._all_in = asyncio.Event()
                if now >= self.until:
                    self._all_in.set()
                try:
                    await asyncio.wait_for(self._all_in.wait(), self.timeout)
                except TimeoutError:
                    if self.on_timeout is None:
                        raise
                    return _completion(request, self.on_timeout, self.name)
            return await super().acomplete(request)
        finally:
            with self._count:
                self.in_flight -= 1


class ScriptedProvider(Provider):
    """Plays ``script`` in order, one item per request; errors in it are raised.

    When the script runs out it repeats ``then`` (default: raise, so an unexpected call fails
    the test loudly).
    """

    name = "scripted"

    def __init__(self, script: Iterable[Reply], *, then: Reply | None = None):
        self.script = list(script)
        self.then = then
        self.requests: list[CompletionRequest] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
            if index < len(self.script):
                reply = self.script[index]
            elif self.then is not None:
                reply = self.then
            else:
                raise AssertionError(f"ScriptedProvider: unexpected call #{index + 1}: {request.model}")
        if isinstance(reply, PromptliftError):
            raise reply
        return _completion(request, reply, self.name)
