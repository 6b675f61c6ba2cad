"""What a call costs, in USD, and how many input tokens a request will use.

Prices are looked up in this order:

1. prices registered by the caller (``prices={"azure/my-dep": Price.per_million(0.15, 0.60)}``),
   for custom deployments, fine-tunes and self-hosted models;
2. LiteLLM's price map, read offline from the copy bundled with the pinned release;
3. zero for the embedded ``local/`` models;

and a model found nowhere costs 0 with one warning per process, so a budget in USD is only as
good as the prices it knows: register one for every model you pay for that the map lacks.

The public API is four functions — ``price_of``, ``cost_usd``, ``estimate_input_tokens``,
``estimate_cost_usd`` — and the ``Price`` value. All are thread-safe and never send a request.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from promptlift.log import get_logger
from promptlift.types import CompletionRequest, Usage

log = get_logger("pricing")


class PerMillion(Protocol):
    """Anything priced in USD per million tokens (``client.config.ModelPrice`` is one)."""

    @property
    def input_per_mtok(self) -> float: ...

    @property
    def output_per_mtok(self) -> float: ...


@dataclass(frozen=True)
class Price:
    """USD per token. ``cached_input_per_token`` None: cached input tokens cost full price."""

    input_per_token: float
    output_per_token: float
    cached_input_per_token: float | None = None

    @classmethod
    def per_million(cls, input_usd: float, output_usd: float, cached_input_usd: float | None = None) -> Price:
        """From USD per million tokens, the unit price lists use."""
        cached = None if cached_input_usd is None else cached_input_usd / 1e6
        return cls(input_usd / 1e6, output_usd / 1e6, cached)

    @property
    def input_per_mtok(self) -> float:
        return self.input_per_token * 1e6

    @property
    def output_per_mtok(self) -> float:
        return self.output_per_token * 1e6

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = (
            self.input_per_token if self.cached_input_per_token is None else self.cached_input_per_token
        )
        return (
            (usage.input_tokens - cached) * self.input_per_token
            + cached * cached_price
            + usage.output_tokens * self.output_per_token
        )


FREE = Price(0.0, 0.0, 0.0)
Prices = Mapping[str, Price | PerMillion]

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _as_price(value: Price | PerMillion) -> Price:
    if isinstance(value, Price):
        return value
    return Price.per_million(value.input_per_mtok, value.output_per_mtok)


FREE_PROVIDERS = frozenset({"ollama", "ollama_chat", "lm_studio", "llamafile"})  # models on your machine


def _from_price_map(model: str) -> Price | None:
    from promptlift.providers.litellm import import_litellm

    litellm = import_litellm()
    try:
        info = litellm.get_model_info(model)
    except Exception:  # not in the map: ModelNotMappedError or a provider lookup failure
        return None
    given = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if given[0] is None and given[1] is None:
        return None
    if not given[0] and not given[1] and model.split("/", 1)[0] not in FREE_PROVIDERS:
        # $0 both ways for a paid provider is a gap in the map, not a price (LiteLLM 1.110.2 has
        # anthropic/claude-sonnet-4-20250514 so): unknown, so a cost cap refuses it rather than never binding.
        return None
    cached = info.get("cache_read_input_token_cost")
    return Price(float(given[0] or 0.0), float(given[1] or 0.0), None if cached is None else float(cached))


def price_of(model: str, prices: Prices | None = None) -> Price | None:
    """The price of ``model`` (``provider/name``), or None when nothing knows it."""
    if prices and model in prices:
        return _as_price(prices[model])
    if model.startswith("local/"):
        return FREE
    return _from_price_map(model)


def cost_usd(model: str, usage: Usage, prices: Prices | None = None) -> float:
    """What ``usage`` on ``model`` cost; 0 (with one warning per model) when its price is unknown."""
    price = price_of(model, prices)
    if price is None:
        with _warned_lock:
            first = model not in _warned
            _warned.add(model)
        if first:
            log.warning("no price known for %s: its calls count as $0; register a price for it", model)
        return 0.0
    return price.cost(usage)


def estimate_input_tokens(request: CompletionRequest) -> int:
    """Input tokens ``request`` will use, counted with the model's tokenizer where LiteLLM knows it
    (offline), else about 4 characters a token, plus a few tokens of framing per message."""
    from promptlift.providers.litellm import import_litellm

    litellm = import_litellm()
    messages = [m.to_dict() for m in request.messages]
    try:
        return int(litellm.token_counter(model=request.model, messages=messages))
    except Exception:  # an unknown tokenizer: estimate
        chars = sum(len(m.content) for m in request.messages)
        return math.ceil(chars / 4) + 4 * len(request.messages)


def estimate_cost_usd(
    request: CompletionRequest, prices: Prices | None = None, *, default_max_tokens: int = 4096
) -> float:
    """The worst case of ``request``: its input tokens plus ``max_tokens`` (or the default) of
    output, at the model's price. 0 when the price is unknown (see ``cost_usd``)."""
    limit = request.answer_limit
    output = limit if limit is not None else default_max_tokens
    usage = Usage(input_tokens=estimate_input_tokens(request), output_tokens=output)
    return cost_usd(request.model, usage, prices)
