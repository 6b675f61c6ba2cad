"""What the provider's prompt cache should save a run, for the plan (``optimize.plan``).

Every task call of one evaluation shares the prompt's prefix (system text and demos,
``Prompt.shared_prefix``); the evaluator sends the first call alone to write the cache and the rest
read it (``optimize.evaluation``). So the plan counts one write per evaluation (its validation
rows) and reads for the rest, on the task calls' input, at the price map's cache rates
(``prompt_cache.cached_cost``). Tokens are the planner's estimates, like the rest of the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptlift import prompt_cache
from promptlift.optimize.program import Optimizable
from promptlift.optimize.prompt import Prompt
from promptlift.pricing import ModelPrice, estimate_text_tokens
from promptlift.types import Usage

ROW_FIRST = (
    "the system text takes a row field: every row's prompt starts differently, so no provider's "
    "prompt cache (nor the embedded model's) can reuse any of it; move row fields to the user template"
)


@dataclass(frozen=True)
class CachePlan:
    """The shared prefix of the task calls and what caching it should save on their input."""

    model: str
    prefix_tokens: int
    min_tokens: int
    saved_usd: float = 0.0  # task calls' input at the full price minus with caching
    full_usd: float = 0.0  # task calls' input at the full price

    @property
    def qualifies(self) -> bool:
        return self.prefix_tokens >= self.min_tokens

    def render(self) -> str:
        route = self.model.split("/", 1)[0]
        if not self.qualifies:
            return (
                f"  prompt cache: the shared prefix (system text and demos, ~{self.prefix_tokens} tokens) "
                f"is under {route}'s minimum of {self.min_tokens}: every call pays the full input price"
            )
        share = self.saved_usd / self.full_usd if self.full_usd else 0.0
        return (
            f"  prompt cache: shared prefix ~{self.prefix_tokens} tokens (system text and demos) "
            f"qualifies on {route}: task calls' input ~${self.full_usd:.4f} without caching, "
            f"~${self.full_usd - self.saved_usd:.4f} with (−{share:.0%})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix_tokens": self.prefix_tokens,
            "min_tokens": self.min_tokens,
            "qualifies": self.qualifies,
            "task_input_usd_without": self.full_usd,
            "task_input_usd_with": self.full_usd - self.saved_usd,
        }


def plan_cache(
    subject: Optimizable,
    model: str,
    price: ModelPrice | None,
    row: Mapping[str, Any],
    *,
    extra_demos: int,
    task_input: int,
    task_calls: int,
    rows_per_evaluation: int,
) -> CachePlan | None:
    """The cache estimate of a single prompt's task calls on ``model`` (None: a program, a model
    without a prompt cache, a prefix a row field breaks). ``extra_demos``: demos an optimizer adds
    (each about two user turns long, as ``plan.task_tokens`` counts them)."""
    rule = prompt_cache.rule_for(model)
    if not isinstance(subject, Prompt) or rule is None or subject.row_before_instruction:
        return None
    messages = subject.messages(row)
    user = estimate_text_tokens(messages[-1].text) + 4 if messages else 0
    prefix = prompt_cache.prefix_tokens(subject.shared_messages()) + extra_demos * 2 * user
    found = CachePlan(model, prefix, rule.min_tokens)
    if not found.qualifies or price is None or not task_calls or not task_input:
        return found
    cost = prompt_cache.cached_cost(
        price, rule, Usage(task_input, 0), prefix, calls=task_calls, calls_per_prefix=rows_per_evaluation
    )
    return CachePlan(model, prefix, rule.min_tokens, cost.full_usd - cost.cached_usd, cost.full_usd)
