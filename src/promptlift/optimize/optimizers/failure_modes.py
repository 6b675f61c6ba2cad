"""Failure modes (hierarchical reflection): find why the prompt fails, group, fix one mode at a time.

Each round scores the current best prompt on a sample of training rows and works on the rows it
gets wrong, in two levels:

1. root causes: the reasoning model reads the failing rows in batches of ``batch`` and names the
   cause of each failure;
2. failure modes: it groups those causes into at most ``max_modes`` recurring modes.

Then, for each mode, it writes one targeted change to the instruction; the change is scored on
validation and kept only if it beats the prompt it was made from, so the next fix builds on the
last one that helped.

A base reasoning model (the embedded one) cannot analyse anything, so for it the modes are found
mechanically — failing rows grouped by what the model answered — and each fix comes from a
"Original / Problem / Rewritten" completion scaffold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from promptlift.errors import ConfigError
from promptlift.optimize.evaluation import Evaluation, RowResult
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.optimizers.metaprompt import instruction_parts
from promptlift.optimize.optimizers.reflection import UNUSABLE, example_lines, fix, is_base, part_ok
from promptlift.optimize.program import member_of
from promptlift.optimize.run import Candidate, Search

ANALYSE = """A prompt for a language model gets these inputs wrong.

Instruction:
{instruction}

Failing inputs, with the model's output and the metric's feedback:
{examples}

For each failing input, name in one short line the root cause of the failure (what about the
instruction let the model go wrong). One line per input, starting with "- "."""

GROUP = """Root causes of a prompt's failures, one per line:
{causes}

Group them into at most {limit} recurring failure modes. Write one line per mode, starting with
"- ", that describes the mode precisely enough to fix it. Most frequent first."""

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*(.+?)\s*$")


def parse_modes(text: str, limit: int) -> list[str]:
    """The bulleted or numbered lines of a reply, at most ``limit``, without duplicates."""
    found = [m.group(1) for line in text.splitlines() if (m := _BULLET.match(line))]
    return list(dict.fromkeys(f for f in found if f))[:limit]


def group_failures(results: Sequence[RowResult], limit: int) -> list[str]:
    """Failure modes without a reasoning model: failing rows grouped by what the model answered,
    biggest group first, each described with one example of the metric's feedback."""
    groups: dict[str, list[RowResult]] = {}
    for r in results:
        said = " ".join(r.output.lower().split()[:4]) or "(nothing)"
        groups.setdefault(said, []).append(r)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    modes = []
    for said, rows in ranked:
        example = next((r.reason for r in rows if r.reason), "")
        detail = f", e.g. {example}" if example else ""
        modes.append(f"answers {said!r} on {len(rows)} rows where that is wrong{detail}")
    return modes


@dataclass
class FailureModes(Optimizer):
    """``sample``: training rows scored per round; ``batch``: failing rows per analysis call."""

    rounds: int = 3
    sample: int = 16
    batch: int = 4
    max_modes: int = 3
    name: ClassVar[str] = "failure_modes"

    def __post_init__(self) -> None:
        if min(self.rounds, self.sample, self.batch, self.max_modes) < 1:
            raise ConfigError("failure_modes: rounds, sample, batch and max_modes must be at least 1")

    def params(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "sample": self.sample,
            "batch": self.batch,
            "max_modes": self.max_modes,
        }

    async def modes(
        self, ctx: Search, candidate: Candidate, evaluation: Evaluation, part: str = "system"
    ) -> list[str]:
        failing = evaluation.failures
        if is_base(ctx):
            return group_failures(failing, self.max_modes)
        prompt, _ = member_of(candidate.prompt, part)
        causes: list[str] = []
        for start in range(0, len(failing), self.batch):
            chunk = Evaluation(tuple(failing[start : start + self.batch]))
            text = ANALYSE.format(
                instruction=prompt.system or "(no instruction)",
                examples=example_lines(ctx, candidate.prompt, chunk, limit=self.batch, part=part),
            )
            reply = await ctx.reason(text, max_tokens=60 * self.batch)
            causes += parse_modes(reply, self.batch) or [reply.strip()]
        reply = await ctx.reason(
            GROUP.format(causes="\n".join(f"- {c}" for c in causes), limit=self.max_modes), max_tokens=300
        )
        # a reply without "- " lines is one mode, as a cause's is: discarding it lost what was found
        if not reply.strip():
            return group_failures(failing, self.max_modes)
        return parse_modes(reply, self.max_modes) or [reply.strip()]

    async def search(self, ctx: Search, start: Candidate) -> None:
        parts = instruction_parts(start.prompt)  # a program's prompts take turns, a round each
        seen = {(part, c.prompt.components().get(part)) for c in ctx.history for part in parts}
        for round_ in range(self.rounds):
            current = ctx.best
            part = parts[round_ % len(parts)]
            rows = sorted(
                ctx.rng.sample(list(ctx.train), min(self.sample, len(ctx.train))), key=lambda r: r.index
            )
            evaluation = await ctx.score(current.prompt, rows)
            if evaluation.failures:
                for mode in await self.modes(ctx, current, evaluation, part):
                    text = await fix(ctx, current.prompt.components()[part], mode)
                    origin = f"fix: {mode[:80]}" if part == "system" else f"fix {part}: {mode[:80]}"
                    if not part_ok(current.prompt, part, ctx.train.fields, text) or (part, text) in seen:
                        duplicate = (part, text) in seen
                        why = "a duplicate of a fix already tried" if duplicate else UNUSABLE
                        proposed = current.prompt.with_component(part, text) if duplicate else current.prompt
                        ctx.reject(proposed, parents=[current.id], origin=origin, reason=why)
                        continue
                    seen.add((part, text))
                    child = await ctx.evaluate(
                        current.prompt.with_component(part, text), parent=current.id, origin=origin
                    )
                    if child.score > current.score:  # keep the fix: the next one builds on it
                        current = child
            ctx.next_round()
