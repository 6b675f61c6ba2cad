"""The plan of a run, before it starts: rows, calls and cost, from the optimizers' own params.

    plan = make_plan(load_config("config.yaml"))
    print(plan.render())                 # what the CLI prints before a run
    print(plan_vs_actual(plan, result))  # and after it

Call counts come from each optimizer's parameters and the split sizes (one estimator per
optimizer, all in this module so the arithmetic can be read side by side), plus the driver's own
scoring: the initial prompt on validation and test, the best prompt on test. They assume every
proposal is new and the search runs to its end: duplicates, perfect minibatches and stop rules
make a real run cheaper, never dearer, and the run's ``max_calls`` caps the estimate.

The cost range prices those calls through the client layer (``client.catalog``, backed by
``promptlift.pricing``): the low end counts input tokens only, the high end adds ``max_tokens`` of
output to every call and 20% more calls. Tokens are estimated as the budget estimates them, and
prices are read from LiteLLM's map file, so planning never imports LiteLLM or a tokenizer.
Embedded ``local/`` models cost zero; a model with no known price makes the cost unknown.

A budget that cannot cover the starting prompt's scoring, one candidate and the final test scoring
is a plan ``problem``: the run would spend and learn nothing, so ``check()`` refuses it
(``UserError``) before any call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promptlift.client.catalog import ModelPrice, estimate_text_tokens, is_base_model, price_of
from promptlift.errors import ConfigError, UserError
from promptlift.optimize.batch_plan import BatchPlan, plan_batch
from promptlift.optimize.cache_plan import ROW_FIRST, CachePlan, plan_cache
from promptlift.optimize.config import RunConfig
from promptlift.optimize.dataset import Dataset, split
from promptlift.optimize.metrics import JUDGE_MAX_TOKENS, LLMJudge
from promptlift.optimize.optimizers import PRESETS, Optimizer, build_optimizer
from promptlift.optimize.optimizers.pareto import planned_proposals
from promptlift.optimize.program import Optimizable, Program, members
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.result import OptimizationResult, calls_split
from promptlift.optimize.run import Budget
from promptlift.types import Usage

PARETO_ACCEPTANCE = 0.25  # the share of reflective proposals assumed to pass the minibatch test
REASONING_INPUT_TOKENS = {"chat": 700, "base": 150}  # a reflection request / a completion scaffold
REASONING_OUTPUT_TOKENS = {"chat": 400, "base": 80}
JUDGE_INPUT_TOKENS = 60  # the judge's instructions, around the rubric, the row and the output


@dataclass(frozen=True)
class Sizes:
    train: int
    validation: int
    test: int


@dataclass(frozen=True)
class CallEstimate:
    task: int = 0
    reasoning: int = 0
    judge: int = 0  # an LLM-judge metric's calls: one per task call it scores

    @property
    def total(self) -> int:
        return self.task + self.reasoning + self.judge

    def __add__(self, other: CallEstimate) -> CallEstimate:
        return CallEstimate(
            self.task + other.task, self.reasoning + other.reasoning, self.judge + other.judge
        )

    def judged(self, per_row: int) -> CallEstimate:
        """With a metric that makes ``per_row`` calls for every answer it scores."""
        return CallEstimate(self.task, self.reasoning, self.task * per_row)

    def agent(self, steps: int) -> CallEstimate:
        """Task rows as model calls for an agent of at most ``steps`` calls per row (the judge still
        scores one answer per row)."""
        return CallEstimate(self.task * steps, self.reasoning, self.judge)


# -- one estimator per optimizer: the search's own calls, the driver's scoring excluded --------------
def _fewshot(o: Any, s: Sizes, base: bool) -> CallEstimate:
    return CallEstimate(task=o.trials * s.validation)


def _metaprompt(o: Any, s: Sizes, base: bool) -> CallEstimate:
    n = o.rounds * o.candidates_per_round
    minibatch = 0 if base else min(o.minibatch, s.train)  # only a chat reasoner reads failures
    return CallEstimate(task=n * (minibatch + s.validation), reasoning=n)


def _evolutionary(o: Any, s: Sizes, base: bool) -> CallEstimate:
    n = (o.population - 1) + o.generations * (o.population - o.elites)
    return CallEstimate(task=n * s.validation, reasoning=n)


def _pareto(o: Any, s: Sizes, base: bool) -> CallEstimate:
    per_proposal = 2 * min(o.minibatch, s.train) + PARETO_ACCEPTANCE * s.validation
    proposals = min(o.max_metric_calls // max(1, o.minibatch), round(o.max_metric_calls / per_proposal))
    return CallEstimate(task=o.max_metric_calls, reasoning=proposals)


def _failure_modes(o: Any, s: Sizes, base: bool) -> CallEstimate:
    sample = min(o.sample, s.train)
    analyses = 0 if base else math.ceil(sample / 2 / o.batch) + 1  # half the rows failing, then grouping
    return CallEstimate(
        task=o.rounds * (sample + o.max_modes * s.validation),
        reasoning=o.rounds * (analyses + o.max_modes),
    )


def _parameters(o: Any, s: Sizes, base: bool) -> CallEstimate:
    return CallEstimate(task=o.trials * s.validation)


ESTIMATORS: dict[str, Callable[[Any, Sizes, bool], CallEstimate]] = {
    "fewshot": _fewshot,
    "metaprompt": _metaprompt,
    "evolutionary": _evolutionary,
    "pareto": _pareto,
    "failure_modes": _failure_modes,
    "parameters": _parameters,
}


def driver_calls(sizes: Sizes) -> CallEstimate:
    """The scoring every run does around its search: initial on validation and test, best on test."""
    return CallEstimate(task=sizes.validation + 2 * sizes.test)


def refuse_budget_below_start(budget: Budget, validation: int, test: int, calls_per_row: int) -> None:
    """A ``ConfigError`` when ``max_calls`` cannot cover scoring the starting prompt on validation and
    test (``calls_per_row`` counts a judge's call): such a run could only fail after paying for part
    of it, so it is refused before any call, as ``eval`` refuses it."""
    needed = (validation + test) * calls_per_row
    if budget.max_calls is None or needed <= budget.max_calls:
        return
    judged = f", {calls_per_row} calls a row with the judge" if calls_per_row > 1 else ""
    raise ConfigError(
        f"optimize needs at least {needed} calls to score the starting prompt ({validation} validation + "
        f"{test} test rows{judged}) but budget.max_calls is {budget.max_calls:g}; raise max_calls or use "
        f"smaller splits"
    )


def estimate_calls(optimizer: Optimizer, sizes: Sizes, *, base_reasoning: bool) -> CallEstimate:
    """Driver and search calls of one run of ``optimizer`` (unknown optimizers: driver only)."""
    estimator = ESTIMATORS.get(optimizer.name)
    search = estimator(optimizer, sizes, base_reasoning) if estimator else CallEstimate()
    return driver_calls(sizes) + search


def cap(calls: CallEstimate, budget: Budget) -> CallEstimate:
    """``calls`` scaled down to the run's ``max_calls``, keeping the task/reasoning/judge mix."""
    if budget.max_calls is None or calls.total <= budget.max_calls:
        return calls
    share = budget.max_calls / calls.total
    task = math.floor(calls.task * share)
    judge = math.floor(calls.judge * share)
    return CallEstimate(task, min(calls.reasoning, int(budget.max_calls) - task - judge), judge)


# -- the plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagePlan:
    optimizer: str
    params: Mapping[str, Any]
    calls: CallEstimate  # driver and search, before the budget cap
    presets: Mapping[str, CallEstimate] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    task_model: str
    reasoning_model: str
    sizes: Sizes
    stages: tuple[StagePlan, ...]
    budget: Budget
    calls: CallEstimate  # all stages, capped by the budget
    cost_usd: tuple[float, float] | None  # low, high; None when a model's price is unknown
    paid: bool  # some configured model costs money
    judge_model: str | None = None  # an LLM-judge metric's model: one more call per scored answer
    steps: int = 1  # model calls per row at most: an agent's step limit (task calls count it)
    zero_priced: tuple[str, ...] = ()  # models not local/ whose price is $0 (a free server, `prices:`)
    problems: tuple[str, ...] = ()  # why the run cannot do its job (a budget too small for one candidate)
    program: str = ""  # a program's calls per row: "declared" (held) or "estimated" (measured at start)
    caching: CachePlan | None = None  # the task calls' shared prefix and the provider cache's saving
    prompt_warnings: tuple[str, ...] = ()  # about the prompt itself (a row field before the instruction)
    batch: BatchPlan | None = None  # the test scoring live and as provider batch jobs

    @property
    def warnings(self) -> tuple[str, ...]:
        return (*self.prompt_warnings, *(w for s in self.stages for w in s.warnings))

    def render(self) -> str:
        s = self.sizes
        names = " → ".join(st.optimizer for st in self.stages)
        lines = [
            f"plan: {names} on {self.task_model} (reasoning: {self.reasoning_model})",
            f"  rows: train {s.train} · validation {s.validation} · test {s.test}",
        ]
        for i, st in enumerate(self.stages, 1):
            judged = f" + {st.calls.judge} judge" if st.calls.judge else ""
            lines.append(
                f"  stage {i} {st.optimizer}: ~{st.calls.task} task + {st.calls.reasoning} reasoning"
                f"{judged} calls"
            )
            if st.presets:
                shown = " · ".join(f"{p} ~{c.total}" for p, c in st.presets.items())
                lines.append(f"    presets (calls): {shown}")
        if self.program == "declared":
            lines.append(
                f"  program: at most {self.steps} model calls per row (calls_per_row, held); task calls "
                f"above count that bound"
            )
        elif self.program:
            lines.append(
                f"  program: ~{self.steps} model calls per row, estimated as one per prompt; the run "
                f"measures it on one train row first (declare `calls_per_row` to hold a bound)"
            )
        elif self.steps > 1:
            lines.append(
                f"  agent: at most {self.steps} model calls per row (max_steps); task calls above count "
                f"that bound, so a loop that answers sooner costs less"
            )
        if self.judge_model:
            lines.append(
                f"  judge: ~{self.calls.judge} calls on {self.judge_model} (one per scored answer; the "
                f"result counts them with the task calls)"
            )
        capped = f" (capped by max_calls {self.budget.max_calls})" if self._capped() else ""
        lines.append(f"  total: ~{self.calls.total} calls{capped} · cost {self.cost_text()}")
        if self.caching is not None:
            lines.append(self.caching.render())
            if self.caching.saved_usd and self.cost_usd:
                low, high = self.cost_usd  # the range's own margins on the saving too
                saved = self.caching.saved_usd
                lines.append(f"  cost with caching ${low - 0.8 * saved:.4f}–${high - 1.2 * saved:.4f}")
        if self.batch is not None and self.cost_usd:
            lines.append(self.batch.render())
            low, high = self.cost_usd  # priced with batch scoring when it is on: show the other way
            shift = self.batch.saved_usd if self.batch.on else -self.batch.saved_usd
            label = "cost without batch scoring" if self.batch.on else "cost with batch scoring"
            lines.append(f"  {label} ${max(0.0, low + shift):.4f}–${max(0.0, high + shift):.4f}")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  error: {p}" for p in self.problems]
        return "\n".join(lines)

    def check(self) -> None:
        """Refuse a run that cannot do its job (``UserError``: exit 2), before it spends anything."""
        if self.problems:
            raise UserError(self.problems[0])

    def _capped(self) -> bool:
        raw = sum((st.calls for st in self.stages), CallEstimate())
        return raw.total > self.calls.total

    def cost_text(self) -> str:
        if self.cost_usd is None:
            return "unknown (no price known for a configured model)"
        low, high = self.cost_usd
        if high > 0:
            return f"${low:.4f}–${high:.4f}"
        if self.zero_priced:
            return f"$0 ({', '.join(self.zero_priced)} priced at $0)"
        return "$0 (local models)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_model": self.task_model,
            "reasoning_model": self.reasoning_model,
            "sizes": vars(self.sizes),
            "stages": [
                {
                    "optimizer": st.optimizer,
                    "params": dict(st.params),
                    "task_calls": st.calls.task,
                    "reasoning_calls": st.calls.reasoning,
                    "judge_calls": st.calls.judge,
                    "presets": {p: c.total for p, c in st.presets.items()},
                    "warnings": list(st.warnings),
                }
                for st in self.stages
            ],
            "task_calls": self.calls.task,
            "reasoning_calls": self.calls.reasoning,
            "judge_calls": self.calls.judge,
            "cost_usd": list(self.cost_usd) if self.cost_usd else None,
            "paid": self.paid,
            "problems": list(self.problems),
            "steps_per_row": self.steps,
            "program_calls_per_row": self.program or None,
            "prompt_cache": self.caching.to_dict() if self.caching else None,
            "batch_test_scoring": self.batch.to_dict() if self.batch else None,
            "warnings": list(self.warnings),
        }


def _tokens(text: str) -> int:
    return estimate_text_tokens(text)


def task_tokens(prompt: Prompt, row: Mapping[str, Any], demos: int = 0) -> int:
    """About how many input tokens one task call takes (``demos`` extra worked examples)."""
    messages = prompt.messages(row)
    user = _tokens(messages[-1].text) + 4
    return sum(_tokens(m.text) + 4 for m in messages) + demos * 2 * user


class _Blank(dict[str, Any]):
    """A row for a program's prompt: the fields the program fills are estimated as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def call_tokens(subject: Optimizable, row: Mapping[str, Any], demos: int = 0) -> int:
    """About how many input tokens one task call takes, its tools' schemas included; for a program,
    its largest prompt's (the fields the program fills counted as the row's own, or empty)."""
    return max(task_tokens(p, _Blank(row), demos) + tool_tokens(p) for p in members(subject).values())


def answer_tokens(subject: Optimizable) -> int:
    """The most output tokens one task call may bring (``max_tokens``, 256 when unset, times ``n``)."""
    return max(int(p.params.get("max_tokens") or 256) * p.samples for p in members(subject).values())


def tool_tokens(prompt: Prompt) -> int:
    """About how many input tokens the tools' schemas (and an output schema) add to every call."""
    schema = prompt.output_schema
    extra = _tokens(json.dumps(schema.response_format())) if schema is not None else 0
    return sum(_tokens(json.dumps(t.spec())) for t in prompt.tools) + extra


def _pareto_warning(optimizer: Optimizer, sizes: Sizes, budget: Budget, per_row: int = 0) -> str | None:
    """``per_row``: calls a metric makes per scored row (1 for an LLM judge); rows, not calls, are
    what ``max_metric_calls`` counts."""
    if not isinstance(optimizer.params().get("max_metric_calls"), int):
        return None
    room = optimizer.params()["max_metric_calls"]
    if budget.max_calls is not None:
        room = min(room, (int(budget.max_calls) - driver_calls(sizes).total * (1 + per_row)) // (1 + per_row))
    n = planned_proposals(room, optimizer.params()["minibatch"], sizes.validation)
    if n >= 3:
        return None
    return (
        f"{optimizer.name}: the budget allows only {n} full proposal(s); raise max_metric_calls or max_calls"
    )


def _stage(
    config: RunConfig, spec_name: str, params: Mapping[str, Any], sizes: Sizes, base: bool, per_row: int
) -> StagePlan:
    field_name = config.metric.get("field")
    optimizer = build_optimizer(spec_name, params, answer_field=field_name, base_dir=config.path.parent)
    presets = {
        p: estimate_calls(
            build_optimizer(spec_name, {"preset": p}, answer_field=field_name), sizes, base_reasoning=base
        ).judged(per_row)
        for p in PRESETS.get(spec_name, {})
    }
    warning = _pareto_warning(optimizer, sizes, config.budget, per_row)
    if optimizer.name not in ESTIMATORS:
        warning = (
            f"{spec_name}: the plan cannot estimate this optimizer's own calls (only the scoring of the "
            "start and the best prompt is counted); the budget still caps the run"
        )
    steps = config.prompt.calls_per_row
    calls = estimate_calls(optimizer, sizes, base_reasoning=base) + _program_rows(
        config.prompt, optimizer, sizes
    )
    return StagePlan(
        optimizer=spec_name,
        params=optimizer.params(),
        calls=calls.judged(per_row).agent(steps),
        presets={p: c.agent(steps) for p, c in presets.items()},
        warnings=(warning,) if warning else (),
    )


def make_plan(
    config: RunConfig,
    *,
    prices: Mapping[str, Any] | None = None,
    is_base: Callable[[str], bool] | None = None,
) -> Plan:
    """The plan of ``config``; reads the dataset (to size the splits) and sends nothing. ``prices``
    add to (and override) the config's own ``prices:``."""
    prices = {**config.prices, **(prices or {})}

    base_of = is_base or is_base_model
    dataset = Dataset.load(config.dataset_path)
    s = config.split
    parts = split(dataset, float(s["train"]), float(s["validation"]), float(s["test"]), int(s.get("seed", 0)))
    sizes = Sizes(len(parts.train), len(parts.validation), len(parts.test))
    base = base_of(config.reasoning_model)
    judge = (
        str(config.metric.get("model") or config.model) if config.metric.get("type") == "llm_judge" else None
    )
    per_row = LLMJudge.calls_per_row * config.prompt.samples if judge else 0  # a judge call per sample
    steps = config.prompt.calls_per_row
    refuse_budget_below_start(config.budget, sizes.validation, sizes.test, steps + per_row)
    stages = tuple(_stage(config, spec.name, spec.params, sizes, base, per_row) for spec in config.optimizers)
    calls = cap(sum((st.calls for st in stages), CallEstimate()), config.budget)
    demos = max((int(st.params.get("max_demos", 0)) for st in stages), default=0)
    row = parts.train[0].fields
    t_price = price_of(config.model, prices)
    r_price = price_of(config.reasoning_model, prices)
    j_price = price_of(judge, prices) if judge else t_price
    per_call: CallCosts | None = None
    task_in = 0  # unpriced: the cache estimate names the prefix alone
    if t_price is not None and r_price is not None and j_price is not None:
        task_in = call_tokens(config.prompt, row, demos // 2)
        per_call = _per_call_costs(config, row, task_in, base, (t_price, r_price, j_price))
    caching = plan_cache(
        config.prompt,
        config.model,
        t_price,
        row,
        extra_demos=demos // 2,
        task_input=task_in,
        task_calls=calls.task,
        rows_per_evaluation=sizes.validation,
    )
    row_first = isinstance(config.prompt, Prompt) and config.prompt.row_before_instruction
    cost = None
    batch = plan_batch(
        config.prompt,
        config.model,
        prices,
        on=config.batch_test is not None,
        test_rows=sizes.test,
        input_tokens=task_in,
        output_tokens=answer_tokens(config.prompt),
        input_share=_cached_share(caching) if config.prompt_cache else 1.0,
    )
    if per_call is not None:
        cost = (0.8 * per_call.low(calls), 1.2 * per_call.high(calls))
        if batch is not None and batch.on:  # the test scoring at the batch rate
            cost = (max(0.0, cost[0] - batch.saved_usd), max(0.0, cost[1] - batch.saved_usd))
    models = [config.model, config.reasoning_model, *([judge] if judge else [])]
    priced = zip(models, (t_price, r_price, j_price), strict=False)
    zero = tuple(dict.fromkeys(m for m, p in priced if p and p.free and not m.startswith("local/")))
    paid = any(p is not None and not p.free for p in (t_price, r_price, j_price))
    problems = _problems(config.budget, sizes, stages, per_row, per_call, steps)
    return Plan(
        config.model,
        config.reasoning_model,
        sizes,
        stages,
        config.budget,
        calls,
        cost,
        paid,
        judge,
        zero_priced=zero,
        problems=problems,
        steps=steps,
        program=_program_kind(config.prompt),
        caching=caching,
        prompt_warnings=(ROW_FIRST,) if row_first else (),
        batch=batch,
    )


def _cached_share(caching: CachePlan | None) -> float:
    """The part of the task calls' input cost the prompt cache leaves to pay (1: it saves nothing)."""
    if caching is None or not caching.qualifies or not caching.full_usd:
        return 1.0
    return max(0.0, (caching.full_usd - caching.saved_usd) / caching.full_usd)


def _program_rows(subject: Optimizable, optimizer: Any, sizes: Sizes) -> CallEstimate:
    """A program's extra rows: the probe row that measures its calls (when not declared), and
    fewshot's bootstrap, which runs the program on train rows to collect demos."""
    if not isinstance(subject, Program):
        return CallEstimate()
    probe = 0 if subject.calls_per_row_declared is not None else 1
    bootstrap = (
        min(int(getattr(optimizer, "bootstrap_rows", 0)), sizes.train) if optimizer.name == "fewshot" else 0
    )
    return CallEstimate(task=probe + bootstrap)


def _program_kind(subject: Optimizable) -> str:
    if not isinstance(subject, Program):
        return ""
    return "declared" if subject.calls_per_row_declared is not None else "estimated"


@dataclass(frozen=True)
class CallCosts:
    """USD of one task, judge and reasoning call: input only (low) and with a full answer (high)."""

    task: tuple[float, float]
    judge: tuple[float, float]
    reasoning: tuple[float, float]

    def low(self, calls: CallEstimate) -> float:
        return calls.task * self.task[0] + calls.judge * self.judge[0] + calls.reasoning * self.reasoning[0]

    def high(self, calls: CallEstimate) -> float:
        return calls.task * self.task[1] + calls.judge * self.judge[1] + calls.reasoning * self.reasoning[1]


def _per_call_costs(
    config: RunConfig, row: Mapping[str, Any], task_in: int, base: bool, prices: tuple[ModelPrice, ...]
) -> CallCosts:
    t_price, r_price, j_price = prices
    kind = "base" if base else "chat"
    task_out = answer_tokens(config.prompt)  # a call with `n` brings n answers
    answer = task_out // max(1, config.prompt.samples)
    # The judge reads its instructions, the rubric, the row's input and expected answer and the
    # output (not the task prompt), and replies in 64 tokens at most.
    shown = [str(config.metric.get("rubric", ""))]
    shown += [
        str(row.get(str(config.metric[k]), "")) for k in ("input_field", "field") if config.metric.get(k)
    ]
    judge_in = JUDGE_INPUT_TOKENS + sum(_tokens(text) for text in shown) + answer  # one answer each

    def priced(price: ModelPrice, tokens_in: int, tokens_out: int) -> tuple[float, float]:
        return price.cost(Usage(tokens_in, 0)), price.cost(Usage(tokens_in, tokens_out))  # the one formula

    return CallCosts(
        task=priced(t_price, task_in, task_out),
        judge=priced(j_price, judge_in, JUDGE_MAX_TOKENS),
        reasoning=priced(r_price, REASONING_INPUT_TOKENS[kind], REASONING_OUTPUT_TOKENS[kind]),
    )


def smallest_useful_run(
    sizes: Sizes, stages: tuple[StagePlan, ...], per_row: int, steps: int = 1
) -> CallEstimate:
    """The fewest calls a run needs to learn anything: the starting prompt on validation and test,
    one candidate on validation (after the reasoning call that proposes it, for optimizers that
    make one), and the best prompt on test."""
    rows = 2 * (sizes.validation + sizes.test)
    reasoning = 1 if stages and stages[0].calls.reasoning > 0 else 0
    return CallEstimate(task=rows * steps, reasoning=reasoning, judge=rows * per_row)


def _problems(
    budget: Budget,
    sizes: Sizes,
    stages: tuple[StagePlan, ...],
    per_row: int,
    per_call: CallCosts | None,
    steps: int = 1,
) -> tuple[str, ...]:
    need = smallest_useful_run(sizes, stages, per_row, steps)
    what = (
        f"scoring the starting prompt on validation and test ({sizes.validation} + {sizes.test} rows), "
        f"one candidate on validation and the best on test"
    )
    found = []
    if budget.max_calls is not None and budget.max_calls < need.total:
        found.append(
            f"the budget is too small for one candidate: {what} take {need.total} calls, and max_calls is "
            f"{budget.max_calls}; raise budget.max_calls to at least {need.total}, or use smaller splits"
        )
    if budget.max_cost_usd is not None and per_call is not None:
        # the plan's own low end: input tokens alone, an agent answering at its first call
        least = 0.8 * per_call.low(smallest_useful_run(sizes, stages, per_row))
        if least > budget.max_cost_usd:
            found.append(
                f"the budget is too small for one candidate: {what} cost at least ${least:.4f}, and "
                f"max_cost_usd is ${budget.max_cost_usd:g}; raise budget.max_cost_usd, or use smaller splits"
            )
    return tuple(found)


def needs_confirmation(plan: Plan, threshold_usd: float) -> bool:
    """Paid models and a high estimate (or an unknown one, with paid models) above the threshold."""
    if not plan.paid:
        return False
    return plan.cost_usd is None or plan.cost_usd[1] > threshold_usd


def confirm(
    plan: Plan, *, threshold_usd: float, yes: bool, interactive: bool, ask: Callable[[str], str]
) -> bool:
    """True to go ahead. Asks only when needed; with no terminal to ask on, refuses (``UserError``,
    exit 2) and says how to go ahead."""
    if yes or not needs_confirmation(plan, threshold_usd):
        return True
    if not interactive:
        raise UserError(
            f"this run may cost {plan.cost_text()} (over ${threshold_usd:g}) and there is no terminal "
            f"to confirm on; pass --yes to run it, or lower the budget"
        )
    answer = ask(f"This run may cost {plan.cost_text()}. Run it? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def plan_vs_actual(plan: Plan, result: OptimizationResult) -> str:
    """One line per measure: what the plan said, what the run spent."""
    # calls as the plan and the progress line count them: sent and answered by the cache alike
    task, reasoning = result.task_spend.work_calls, result.reasoning_spend.work_calls
    spend = result.spend
    split = calls_split(spend.work_calls, spend.cached_calls)
    lines = [
        "plan vs actual:",
        f"  calls      ~{plan.calls.total} → {spend.work_calls} ({split})",
        # the result counts an LLM judge's calls with the task calls
        f"  task       ~{plan.calls.task + plan.calls.judge} → {task}",
        f"  reasoning  ~{plan.calls.reasoning} → {reasoning}",
        f"  cost       {plan.cost_text()} → ${result.spend.cost_usd:.4f}",
        f"  time       {result.duration_s / 60:.1f} min",
    ]
    return "\n".join(lines)
