"""Scoring a prompt on rows: every row's output, score and reason, and what it cost.

Every call goes through the client, so its concurrency limit, rate limits, cache and budget all
apply. A prompt without tools makes one call per row; a prompt with tools runs the agent loop per
row (``promptlift.optimize.agent``), and the row keeps its whole trajectory. A prompt with an output
schema has each answer validated first: one that is not valid JSON for the schema scores 0 with
the reason, and the metric gets the answers that are (as text, like any output). Rows are taken in
order by at most ``concurrency`` workers: on the embedded model the calls of one prompt share its
prefix (system text and demos) and run back to back on its single worker, so the KV cache is
reused. On a provider with a prompt cache (``promptlift.prompt_cache``) a prefix long enough to
qualify is sent marked as such (``CompletionRequest.cache_prefix``), and the first row's call goes
alone, so the others read the prefix it wrote instead of all missing at once.

With ``batch`` (``BatchScoring``), the task calls of a prompt without tools (one call per row) go
as one provider Batch API job (``client.provider_batch``: half price, answered within hours), then
are scored as if each had come live; a ``job_store`` keeps the job's id so a killed evaluation
resumes that job instead of paying again. A line the job did not answer stops the evaluation with
its error, as a live call's failure would.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import Any

from promptlift import prompt_cache
from promptlift.client import Client
from promptlift.client.provider_batch import BatchSummary, JobStore, PollPolicy
from promptlift.errors import BadRequest, PromptliftError, UserError
from promptlift.log import get_logger
from promptlift.optimize.agent import ModelStep, Trajectory, run_agent
from promptlift.optimize.dataset import Dataset, Row
from promptlift.optimize.metrics import Metric, Score
from promptlift.optimize.program import (
    Optimizable,
    Program,
    ProgramError,
    PromptCall,
    members,
    run_program,
)
from promptlift.optimize.prompt import Prompt
from promptlift.tracing import Tracer
from promptlift.types import Completion, Message

log = get_logger("optimize.evaluation")

CALL_FAILED = "the call failed"
PROGRAM_FAILED = "the program raised"
NOT_VALID_JSON = "output is not valid JSON for the schema"


@dataclass(frozen=True)
class RowResult:
    index: int  # the row's index in the dataset file
    output: str
    score: float
    reason: str = ""
    error: str = ""  # "ErrorType: message" when the call failed
    trajectory: Trajectory | None = None  # an agent's row: every model call, tool call and message
    trace: tuple[PromptCall, ...] = ()  # a program's row: each prompt's call, in order

    @property
    def steps(self) -> int:
        """Model calls the row took (1 for a single-call prompt)."""
        if self.trace:
            return sum(call.model_calls for call in self.trace)
        return self.trajectory.model_calls if self.trajectory is not None else 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "output": self.output,
            "score": self.score,
            "reason": self.reason,
            "error": self.error,
        }
        if self.trajectory is not None:
            out["trajectory"] = self.trajectory.to_dict()
        if self.trace:
            out["trace"] = [call.to_dict() for call in self.trace]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RowResult:
        trajectory = d.get("trajectory")
        return cls(
            int(d["index"]),
            str(d["output"]),
            float(d["score"]),
            str(d.get("reason", "")),
            str(d.get("error", "")),
            Trajectory.from_dict(trajectory) if trajectory else None,
            tuple(PromptCall.from_dict(c) for c in d.get("trace") or ()),
        )


@dataclass(frozen=True)
class Spend:
    """Calls actually sent (cache hits excluded), their tokens and their cost; and apart, the calls
    the cache answered with what they cost when first paid.

    A search budgets with ``work_calls`` and ``work_cost_usd`` (sent and cached alike), so the same
    config and seed make the same search whatever the cache holds; only what is paid differs."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    cached_calls: int = 0
    cached_cost_usd: float = 0.0
    # Of the sent calls, as the provider reported: input tokens read from its prompt cache, and
    # what that saved (the cost at the full input rate minus ``cost_usd``; Completion.cache_saved_usd)
    cached_input_tokens: int = 0
    cache_saved_usd: float = 0.0
    # Of the sent calls, what provider Batch API jobs saved (Completion.batch_saved_usd)
    batch_saved_usd: float = 0.0

    @property
    def work_calls(self) -> int:
        return self.calls + self.cached_calls

    @property
    def work_cost_usd(self) -> float:
        return self.cost_usd + self.cached_cost_usd

    def __add__(self, other: Spend) -> Spend:
        return Spend(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __sub__(self, other: Spend) -> Spend:
        return Spend(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @classmethod
    def of(cls, completions: Sequence[Completion]) -> Spend:
        sent = [c for c in completions if not c.cached]
        hits = [c for c in completions if c.cached]
        return cls(
            len(sent),
            sum(c.usage.total_tokens for c in sent),
            sum(c.cost_usd for c in sent),
            len(hits),
            sum(c.cost_usd for c in hits),
            sum(c.usage.cached_tokens for c in sent),
            sum(c.cache_saved_usd for c in sent),
            sum(c.batch_saved_usd for c in sent),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "cached_calls": self.cached_calls,
            "cached_cost_usd": self.cached_cost_usd,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_saved_usd": self.cache_saved_usd,
            "batch_saved_usd": self.batch_saved_usd,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Spend:
        return cls(
            int(d["calls"]),
            int(d["tokens"]),
            float(d["cost_usd"]),
            int(d.get("cached_calls", 0)),
            float(d.get("cached_cost_usd", 0.0)),
            int(d.get("cached_input_tokens", 0)),
            float(d.get("cache_saved_usd", 0.0)),
            float(d.get("batch_saved_usd", 0.0)),
        )


@dataclass(frozen=True)
class Evaluation:
    rows: tuple[RowResult, ...]
    spend: Spend = Spend()

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.rows]

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.rows) if self.rows else math.nan

    @property
    def failures(self) -> list[RowResult]:
        return [r for r in self.rows if r.score < 1.0]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "rows": [r.to_dict() for r in self.rows], "spend": self.spend.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evaluation:
        return cls(tuple(RowResult.from_dict(r) for r in d["rows"]), Spend.from_dict(d["spend"]))


def reads_trajectory(metric: Metric) -> bool:
    """A metric that scores the trajectory too is called ``metric(row, output, trajectory)``."""
    return bool(getattr(metric, "reads_trajectory", False))


async def _score(
    metric: Metric, row: Row, output: str, trajectory: Trajectory | None = None
) -> tuple[Score, str]:
    """The metric's score of one output, and the error when the metric broke on it.

    A model call inside the metric (an LLM judge's) that failed for a reason outside this row — a
    budget refusal, a provider down — is raised, as a task call's would be: scoring 0 would corrupt
    the candidate's score."""
    try:
        extra = (trajectory,) if reads_trajectory(metric) else ()
        ascore = getattr(metric, "ascore", None)
        result: Any = await ascore(row, output, *extra) if ascore is not None else metric(row, output, *extra)
    except UserError:
        raise
    except PromptliftError as exc:
        if not _row_fault(exc):
            raise
        return Score(0.0), f"metric raised {type(exc).__name__}: {exc}"
    except Exception as exc:  # a metric bug on one row scores it 0, with the reason kept
        return Score(0.0), f"metric raised {type(exc).__name__}: {exc}"
    if not isinstance(result, Score):
        try:
            result = Score(float(result))
        except (TypeError, ValueError):
            return Score(0.0), f"metric returned {type(result).__name__} {result!r}, not a number"
    if not math.isfinite(result.value):
        # One NaN would make the candidate's mean NaN, and every comparison with it false.
        return Score(0.0, calls=result.calls), f"metric returned {result.value!r}, not a finite number"
    return result, ""


async def _score_answer(
    metric: Metric, prompt: Prompt, row: Row, trajectory: Trajectory
) -> tuple[Score, str]:
    """The row's score: 0 with the reason when a structured prompt's answer is not valid JSON for
    its schema (the metric is not called: a judge would be paid to grade a broken answer), else
    the metric's."""
    if prompt.output_schema is not None:
        parsed = prompt.output_schema.parse(trajectory.output)
        if not parsed.ok:
            return Score(0.0, f"{NOT_VALID_JSON}: {parsed.error}"), ""
    return await _score(metric, row, trajectory.output, trajectory)


async def _score_samples(
    metric: Metric, prompt: Prompt, row: Row, trajectory: Trajectory
) -> tuple[Score, str]:
    """``_score_answer``, or with ``n`` samples in one call, each sample scored and the row's score
    their mean (the reason says how many fell short); the row's output stays the first sample."""
    samples = trajectory.completions[-1].samples if trajectory.completions and not prompt.tools else ()
    if len(samples) < 2:
        return await _score_answer(metric, prompt, row, trajectory)
    scored = []
    for text in samples:
        alone = Trajectory(
            text, trajectory.steps, trajectory.messages, trajectory.stopped, trajectory.completions
        )
        scored.append(await _score_answer(metric, prompt, row, alone))
    values = [s.value for s, _ in scored]
    short = [s.reason or e for s, e in scored if s.value < 1.0]
    reason = f"{len(short)} of {len(samples)} samples fell short: {short[0]}" if short else ""
    calls = tuple(c for s, _ in scored for c in s.calls)
    errors = next((e for _, e in scored if e), "")
    return Score(sum(values) / len(values), reason, calls), errors


RowDone = Callable[[int, RowResult, Spend], None]


@dataclass
class BatchScoring:
    """Score through a provider Batch API (see the module docstring): how to wait for the job, and
    ``summary``, what every job of these evaluations sent, spent and saved against the list price."""

    poll: PollPolicy = field(default_factory=PollPolicy)
    summary: BatchSummary = field(default_factory=BatchSummary)


def check_batch_scoring(prompt: Optimizable, model: str) -> None:
    """``UserError`` before anything is sent when ``prompt`` cannot be scored by a batch job."""
    from promptlift.client.provider_batch import check_batchable
    from promptlift.types import CompletionRequest

    if not isinstance(prompt, Prompt) or prompt.tools:
        raise UserError(
            "provider batch scoring sends one call per row: a program or a prompt with tools (an agent "
            "loop) cannot be scored that way; turn provider batch scoring off for it"
        )
    check_batchable([CompletionRequest(model=model, messages=())])


async def _in_order(
    items: Sequence[int], job: Callable[[int], Any], workers: int, *, stop: Callable[[], bool]
) -> None:
    """``job(item)`` for each item, taken in order by at most ``workers`` workers; once ``stop()``
    is true no new item is started (those started finish). A cancellation ends every worker."""
    queue = iter(items)  # shared: each item is taken by exactly one worker

    async def worker() -> None:
        for item in queue:
            if stop():
                return
            await job(item)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(workers, len(items)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _warm_then_fan_out(
    items: Sequence[int],
    job: Callable[[int], Any],
    workers: int,
    *,
    warm: bool,
    sent: Callable[[int], bool],
    stop: Callable[[], bool],
) -> None:
    """``_in_order``, but with ``warm`` the first item goes alone: its call writes the provider's
    prompt cache, which the others, sent beside it, would each miss (and on Anthropic each pay a
    write). An item that sent nothing (the response cache answered it) wrote nothing, so the next
    goes alone too."""
    rest = list(items)
    while warm and workers > 1 and rest and not stop():
        first, rest = rest[0], rest[1:]
        await _in_order([first], job, 1, stop=stop)
        if sent(first):
            break
    await _in_order(rest, job, workers, stop=stop)


async def _traced_row(
    tracer: Tracer,
    row: Row,
    pos: int,
    score_row: Callable[[int], Awaitable[BaseException | None]],
    finished: Mapping[int, tuple[RowResult, Spend]],
) -> None:
    """``score_row(pos)`` in the row's span: its children are the row's calls (a judge's too)."""
    with tracer.span(
        "promptlift.row", {"promptlift.row.index": row.index, "promptlift.row.position": pos}
    ) as span:
        stopped = await score_row(pos)
        if stopped is not None:  # the evaluation stops on it: the row has no result
            span.fail(stopped)
        elif pos in finished:
            span.update(row_attributes(finished[pos][0]))


def row_attributes(result: RowResult) -> dict[str, Any]:
    """A row span's outcome: its score, and why it failed (never its output: that is content)."""
    failed = result.reason in (CALL_FAILED, PROGRAM_FAILED)
    return {
        "promptlift.row.score": result.score,
        "promptlift.row.steps": result.steps,
        "promptlift.row.failed": failed,
        "error.type": result.error.split(":", 1)[0] if failed and result.error else None,
    }


def _row_fault(error: PromptliftError) -> bool:
    """True for a failure caused by this row's request (refused as a bad request, filtered, too
    long): the row scores 0 with the reason. Anything else — a budget refusal, a provider
    down after every retry, a rejected key — says nothing about the prompt: scoring it 0 would corrupt
    the candidate's score, so the evaluation stops instead (the run is resumable)."""
    return isinstance(error, BadRequest)


class Evaluator:
    """Scores prompts with one metric and one task model through one client."""

    def __init__(self, client: Client, metric: Metric, model: str | None = None):
        self.client = client
        self.metric = metric
        self.model = model or client.model
        self._warned: set[str] = set()  # program errors already reported

    def _warn_program_failures(self, out: Sequence[RowResult]) -> None:
        """Rows the user's program raised on score 0; say so once per distinct error (every
        candidate would repeat it), on stderr, with how many rows of this evaluation."""
        failed = [r for r in out if r.reason == PROGRAM_FAILED]
        if not failed or len(failed) == len(out):
            return
        first = failed[0].error
        if first in self._warned:
            return
        self._warned.add(first)
        log.warning(
            "the program raised on %d of %d rows, which score 0 (first, row %d: %s); "
            "`promptlift runs show` / the report list the rows",
            len(failed), len(out), failed[0].index + 1, first,
        )  # fmt: skip

    def _refuse_all_failed(self, out: Sequence[RowResult], row_faults: Sequence[PromptliftError]) -> None:
        """Every row failing the same way says the setup is wrong, not the prompt: raise."""
        failed_calls = [r for r in out if r.reason == CALL_FAILED]
        if out and len(failed_calls) == len(out):
            if row_faults:
                raise row_faults[0]
            raise UserError(f"every call of this evaluation failed: {failed_calls[0].error}")
        if out and all(r.reason == PROGRAM_FAILED for r in out):
            raise UserError(f"the program raised on every row: {out[0].error}")
        if out and sum(1 for r in out if r.error and r.reason not in (CALL_FAILED, PROGRAM_FAILED)) == len(
            out
        ):
            raise UserError(f"the metric {self.metric.name!r} failed on every row: {out[0].error}")

    def calls_per_row(self, prompt: Optimizable | None = None) -> int:
        """Calls one scored row may send at most: the task call (an agent's step limit), and the
        metric's own (an LLM judge's), once per sample when the task call brings ``n``."""
        task = prompt.calls_per_row if prompt is not None else 1
        samples = prompt.samples if prompt is not None else 1
        return task + int(getattr(self.metric, "calls_per_row", 0)) * samples

    def cache_prefix(self, prompt: Prompt) -> int:
        """How many leading messages of ``prompt``'s calls to send as a shared prefix for the
        provider's prompt cache: the system text and demos (``Prompt.shared_messages``) when the
        client allows it (``ClientConfig.prompt_cache``), the task model's route caches prompts,
        and they are long enough (``prompt_cache.qualifies``); else 0."""
        if not self.client.config.prompt_cache:
            return 0
        shared = prompt.shared_messages()
        return len(shared) if prompt_cache.qualifies(self.model, shared, len(shared)) else 0

    async def _answer(
        self,
        prompt: Prompt,
        messages: Sequence[Message],
        record: Callable[[Completion], None],
        cache_prefix: int = 0,
        answered: Completion | PromptliftError | None = None,
    ) -> Trajectory:
        """One prompt's answer to one conversation: a single call, or the agent loop for a prompt
        with tools; ``record`` sees each model call as it returns. ``answered``: the call's answer
        (or error) from a batch job, nothing sent."""
        params = prompt.request_params() | ({"cache_prefix": cache_prefix} if cache_prefix else {})
        if answered is not None:
            if isinstance(answered, PromptliftError):
                raise answered
            record(answered)
            history = (*messages, Message("assistant", answered.content, answered.tool_calls))
            return Trajectory(answered.content, (ModelStep.of(answered),), history, "answer", (answered,))
        if prompt.tools:
            return await run_agent(
                self.client,
                messages,
                prompt.tools,
                max_steps=prompt.max_steps,
                on_call=record,
                model=self.model,
                **params,
            )
        completion = await self.client.acomplete(self.client.request(messages, model=self.model, **params))
        record(completion)
        history = (*messages, Message("assistant", completion.content, completion.tool_calls))
        return Trajectory(completion.content, (ModelStep.of(completion),), history, "answer", (completion,))

    async def _batch_answers(
        self,
        prompt: Optimizable,
        conversations: Mapping[int, Sequence[Message]],
        todo: Sequence[int],
        prefixes: Mapping[int, int],
        batch: BatchScoring | None,
        job_store: JobStore | None,
    ) -> dict[int, Completion | PromptliftError]:
        """With ``batch``, every row's task call as one batch job: the requests a live evaluation
        would send; else nothing."""
        from promptlift.client.provider_batch import abatch

        if batch is None or not todo:
            return {}
        check_batch_scoring(prompt, self.model)
        assert isinstance(prompt, Prompt)
        cache_prefix = prefixes[id(prompt)]
        params = prompt.request_params() | ({"cache_prefix": cache_prefix} if cache_prefix else {})
        requests = [self.client.request(conversations[pos], model=self.model, **params) for pos in todo]
        results = await abatch(self.client, requests, store=job_store, poll=batch.poll, summary=batch.summary)
        return dict(zip(todo, results, strict=True))

    async def evaluate(
        self,
        prompt: Optimizable,
        data: Dataset | Sequence[Row],
        *,
        done: Mapping[int, tuple[RowResult, Spend]] | None = None,
        on_row: RowDone | None = None,
        on_spend: Callable[[Spend], None] | None = None,
        batch: BatchScoring | None = None,
        job_store: JobStore | None = None,
    ) -> Evaluation:
        """Score every row. ``done`` holds rows already scored (by position; a resumed run's
        checkpoint): they are not sent again. ``on_row(position, result, spend)`` sees each new row
        once it is scored, so a caller can checkpoint row by row. ``on_spend(spend)`` sees every paid
        call as it returns, the metric's too, even when the evaluation then stops: a caller's ledger
        stays exact however the evaluation ends.

        The first failure that says nothing about a row (a budget refusal, a provider down after
        its retries, a judge's call failing so) stops the evaluation: no new call is sent, the rows
        in flight finish and are kept (``on_row``), then the failure is raised."""
        rows = list(data)
        finished: dict[int, tuple[RowResult, Spend]] = dict(done or {})
        todo = [pos for pos in range(len(rows)) if pos not in finished]
        program = prompt if isinstance(prompt, Program) else None
        # Every row's messages before any call: a malformed row (a history field that is not a
        # conversation) is one clear error, not a failure after paying for the rows before it.
        single = prompt if isinstance(prompt, Prompt) else None
        conversations = {pos: single.messages(rows[pos].fields) for pos in todo} if single else {}
        prefixes = {id(part): self.cache_prefix(part) for part in members(prompt).values()}
        fatal: list[BaseException] = []
        row_faults: list[PromptliftError] = []
        paid = on_spend or (lambda spend: None)
        answered = await self._batch_answers(prompt, conversations, todo, prefixes, batch, job_store)

        async def answer(pos: int, calls: list[Completion]) -> tuple[Trajectory, tuple[PromptCall, ...], str]:
            """The row's answer, and for a program its trace and feedback."""

            def record(completion: Completion) -> None:
                calls.append(completion)
                paid(Spend.of([completion]))

            if program is None:
                assert isinstance(prompt, Prompt)
                trajectory = await self._answer(
                    prompt, conversations[pos], record, prefixes[id(prompt)], answered.get(pos)
                )
                return trajectory, (), ""

            async def member(part: Prompt, fields: Mapping[str, Any]) -> Trajectory:
                return await self._answer(part, part.messages(fields), record, prefixes.get(id(part), 0))

            run = await run_program(program, rows[pos].fields, member)
            return Trajectory(run.output, (), (), "answer", tuple(calls)), run.trace, run.feedback

        async def score_row(pos: int) -> BaseException | None:
            """Answer and score one row. The metric runs in the same worker, so a judge's call runs
            beside the other workers' calls, never blocking them."""
            row, calls = rows[pos], list[Completion]()
            try:
                trajectory, trace, feedback = await answer(pos, calls)
            except ProgramError as exc:  # the user's code broke on this row: 0, with the reason
                result = RowResult(row.index, "", 0.0, PROGRAM_FAILED, str(exc), trace=exc.trace)
                finished[pos] = result, Spend.of(calls)
            except PromptliftError as exc:
                if not _row_fault(exc):
                    fatal.append(exc)  # nothing about this row: stop, keep what was answered
                    return exc
                row_faults.append(exc)
                result = RowResult(row.index, "", 0.0, CALL_FAILED, f"{type(exc).__name__}: {exc}")
                finished[pos] = result, Spend.of(calls)
            else:
                try:
                    if program is None:
                        assert isinstance(prompt, Prompt)
                        score, error = await _score_samples(self.metric, prompt, row, trajectory)
                    else:  # the program's output, scored as it is (its prompts' schemas are their own)
                        score, error = await _score(self.metric, row, trajectory.output, None)
                except Exception as exc:  # a judge's call failed outside this row, or the metric refused
                    fatal.append(exc)
                    return exc
                paid(Spend.of(score.calls))
                # a single call's record is its output; an agent's row keeps its loop
                kept = trajectory if single is not None and single.tools else None
                reason = "; ".join(t for t in (score.reason or error, feedback) if t)
                result = RowResult(row.index, trajectory.output, score.value, reason, error, kept, trace)
                finished[pos] = result, Spend.of([*calls, *score.calls])
            if on_row is not None:
                on_row(pos, *finished[pos])
            return None

        def one(pos: int) -> Awaitable[None]:
            return _traced_row(self.client.tracer, rows[pos], pos, score_row, finished)

        await _warm_then_fan_out(
            todo,
            one,
            self.client.config.concurrency,
            warm=any(prefixes.values()),
            sent=lambda pos: pos in finished and finished[pos][1].calls > 0,
            stop=lambda: bool(fatal),
        )
        if fatal:
            raise fatal[0]
        out = [finished[pos][0] for pos in range(len(rows))]
        self._refuse_all_failed(out, row_faults)
        self._warn_program_failures(out)
        spend = sum((finished[pos][1] for pos in range(len(rows))), Spend())
        return Evaluation(tuple(out), spend)
