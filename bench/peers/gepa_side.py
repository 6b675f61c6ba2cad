"""The standalone ``gepa`` package as a system of the optimizer table (``bench/.venv-peers`` only).

GEPA's integration point is an adapter (``gepa.core.adapter.GEPAAdapter``): ``evaluate`` runs a
candidate (here one component, the instruction) on a batch and returns per-example scores, and
``make_reflective_dataset`` turns the failures into records for the reflection model. The program
is the table's starting prompt with GEPA's instruction in its system slot, sent through
promptlift's client to the embedded model, so a call costs exactly what promptlift's own cost.
The reflection model is the same embedded model, called with GEPA's own reflection prompt.
``max_metric_calls`` is the budget; reflection calls come on top, and are reported.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench.cell import Cell, Setup
from promptlift import Client
from promptlift.errors import PromptliftError
from promptlift.optimize.dataset import Row
from promptlift.optimize.prompt import fill


class PromptAdapter:
    """GEPA adapter over one promptlift prompt whose instruction GEPA evolves."""

    propose_new_texts: Any = None  # optional in the protocol: None means GEPA's own reflection prompt

    def __init__(self, client: Client, setup: Setup):
        self.client, self.setup = client, setup
        self.task_calls = 0

    def _outputs(self, batch: Sequence[Row], instruction: str) -> list[str]:
        prompt = self.setup.task.prompt.replace(system=instruction)
        params = dict(prompt.params)
        requests = [
            self.client.request(prompt.messages(r.fields), model=self.setup.task_model, **params)
            for r in batch
        ]
        self.task_calls += len(requests)
        results = self.client.batch(requests)
        return [r.content if not isinstance(r, PromptliftError) else "" for r in results]

    def evaluate(self, batch: list[Row], candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepa.core.adapter import EvaluationBatch

        outputs = self._outputs(batch, candidate["instruction"])
        scores, traces = [], []
        for row, out in zip(batch, outputs, strict=True):
            score = self.setup.task.metric(row, out)
            scores.append(score.value)
            traces.append({"row": row, "output": out, "reason": score.reason})
        return EvaluationBatch(
            outputs=outputs, scores=scores, trajectories=traces if capture_traces else None
        )

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        records = []
        for trace, score in zip(eval_batch.trajectories or [], eval_batch.scores, strict=False):
            row = trace["row"]
            records.append(
                {
                    "Inputs": fill(self.setup.task.prompt.user, row.fields),
                    "Generated Outputs": trace["output"],
                    "Feedback": "correct" if score >= 1 else (trace["reason"] or "wrong"),
                }
            )
        return {name: records for name in components_to_update}


class ReflectionLM:
    """GEPA's reflection model: a callable from prompt to text, through the same client."""

    def __init__(self, client: Client, model: str, seed: int):
        self.client, self.model, self.seed = client, model, seed
        self.calls = 0

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        self.calls += 1
        out = self.client.complete(
            prompt, model=self.model, temperature=0.8, max_tokens=200, seed=self.seed * 1000 + self.calls
        )
        return out.content


def _test(adapter: PromptAdapter, setup: Setup, instruction: str) -> float:
    rows = list(setup.splits.test)
    return sum(adapter.evaluate(rows, {"instruction": instruction}).scores) / len(rows)


def run(setup: Setup) -> Cell:
    import gepa

    cell = Cell("gepa.adapter", setup.task.name, setup.seed, setup.budget)
    client = Client()
    adapter = PromptAdapter(client, setup)
    reflection = ReflectionLM(client, setup.reasoning_model, setup.seed)
    started = time.perf_counter()
    try:
        cell.test_start = _test(adapter, setup, setup.task.instruction)
        cell.test_calls = adapter.task_calls
        adapter.task_calls = 0
        result = gepa.optimize(
            seed_candidate={"instruction": setup.task.instruction},
            trainset=list(setup.splits.train),
            valset=list(setup.splits.validation),
            adapter=adapter,
            reflection_lm=reflection,
            max_metric_calls=setup.budget,
            seed=setup.seed,
            display_progress_bar=False,
            raise_on_exception=False,
        )
        best = result.best_candidate
        instruction = best["instruction"] if isinstance(best, dict) else str(best)
        cell.task_calls = adapter.task_calls
        cell.test_best = _test(adapter, setup, instruction)
        cell.test_calls += adapter.task_calls - cell.task_calls
        cell.notes["best_instruction"] = instruction[:1500]
        cell.notes["candidates"] = len(result.candidates)
    finally:
        client.close()
    cell.reasoning_calls = reflection.calls
    cell.wall_s = time.perf_counter() - started
    return cell
