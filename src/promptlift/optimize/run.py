"""The machinery every optimizer shares: a search context, its budget, history and replay log.

An optimizer sees a ``Search``: the train and validation splits (never the test split), a seeded
random generator, and three ways to spend — ``evaluate`` (score a candidate on validation and
record it), ``score`` (score rows without recording a candidate, e.g. a minibatch) and ``reason``
(a call to the reasoning model). Each checks the budget before sending anything and raises
``StopRun`` instead of crossing it; the driver turns that into the run's stop reason.

Every expensive step is memoized under a key of its inputs, in memory and in the run store: a
duplicate candidate costs nothing, and a resumed run replays the optimizer from its seed, reading
each finished step back. The ledger charges a replayed step what it cost the first time, so a
resumed run makes exactly the decisions an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from promptlift.client import Client
from promptlift.client.alerts import pace
from promptlift.client.config import Budget as Budget  # the one Budget, re-exported: a run's limits
from promptlift.errors import BudgetExceeded
from promptlift.optimize.dataset import Dataset, Row, Splits
from promptlift.optimize.evaluation import BatchScoring, Evaluation, Evaluator, RowResult, Spend
from promptlift.optimize.program import Optimizable
from promptlift.optimize.stats import Uncertainty, compare
from promptlift.optimize.stop import Never, Progress, StopRule
from promptlift.optimize.store import RunStore
from promptlift.tracing import Span
from promptlift.types import Completion, Message, messages_from


@dataclass(frozen=True)
class Acceptance:
    """When a new candidate replaces the incumbent best.

    ``"best"``: whenever its validation score is higher (ties keep the earlier candidate).
    ``"significant"``: only when its paired gain over the incumbent on the same validation rows is
    significant at ``alpha`` (exact McNemar for 0/1 scores, paired bootstrap otherwise), so a
    candidate that wins by a row or two does not move the search. Each comparison is tested at
    ``alpha`` on its own; over many candidates a lucky one can still get through, which is why the
    final word is the paired test on the untouched test split.
    """

    rule: Literal["best", "significant"] = "best"
    alpha: float = 0.05
    resamples: int = 2000  # for the paired bootstrap of scores that are not 0/1

    def improves(self, incumbent: Candidate, candidate: Candidate, seed: int = 0) -> bool:
        if self.rule == "best":
            return candidate.score > incumbent.score
        u = Uncertainty(level=1.0 - self.alpha, resamples=self.resamples, seed=seed)
        return compare(incumbent.evaluation.scores, candidate.evaluation.scores, u).verdict == "significant"


@dataclass(frozen=True)
class Candidate:
    id: int
    prompt: Optimizable  # a prompt, or a program of several
    evaluation: Evaluation  # on the validation split
    parent: int | None = None
    round: int = 0
    origin: str = ""
    spend: Spend = field(default_factory=Spend)  # what scoring this candidate cost
    parents: tuple[int, ...] = ()  # ``parent`` and, for a merge or crossover, the other side
    proposal: tuple[str, ...] = ()  # the reasoning model's replies that proposed it

    @property
    def score(self) -> float:
        return self.evaluation.mean


@dataclass(frozen=True)
class Rejected:
    """A proposal the search dropped before scoring it on validation (worse than its parent on a
    minibatch, an unusable or duplicate text, no budget left), and why. ``id`` counts rejections
    (its own sequence, not a candidate id); ``evaluation`` is on the rows it was scored on, if any."""

    id: int
    prompt: Optimizable
    parents: tuple[int, ...]
    origin: str
    reason: str
    round: int = 0
    evaluation: Evaluation | None = None
    proposal: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "round": self.round,
            "parents": list(self.parents),
            "origin": self.origin,
            "prompt": self.prompt.to_dict(),
            "reason": self.reason,
            "proposal": list(self.proposal),
            "evaluation": self.evaluation.to_dict() if self.evaluation is not None else None,
        }


class StopRun(Exception):
    """Raised inside a search to end it; ``reason`` becomes the run's stop reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Event = Callable[[str, Mapping[str, Any]], None]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class Ledger:
    task: Spend = field(default_factory=Spend)
    reasoning: Spend = field(default_factory=Spend)

    @property
    def total(self) -> Spend:
        return self.task + self.reasoning


@dataclass
class RunSettings:
    """Who does what and within which limits; one object so signatures stay short. The models
    default to the client's: ``task_model`` to ``client.model``, ``reasoning_model`` to the task
    model (``for_client`` fills them in), so a model is named once, in the client."""

    task_model: str | None = None
    reasoning_model: str | None = None
    budget: Budget = field(default_factory=Budget)
    stop: StopRule = field(default_factory=Never)
    seed: int = 0
    reasoning_temperature: float = 0.8
    on_event: Event | None = None
    acceptance: Acceptance = Acceptance()
    # The plan's calls and high cost estimate: spend running much faster than it is flagged
    # (``client.alerts.pace``); None checks nothing.
    planned: tuple[int, float] | None = None
    batch_test: BatchScoring | None = None  # the test split scored as a provider Batch API job

    def for_client(self, client: Client) -> RunSettings:
        """These settings with the models a run uses: the ones given, else the client's."""
        task = self.task_model or client.model
        return dataclasses.replace(self, task_model=task, reasoning_model=self.reasoning_model or task)

    @property
    def task(self) -> str:
        """The task model; set once ``for_client`` has run (every run does it first)."""
        if self.task_model is None:
            raise ValueError("RunSettings.task_model is not set: call for_client(client) first")
        return self.task_model

    @property
    def reasoner(self) -> str:
        """The reasoning model; set once ``for_client`` has run."""
        if self.reasoning_model is None:
            raise ValueError("RunSettings.reasoning_model is not set: call for_client(client) first")
        return self.reasoning_model


class Search:
    """What an optimizer works with. Not thread-safe: one search runs on one event loop."""

    def __init__(
        self,
        client: Client,
        evaluator: Evaluator,
        splits: Splits,
        settings: RunSettings,
        store: RunStore | None = None,
        run_id: str | None = None,
    ):
        self.client = client
        self.evaluator = evaluator
        self.train: Dataset = splits.train
        self.validation: Dataset = splits.validation
        self._test = splits.test
        self.settings = settings.for_client(client)  # the models, if not given: the client's
        self.rng = random.Random(settings.seed)
        self.store, self.run_id = store, run_id
        self._replay: dict[str, Any] = store.steps(run_id) if store and run_id else {}
        self._replay_rows = _rows_by_evaluation(self._replay)
        self._seen: dict[str, tuple[Evaluation, Spend]] = {}
        self.ledger = Ledger()
        self.history: list[Candidate] = []
        self.rejected: list[Rejected] = []
        self._replies: list[str] = []  # reasoning replies since the last candidate or rejection
        self.round = 0
        self._improved_round = 0
        self._incumbent: Candidate | None = None  # set only under the "significant" rule
        self._reasoning_calls = 0
        self._reserved_calls = 0
        self._started = time.monotonic()

    # -- state ---------------------------------------------------------------------------------
    @property
    def best(self) -> Candidate:
        if self._incumbent is not None:
            return self._incumbent
        return max(self.history, key=lambda c: (c.score, -c.id))

    def progress(self) -> Progress:
        spent = self.ledger.total
        return Progress(  # sent and cached alike: stop rules decide the same whatever the cache holds
            calls=spent.work_calls,
            cost_usd=spent.work_cost_usd,
            elapsed_s=time.monotonic() - self._started,
            rounds=self.round,
            best_score=self.best.score if self.history else float("-inf"),
            rounds_without_improvement=self.round - self._improved_round,
        )

    def emit(self, kind: str, **data: Any) -> None:
        if self.settings.on_event:
            if kind == "candidate":  # how the models are doing, for a progress line to flag
                data.setdefault("health", self.client.health())
            self.settings.on_event(kind, data)

    def next_round(self) -> None:
        """Call between rounds: counts the round and raises StopRun when a stop rule fires."""
        self.round += 1
        self.check_stop()

    def check_stop(self) -> None:
        progress = self.progress()
        self._watch_pace(progress)
        budget = self.settings.budget
        if budget.max_minutes is not None and progress.elapsed_s >= budget.max_minutes * 60:
            raise StopRun(f"max_minutes ({budget.max_minutes:g})")
        reason = self.settings.stop.reason(progress)
        if reason:
            raise StopRun(reason)

    def _watch_pace(self, progress: Progress) -> None:
        if self.settings.planned is None:
            return
        why = pace(progress.calls, progress.cost_usd, *self.settings.planned)
        if why is not None:
            self.client.metrics.alerts.flag("pace", why)

    def _ensure_budget(self, calls: int, role: str) -> None:
        # Calls the cache answered count as calls here, at what they cost when first paid: the
        # search must not depend on what an earlier run happened to cache.
        budget, spent = self.settings.budget, self.ledger.total
        done, cost = spent.work_calls, spent.work_cost_usd
        if budget.max_calls is not None and done + calls + self._reserved_calls > budget.max_calls:
            raise StopRun(f"budget: max_calls ({budget.max_calls})")
        if budget.max_cost_usd is not None and done:
            # Observed average per call; the client's budget scope is the hard cap. The reserved final
            # test scoring gets a 2x margin: the best prompt may be longer than the average one.
            per_call = cost / done
            if cost + per_call * (calls + 2 * self._reserved_calls) > budget.max_cost_usd:
                raise StopRun(f"budget: max_cost_usd ({budget.max_cost_usd:g})")

    def reserve(self, calls: int) -> None:
        """Hold back ``calls`` from the budget (the driver's final test scoring)."""
        self._reserved_calls += calls

    def calls_left(self) -> int | None:
        """Calls the search may still send under ``max_calls`` (None: no call cap)."""
        cap = self.settings.budget.max_calls
        return None if cap is None else int(cap) - self.ledger.total.work_calls - self._reserved_calls

    # -- spending ------------------------------------------------------------------------------
    async def _memo_eval(
        self, prompt: Optimizable, rows: Sequence[Row], role: str = "task", batch: BatchScoring | None = None
    ) -> Evaluation:
        # Rows by index and content: splits built from separate files all number their rows from 0
        # (keyed by index alone, scoring a test split of the validation split's size replayed the latter).
        key = f"eval:{prompt.key()}:{self.evaluator.model}:{_digest([[r.index, r.fields] for r in rows])}"
        if key in self._seen:  # the same candidate again in this run: nothing is sent
            return self._seen[key][0]
        stored = self._replay.get(key)
        if stored is not None:
            evaluation = Evaluation.from_dict(stored)
            self.ledger.task = self.ledger.task + evaluation.spend  # what it cost the first time
        else:
            # all rows, even if some are checkpointed: replays decide alike
            self._ensure_budget(len(rows) * self.evaluator.calls_per_row(prompt), role)
            done = self._replay_rows.get(key)
            self.ledger.task = self.ledger.task + sum((spend for _, spend in (done or {}).values()), Spend())

            def paid(spend: Spend) -> None:  # every call as it returns: exact even if the evaluation stops
                self.ledger.task = self.ledger.task + spend

            try:
                jobs = (
                    StepJobStore(self.store, self.run_id, key)
                    if batch and self.store and self.run_id
                    else None
                )
                evaluation = await self.evaluator.evaluate(
                    prompt,
                    rows,
                    done=done,
                    on_row=self._checkpoint_row(key),
                    on_spend=paid,
                    batch=batch,
                    job_store=jobs,
                )
            except BudgetExceeded as exc:  # the client's hard cap refused a call: end the search
                raise StopRun(f"budget: {exc.limit or 'client budget'} ({exc})") from None
            if self.store and self.run_id:
                self.store.put_step(self.run_id, key, evaluation.to_dict())
        self._seen[key] = (evaluation, evaluation.spend)
        return evaluation

    def _checkpoint_row(self, key: str) -> Callable[[int, RowResult, Spend], None] | None:
        """Write each scored row to the store as it arrives: a run killed mid-evaluation resumes
        from the rows it had, and charges them what they cost the first time."""
        store, run_id = self.store, self.run_id
        if store is None or run_id is None:
            return None

        def write(position: int, row: RowResult, spend: Spend) -> None:
            store.put_step(
                run_id, f"{key}{ROW_STEP}{position}", {"row": row.to_dict(), "spend": spend.to_dict()}
            )

        return write

    @contextlib.contextmanager
    def _span(self, split: str, rows: int, **attrs: str | int | None) -> Iterator[Span]:
        """An evaluation's span; its rows' spans nest under it (``promptlift.tracing``). A stop
        (the budget, a stop rule) is the search ending, not a failure: the span says why and ends
        without an error."""
        stopped: StopRun | None = None
        attributes = {
            "promptlift.evaluation.split": split,
            "promptlift.evaluation.rows": rows,
            "promptlift.round": self.round,
            **{f"promptlift.candidate.{k}": v for k, v in attrs.items()},
        }
        with self.client.tracer.span("promptlift.evaluation", attributes) as span:
            try:
                yield span
            except StopRun as stop:
                span.set("promptlift.evaluation.stopped", stop.reason)
                stopped = stop
        if stopped is not None:
            raise stopped

    async def score(self, prompt: Optimizable, rows: Sequence[Row]) -> Evaluation:
        """Score rows (train or validation) without recording a candidate."""
        self.check_stop()
        prompt.check(self.train.fields)
        with self._span("rows", len(rows)) as span:
            evaluation = await self._memo_eval(prompt, rows)
            span.update(_outcome(evaluation))
        return evaluation

    def spent(self) -> dict[str, float | int]:
        """The run's spend so far (sent and cached calls, tokens, paid cost) and its age: a point of
        the report's cost over time."""
        total = self.ledger.total
        return {
            "elapsed_s": round(time.monotonic() - self._started, 3),
            "calls": total.work_calls,
            "tokens": total.tokens,
            "cost_usd": total.cost_usd,
        }

    def _take_replies(self) -> tuple[str, ...]:
        replies, self._replies = tuple(self._replies), []
        return replies

    def reject(
        self,
        prompt: Optimizable,
        *,
        parents: Sequence[int],
        origin: str,
        reason: str,
        evaluation: Evaluation | None = None,
    ) -> Rejected:
        """Record a proposal dropped before validation, with the reasoning replies since the last
        record (what proposed it) and ``evaluation`` on the rows it was scored on. Costs nothing."""
        record = Rejected(
            id=len(self.rejected),
            prompt=prompt,
            parents=tuple(parents),
            origin=origin,
            reason=reason,
            round=self.round,
            evaluation=evaluation,
            proposal=self._take_replies(),
        )
        self.rejected.append(record)
        if self.store and self.run_id:
            self.store.add_rejected(self.run_id, {**record.to_dict(), "spent": self.spent()})
        self.emit("rejected", rejected=record, progress=self.progress())
        return record

    async def evaluate(
        self,
        prompt: Optimizable,
        *,
        parent: int | None = None,
        origin: str = "",
        parents: Sequence[int] = (),
    ) -> Candidate:
        """Score ``prompt`` on the whole validation split and add it to the history. ``parents``:
        both sides of a merge or crossover (``parent`` first); the reasoning replies since the last
        candidate or rejection are recorded as what proposed it."""
        self.check_stop()
        prompt.check(self.train.fields)
        before = self.ledger.task
        with self._span("validation", len(self.validation), origin=origin, parent=parent) as span:
            evaluation = await self._memo_eval(prompt, list(self.validation))
            span.update({**_outcome(evaluation), "promptlift.candidate.id": len(self.history)})
        best_before = self.best if self.history else None
        candidate = Candidate(
            id=len(self.history),
            prompt=prompt,
            evaluation=evaluation,
            parent=parent,
            round=self.round,
            origin=origin,
            spend=self.ledger.task - before,
            parents=tuple(parents) or (() if parent is None else (parent,)),
            proposal=self._take_replies(),
        )
        self.history.append(candidate)
        acceptance = self.settings.acceptance
        if best_before is None or acceptance.improves(best_before, candidate, self.settings.seed):
            self._improved_round = self.round
            if acceptance.rule == "significant":
                self._incumbent = candidate
        if self.store and self.run_id:
            self.store.add_candidate(
                self.run_id,
                {
                    "id": candidate.id,
                    "round": candidate.round,
                    "parent": parent,
                    "origin": origin,
                    "prompt": prompt.to_dict(),
                    "score": candidate.score,
                    "evaluation": evaluation.to_dict(),
                    "parents": list(candidate.parents),
                    "proposal": list(candidate.proposal),
                    "spent": self.spent(),
                },
            )
        self.emit("candidate", candidate=candidate, best=self.best, progress=self.progress())
        return candidate

    async def reason(
        self,
        messages: Sequence[Message | Mapping[str, Any]] | str,
        *,
        temperature: float | None = None,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
    ) -> str:
        """One reasoning-model call, seeded from the run's seed so it replays and caches."""
        self.check_stop()
        self._reasoning_calls += 1
        msgs = messages_from(messages)
        temp = self.settings.reasoning_temperature if temperature is None else temperature
        seed = self.settings.seed * 1_000_003 + self._reasoning_calls
        inputs = [[m.role, m.text] for m in msgs] + [temp, max_tokens, list(stop)]
        key = f"reason:{self._reasoning_calls}:{_digest(inputs)}"
        stored = self._replay.get(key)
        if stored is not None:
            spend = Spend.from_dict(stored["spend"])
            content = str(stored["content"])
        else:
            self._ensure_budget(1, "reasoning")
            request = self.client.request(
                msgs,
                model=self.settings.reasoner,
                temperature=temp,
                max_tokens=max_tokens,
                stop=tuple(stop),
                seed=seed,
            )
            try:
                completion: Completion = await self.client.acomplete(request)
            except BudgetExceeded as exc:
                raise StopRun(f"budget: {exc.limit or 'client budget'} ({exc})") from None
            spend, content = Spend.of([completion]), completion.content
            if self.store and self.run_id:
                self.store.put_step(self.run_id, key, {"content": content, "spend": spend.to_dict()})
        self.ledger.reasoning = self.ledger.reasoning + spend
        self._replies.append(content)
        return content

    async def evaluate_test(self, prompt: Optimizable) -> Evaluation:
        """Only the driver calls this: at the start and at the end of a run."""
        with self._span("test", len(self._test)) as span:
            evaluation = await self._memo_eval(prompt, list(self._test), batch=self.settings.batch_test)
            span.update(_outcome(evaluation))
        return evaluation


def _outcome(evaluation: Evaluation) -> dict[str, float | int]:
    """An evaluation span's result: mean score and what it cost (cache hits at their first price)."""
    return {
        "promptlift.evaluation.score": evaluation.mean,
        "promptlift.evaluation.calls": evaluation.spend.calls,
        "promptlift.evaluation.cached_calls": evaluation.spend.cached_calls,
        "promptlift.cost_usd": evaluation.spend.cost_usd,
    }


ROW_STEP = ":row:"
BATCH_JOB_STEP = ":batch-job"


class StepJobStore:
    """A provider batch job's record as a step of the run (``client.provider_batch.JobStore``):
    written before the job is first polled, so a resumed run collects that job, not a new one."""

    def __init__(self, store: RunStore, run_id: str, key: str):
        self.store, self.run_id, self.key = store, run_id, key + BATCH_JOB_STEP

    def load(self) -> dict[str, Any] | None:
        found = self.store.steps(self.run_id).get(self.key)
        return found if isinstance(found, dict) else None

    def save(self, record: dict[str, Any]) -> None:
        self.store.put_step(self.run_id, self.key, record)

    def clear(self) -> None:
        self.store.put_step(self.run_id, self.key, None)


def _rows_by_evaluation(steps: Mapping[str, Any]) -> dict[str, dict[int, tuple[RowResult, Spend]]]:
    """Row checkpoints of unfinished evaluations, grouped by the evaluation's key."""
    out: dict[str, dict[int, tuple[RowResult, Spend]]] = {}
    for key, value in steps.items():
        evaluation, sep, position = key.rpartition(ROW_STEP)
        if sep and evaluation not in steps:
            row = (RowResult.from_dict(value["row"]), Spend.from_dict(value["spend"]))
            out.setdefault(evaluation, {})[int(position)] = row
    return out
