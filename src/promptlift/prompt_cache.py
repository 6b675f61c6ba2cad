"""Providers' prompt caches: which routes reuse a shared prompt prefix, from how many tokens, and
whether the request has to mark it.

An evaluation sends the same prefix (system text, demos) with every row; providers bill a prefix
they have seen recently at a discount:

- OpenAI (and Azure): automatic for prompts of 1,024 tokens and more, reported as
  ``usage.prompt_tokens_details.cached_tokens``; nothing to mark.
- Anthropic: only up to blocks marked ``cache_control: {type: ephemeral}`` (at most 4 per request),
  a prefix of at least 1,024 tokens (the price map's minimum where it lists one, 4,096 on
  claude-haiku-4-5; 2,048 on older Haiku models); reads are billed at 0.1x input and
  writes at 1.25x (``usage.cache_read_input_tokens`` / ``cache_creation_input_tokens``). A mark
  on a shorter prefix is ignored, at no charge.
- Gemini (AI Studio): implicit caching of a repeated prefix of 1,024 tokens and more, reported as
  ``usageMetadata.cachedContentTokenCount``. Explicit context caching (a cache object made
  ahead) is not used.

A cache entry exists once the call that wrote it has been answered, so calls sent at the same
moment all miss: the evaluator sends the first row alone, then the rest (``optimize.evaluation``).

Token counts here are ``pricing``'s estimates, which lean high: a prefix just over a minimum may
not qualify at the provider. That costs nothing: a mark under the minimum is ignored free, and the
only other cost is the one call sent before the rest. A prefix that does qualify pays Anthropic's
write premium (0.25x of it) once, which the first read (0.9x of it saved) repays. A leaf module
(``types`` and ``pricing`` only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from promptlift.pricing import MESSAGE_FRAMING_TOKENS, ModelPrice, estimate_message_tokens, map_field
from promptlift.types import CompletionRequest, Message, Usage

__all__ = [
    "CacheRule",
    "CachedCost",
    "cached_cost",
    "prefix_tokens",
    "qualifies",
    "rule_for",
    "worst_write_tokens",
]


@dataclass(frozen=True)
class CacheRule:
    """How one provider caches a prompt's prefix. ``marked``: only up to explicit breakpoints
    (Anthropic's ``cache_control``), at most ``max_breakpoints`` per request; else automatic."""

    min_tokens: int
    marked: bool = False
    max_breakpoints: int = 0


_AUTOMATIC = CacheRule(1024)
_ANTHROPIC = CacheRule(1024, marked=True, max_breakpoints=4)
_ANTHROPIC_HAIKU = CacheRule(2048, marked=True, max_breakpoints=4)
RULES = {"openai": _AUTOMATIC, "azure": _AUTOMATIC, "gemini": _AUTOMATIC, "anthropic": _ANTHROPIC}


def rule_for(model: str) -> CacheRule | None:
    """The prompt cache of ``model``'s route (``provider/name``), or None: the route has none we
    use (the embedded ``local/`` models reuse their KV cache on their own). The minimum is the
    price map's ``prompt_cache_min_tokens`` for the model where it has one (4,096 on
    claude-haiku-4-5, 2,048 on gemini-2.5-pro), else the route's."""
    route, _, name = model.partition("/")
    rule = _ANTHROPIC_HAIKU if route == "anthropic" and "haiku" in name else RULES.get(route)
    listed = map_field(model, "prompt_cache_min_tokens") if rule is not None else None
    if rule is None or not isinstance(listed, int | float) or listed <= 0:
        return rule
    return dataclasses.replace(rule, min_tokens=int(listed))


def prefix_tokens(messages: Sequence[Message]) -> int:
    """About how many input tokens ``messages`` take (the same estimate budgets use)."""
    return sum(estimate_message_tokens(m) + MESSAGE_FRAMING_TOKENS for m in messages)


def qualifies(model: str, messages: Sequence[Message], prefix: int) -> bool:
    """Whether the first ``prefix`` messages are long enough for ``model``'s prompt cache."""
    rule = rule_for(model)
    return rule is not None and prefix > 0 and prefix_tokens(messages[:prefix]) >= rule.min_tokens


def worst_write_tokens(request: CompletionRequest) -> int:
    """The most input tokens of ``request`` its provider may bill as a cache write (Anthropic's
    1.25x): its marked prefix (``cache_prefix``) on a route that bills writes, else 0."""
    rule = rule_for(request.model)
    if not request.cache_prefix or rule is None or not rule.marked:
        return 0
    return prefix_tokens(request.messages[: request.cache_prefix])


@dataclass(frozen=True)
class CachedCost:
    """What a number of calls that share a prefix cost with every token at the input rate
    (``full_usd``), and with the prefix read from the cache (``cached_usd``)."""

    prefix_tokens: int
    full_usd: float
    cached_usd: float

    @property
    def saved_share(self) -> float:
        return 1.0 - self.cached_usd / self.full_usd if self.full_usd else 0.0


def cached_cost(
    price: ModelPrice,
    rule: CacheRule,
    usage: Usage,
    prefix: int,
    *,
    calls: int,
    calls_per_prefix: int,
) -> CachedCost:
    """``calls`` calls of ``usage`` each, in groups of ``calls_per_prefix`` sharing ``prefix``
    tokens: the first call of each group writes the prefix (at the write rate where the provider
    bills one), the others read it."""
    prefix = min(prefix, usage.input_tokens)
    writers = min(calls, math.ceil(calls / max(1, calls_per_prefix)))
    written = Usage(usage.input_tokens, usage.output_tokens, cache_write_tokens=prefix if rule.marked else 0)
    read = Usage(usage.input_tokens, usage.output_tokens, cached_tokens=prefix)
    full = calls * price.cost(usage)
    cached = writers * price.cost(written) + (calls - writers) * price.cost(read)
    return CachedCost(prefix, full, cached)
