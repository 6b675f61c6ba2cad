"""DSPy 3.4's optimizers as systems of the optimizer table (run in ``bench/.venv-peers`` only).

The task model is reached through DSPy's supported extension point for custom backends in 3.4:
an engine object with ``complete(Request) -> Response`` passed as ``dspy.LM(engine=...)``. The
engine sends DSPy's messages unchanged through promptlift's client to ``local/gemma-3-270m``, so
they are rendered as plain text exactly as promptlift's own prompts are, and cost the same per
call. DSPy keeps its own adapter (ChatAdapter, with its JSON fallback), its own prompts and its
own optimizers' settings; only the sizes are set from the budget. DSPy's cache is off, so every
call is a real call.

Budgets: LabeledFewShot spends nothing; BootstrapFewShotWithRandomSearch and MIPROv2 have no call
budget, so their candidate and trial counts are derived from it (below) and the calls they
actually made are reported; GEPA takes ``max_metric_calls`` directly. A guard stops any run at
twice its budget.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from bench.cell import Cell, Setup
from promptlift import Client
from promptlift.errors import PromptliftError


class BudgetGuard(RuntimeError):
    pass


class Counter:
    """Calls per role and phase; thread-safe (DSPy evaluates on a thread pool)."""

    def __init__(self, guard: int):
        self.lock = threading.Lock()
        self.phase = "optimize"
        self.calls: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.guard = guard

    def add(self, role: str) -> None:
        """Count a call about to be sent, or refuse it past the guard. DSPy's evaluator catches the
        refusal as a failed row (``max_errors`` is high) and goes on, so the refused calls are counted
        apart: they never reached the model."""
        with self.lock:
            key = f"{self.phase}:{role}"
            if self.phase == "optimize" and self.calls.get(key, 0) >= self.guard:
                self.refused[role] = self.refused.get(role, 0) + 1
                raise BudgetGuard(f"{role} calls passed the guard of {self.guard}")
            self.calls[key] = self.calls.get(key, 0) + 1

    def get(self, phase: str, role: str) -> int:
        return self.calls.get(f"{phase}:{role}", 0)


class PromptliftEngine:
    """A DSPy engine: one canonical request, one call through promptlift's client."""

    def __init__(self, client: Client, model: str, counter: Counter, role: str):
        self.client, self.model, self.counter, self.role = client, model, counter, role

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages = []
        if request.system is not None:
            system = (
                request.system
                if isinstance(request.system, str)
                else "".join(getattr(p, "text", "") or "" for p in request.system)
            )
            messages.append({"role": "system", "content": system})
        for m in request.messages:
            role = m.role if m.role in ("user", "assistant") else "user"
            messages.append({"role": role, "content": m.text or ""})
        cfg = request.config
        self.counter.add(self.role)
        try:
            out = self.client.complete(
                messages,
                model=self.model,
                temperature=0.0 if cfg.temperature is None else cfg.temperature,
                max_tokens=cfg.max_tokens or 256,
                stop=list(cfg.stop),
                seed=cfg.seed,
            )
            text, n_in, n_out = out.content, out.usage.input_tokens, out.usage.output_tokens
        except PromptliftError as exc:  # e.g. the prompt is over the context window: an empty answer
            text, n_in, n_out = f"(error: {type(exc).__name__})", 0, 0
        return Response(
            id=None,
            model=self.model,
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def _program(setup: Setup) -> Any:
    import dspy

    task = setup.task
    spec = f"{', '.join(task.input_fields)} -> {task.answer_field}"
    return dspy.Predict(dspy.Signature(spec, task.instruction))


def _examples(rows: Any, setup: Setup) -> list[Any]:
    import dspy

    return [dspy.Example(**dict(r.fields)).with_inputs(*setup.task.input_fields) for r in rows]


def _score(setup: Setup, gold: Any, pred: Any) -> tuple[float, str]:
    from promptlift.optimize.dataset import Row

    row = Row(0, {k: gold[k] for k in gold.keys()})  # noqa: SIM118 - dspy.Example is not a Mapping
    output = str(getattr(pred, setup.task.answer_field, "") or "")
    score = setup.task.metric(row, output)
    return score.value, score.reason


def _test(program: Any, examples: list[Any], setup: Setup) -> float:
    total = 0.0
    for ex in examples:
        try:
            pred = program(**ex.inputs())
        except Exception:  # a parse failure of DSPy's adapter scores the row 0
            continue
        total += _score(setup, ex, pred)[0]
    return total / len(examples)


def _optimizer(name: str, setup: Setup, reasoning_lm: Any) -> tuple[Any, dict[str, Any]]:
    import dspy

    n_val, n_train, budget = len(setup.splits.validation), len(setup.splits.train), setup.budget

    def metric(gold: Any, pred: Any, trace: Any = None) -> float:
        return _score(setup, gold, pred)[0]

    if name == "labeled":
        return dspy.LabeledFewShot(k=4), {}
    if name == "bootstrap_rs":
        # Each candidate: up to ~half the train rows bootstrapped, then the validation split.
        n = max(1, (budget - 3 * n_val) // (n_val + n_train // 2))
        opt = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric,
            max_bootstrapped_demos=4,
            max_labeled_demos=4,
            num_candidate_programs=n,
            num_threads=1,
            max_errors=10_000,
        )
        return opt, {"num_candidate_programs": n}
    if name == "mipro":
        # Bootstrapping up to 2x train, one full evaluation at the start, then trials on
        # minibatches of 10 with a full evaluation every 5 trials (~14 calls a trial).
        trials = max(3, (budget - n_val - 2 * n_train) // 14)
        opt = dspy.MIPROv2(
            metric=metric,
            prompt_model=reasoning_lm,
            auto=None,
            num_candidates=3,
            max_bootstrapped_demos=4,
            max_labeled_demos=4,
            num_threads=1,
            max_errors=10_000,
            seed=setup.seed,
        )
        return opt, {"num_trials": trials, "minibatch_size": min(10, n_val), "num_candidates": 3}
    if name == "gepa":

        def feedback(
            gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
        ) -> Any:
            value, reason = _score(setup, gold, pred)
            return dspy.Prediction(score=value, feedback=reason or "correct")

        opt = dspy.GEPA(
            metric=feedback,
            max_metric_calls=budget,
            reflection_lm=reasoning_lm,
            num_threads=1,
            seed=setup.seed,
            track_stats=False,
        )
        return opt, {"max_metric_calls": budget}
    raise ValueError(f"unknown DSPy system {name!r}")


def run(name: str, setup: Setup) -> Cell:
    import dspy

    cell = Cell(f"dspy.{name}", setup.task.name, setup.seed, setup.budget)
    counter = Counter(guard=2 * setup.budget)
    client = Client()
    max_tokens = int(setup.task.prompt.params.get("max_tokens", 16)) + 24  # room for DSPy's field markers
    task_lm = dspy.LM(
        setup.task_model,
        engine=PromptliftEngine(client, setup.task_model, counter, "task"),
        cache=False,
        temperature=0.0,
        max_tokens=max_tokens,
        num_retries=0,
    )
    reasoning_lm = dspy.LM(
        setup.reasoning_model,
        engine=PromptliftEngine(client, setup.reasoning_model, counter, "reasoning"),
        cache=False,
        temperature=0.8,
        max_tokens=200,
        num_retries=0,
    )
    train, val, test = (
        _examples(s, setup) for s in (setup.splits.train, setup.splits.validation, setup.splits.test)
    )
    started = time.perf_counter()
    try:
        with dspy.context(lm=task_lm, max_errors=10_000, num_threads=1):
            program = _program(setup)
            counter.phase = "test"
            cell.test_start = _test(program, test, setup)
            counter.phase = "optimize"
            optimizer, compile_args = _optimizer(name, setup, reasoning_lm)
            cell.notes["settings"] = compile_args
            if name == "labeled":
                best = optimizer.compile(program, trainset=train)
            elif name == "mipro":
                best = optimizer.compile(
                    program,
                    trainset=train,
                    valset=val,
                    num_trials=compile_args["num_trials"],
                    minibatch_size=compile_args["minibatch_size"],
                    seed=setup.seed,
                )
            else:
                best = optimizer.compile(program, trainset=train, valset=val)
            counter.phase = "test"
            cell.test_best = _test(best, test, setup)
            cell.notes["best_instruction"] = str(best.signature.instructions)[:1500]
            cell.notes["best_demos"] = len(getattr(best, "demos", []) or [])
    except Exception as exc:  # the crash is the finding; the calls spent before it are kept with it
        cell.error = f"{type(exc).__name__}: {exc}"
        cell.notes["traceback"] = traceback.format_exc()[-3000:]
        cell.notes["crashed_in"] = counter.phase
    finally:
        client.close()
    cell.task_calls = counter.get("optimize", "task")
    cell.reasoning_calls = counter.get("optimize", "reasoning")
    cell.test_calls = counter.get("test", "task")
    if counter.refused:
        cell.notes["refused_by_guard"] = dict(counter.refused)
    cell.wall_s = time.perf_counter() - started  # test scoring included, as for promptlift
    return cell
