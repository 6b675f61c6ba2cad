"""Caps on spend — USD, tokens, calls — enforced before a call is sent, as a provider wrapper.

Before each call the wrapper estimates the call's worst case (counted input tokens plus
``max_tokens`` at the model's price) and reserves it in every ledger that applies: the client's,
and the run's when the call is made inside ``budget_scope``. If any ledger cannot hold the
reservation with what is already spent *and* reserved by calls in flight, the call is not sent and
``BudgetExceeded`` is raised. After the call the reservation is replaced by the real usage and cost.
So the caps hold with any number of calls in flight, as long as the estimate is an upper bound:
the answer is capped by ``max_tokens`` (a request without one is sent with the budget's
``default_max_tokens`` as its ``output_cap``), input tokens are counted by the pricing in use, and
every model that may answer has a known price (a cost cap refuses, with ``ConfigError``, a model
whose price nobody knows: its calls would count as $0).

A cache hit costs nothing new: even when the budget is exhausted, or the model unpriced, an answer
already in the cache is served (the wrapper asks the cache, through ``lookup``, before refusing).

Thread-safety: ledgers are guarded by a ``threading.Lock``; one ledger may be shared by several
clients, threads and event loops.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from promptlift.client.config import Budget, ModelPrice
from promptlift.client.ratelimit import estimate_input_tokens
from promptlift.errors import BudgetExceeded, ConfigError
from promptlift.log import get_logger
from promptlift.providers.base import Provider
from promptlift.providers.local import DEFAULT_MAX_TOKENS as LOCAL_MAX_TOKENS
from promptlift.types import Completion, CompletionRequest, Usage

log = get_logger("budget")
T = TypeVar("T")


class Pricing(Protocol):
    """What a budget needs to know about money: a token count and a price per model."""

    def input_tokens(self, request: CompletionRequest) -> int:
        """An upper-leaning count of the request's input tokens."""

    def price(self, model: str) -> ModelPrice | None:
        """The model's price, or None when it is not known."""


class TablePricing:
    """Prices from an explicit table; input tokens estimated at ~3 characters a token.

    A stand-in until the provider layer's price map (LiteLLM's offline map) is wired in; it never
    imports litellm.
    """

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None):
        self.prices = dict(prices or {})

    def input_tokens(self, request: CompletionRequest) -> int:
        return estimate_input_tokens(request)

    def price(self, model: str) -> ModelPrice | None:
        return self.prices.get(model)


class MapPricing(TablePricing):
    """The table first, then LiteLLM's offline price map and token counter (``providers.pricing``).

    For clients over the LiteLLM provider; importing it loads litellm.
    """

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None):
        super().__init__(prices)
        self._looked_up: dict[str, ModelPrice | None] = {}

    def input_tokens(self, request: CompletionRequest) -> int:
        from promptlift.providers import pricing

        return pricing.estimate_input_tokens(request)

    def price(self, model: str) -> ModelPrice | None:
        if model in self.prices:
            return self.prices[model]
        if model not in self._looked_up:
            from promptlift.providers import pricing

            found = pricing.price_of(model)
            self._looked_up[model] = (
                ModelPrice(found.input_per_mtok, found.output_per_mtok) if found is not None else None
            )
        return self._looked_up[model]


def cost_of(price: ModelPrice, input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6


@dataclass(frozen=True)
class Reservation:
    cost_usd: float
    tokens: int
    calls: int = 1


@dataclass(frozen=True)
class LedgerSnapshot:
    name: str
    spent_usd: float
    spent_tokens: int
    calls: int
    reserved_usd: float
    reserved_tokens: int
    in_flight: int
    refused: int


class BudgetLedger:
    """What has been spent and reserved against one ``Budget``. Thread-safe."""

    def __init__(self, budget: Budget, name: str = "client"):
        self.budget = budget
        self.name = name
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self.calls = 0
        self.reserved_usd = 0.0
        self.reserved_tokens = 0
        self.in_flight = 0
        self.refused = 0
        self.closed = False
        self._lock = threading.Lock()

    def _check(self, r: Reservation) -> None:
        b = self.budget
        if self.closed:
            raise BudgetExceeded(f"{self.name} budget closed: no new calls are sent", limit="closed")
        usd = self.spent_usd + self.reserved_usd
        if b.max_cost_usd is not None and usd + r.cost_usd > b.max_cost_usd + 1e-12:
            raise BudgetExceeded(
                f"{self.name} budget: this call could cost up to ${r.cost_usd:.6f}; ${usd:.6f} spent or"
                f" reserved of ${b.max_cost_usd:.6f}",
                limit="cost_usd",
                spent=usd,
                cap=b.max_cost_usd,
            )
        tokens = self.spent_tokens + self.reserved_tokens
        if b.max_tokens is not None and tokens + r.tokens > b.max_tokens:
            raise BudgetExceeded(
                f"{self.name} budget: this call could use up to {r.tokens} tokens; {tokens} used or"
                f" reserved of {b.max_tokens}",
                limit="tokens",
                spent=tokens,
                cap=b.max_tokens,
            )
        calls = self.calls + self.in_flight
        if b.max_calls is not None and calls + r.calls > b.max_calls:
            raise BudgetExceeded(
                f"{self.name} budget: {calls} of {b.max_calls} calls made or in flight",
                limit="calls",
                spent=calls,
                cap=b.max_calls,
            )

    def reserve(self, r: Reservation) -> None:
        """Hold ``r`` or raise ``BudgetExceeded`` (and hold nothing)."""
        with self._lock:
            try:
                self._check(r)
            except BudgetExceeded:
                self.refused += 1
                raise
            self.reserved_usd += r.cost_usd
            self.reserved_tokens += r.tokens
            self.in_flight += r.calls

    def release(self, r: Reservation, *, cost_usd: float = 0.0, tokens: int = 0, sent: bool = True) -> None:
        """Replace the reservation with what the call really spent (nothing, if it was not sent)."""
        with self._lock:
            self.reserved_usd = max(0.0, self.reserved_usd - r.cost_usd)
            self.reserved_tokens -= r.tokens
            self.in_flight -= r.calls
            self.spent_usd += cost_usd
            self.spent_tokens += tokens
            if sent:
                self.calls += r.calls

    def close(self) -> None:
        """Refuse every further call (answers already cached are still served)."""
        with self._lock:
            self.closed = True

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return LedgerSnapshot(
                self.name,
                self.spent_usd,
                self.spent_tokens,
                self.calls,
                self.reserved_usd,
                self.reserved_tokens,
                self.in_flight,
                self.refused,
            )


_scoped: contextvars.ContextVar[tuple[BudgetLedger, ...]] = contextvars.ContextVar(
    "promptlift_budget_scope", default=()
)


def scoped_ledgers() -> tuple[BudgetLedger, ...]:
    """The run ledgers active in the current context (innermost last)."""
    return _scoped.get()


@contextlib.contextmanager
def budget_scope(budget: Budget | BudgetLedger, name: str = "run") -> Iterator[BudgetLedger]:
    """Every call made in this context (this thread, or tasks started from it) is also charged to
    the yielded ledger. Scopes nest: a call must fit in all of them."""
    ledger = budget if isinstance(budget, BudgetLedger) else BudgetLedger(budget, name)
    token = _scoped.set((*_scoped.get(), ledger))
    try:
        yield ledger
    finally:
        _scoped.reset(token)


Lookup = Callable[[CompletionRequest], Completion | None]


class BudgetedProvider(Provider):
    """Reserves each call's worst case in every applicable ledger before sending it.

    ``lookup`` (the cache's) lets an exhausted budget still serve answers already paid for.
    A completion without a cost (a model the price map does not know) is priced from ``pricing``.
    """

    name = "budget"

    def __init__(
        self,
        inner: Provider,
        pricing: Pricing,
        *,
        ledger: BudgetLedger | None = None,
        lookup: Lookup | None = None,
        chain: Sequence[str] = (),
    ):
        self.inner = inner
        self.pricing = pricing
        self.ledger = ledger
        self.lookup = lookup
        self.chain = tuple(chain)  # the fallback chain: a request for its first model may be served by any
        self._warned: set[str] = set()

    def capped(self, request: CompletionRequest) -> CompletionRequest:
        """The request as sent under a budget: with a ceiling on the answer (``output_cap``, sent as
        ``max_tokens``), so the reservation is an upper bound. Unset, the provider's own limit applies
        (through LiteLLM, Anthropic's is the model's maximum, 128k tokens for Claude 3.5 Haiku), and
        one call could spend far past the cap."""
        if request.max_tokens is not None:
            return request
        ledgers = self._ledgers()
        default_out = (
            min(x.budget.default_max_tokens for x in ledgers) if ledgers else Budget().default_max_tokens
        )
        if request.model.startswith("local/"):  # the embedded model's own default is the smaller bound
            default_out = min(default_out, LOCAL_MAX_TOKENS)
        return request.replace(output_cap=min(default_out, request.output_cap or default_out))

    def _unpriced(self, request: CompletionRequest) -> list[str]:
        """The models that may serve ``request`` whose price nobody knows."""
        models = self.chain if self.chain and request.model == self.chain[0] else (request.model,)
        return [m for m in models if self.pricing.price(m) is None]

    def estimate(self, request: CompletionRequest) -> Reservation:
        """The worst case of one call: counted input + max_tokens, at the model's price."""
        input_tokens = self.pricing.input_tokens(request)
        if request.answer_limit is None:  # not yet capped (acomplete caps before it estimates)
            request = self.capped(request)
        output_tokens = request.answer_limit or 0
        price = self.pricing.price(request.model)
        if price is None and request.model not in self._warned:
            self._warned.add(request.model)
            log.warning("no price known for %s: its calls are reserved at $0", request.model)
        cost = cost_of(price, input_tokens, output_tokens) if price else 0.0
        return Reservation(cost_usd=cost, tokens=input_tokens + output_tokens)

    def _ledgers(self) -> Sequence[BudgetLedger]:
        return (self.ledger, *scoped_ledgers()) if self.ledger else scoped_ledgers()

    def _priced(self, completion: Completion) -> Completion:
        if completion.cost_usd or completion.cached:
            return completion
        price = self.pricing.price(completion.model)
        if price is None:
            return completion
        usage: Usage = completion.usage
        return completion.replace(cost_usd=cost_of(price, usage.input_tokens, usage.output_tokens))

    async def acomplete(self, request: CompletionRequest) -> Completion:
        ledgers = self._ledgers()
        if not ledgers:
            return self._priced(await self.inner.acomplete(request))
        unpriced = self._unpriced(request) if any(x.budget.max_cost_usd is not None for x in ledgers) else []
        if unpriced:
            # Their calls would count as $0 and the cap would never bind: refuse before spending anything
            # (an answer already in the cache costs nothing, so it is still served).
            hit = self.lookup(request) if self.lookup is not None else None
            if hit is not None:
                return hit
            raise ConfigError(
                f"a cost cap (max_cost_usd) cannot hold for {', '.join(unpriced)}: no price is known for "
                f"it; give its price in USD per 1M tokens (`prices:` in a run config, "
                f"ClientConfig(prices=...); 0 for a free server), or cap calls or tokens instead"
            )
        request = self.capped(request)
        reservation = self.estimate(request)
        held: list[BudgetLedger] = []
        try:
            for ledger in ledgers:
                ledger.reserve(reservation)
                held.append(ledger)
        except BudgetExceeded:
            for ledger in held:
                ledger.release(reservation, sent=False)
            hit = self.lookup(request) if self.lookup is not None else None
            if hit is not None:
                return hit
            raise
        completion: Completion | None = None
        try:
            completion = self._priced(await self.inner.acomplete(request))
            return completion
        finally:
            spent = completion is not None and not completion.cached
            for ledger in held:
                ledger.release(
                    reservation,
                    cost_usd=completion.cost_usd if spent and completion else 0.0,
                    tokens=completion.usage.total_tokens if spent and completion else 0,
                    sent=completion is None or not completion.cached,
                )

    async def aclose(self) -> None:
        await self.inner.aclose()


async def carry_scope_inner(ledgers: tuple[BudgetLedger, ...], coro: Awaitable[T]) -> T:
    token = _scoped.set(ledgers)
    try:
        return await coro
    finally:
        _scoped.reset(token)


def carry_scope(coro: Awaitable[T]) -> Awaitable[T]:
    """Wrap ``coro`` so it runs under the caller's budget scopes, on whichever loop or thread
    it is finally awaited (the sync API hands coroutines to a loop in another thread)."""
    return carry_scope_inner(scoped_ledgers(), coro)
