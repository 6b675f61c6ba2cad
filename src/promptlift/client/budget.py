"""Caps on spend — USD, tokens, calls — enforced before a call is sent, as a provider wrapper.

Before each call the wrapper estimates the call's worst case (counted input tokens plus
``max_tokens`` at the model's price, ``promptlift.pricing``) and reserves it in every ledger that
applies: the client's, and the run's when the call is made inside ``budget_scope``. If any ledger
cannot hold the reservation with what is already spent *and* reserved by calls in flight, the call
is not sent and ``BudgetExceeded`` is raised. When the fallback chain moves a call to another
model, ``ChainReservation`` (below the fallback) raises the reservation to that model's worst case
before calling it, or refuses. After the call the reservation is replaced by the real usage and
cost. So the caps hold with any number of calls in flight, as long as the estimate is an upper
bound: the answer is capped by ``max_tokens`` (a request without one is sent with the budget's
``default_max_tokens`` as its ``output_cap``), input tokens are counted leaning high, and every
model that may answer has a known price (a cost cap refuses, with ``ConfigError``, a model whose
price nobody knows: its calls would count as $0).

What a provider gets wrong is still counted: a 200 without usage is charged at the call's worst
case, and a provider that reports more tokens than ``max_tokens`` allows is charged what it
reported; once that passes a cap, one warning says by how much and nothing more is sent.

A cache hit costs nothing new: even when the budget is exhausted, or the model unpriced, an answer
already in the cache is served (the wrapper asks the cache, through ``lookup``, before refusing).

A ``Budget(shared="redis://...")`` keeps its ledger in Redis (``client.shared_budget``), so several
processes share one set of caps; it fails closed (``SharedStateUnavailable``) when Redis is down.

Thread-safety: ledgers are guarded by a ``threading.Lock``; one ledger may be shared by several
clients, threads and event loops.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from promptlift import prompt_cache
from promptlift.client.config import Budget
from promptlift.errors import BudgetExceeded, ConfigError, SharedStateUnavailable
from promptlift.log import get_logger
from promptlift.pricing import PriceBook
from promptlift.providers.base import Provider, close_stream, closing, whole
from promptlift.providers.local import DEFAULT_MAX_TOKENS as LOCAL_MAX_TOKENS
from promptlift.types import Completion, CompletionRequest, StreamEvent, Usage

log = get_logger("budget")
T = TypeVar("T")


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
        if budget.max_minutes is not None:
            raise ConfigError(
                f"Budget(max_minutes={budget.max_minutes:g}) is a run's wall clock (optimize, eval): a "
                f"{name} budget has no clock; give it to RunSettings(budget=...) or the config's budget:"
            )
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
        self._overshoot_told = False
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

    def overshoot(self) -> str | None:
        """Once, the first time spend has passed a cap (a provider that reported more tokens than
        ``max_tokens`` allows): what was spent and by how much it passed. Every further call is
        refused by ``reserve`` (nothing fits under a cap already passed)."""
        b = self.budget
        with self._lock:
            if self._overshoot_told:
                return None
            said = None
            if b.max_cost_usd is not None and self.spent_usd > b.max_cost_usd + 1e-12:
                over = self.spent_usd - b.max_cost_usd
                said = f"${self.spent_usd:.6f} spent, ${over:.6f} over the cap of ${b.max_cost_usd:.6f}"
            elif b.max_tokens is not None and self.spent_tokens > b.max_tokens:
                over_t = self.spent_tokens - b.max_tokens
                said = f"{self.spent_tokens} tokens used, {over_t} over the cap of {b.max_tokens}"
            if said is None:
                return None
            self._overshoot_told = True
            return f"{self.name} budget overshot: {said}"

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


def ledger_for(budget: Budget, name: str) -> BudgetLedger:
    """``budget``'s ledger: in this process, or in Redis when ``budget.shared`` names one."""
    if budget.shared is None:
        return BudgetLedger(budget, name)
    from promptlift.client.shared_budget import SharedLedger

    return SharedLedger(budget, name)


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
    ledger = budget if isinstance(budget, BudgetLedger) else ledger_for(budget, name)
    token = _scoped.set((*_scoped.get(), ledger))
    try:
        yield ledger
    finally:
        _scoped.reset(token)


Lookup = Callable[[CompletionRequest], Completion | None]


@dataclass
class _Hold:
    """One call's reservation in the ledgers that hold it. It grows when the call moves down the
    fallback chain to a dearer model (``ChainReservation``); the call is alone in using it."""

    ledgers: list[BudgetLedger]
    reservation: Reservation
    owner: BudgetedProvider  # whose prices and ceilings the call is reserved by
    models: set[str]  # the models already reserved for: going back to one needs nothing more


_holding: contextvars.ContextVar[_Hold | None] = contextvars.ContextVar(
    "promptlift_budget_hold", default=None
)


def _reserve_in(ledgers: Sequence[BudgetLedger], r: Reservation) -> list[BudgetLedger]:
    """Hold ``r`` in every ledger, or in none (``BudgetExceeded``, or ``SharedStateUnavailable``
    from a shared ledger whose Redis is down)."""
    held: list[BudgetLedger] = []
    try:
        for ledger in ledgers:
            ledger.reserve(r)
            held.append(ledger)
    except (BudgetExceeded, SharedStateUnavailable):
        for ledger in held:
            ledger.release(r, sent=False)
        raise
    return held


class BudgetedProvider(Provider):
    """Reserves each call's worst case in every applicable ledger before sending it.

    The worst case is priced at the model the request names; when the fallback chain moves the call
    to a dearer model, ``ChainReservation`` (below the fallback) reserves the difference before that
    model is called, or refuses the call there. ``lookup`` (the cache's) lets an exhausted budget
    still serve answers already paid for. A completion without a cost is priced from ``pricing``;
    one whose provider reported no usage is counted at the worst case, never at $0.
    """

    name = "budget"

    def __init__(
        self,
        inner: Provider,
        pricing: PriceBook,
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
        self._warned_lock = threading.Lock()

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

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        with self._warned_lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            log.warning(message, *args)

    def worst_case(self, request: CompletionRequest) -> tuple[Usage, float]:
        """The most one call of ``request`` may use and cost: counted input + max_tokens, priced at
        the model it names."""
        if request.answer_limit is None:  # not yet capped (acomplete caps before it estimates)
            request = self.capped(request)
        answers = max(1, request.n or 1)  # each of n samples may run to max_tokens
        usage = Usage(
            self.pricing.input_tokens(request),
            (request.answer_limit or 0) * answers,
            cache_write_tokens=prompt_cache.worst_write_tokens(request),  # a write costs more than input
            reported=False,
        )
        price = self.pricing.price(request.model)
        if price is None:
            self._warn_once(
                request.model, "no price known for %s: its calls are reserved at $0", request.model
            )
        return usage, price.cost(usage) if price else 0.0

    def estimate(self, request: CompletionRequest) -> Reservation:
        """The worst case of one call, as a reservation."""
        usage, cost = self.worst_case(request)
        return Reservation(cost_usd=cost, tokens=usage.total_tokens)

    def _ledgers(self) -> Sequence[BudgetLedger]:
        return (self.ledger, *scoped_ledgers()) if self.ledger else scoped_ledgers()

    def _priced(self, request: CompletionRequest, completion: Completion) -> Completion:
        if completion.cached:
            return completion
        if not completion.usage.reported:
            # A 200 without usage: unseen spend would let any cap run over, so it counts as the most
            # the call could have used, at the model that answered.
            usage, cost = self.worst_case(self.capped(request.replace(model=completion.model)))
            self._warn_once(
                "no-usage:" + completion.model,
                "%s answered without reporting its usage: each such call is counted at its worst case "
                "(%d tokens, $%.6f)",
                completion.model,
                usage.total_tokens,
                cost,
            )
            return completion.replace(usage=usage, cost_usd=cost)
        if completion.cost_usd:
            return completion
        price = self.pricing.price(completion.model)
        if price is None:
            return completion
        usage = completion.usage
        return completion.replace(cost_usd=price.cost(usage), cache_saved_usd=price.cache_saving(usage))

    def grow(self, hold: _Hold, request: CompletionRequest) -> None:
        """Before ``request`` goes to the model it names (a fallback), raise the call's reservation to
        that model's worst case if it is dearer; ``BudgetExceeded`` if a ledger cannot hold it."""
        if request.model in hold.models:  # the first model's call (every call): already reserved
            return
        needed = self.estimate(request)
        held = hold.reservation
        extra = Reservation(
            cost_usd=max(0.0, needed.cost_usd - held.cost_usd),
            tokens=max(0, needed.tokens - held.tokens),
            calls=0,
        )
        if extra.cost_usd <= 0 and extra.tokens <= 0:
            hold.models.add(request.model)
            return
        try:
            _reserve_in(hold.ledgers, extra)
        except BudgetExceeded as exc:
            raise BudgetExceeded(
                f"falling back to {request.model} could cost up to ${needed.cost_usd:.6f}: {exc}",
                limit=exc.limit,
                spent=exc.spent,
                cap=exc.cap,
            ) from None
        hold.reservation = Reservation(held.cost_usd + extra.cost_usd, held.tokens + extra.tokens, held.calls)
        hold.models.add(request.model)

    async def acomplete(self, request: CompletionRequest) -> Completion:
        ledgers = self._ledgers()
        if not ledgers:
            return self._priced(request, await self.inner.acomplete(request))
        hit = self._refusal_or_hit(request, ledgers)
        if hit is not None:
            return hit
        request = self.capped(request)
        reservation = self.estimate(request)
        try:
            hold = _Hold(_reserve_in(ledgers, reservation), reservation, self, {request.model})
        except (BudgetExceeded, SharedStateUnavailable):  # an answer already paid for is still served
            hit = self.lookup(request) if self.lookup is not None else None
            if hit is not None:
                return hit
            raise
        completion: Completion | None = None
        token = _holding.set(hold)
        try:
            completion = self._priced(request, await self.inner.acomplete(request))
            return completion
        finally:
            _holding.reset(token)
            self._settle(hold, request, completion)

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Reserves and settles as ``acomplete`` does, the reservation held from before the request
        is sent until the stream ends. A stream that fails after its first event may have been
        billed for what it generated: it is charged at its worst case, as an answer without usage is.
        """
        ledgers = self._ledgers()
        if not ledgers:
            async with closing(self.inner.astream(request)) as stream:
                async for event in stream:
                    yield self._priced(request, event) if isinstance(event, Completion) else event
            return
        hit = self._refusal_or_hit(request, ledgers)
        if hit is not None:
            for event in whole(hit):
                yield event
            return
        request = self.capped(request)
        reservation = self.estimate(request)
        try:
            hold = _Hold(_reserve_in(ledgers, reservation), reservation, self, {request.model})
        except (BudgetExceeded, SharedStateUnavailable):  # an answer already paid for is still served
            hit = self.lookup(request) if self.lookup is not None else None
            if hit is None:
                raise
            for event in whole(hit):
                yield event
            return
        completion: Completion | None = None
        started = False
        events = self.inner.astream(request)
        try:
            while completion is None:
                token = _holding.set(hold)  # for each step: ChainReservation reads it as the chain moves
                try:
                    event = await anext(events)
                finally:
                    _holding.reset(token)
                if isinstance(event, Completion):
                    completion = event = self._priced(request, event)
                started = True
                yield event
        except BaseException:  # a failure, or the caller stopped reading
            if started and completion is None:  # part of an answer came: charged the most it could cost
                usage, cost = self.worst_case(request)
                completion = Completion("", request.model, "", usage=usage, cost_usd=cost)
            raise
        finally:
            await close_stream(events)
            self._settle(hold, request, completion)

    def _refusal_or_hit(
        self, request: CompletionRequest, ledgers: Sequence[BudgetLedger]
    ) -> Completion | None:
        """A cost cap with a model nobody has priced: the cached answer if there is one, else
        ``ConfigError``. None: the call may go on."""
        unpriced = self._unpriced(request) if any(x.budget.max_cost_usd is not None for x in ledgers) else []
        if not unpriced:
            return None
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

    def _settle(self, hold: _Hold, request: CompletionRequest, completion: Completion | None) -> None:
        spent = completion is not None and not completion.cached
        for ledger in hold.ledgers:
            ledger.release(
                hold.reservation,
                cost_usd=completion.cost_usd if spent and completion else 0.0,
                tokens=completion.usage.total_tokens if spent and completion else 0,
                sent=completion is None or not completion.cached,
            )
            over = ledger.overshoot()
            if over and completion is not None:
                log.warning(
                    "%s; %s reported %d output tokens for a limit of %s: no further calls are sent",
                    over,
                    completion.model,
                    completion.usage.output_tokens,
                    request.answer_limit,
                )

    async def aclose(self) -> None:
        await self.inner.aclose()


class ChainReservation(Provider):
    """Below the fallback: before each model of the chain is called, the call's reservation is
    raised to that model's worst case (``BudgetedProvider.grow``), so a fallback to a dearer model
    cannot spend past a cap that the first model's price would have respected."""

    name = "budget-chain"

    def __init__(self, inner: Provider):
        self.inner = inner

    async def acomplete(self, request: CompletionRequest) -> Completion:
        hold = _holding.get()  # set by the budget wrapper above, for this call only
        if hold is not None:
            hold.owner.grow(hold, request)
        return await self.inner.acomplete(request)

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        hold = _holding.get()
        if hold is not None:
            hold.owner.grow(hold, request)
        async with closing(self.inner.astream(request)) as stream:
            async for event in stream:
                yield event

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
