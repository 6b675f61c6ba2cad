"""Evolutionary search: a population of instructions bred by the reasoning model.

Generation 0 is the initial prompt plus mutations of it. Each generation keeps the ``elites``
best unchanged and breeds the rest: a mutation (the reasoning model rewrites one parent's
instruction in a direction drawn at random — shorter, more explicit about the format, ...) or,
with probability ``crossover_rate``, a crossover (it combines two parents' instructions).
Parents are picked by tournaments of two.

Diversity keeps the population from collapsing onto one phrasing: a child whose words are too
close to a member's (Jaccard distance of word sets below ``min_distance``) is discarded before it
is scored, and survivors are ranked with a bonus for being unlike the others
(``diversity_weight`` × mean distance to the rest).

``parts`` names what mutations rewrite: the instruction ("system", the default), and for an agent
"tools" (each tool's description) — each mutation picks one at random; crossovers combine
instructions.

Multi-objective mode: with ``objectives: [score, length]`` (or ``cost``, or ``steps``) survivors are
ranked first by Pareto rank on score against prompt length in tokens (or cost per row, or model
calls per row: an agent's steps), so short, cheap or quick prompts that score nearly as well
survive; the run's best is still the highest score, and the final front is reported as a ``front``
event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from promptlift.errors import ConfigError
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.optimizers.metaprompt import instruction_parts
from promptlift.optimize.optimizers.reflection import (
    UNUSABLE,
    check_parts,
    combine,
    expand_parts,
    mutate,
    part_ok,
)
from promptlift.optimize.program import Optimizable, Program
from promptlift.optimize.prompt import fill
from promptlift.optimize.run import Candidate, Search

OBJECTIVES = ("score", "length", "cost", "steps")


# -- pure functions --------------------------------------------------------------------------------
def words(text: str) -> frozenset[str]:
    return frozenset(w.strip(".,;:!?\"'()").lower() for w in text.split()) - {""}


def distance(a: str, b: str) -> float:
    """Jaccard distance of the word sets: 0 for the same words, 1 for none in common."""
    wa, wb = words(a), words(b)
    union = wa | wb
    return 0.0 if not union else 1.0 - len(wa & wb) / len(union)


def diversity(texts: Sequence[str]) -> float:
    """Mean pairwise distance of a population (0 when it has collapsed to one phrasing)."""
    pairs = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1 :]]
    return sum(distance(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0


def pareto_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting (every coordinate maximized): 0 for the front, 1 for the next, ..."""
    ranks = [-1] * len(points)
    rank, left = 0, set(range(len(points)))

    def dominates(p: Sequence[float], q: Sequence[float]) -> bool:
        return all(x >= y for x, y in zip(p, q, strict=True)) and any(
            x > y for x, y in zip(p, q, strict=True)
        )

    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


@dataclass(frozen=True)
class Member:
    id: int
    objectives: tuple[float, ...]  # maximized; objectives[0] is the score
    text: str


def select_survivors(members: Sequence[Member], size: int, elites: int, weight: float) -> list[int]:
    """Ids of the ``size`` members to keep: the ``elites`` best scores first, then by Pareto rank,
    then by score plus ``weight`` × novelty (mean distance to the others), then oldest first."""
    if len(members) <= size:
        return [m.id for m in members]
    by_score = sorted(members, key=lambda m: (-m.objectives[0], m.id))
    kept = [m.id for m in by_score[:elites]]
    ranks = dict(zip((m.id for m in members), pareto_ranks([m.objectives for m in members]), strict=True))

    def novelty(m: Member) -> float:
        others = [o.text for o in members if o.id != m.id]
        return sum(distance(m.text, t) for t in others) / len(others)

    rest = [m for m in members if m.id not in kept]
    rest.sort(key=lambda m: (ranks[m.id], -(m.objectives[0] + weight * novelty(m)), m.id))
    return kept + [m.id for m in rest[: size - len(kept)]]


def prompt_tokens(prompt: Optimizable) -> int:
    """About how many tokens the fixed part of a prompt (instruction and demos) takes; a program's,
    all its prompts'."""
    if isinstance(prompt, Program):
        return sum(prompt_tokens(p) for p in prompt.prompts.values())
    demos = " ".join(fill(prompt.user, d.fields) + " " + d.answer for d in prompt.demos)
    return math.ceil(len(prompt.system + " " + demos) / 4)


# -- the optimizer ---------------------------------------------------------------------------------
@dataclass
class Evolutionary(Optimizer):
    population: int = 6
    generations: int = 4
    elites: int = 2
    crossover_rate: float = 0.3
    min_distance: float = 0.15
    diversity_weight: float = 0.1
    objectives: list[str] = field(default_factory=lambda: ["score"])
    parts: list[str] = field(default_factory=lambda: ["system"])
    name: ClassVar[str] = "evolutionary"

    def __post_init__(self) -> None:
        if self.generations < 1 or not 0 <= self.crossover_rate <= 1:
            raise ConfigError("evolutionary: needs generations >= 1 and 0 <= crossover_rate <= 1")
        if self.population < 2 or not 0 <= self.elites < self.population:
            raise ConfigError("evolutionary: needs population >= 2 and 0 <= elites < population")
        if not self.objectives or self.objectives[0] != "score" or set(self.objectives) - set(OBJECTIVES):
            raise ConfigError(
                f"evolutionary: `objectives` must start with 'score' and may add 'length', 'cost' or "
                f"'steps', got {self.objectives!r}"
            )
        check_parts("evolutionary", self.parts)

    def params(self) -> dict[str, Any]:
        return {
            "population": self.population,
            "generations": self.generations,
            "elites": self.elites,
            "crossover_rate": self.crossover_rate,
            "min_distance": self.min_distance,
            "diversity_weight": self.diversity_weight,
            "objectives": list(self.objectives),
            "parts": list(self.parts),
        }

    def member(self, c: Candidate) -> Member:
        values = [c.score]
        for name in self.objectives[1:]:
            rows = max(1, len(c.evaluation.rows))
            if name == "length":
                values.append(-float(prompt_tokens(c.prompt)))
            elif name == "steps":  # model calls per row: an agent's loop length
                values.append(-sum(r.steps for r in c.evaluation.rows) / rows)
            else:  # cost per row (an agent's row is several calls); tokens per row when calls are free
                spend = c.evaluation.spend
                values.append(-(spend.work_cost_usd or spend.tokens) / rows)
        return Member(c.id, tuple(values), instruction_text(c.prompt))

    def check(self, subject: Optimizable) -> None:
        expand_parts(subject, self.parts)  # a `NAME.PART` naming no prompt of the program: refused

    def front(self, ctx: Search) -> dict[str, Any] | None:
        """With several objectives: every candidate's values (as measured: length in tokens, cost or
        steps per row) and whether it is on the front (Pareto rank 0)."""
        if len(self.objectives) < 2 or not ctx.history:
            return None
        members = [self.member(c) for c in ctx.history]
        ranks = pareto_ranks([m.objectives for m in members])
        listed = [
            {"id": m.id, "values": [m.objectives[0], *(-v for v in m.objectives[1:])], "on_front": r == 0}
            for m, r in zip(members, ranks, strict=True)
        ]
        return {"kind": "objectives", "objectives": list(self.objectives), "members": listed}

    async def search(self, ctx: Search, start: Candidate) -> None:
        population = [start]
        population += await self.breed(ctx, population, self.population - 1, crossover=False)
        ctx.next_round()
        for generation in range(1, self.generations + 1):
            children = await self.breed(ctx, population, self.population - self.elites, crossover=True)
            pool = {c.id: c for c in [*population, *children]}
            keep = select_survivors(
                [self.member(c) for c in pool.values()],
                self.population,
                self.elites,
                self.diversity_weight,
            )
            population = [pool[i] for i in keep]
            texts = [instruction_text(c.prompt) for c in population]
            ctx.emit("population", generation=generation, diversity=diversity(texts), ids=keep)
            if len(self.objectives) > 1:
                members = [self.member(c) for c in ctx.history]
                ranks = pareto_ranks([m.objectives for m in members])
                ctx.emit("front", ids=[m.id for m, r in zip(members, ranks, strict=True) if r == 0])
            ctx.next_round()

    def tournament(self, ctx: Search, population: Sequence[Candidate]) -> Candidate:
        a, b = ctx.rng.choice(population), ctx.rng.choice(population)
        return a if (a.score, -a.id) >= (b.score, -b.id) else b

    async def breed(
        self, ctx: Search, population: list[Candidate], n: int, *, crossover: bool
    ) -> list[Candidate]:
        """Up to ``n`` new scored children; gives up after ``2n`` attempts (duplicates, collapse)."""
        children: list[Candidate] = []
        seen: dict[str, list[str]] = {}
        for c in ctx.history:
            for name, text in c.prompt.components().items():
                seen.setdefault(name, []).append(text)
        for _ in range(2 * n):
            if len(children) >= n:
                break
            parent = self.tournament(ctx, population)
            # crossovers combine instructions: those `parts` names (one prompt's, with NAME.system), else all
            named = expand_parts(parent.prompt, self.parts)
            instructions = [p for p in instruction_parts(parent.prompt) if p in named]
            instructions = instructions or instruction_parts(parent.prompt)
            part = instructions[0]
            if crossover and len(population) >= 2 and ctx.rng.random() < self.crossover_rate:
                other = self.tournament(ctx, [c for c in population if c.id != parent.id])
                if len(instructions) > 1:  # a program: the instructions of one of its prompts
                    part = ctx.rng.choice(instructions)
                mine, theirs = parent.prompt.components()[part], other.prompt.components()[part]
                text = await combine(ctx, mine, theirs)
                origin = f"crossover {parent.id}x{other.id}"
                sides = [parent.id, other.id]
            else:
                sides = [parent.id]
                parts = expand_parts(parent.prompt, self.parts)
                part = (
                    ctx.rng.choice(parts) if len(parts) > 1 else parts[0]
                )  # one part: the seed's draws stay as before
                current = parent.prompt.components()[part]
                text = await mutate(ctx, current)
                origin = "mutation" if part == "system" else f"mutation {part}"
            if not part_ok(parent.prompt, part, ctx.train.fields, text):
                ctx.reject(parent.prompt, parents=sides, origin=origin, reason=UNUSABLE)
                continue
            proposed = parent.prompt.with_component(part, text)
            if any(distance(text, s) < self.min_distance for s in seen.get(part, ())):
                # too close to a text already tried: keep the population diverse
                why = f"too close to a text already tried (word distance under {self.min_distance:g})"
                ctx.reject(proposed, parents=sides, origin=origin, reason=why)
                continue
            seen.setdefault(part, []).append(text)
            child = await ctx.evaluate(proposed, parent=parent.id, origin=origin, parents=sides)
            children.append(child)
        return children


def instruction_text(subject: Optimizable) -> str:
    """The instruction(s) a diversity measure compares: a program's, one per line."""
    return "\n".join(subject.components()[part] for part in instruction_parts(subject))
