"""Reflective Pareto search, in the spirit of GEPA (arXiv 2507.19457).

Instead of always improving the single best prompt, keep for every validation row the candidates
that do best on it (the per-row Pareto front) and sample parents from that front, weighted by how
many rows each one leads on. A prompt that is mediocre on average but the only one to get some
rows right keeps being explored, so the search does not collapse onto one local optimum.

One iteration: sample a parent from the front; run it on a small minibatch of training rows;
show the reasoning model the outputs and the metric's feedback and ask for a better instruction
(or input template: the parts take turns); score the child on the same minibatch and keep it only
if it does strictly better there; only then score it on the whole validation split. Optionally,
after a child is accepted, merge two front candidates that share an ancestor: per prompt part,
take whichever side changed it (the better side when both did).

The budget is in task (metric) calls: ``max_metric_calls`` bounds what the search itself spends,
beside the run's own budget. ``planned_proposals`` says how many proposals a budget allows; the
plan and the search both warn when that is fewer than three.

The pure functions at the top — fronts, dominance, parent sampling, acceptance, merge — hold the
algorithm and are tested alone.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from promptlift.errors import ConfigError
from promptlift.log import get_logger
from promptlift.optimize.dataset import Row
from promptlift.optimize.evaluation import Evaluation
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.optimizers.reflection import UNUSABLE, check_parts, expand_parts, part_ok, reflect
from promptlift.optimize.program import Optimizable, Program
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.run import Candidate, Search

log = get_logger("optimize.pareto")


# -- the algorithm as pure functions ---------------------------------------------------------------
def row_fronts(scores: Mapping[int, Sequence[float]]) -> list[frozenset[int]]:
    """For each row, the candidates (by id) with the best score on it. ``scores[id][row]``."""
    if not scores:
        return []
    n_rows = len(next(iter(scores.values())))
    fronts = []
    for row in range(n_rows):
        top = max(s[row] for s in scores.values())
        fronts.append(frozenset(cid for cid, s in scores.items() if s[row] == top))
    return fronts


def dominated(fronts: Sequence[frozenset[int]], order: Sequence[int]) -> set[int]:
    """Candidates to drop: c is dominated when another remaining candidate is on every front c is on.

    ``order`` lists the candidates weakest first; they are examined one at a time, so of two
    candidates on exactly the same fronts the weaker goes and the stronger stays.
    """
    on: dict[int, set[int]] = {c: {i for i, f in enumerate(fronts) if c in f} for c in order}
    removed: set[int] = set()
    for c in order:
        if not on[c]:
            removed.add(c)
            continue
        others = [d for d in order if d != c and d not in removed]
        if any(on[c] <= on[d] for d in others):
            removed.add(c)
    return removed


def parent_weights(scores: Mapping[int, Sequence[float]]) -> dict[int, int]:
    """Each non-dominated candidate with the number of rows it leads on (its sampling weight)."""
    fronts = row_fronts(scores)
    means = {c: sum(s) / max(1, len(s)) for c, s in scores.items()}
    order = sorted(scores, key=lambda c: (means[c], -c))  # weakest first; older wins ties
    drop = dominated(fronts, order)
    weights: dict[int, int] = {}
    for front in fronts:
        for c in front - drop:
            weights[c] = weights.get(c, 0) + 1
    return dict(sorted(weights.items()))


def sample_parent(weights: Mapping[int, int], rng: random.Random) -> int:
    """A candidate id drawn with probability proportional to its weight (ids in sorted order)."""
    ids = sorted(c for c, w in weights.items() if w > 0)
    if not ids:
        raise ValueError("no candidate to sample from")
    return rng.choices(ids, weights=[weights[c] for c in ids])[0]


def accepts(parent: Sequence[float], child: Sequence[float]) -> bool:
    """A child is worth a full validation only if it does strictly better on the same minibatch."""
    return sum(child) > sum(parent)


def lineage(cid: int, parents: Mapping[int, int | None]) -> list[int]:
    """``cid`` and its ancestors, nearest first."""
    out = [cid]
    while (p := parents.get(out[-1])) is not None and p not in out:
        out.append(p)
    return out


def common_ancestor(a: int, b: int, parents: Mapping[int, int | None]) -> int | None:
    """The nearest ancestor shared by ``a`` and ``b``, or None; None too when one descends from
    the other (merging a candidate with its own ancestor only undoes work)."""
    line_a, line_b = lineage(a, parents), lineage(b, parents)
    if a in line_b or b in line_a:
        return None
    shared = set(line_b)
    return next((c for c in line_a[1:] if c in shared), None)


def _pick(va: Any, vb: Any, v0: Any, prefer_a: bool) -> Any:
    if va == vb or vb == v0:
        return va
    if va == v0:
        return vb
    return va if prefer_a else vb


def _merge_one(ancestor: Prompt, a: Prompt, b: Prompt, prefer_a: bool) -> Prompt:
    ca, cb, c0 = a.components(), b.components(), ancestor.components()
    merged = a
    for name, va in ca.items():
        if name in cb and name in c0:
            merged = merged.with_component(name, _pick(va, cb[name], c0[name], prefer_a))
    return merged.replace(
        demos=_pick(a.demos, b.demos, ancestor.demos, prefer_a),
        params=_pick(dict(a.params), dict(b.params), dict(ancestor.params), prefer_a),
    )


def merge_prompts(
    ancestor: Optimizable, a: Optimizable, b: Optimizable, *, prefer_a: bool
) -> Optimizable | None:
    """Per part — each text component (instruction, templates, tool descriptions), the demos and
    the parameters, of each of a program's prompts — keep the side that changed it from
    ``ancestor``; when both did, the preferred one. None when the merge equals ``a`` or ``b``
    (nothing new to try): with one component changed per proposal, two children of one parent
    merge into something new only when they changed different components."""
    if isinstance(a, Program) and isinstance(b, Program) and isinstance(ancestor, Program):
        program = a
        for name in a.prompts:
            if name in b.prompts and name in ancestor.prompts:
                one = _merge_one(ancestor.prompts[name], a.prompts[name], b.prompts[name], prefer_a)
                program = program.with_prompt(name, one)
        merged: Optimizable = program
    elif isinstance(a, Prompt) and isinstance(b, Prompt) and isinstance(ancestor, Prompt):
        merged = _merge_one(ancestor, a, b, prefer_a)
    else:
        return None
    return None if merged in (a, b) else merged


def planned_proposals(budget_calls: int, minibatch: int, validation: int) -> int:
    """Proposals that fit ``budget_calls`` task calls when each is accepted (the dear case):
    parent and child on the minibatch, then the child on validation."""
    return max(0, budget_calls // (2 * minibatch + validation))


# -- the optimizer ---------------------------------------------------------------------------------
@dataclass
class Pareto(Optimizer):
    """``max_metric_calls``: task calls the search may spend (the driver's scoring excluded).
    ``parts``: which prompt parts reflection rewrites ("system", "user", "turns", "tools"; for a
    program, those of each of its prompts), one per proposal in turn, or with ``select: all`` every
    one in one proposal; a base reasoning model only ever rewrites the instructions."""

    max_metric_calls: int = 300
    minibatch: int = 3
    merge: bool = True
    max_merges: int = 3
    parts: list[str] = field(default_factory=lambda: ["system"])
    select: str = "round_robin"  # which parts a proposal rewrites: one in turn, or "all" at once
    name: ClassVar[str] = "pareto"

    def __post_init__(self) -> None:
        if self.minibatch < 1 or self.max_metric_calls < 1:
            raise ConfigError("pareto: `minibatch` and `max_metric_calls` must be at least 1")
        if self.select not in ("round_robin", "all"):
            raise ConfigError(f"pareto: `select` is round_robin or all, got {self.select!r}")
        check_parts("pareto", self.parts)

    def params(self) -> dict[str, Any]:
        return {
            "max_metric_calls": self.max_metric_calls,
            "minibatch": self.minibatch,
            "merge": self.merge,
            "max_merges": self.max_merges,
            "parts": list(self.parts),
            "select": self.select,
        }

    def check(self, subject: Optimizable) -> None:
        expand_parts(subject, self.parts)  # a `NAME.PART` naming no prompt of the program: refused

    def front(self, ctx: Search) -> dict[str, Any] | None:
        """The per-row front: each non-dominated candidate with the validation rows it leads on."""
        weights = parent_weights({c.id: c.evaluation.scores for c in ctx.history})
        members = [
            {"id": cid, "score": ctx.history[cid].score, "rows_won": won} for cid, won in weights.items()
        ]
        return {"kind": "per_row", "rows": len(ctx.validation), "members": members}

    async def search(self, ctx: Search, start: Candidate) -> None:
        state = _State(self, ctx, ctx.ledger.task.calls)
        affordable = planned_proposals(state.room(), self.minibatch, len(ctx.validation))
        if affordable < 3:
            message = (
                f"pareto: the budget allows only {affordable} full proposal(s); raise "
                f"max_metric_calls or the run's max_calls for a useful search"
            )
            log.warning(message)
            ctx.emit("warning", message=message)
        iterations = max(1, self.max_metric_calls // self.minibatch)
        for i in range(iterations):
            if state.room() < 2 * self.minibatch:
                return
            accepted = await state.propose(i)
            if accepted and self.merge and state.merges < self.max_merges:
                await state.try_merge()
            ctx.next_round()


def _rows_right(evaluation: Evaluation) -> str:
    """How an evaluation did on its rows, as a rejection reason says it: "1.0/3"."""
    return f"{sum(evaluation.scores):g}/{len(evaluation.scores)}"


class _State:
    """One search's working state: what was tried, merges made, the spend baseline."""

    def __init__(self, opt: Pareto, ctx: Search, baseline: int):
        self.opt, self.ctx, self.baseline = opt, ctx, baseline
        self.tried: set[str] = {c.prompt.key() for c in ctx.history}
        self.merged_pairs: set[tuple[int, int]] = set()
        self.merges = 0
        base = ctx.client.is_base_model(ctx.settings.reasoner)
        self.parts = ["system"] if base else list(opt.parts)

    def room(self) -> int:
        """Metric calls (rows scored) left: this search's own budget, within what the run has left.
        A row costs ``calls_per_row`` calls (two with an LLM judge)."""
        per_row = self.ctx.evaluator.calls_per_row(self.ctx.history[0].prompt)
        own = self.opt.max_metric_calls - (self.ctx.ledger.task.calls - self.baseline) // per_row
        run = self.ctx.calls_left()
        return own if run is None else min(own, run // per_row)

    def weights(self) -> dict[int, int]:
        return parent_weights({c.id: c.evaluation.scores for c in self.ctx.history})

    def minibatch(self, size: int) -> list[Row]:
        rows = self.ctx.rng.sample(list(self.ctx.train), min(size, len(self.ctx.train)))
        return sorted(rows, key=lambda r: r.index)  # a stable order: repeated batches hit the memo

    async def propose(self, iteration: int) -> bool:
        ctx = self.ctx
        parent = ctx.history[sample_parent(self.weights(), ctx.rng)]
        rows = self.minibatch(self.opt.minibatch)
        before = await ctx.score(parent.prompt, rows)
        if all(s >= 1.0 for s in before.scores):
            return False  # nothing to learn from a perfect minibatch; save the reasoning call
        parts = expand_parts(parent.prompt, self.parts)
        chosen = parts if self.opt.select == "all" else [parts[iteration % len(parts)]]
        child, changed = parent.prompt, list[str]()
        for part in chosen:  # each read on the parent's rows (a program's: that prompt's calls)
            text = await reflect(ctx, parent.prompt, part, before)
            if part_ok(parent.prompt, part, ctx.train.fields, text):
                child, changed = child.with_component(part, text), [*changed, part]
        origin = f"reflect {' + '.join(changed or chosen)}"
        if not changed or child.key() in self.tried:
            why = "a duplicate of a prompt already tried" if changed else UNUSABLE
            ctx.reject(child, parents=[parent.id], origin=origin, reason=why)
            return False
        self.tried.add(child.key())
        after = await ctx.score(child, rows)
        if not accepts(before.scores, after.scores):
            why = (
                f"not better than its parent on the minibatch ({_rows_right(after)} vs {_rows_right(before)})"
            )
            ctx.reject(child, parents=[parent.id], origin=origin, reason=why, evaluation=after)
            return False
        if self.room() < len(ctx.validation):
            why = "better on the minibatch, but the budget left cannot score it on validation"
            ctx.reject(child, parents=[parent.id], origin=origin, reason=why, evaluation=after)
            return False
        await ctx.evaluate(child, parent=parent.id, origin=origin)
        return True

    def merge_pair(self) -> tuple[Candidate, Candidate, Candidate] | None:
        history = self.ctx.history
        parents = {c.id: c.parent for c in history}
        front = sorted(self.weights())
        pairs = []
        for i, a in enumerate(front):
            for b in front[i + 1 :]:
                anc = common_ancestor(a, b, parents)
                if anc is not None and (a, b) not in self.merged_pairs:
                    pairs.append((a, b, anc))
        if not pairs:
            return None
        a, b, anc = self.ctx.rng.choice(pairs)
        self.merged_pairs.add((a, b))
        return history[a], history[b], history[anc]

    async def try_merge(self) -> None:
        picked = self.merge_pair()
        if picked is None:
            return
        a, b, anc = picked
        merged = merge_prompts(anc.prompt, a.prompt, b.prompt, prefer_a=a.score >= b.score)
        if merged is None or merged.key() in self.tried:
            return
        self.tried.add(merged.key())
        rows = self.minibatch(2 * self.opt.minibatch)
        if self.room() < 3 * len(rows) + len(self.ctx.validation):
            return
        sa, sb = await self.ctx.score(a.prompt, rows), await self.ctx.score(b.prompt, rows)
        sm = await self.ctx.score(merged, rows)
        better = a if a.score >= b.score else b
        sides = [better.id, (b if better is a else a).id]
        if sum(sm.scores) < max(sum(sa.scores), sum(sb.scores)):
            top = max(sa, sb, key=lambda e: sum(e.scores))
            why = f"worse than its better parent on the minibatch ({_rows_right(sm)} vs {_rows_right(top)})"
            self.ctx.reject(merged, parents=sides, origin=f"merge {a.id}+{b.id}", reason=why, evaluation=sm)
            return
        self.merges += 1
        await self.ctx.evaluate(merged, parent=better.id, origin=f"merge {a.id}+{b.id}", parents=sides)
