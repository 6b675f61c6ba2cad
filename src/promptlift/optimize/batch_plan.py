"""The plan's view of provider batch scoring: what the run's test scoring costs live and through the
provider's Batch API (``provider_batch.test_scoring``), from the pricing module's batch rate.

Only the driver's test scoring can go as a batch (the starting prompt's and the best candidate's,
two passes over the test split): the search's own evaluations decide what to try next and cannot
wait hours for their answers. Shown for a task model whose provider has a Batch API and a prompt
without tools, whether the key is on or not, so the saving is visible before it is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptlift import pricing
from promptlift.optimize.program import Optimizable
from promptlift.optimize.prompt import Prompt
from promptlift.types import Usage


@dataclass(frozen=True)
class BatchPlan:
    """The test scoring's expected cost, live (``live_usd``) and as batch jobs (``batch_usd``)."""

    on: bool  # provider_batch.test_scoring is set
    calls: int
    live_usd: float
    batch_usd: float

    @property
    def saved_usd(self) -> float:
        return self.live_usd - self.batch_usd

    def render(self) -> str:
        state = "on" if self.on else "off (provider_batch: {test_scoring: true} to turn it on)"
        return (
            f"  batch test scoring {state}: {self.calls} test calls ~${self.live_usd:.6f} live, "
            f"~${self.batch_usd:.6f} as provider batch jobs (saves ~${self.saved_usd:.6f}; within 24 h)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "on": self.on,
            "calls": self.calls,
            "live_usd": self.live_usd,
            "batch_usd": self.batch_usd,
            "saved_usd": self.saved_usd,
        }


def plan_batch(
    subject: Optimizable,
    model: str,
    prices: pricing.Prices | None,
    *,
    on: bool,
    test_rows: int,
    input_tokens: int,
    output_tokens: int,
    input_share: float = 1.0,
) -> BatchPlan | None:
    """The test scoring's two passes priced live and at the batch rate, at the most each call may
    use (``input_share``: the part of the input cost left once the prompt cache has read the shared
    prefix, from the cache plan); None when the model has no Batch API, no known price, or the
    prompt uses tools."""
    route = model.split("/", 1)[0] if "/" in model else "openai"
    if route not in ("openai", "anthropic") or not isinstance(subject, Prompt) or subject.tools:
        return None
    listed, batched = pricing.price_of(model, prices), pricing.batch_price(model, prices)
    if listed is None or batched is None or listed.free:
        return None
    calls = 2 * test_rows
    given, answers = Usage(input_tokens * calls, 0), Usage(0, output_tokens * calls)
    live = listed.cost(given) * input_share + listed.cost(answers)
    return BatchPlan(on, calls, live, batched.cost(given) * input_share + batched.cost(answers))
