"""Replicas behind one name: a model served by several endpoints (vLLM or llama.cpp servers, proxies),
each attempt sent to the least busy one that is up.

A ``ModelSpec`` with ``replicas`` (or ``api_base`` as a list) names the endpoints; the model's
``api_base`` is then the first of them, which the layers above see (the cache key, the fallback
chain's breaker, the key's home endpoint), so an answer is one cache entry whichever replica gave it.
This wrapper sits below retry, so each attempt is placed again:

- the replica with the fewest calls in flight through this client, ties to the one sent fewer
  calls so far (so one caller at a time still alternates);
- each replica has its own ``CircuitBreaker`` (``FallbackPolicy``'s threshold and cool-down): a
  replica whose calls keep failing on the endpoint's side (refused, 5xx, timeouts, 429s, a rejected
  key) is skipped until its cool-down ends, then gets one probe; success brings it back;
- when every replica is paused, the attempt fails with ``ProviderUnavailable`` and ``retry_after``
  set to the first cool-down's end, so the retry policy waits for it (and the fallback chain moves
  on when retries run out).

A failed attempt is retried by the retry wrapper on whichever replica is then least busy, which is
another one when the first is paused or busier. A request that names an endpoint of its own (an
``api_base`` other than the model's) is sent there, untouched. ``stats()`` gives per-endpoint
counts, in flight and breaker state. Thread-safe; the counters are shared by every caller of the
client.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from promptlift import errors
from promptlift.client.fallback import CircuitBreaker, FallbackPolicy, Pass, counts_against_endpoint
from promptlift.client.traced import endpoint_attributes
from promptlift.providers.base import Provider, closing
from promptlift.secrets import redact
from promptlift.tracing import note
from promptlift.types import Completion, CompletionRequest, StreamEvent


@dataclass(frozen=True)
class EndpointStats:
    """One replica as seen by this client: ``endpoint`` with any credential in the URL redacted."""

    model: str
    endpoint: str
    state: str  # the breaker's: closed, open, half_open
    in_flight: int
    calls: int  # attempts sent to it
    failures: int  # of them, failures that count against the endpoint
    latency_s: float  # mean over the successful ones (0 before the first)


class _Replica:
    def __init__(self, endpoint: str, policy: FallbackPolicy):
        self.endpoint = endpoint
        self.breaker = CircuitBreaker(policy.failure_threshold, policy.cooldown)
        self.in_flight = 0
        self.calls = 0
        self.failures = 0
        self.ok = 0
        self.latency_total = 0.0


class ReplicaGroup:
    """One model's replicas, their counters and breakers."""

    def __init__(
        self, model: str, endpoints: Sequence[str], policy: FallbackPolicy, clock: Callable[[], float]
    ):
        self.model = model
        self.replicas = tuple(_Replica(e, policy) for e in endpoints)
        self.name = endpoints[0]  # the model's api_base, as the layers above know it
        self._clock = clock
        self._lock = threading.Lock()

    def _pick(self) -> tuple[_Replica, Pass]:
        now = self._clock()
        with self._lock:
            for replica in sorted(self.replicas, key=lambda r: (r.in_flight, r.calls)):
                passed = replica.breaker.admit(now)
                if passed is not None:
                    replica.in_flight += 1
                    replica.calls += 1
                    return replica, passed
        waits = [r.breaker.wait_hint(now) for r in self.replicas]
        known = [w for w in waits if w is not None]
        raise errors.ProviderUnavailable(
            f"every replica of {self.model} is paused after failing ({len(self.replicas)} endpoints)",
            model=self.model,
            retry_after=min(known) if known else None,
        )

    @contextlib.contextmanager
    def sending(self) -> Iterator[_Replica]:
        """The replica for one attempt; its breaker hears how the attempt ended."""
        replica, passed = self._pick()
        note({**endpoint_attributes(replica.endpoint), "promptlift.replica": replica.endpoint})
        started = time.perf_counter()
        try:
            yield replica
        except errors.ProviderError as exc:
            if counts_against_endpoint(exc):
                with self._lock:
                    replica.failures += 1
                replica.breaker.record_failure(self._clock(), str(exc))
            raise
        else:
            with self._lock:
                replica.ok += 1
                replica.latency_total += time.perf_counter() - started
            replica.breaker.record_success()
        finally:
            with self._lock:
                replica.in_flight -= 1
            replica.breaker.release(passed)  # a probe that ended with no verdict frees its slot

    def stats(self) -> list[EndpointStats]:
        with self._lock:
            return [
                EndpointStats(
                    self.model,
                    redact(r.endpoint),
                    r.breaker.state,
                    r.in_flight,
                    r.calls,
                    r.failures,
                    r.latency_total / r.ok if r.ok else 0.0,
                )
                for r in self.replicas
            ]


class ReplicaProvider(Provider):
    """Sends each attempt for a replicated model to one of its replicas (see the module docstring)."""

    name = "replicas"

    def __init__(
        self,
        inner: Provider,
        replicas: Mapping[str, Sequence[str]],
        policy: FallbackPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.inner = inner
        policy = policy or FallbackPolicy()
        self.groups = {
            model: ReplicaGroup(model, tuple(eps), policy, clock) for model, eps in replicas.items()
        }

    def _group(self, request: CompletionRequest) -> ReplicaGroup | None:
        group = self.groups.get(request.model)
        if group is None or request.api_base not in (None, group.name):
            return None  # not replicated, or sent to an endpoint of the caller's choosing
        return group

    async def acomplete(self, request: CompletionRequest) -> Completion:
        group = self._group(request)
        if group is None:
            return await self.inner.acomplete(request)
        with group.sending() as replica:
            return await self.inner.acomplete(request.replace(api_base=replica.endpoint))

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        group = self._group(request)
        if group is None:
            async with closing(self.inner.astream(request)) as events:
                async for event in events:
                    yield event
            return
        with group.sending() as replica:
            async with closing(self.inner.astream(request.replace(api_base=replica.endpoint))) as events:
                async for event in events:
                    yield event

    def stats(self) -> list[EndpointStats]:
        return [s for group in self.groups.values() for s in group.stats()]

    async def aclose(self) -> None:
        await self.inner.aclose()
