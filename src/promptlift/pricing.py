"""Money in one place: what a model's tokens cost, what a call cost, and how many tokens a request
will use. The budget, the rate limiter, the provider and the plan all ask this module.

Prices are looked up in this order:

1. prices given by the caller (``prices={"azure/my-dep": ModelPrice(0.15, 0.60)}``, USD per
   million tokens), for custom deployments, fine-tunes and servers of your own;
2. LiteLLM's price map, read as the JSON file inside the installed litellm package (found with
   ``importlib.util.find_spec``, never imported: ``import litellm`` takes ~3 s);
3. zero for the embedded ``local/`` models.

A model found nowhere has no price (None): a cost cap refuses it, and its spend counts as $0 with
one warning per process.

A call sent through a provider's Batch API (``client.provider_batch``) is billed at the batch rate
(``batch_price``): the map's ``input_cost_per_token_batches`` and ``output_cost_per_token_batches``
where it lists them, else half of every rate (OpenAI's and Anthropic's published discount). A
price given by the caller is halved too: it is the list price of a model the map does not know.

A call's cost splits its tokens the way providers bill them: input tokens read from the prompt
cache (``cached_tokens``) at the cache-read rate, input written to it (``cache_write_tokens``,
Anthropic's 1.25x) at the cache-write rate, the rest of the input at the input rate; reasoning
tokens (part of the output) at the reasoning rate, the rest of the output at the output rate. A
rate the price does not give falls back to the input (or output) rate.

Token estimates use no tokenizer (they run before every call and in the planner): about three
ASCII characters a token, every other character a token of its own, plus a few tokens of framing
per message. That leans high for English prose (about four characters a token) and for CJK text,
which is what a worst case needs.

This is a leaf module (it imports only ``types`` and ``log``), so every layer may use it. All of it
is thread-safe and sends nothing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlift.log import get_logger
from promptlift.types import CompletionRequest, Message, Usage

__all__ = [
    "BATCH_DISCOUNT",
    "FREE",
    "FREE_PROVIDERS",
    "ModelPrice",
    "PriceBook",
    "Prices",
    "batch_cost_usd",
    "batch_price",
    "cache_saving_usd",
    "cost_usd",
    "estimate_cost_usd",
    "estimate_input_tokens",
    "estimate_text_tokens",
    "map_field",
    "map_price",
    "price_of",
    "worst_case_usage",
]

log = get_logger("pricing")

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"
MESSAGE_FRAMING_TOKENS = 4  # role and separators around each message
REQUEST_FRAMING_TOKENS = 3  # the assistant turn's opening


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. A rate left None is charged at the input (or output) rate."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None  # input read from the provider's prompt cache
    cache_write_per_mtok: float | None = None  # input written to it (Anthropic: 1.25x input)
    reasoning_per_mtok: float | None = None  # hidden reasoning tokens, part of the output

    @classmethod
    def per_million(
        cls, input_usd: float, output_usd: float, cached_input_usd: float | None = None
    ) -> ModelPrice:
        return cls(input_usd, output_usd, cached_input_usd)

    @classmethod
    def per_token(cls, info: Mapping[str, Any]) -> ModelPrice:
        """From a price-map entry (USD per token, LiteLLM's field names)."""

        def mtok(key: str) -> float | None:
            value = info.get(key)
            return None if value is None else float(value) * 1e6

        return cls(
            mtok("input_cost_per_token") or 0.0,
            mtok("output_cost_per_token") or 0.0,
            mtok("cache_read_input_token_cost"),
            mtok("cache_creation_input_token_cost"),
            mtok("output_cost_per_reasoning_token"),
        )

    @property
    def input_per_token(self) -> float:
        return self.input_per_mtok / 1e6

    @property
    def output_per_token(self) -> float:
        return self.output_per_mtok / 1e6

    @property
    def free(self) -> bool:
        rates = (self.cached_input_per_mtok, self.cache_write_per_mtok, self.reasoning_per_mtok)
        return not self.input_per_mtok and not self.output_per_mtok and not any(rates)

    def cache_saving(self, usage: Usage) -> float:
        """USD the prompt cache saved on ``usage``: its cost with every input token at the input
        rate, minus its cost as billed (negative when a write's premium outweighed the reads)."""
        if not usage.cached_tokens and not usage.cache_write_tokens:
            return 0.0
        return self.cost(usage.without_cache()) - self.cost(usage)

    def cost(self, usage: Usage) -> float:
        """USD for ``usage``: the one cost formula (see the module docstring)."""
        read = min(usage.cached_tokens, usage.input_tokens)
        write = min(usage.cache_write_tokens, usage.input_tokens - read)
        reasoning = min(usage.reasoning_tokens, usage.output_tokens)
        total = (
            (usage.input_tokens - read - write) * self.input_per_mtok
            + read * _or(self.cached_input_per_mtok, self.input_per_mtok)
            + write * _or(self.cache_write_per_mtok, self.input_per_mtok)
            + (usage.output_tokens - reasoning) * self.output_per_mtok
            + reasoning * _or(self.reasoning_per_mtok, self.output_per_mtok)
        )
        return total / 1e6


def _or(rate: float | None, default: float) -> float:
    return default if rate is None else rate


FREE = ModelPrice(0.0, 0.0, 0.0, 0.0, 0.0)
Prices = Mapping[str, ModelPrice]
FREE_PROVIDERS = frozenset({"ollama", "ollama_chat", "lm_studio", "llamafile"})  # models on your machine


# -- LiteLLM's price map, read without importing litellm ---------------------------------------------
_map: dict[str, Any] | None = None
_map_lock = threading.Lock()


def _load_map() -> dict[str, Any]:
    global _map
    if _map is None:
        with _map_lock:
            if _map is None:
                found: dict[str, Any] = {}
                spec = importlib.util.find_spec("litellm")
                for folder in (spec.submodule_search_locations or []) if spec else []:
                    path = Path(folder) / PRICE_MAP_FILE
                    if path.is_file():
                        found = json.loads(path.read_text(encoding="utf-8"))
                        break
                _map = found
    return _map


def _provider_matches(route: str, listed: str) -> bool:
    """Whether a map entry listed under ``listed`` (``vertex_ai-language-models``) serves ``route``."""
    if route in ("openai", "text-completion-openai"):
        return listed in ("openai", "text-completion-openai")
    return listed == route or listed.startswith(route + "-") or listed.startswith(route + "_")


def _entry(model: str) -> Mapping[str, Any] | None:
    table = _load_map()
    entry = table.get(model)
    if isinstance(entry, Mapping):
        return entry
    if "/" not in model:
        return None
    route, name = model.split("/", 1)
    entry = table.get(name)
    if isinstance(entry, Mapping) and _provider_matches(route, str(entry.get("litellm_provider", ""))):
        return entry
    return None


def map_field(model: str, key: str) -> Any:
    """One field of ``model``'s entry in LiteLLM's bundled map (``prompt_cache_min_tokens``), or None."""
    info = _entry(model)
    return None if info is None else info.get(key)


def map_price(model: str) -> ModelPrice | None:
    """The price LiteLLM's bundled map gives ``model``, or None."""
    info = _entry(model)
    if info is None:
        return None
    given = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if given[0] is None and given[1] is None:
        return None
    if not given[0] and not given[1] and model.split("/", 1)[0] not in FREE_PROVIDERS:
        # $0 both ways for a paid provider is a gap in the map, not a price: unknown, so a cost cap
        # refuses it rather than never binding.
        return None
    return ModelPrice.per_token(info)


def price_of(model: str, prices: Prices | None = None) -> ModelPrice | None:
    """The price of ``model`` (``provider/name``), or None when nothing knows it."""
    if prices and model in prices:
        return prices[model]
    if model.startswith("local/"):
        return FREE
    return map_price(model)


_warned: set[str] = set()
_warned_lock = threading.Lock()


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


def cache_saving_usd(model: str, usage: Usage, prices: Prices | None = None) -> float:
    """What the prompt cache saved on ``usage`` (``ModelPrice.cache_saving``); 0 for an unknown price."""
    price = price_of(model, prices)
    return 0.0 if price is None else price.cache_saving(usage)


BATCH_DISCOUNT = 0.5  # what OpenAI's and Anthropic's Batch APIs charge, as a share of the list price


def _scaled(rate: float | None, ratio: float) -> float | None:
    return None if rate is None else rate * ratio


def batch_price(model: str, prices: Prices | None = None) -> ModelPrice | None:
    """What ``model``'s tokens cost through its provider's Batch API (see the module docstring);
    None when its list price is unknown. Cache and reasoning rates scale with the input and output
    rates (Anthropic's prompt-cache multipliers apply on top of the batch discount)."""
    price = price_of(model, prices)
    if price is None:
        return None
    in_ratio = out_ratio = BATCH_DISCOUNT
    info = None if prices and model in prices else _entry(model)
    if info is not None:
        batch_in = info.get("input_cost_per_token_batches")
        batch_out = info.get("output_cost_per_token_batches")
        if batch_in is not None and price.input_per_mtok:
            in_ratio = float(batch_in) * 1e6 / price.input_per_mtok
        if batch_out is not None and price.output_per_mtok:
            out_ratio = float(batch_out) * 1e6 / price.output_per_mtok
    return ModelPrice(
        price.input_per_mtok * in_ratio,
        price.output_per_mtok * out_ratio,
        _scaled(price.cached_input_per_mtok, in_ratio),
        _scaled(price.cache_write_per_mtok, in_ratio),
        _scaled(price.reasoning_per_mtok, out_ratio),
    )


def batch_cost_usd(model: str, usage: Usage, prices: Prices | None = None) -> float:
    """What ``usage`` on ``model`` cost through a Batch API; 0 when its price is unknown."""
    price = batch_price(model, prices)
    return 0.0 if price is None else price.cost(usage)


# -- token estimates ---------------------------------------------------------------------------------
def estimate_text_tokens(text: str) -> int:
    """An upper-leaning count of ``text``'s tokens, without a tokenizer."""
    ascii_chars = len(text.encode("ascii", "ignore"))  # in C: this runs on every call, on every message
    return math.ceil(ascii_chars / 3) + (len(text) - ascii_chars)


IMAGE_TOKENS = 1600  # an upper-leaning count for one image part (OpenAI bills ~765-1105 at high detail)


def estimate_message_tokens(message: Message) -> int:
    """An upper-leaning count of one message's tokens: text, images, and the tool calls it carries."""
    tokens = estimate_text_tokens(message.text) + IMAGE_TOKENS * len(message.images)
    for call in message.tool_calls:
        tokens += (
            estimate_text_tokens(call.name) + estimate_text_tokens(call.arguments) + MESSAGE_FRAMING_TOKENS
        )
    return tokens


def estimate_input_tokens(request: CompletionRequest) -> int:
    """An upper-leaning count of a request's input tokens: its messages, the tools' schemas (sent
    as input on every call), and their framing."""
    framing = MESSAGE_FRAMING_TOKENS * len(request.messages) + REQUEST_FRAMING_TOKENS
    tools = sum(estimate_text_tokens(json.dumps(t, sort_keys=True)) for t in request.tools)
    return sum(estimate_message_tokens(m) for m in request.messages) + tools + framing


def worst_case_usage(request: CompletionRequest, default_max_tokens: int = 4096) -> Usage:
    """The most a request may use: its input estimate plus ``max_tokens`` (or the default) of output."""
    limit = request.answer_limit
    answers = max(1, request.n or 1)  # each of n samples may run to the limit
    return Usage(
        estimate_input_tokens(request), (limit if limit is not None else default_max_tokens) * answers
    )


def estimate_cost_usd(
    request: CompletionRequest, prices: Prices | None = None, *, default_max_tokens: int = 4096
) -> float:
    """The worst case of ``request`` in USD (0 when the price is unknown, see ``cost_usd``)."""
    return cost_usd(request.model, worst_case_usage(request, default_max_tokens), prices)


class PriceBook:
    """The prices one client knows: its own table, then (``use_map``) the price map and the
    embedded models. A client over a test double uses its table alone: its model names are made up.
    Map look-ups are remembered per model."""

    def __init__(self, prices: Prices | None = None, *, use_map: bool = True):
        self.prices = dict(prices or {})
        self.use_map = use_map
        self._looked_up: dict[str, ModelPrice | None] = {}
        self._lock = threading.Lock()

    def price(self, model: str) -> ModelPrice | None:
        if model in self.prices or not self.use_map:
            return self.prices.get(model)
        with self._lock:
            if model not in self._looked_up:
                self._looked_up[model] = price_of(model)
            return self._looked_up[model]

    def batch_price(self, model: str) -> ModelPrice | None:
        """``model``'s price through a Batch API (``batch_price``), from this book's table first."""
        if model in self.prices:
            return batch_price(model, self.prices)
        return batch_price(model) if self.use_map else None

    def input_tokens(self, request: CompletionRequest) -> int:
        return estimate_input_tokens(request)

    def cost(self, model: str, usage: Usage) -> float | None:
        price = self.price(model)
        return None if price is None else price.cost(usage)
