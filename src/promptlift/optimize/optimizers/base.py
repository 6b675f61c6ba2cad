"""The optimizer interface and the driver every optimizer runs under.

An optimizer implements one method, ``search(ctx, start)``: propose candidates and score them
through ``ctx``. The driver does the rest, once, for all of them: checks the prompt against the
data, scores the initial prompt on validation and test, reserves the final test scoring out of the
budget, runs the search until it returns or a stop rule or budget ends it, scores the best prompt
on test, and records it all.
"""

from __future__ import annotations

import abc
import contextlib
import time
from typing import Any, ClassVar

from promptlift.blocking import run_blocking
from promptlift.client import Client
from promptlift.client.config import Budget as ClientBudget
from promptlift.errors import BudgetExceeded, ConfigError
from promptlift.optimize.dataset import Splits
from promptlift.optimize.evaluation import Evaluator
from promptlift.optimize.metrics import Metric
from promptlift.optimize.program import Optimizable, Program
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Candidate, RunSettings, Search, StopRun
from promptlift.optimize.store import RunStore


class Optimizer(abc.ABC):
    name: ClassVar[str]

    @abc.abstractmethod
    async def search(self, ctx: Search, start: Candidate) -> None:
        """Propose and score candidates until done; raise nothing but StopRun (or let it pass)."""

    def params(self) -> dict[str, Any]:
        """The optimizer's own settings, as recorded with the run."""
        return {}

    def check(self, subject: Optimizable) -> None:
        """Refuse (``ConfigError``) a prompt or program this optimizer's settings cannot work on;
        called before any call is made."""
        return None

    def front(self, ctx: Search) -> dict[str, Any] | None:
        """The Pareto front a multi-objective or per-row Pareto search keeps, read from
        ``ctx.history`` when the search ends (also when a stop rule ended it); None for a search
        with one objective. ``{"kind": "per_row", "members": [{"id", "score", "rows_won"}, ...]}`` or
        ``{"kind": "objectives", "objectives": [...], "members": [{"id", "values", "on_front"}]}``."""
        return None

    def optimize(
        self,
        prompt: Optimizable,
        splits: Splits,
        metric: Metric,
        *,
        client: Client,
        settings: RunSettings | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> OptimizationResult:
        """Blocking form of ``aoptimize``: works from plain code and from inside a running event loop
        (a notebook cell), where the run gets a loop of its own on a worker thread."""
        return run_blocking(
            self.aoptimize(
                prompt, splits, metric, client=client, settings=settings, store=store, run_id=run_id
            )
        )

    async def aoptimize(
        self,
        prompt: Optimizable,
        splits: Splits,
        metric: Metric,
        *,
        client: Client,
        settings: RunSettings | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> OptimizationResult:
        """Optimize ``prompt`` on ``splits`` with ``metric``, every call through ``client``.
        ``settings`` (budget, stop rules, seed, ...) default to none; the models to the client's."""
        if not isinstance(prompt, Prompt | Program):
            raise ConfigError(
                f"optimize takes a Prompt or a Program, got {type(prompt).__name__}: "
                f"Prompt(user='...{{field}}...') or Program({{'name': Prompt(...)}}, fn)"
            )
        prompt.check(splits.train.fields)
        self.check(prompt)
        settings = (settings or RunSettings()).for_client(client)
        budget = settings.budget
        # Hard dollar and token caps over every call of the run: the client refuses a call before
        # sending it (calls and minutes are the run's own to count).
        capped = budget.max_cost_usd is not None or budget.max_tokens is not None
        scope = (
            client.budget_scope(
                ClientBudget(max_cost_usd=budget.max_cost_usd, max_tokens=budget.max_tokens), "run"
            )
            if capped
            else contextlib.nullcontext()
        )
        attrs = {
            "promptlift.optimizer": self.name,
            "promptlift.run.id": run_id,
            "promptlift.task_model": settings.task,
            "promptlift.reasoning_model": settings.reasoner,
            "promptlift.seed": settings.seed,
        }
        with scope, client.tracer.span("promptlift.run", attrs) as span:
            result = await self._run(prompt, splits, metric, client, settings, store, run_id)
            span.update(
                {
                    "promptlift.run.stop_reason": result.stop_reason,
                    "promptlift.run.candidates": len(result.history),
                    "promptlift.run.best_score": result.best.score,
                    "promptlift.run.best_test_score": result.best_test.mean,
                    "promptlift.cost_usd": result.task_spend.cost_usd + result.reasoning_spend.cost_usd,
                }
            )
            return result

    async def _run(
        self,
        prompt: Optimizable,
        splits: Splits,
        metric: Metric,
        client: Client,
        settings: RunSettings,
        store: RunStore | None,
        run_id: str | None,
    ) -> OptimizationResult:
        started = time.monotonic()
        alerts_before = len(client.alerts())
        evaluator = Evaluator(client, metric, settings.task)
        ctx = Search(client, evaluator, splits, settings, store, run_id)
        ctx.emit("start", optimizer=self.name, splits=splits)
        try:
            if isinstance(prompt, Program) and prompt.calls_per_row_declared is None and len(splits.train):
                # How many calls a row takes, measured on one train row (cached, and counted): the
                # budget plans every scoring with it.
                probe = await ctx.score(prompt, [splits.train.rows[0]])
                prompt = prompt.measured(probe.rows[0].steps)
            initial = await ctx.evaluate(prompt, origin="initial")
            initial_test = await ctx.evaluate_test(prompt)
        except StopRun as stop:
            calls = (len(splits.validation) + len(splits.test)) * evaluator.calls_per_row(prompt)
            raise BudgetExceeded(
                f"the budget does not cover scoring the starting prompt on the validation and test "
                f"splits ({calls} calls): {stop.reason}; raise "
                f"budget.max_calls / max_cost_usd or use smaller splits",
                limit="run",
            ) from None
        ctx.reserve(len(splits.test) * evaluator.calls_per_row(prompt))
        try:
            await self.search(ctx, initial)
            stop_reason = "completed"
        except StopRun as stop:
            stop_reason = stop.reason
        ctx.reserve(-len(splits.test) * evaluator.calls_per_row(prompt))
        best = ctx.best
        best_test = initial_test
        if best.prompt != prompt:
            try:
                best_test = await ctx.evaluate_test(best.prompt)
            except StopRun as stop:  # never overspend: report the starting prompt, and say why
                best = ctx.history[0]
                stop_reason += (
                    f"; the best candidate could not be test-scored within the budget ({stop.reason})"
                )
        result = OptimizationResult(
            run_id=run_id,
            optimizer=self.name,
            task_model=settings.task,
            reasoning_model=settings.reasoner,
            initial=initial,
            best=best,
            initial_test=initial_test,
            best_test=best_test,
            history=tuple(ctx.history),
            task_spend=ctx.ledger.task,
            reasoning_spend=ctx.ledger.reasoning,
            stop_reason=stop_reason,
            duration_s=time.monotonic() - started,
            alerts=tuple(client.alerts()[alerts_before:]),
            rejected=tuple(ctx.rejected),
            front=self.front(ctx),
            call_metrics=client.metrics_snapshot().to_dict(),
        )
        if store and run_id:
            store.finish_run(run_id, "finished", result.to_dict())
        ctx.emit("finish", result=result)
        return result
