"""Pipelines: optimizers in order, each from the previous best, one budget, every stage recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.client import Client, ClientConfig
from promptlift.optimize.evaluation import Evaluation, RowResult, Spend
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.optimizers import FewShot, MetaPrompt
from promptlift.optimize.pipeline import PipelineResult, combine, remaining_budget, stage_run_id
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Budget, Candidate, RunSettings
from promptlift.testing.conformance import REASONING_MODEL, TASK_MODEL, synthetic_model, synthetic_splits
from promptlift.testing.doubles import FunctionProvider
from promptlift.testing.server import LoopbackServer, ok


def two_stages() -> tuple[OptimizationResult, OptimizationResult]:
    client = Client(ClientConfig(models=(TASK_MODEL,)), provider=FunctionProvider(synthetic_model))
    settings = RunSettings(TASK_MODEL, REASONING_MODEL, budget=Budget(max_calls=400))
    prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
    splits, metric = synthetic_splits(), ExactMatch("label")
    try:
        first = MetaPrompt(rounds=1, candidates_per_round=1).optimize(
            prompt, splits, metric, client=client, settings=settings
        )
        second = FewShot(answer_field="label", trials=3).optimize(
            first.best.prompt, splits, metric, client=client, settings=settings
        )
    finally:
        client.close()
    return first, second


def test_combined_result_renumbers_the_history_and_links_the_stages() -> None:
    first, second = two_stages()
    result = combine([first, second])
    assert isinstance(result, PipelineResult) and result.stages == (first, second)
    assert result.optimizer == "metaprompt → fewshot"
    assert [c.id for c in result.history] == list(range(len(first.history) + len(second.history)))
    joint = result.history[len(first.history)]  # the second stage's starting candidate
    assert joint.parent == first.best.id and joint.prompt == first.best.prompt
    assert joint.origin == "fewshot: initial" and result.history[0].origin == "initial"
    assert all(c.parent is None or c.parent < c.id for c in result.history)
    assert result.initial.prompt == first.initial.prompt and result.initial_test == first.initial_test
    assert result.best.score == max(c.score for c in result.history) == 1.0
    assert result.spend.calls == first.spend.calls + second.spend.calls
    stages = result.summary()["stages"]
    assert [s["optimizer"] for s in stages] == ["metaprompt", "fewshot"]


def test_remaining_budget_subtracts_what_earlier_stages_spent() -> None:
    first, _ = two_stages()
    spent = first.spend.calls
    left = remaining_budget(Budget(max_calls=spent + 50, max_minutes=60), [first], needed_calls=30)
    assert left is not None and left.max_calls == 50 and left.max_minutes is not None
    assert left.max_minutes < 60
    assert remaining_budget(Budget(max_calls=spent + 20), [first], needed_calls=30) is None
    assert remaining_budget(Budget(), [first], needed_calls=30) == Budget()
    assert stage_run_id("r1", 0) == "r1" and stage_run_id("r1", 2) == "r1.2"


def test_run_config_runs_a_pipeline_with_one_budget_and_records_each_stage(
    tmp_path: Path, loopback: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptlift.optimize.config import load_config
    from promptlift.optimize.session import run_config
    from promptlift.optimize.store import RunStore

    loopback.set_default(ok("a"))
    (tmp_path / "rows.jsonl").write_text(
        "".join(f'{{"text": "t{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(16))
    )
    (tmp_path / "config.yaml").write_text(
        f"model: openai/loop\napi_base: {loopback.openai_base}\n"
        "prompt: {system: 'Label it.', user: 'Text: {text}\\nLabel:', params: {max_tokens: 2}}\n"
        "dataset: {path: rows.jsonl}\nmetric: {type: exact_match, field: label}\n"
        "optimizer: [{name: metaprompt, params: {rounds: 1, candidates_per_round: 2}},\n"
        "            {name: parameters, params: {trials: 3}}]\n"
        "budget: {max_calls: 100}\nstore: runs/\ncache: false\n"
    )
    result = run_config(load_config(tmp_path / "config.yaml"))
    assert isinstance(result, PipelineResult)
    assert [s.optimizer for s in result.stages] == ["metaprompt", "parameters"]
    assert result.spend.calls == len(loopback.requests) <= 100
    assert result.stages[1].initial.prompt == result.stages[0].best.prompt
    store = RunStore(tmp_path / "runs")
    try:
        assert result.run_id is not None
        assert store.run(stage_run_id(result.run_id, 1))["config"]["pipeline_of"] == result.run_id
        stored = store.run(result.run_id)["result"]  # the pipeline's run holds the whole pipeline
        assert stored["optimizer"] == "metaprompt → parameters"
        assert [s["run_id"] for s in stored["stages"]] == [result.run_id, stage_run_id(result.run_id, 1)]
        assert stored["test_best_score"] == result.best_test.mean
    finally:
        store.close()
    capsys.readouterr()
    assert main(["runs", "show", result.run_id, "--store", str(tmp_path / "runs")]) == 0
    shown = capsys.readouterr().out
    assert f"stage 0     metaprompt (run {result.run_id})" in shown
    assert f"stage 1     parameters (run {result.run_id}.1)" in shown


def _candidate(id: int, system: str, scores: list[float], parent: int | None = None) -> Candidate:
    rows = tuple(RowResult(i, "", s) for i, s in enumerate(scores))
    return Candidate(id, Prompt(user="Word: {text}", system=system), Evaluation(rows), parent)


def _stage(history: list[Candidate], best: int, test: list[float]) -> OptimizationResult:
    best_test = Evaluation(tuple(RowResult(i, "", s) for i, s in enumerate(test)))
    return OptimizationResult(
        "r", "metaprompt", TASK_MODEL, REASONING_MODEL, history[0], history[best],
        Evaluation(()), best_test, tuple(history), Spend(), Spend(), "completed", 0.0,
    )  # fmt: skip


def test_the_pipeline_best_is_what_each_stage_accepted_not_the_raw_maximum() -> None:
    # Under `acceptance: significant` stage 1 keeps its start although "B" scored a row higher;
    # stage 2 accepts "C". The pipeline's best is "C" with C's test score, never "B".
    start = [1.0] * 2 + [0.0] * 8
    first = _stage([_candidate(0, "A", start), _candidate(1, "B", [1.0] * 9 + [0.0], 0)], 0, [0.5])
    second = _stage([_candidate(0, "A", start), _candidate(1, "C", [1.0] * 8 + [0.0] * 2, 0)], 1, [0.9])
    result = combine([first, second])
    assert result.best.prompt.system == "C" and result.best.id == 3 and result.best_test.mean == 0.9
    # both stages keep their start: the start is the best, with its own test score
    kept = _stage([_candidate(0, "A", start), _candidate(1, "D", [1.0] * 9 + [0.0], 0)], 0, [0.2])
    result = combine([first, kept])
    assert result.best.prompt.system == "A" and result.best.id == 0 and result.best_test.mean == 0.5
