"""The plan: call estimates against the calls a run really makes, the cost range, confirmation."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.client import Client, ClientConfig
from promptlift.errors import UserError
from promptlift.optimize.config import load_config
from promptlift.optimize.metrics import ExactMatch
from promptlift.optimize.optimizers import build_optimizer
from promptlift.optimize.plan import (
    CallEstimate,
    Plan,
    Sizes,
    cap,
    confirm,
    estimate_calls,
    make_plan,
    needs_confirmation,
)
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.run import Budget, RunSettings
from promptlift.pricing import ModelPrice as Price
from promptlift.testing.conformance import REASONING_MODEL, TASK_MODEL, synthetic_splits
from promptlift.testing.doubles import FunctionProvider
from promptlift.types import CompletionRequest


def scripted() -> FunctionProvider:
    """A task model right on about half the rows, differently for each instruction, and a
    reasoning model that never repeats itself (so no proposal is a free duplicate)."""
    counter = itertools.count()

    def answer(request: CompletionRequest) -> str:
        if request.model == REASONING_MODEL:
            n = next(counter)
            if "failure modes" in request.messages[-1].content:
                return f"- mode a{n}\n- mode b{n}\n- mode c{n}"
            return f"Variant {n}: label the word by its length."
        word = request.messages[-1].content.split()[-2]
        system = " ".join(m.content for m in request.messages if m.role == "system")
        coin = hashlib.sha256(f"{system}|{word}".encode()).digest()[0] % 2
        right = "long" if len(word) > 5 else "short"
        return right if coin else "unsure"

    return FunctionProvider(answer)


CASES = {
    "fewshot": {"trials": 10, "max_demos": 3},
    "metaprompt": {"rounds": 3, "candidates_per_round": 3, "minibatch": 4},
    "evolutionary": {"population": 5, "generations": 3, "elites": 1},
    "pareto": {"max_metric_calls": 150, "minibatch": 3},
    "failure_modes": {"rounds": 2, "sample": 10, "batch": 4, "max_modes": 3},
    "parameters": {"trials": 8},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_is_within_20_percent_of_the_calls_made(name: str) -> None:
    splits = synthetic_splits(60)
    sizes = Sizes(len(splits.train), len(splits.validation), len(splits.test))
    optimizer = build_optimizer(name, CASES[name], answer_field="label")
    provider = scripted()
    client = Client(ClientConfig(models=(TASK_MODEL,), concurrency=4), provider=provider)
    settings = RunSettings(TASK_MODEL, REASONING_MODEL, budget=Budget(max_calls=5000), seed=1)
    prompt = Prompt(user="Word: {text}\nLength:", system="Label the word.", params={"max_tokens": 2})
    try:
        result = optimizer.optimize(prompt, splits, ExactMatch("label"), client=client, settings=settings)
    finally:
        client.close()
    estimate = estimate_calls(optimizer, sizes, base_reasoning=False)
    actual = len(provider.requests)
    assert actual == result.spend.calls
    assert abs(estimate.total - actual) <= 0.2 * actual, (estimate, actual, result.reasoning_spend.calls)


def test_the_budget_caps_the_estimate_keeping_the_mix() -> None:
    calls = estimate_calls(
        build_optimizer("evolutionary", {"population": 6, "generations": 4}),
        Sizes(50, 25, 25),
        base_reasoning=True,
    )
    capped = cap(calls, Budget(max_calls=300))
    assert calls.total > 300 and capped.total == 300
    assert capped.reasoning / capped.total == pytest.approx(calls.reasoning / calls.total, abs=0.01)
    assert cap(calls, Budget()) == calls


def write_config(tmp_path: Path, body: str) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(f'{{"text": "word{i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(40)))
    path = tmp_path / "config.yaml"
    path.write_text(
        "prompt: {system: 'Label it.', user: 'Text: {text}\\nLabel:', params: {max_tokens: 4}}\n"
        "dataset: {path: rows.jsonl}\nmetric: {type: exact_match, field: label}\n" + body
    )
    return path


def test_plan_of_a_local_config_is_free_and_shows_presets_and_the_pareto_warning(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            "optimizer: [{name: pareto}, {name: fewshot, params: {preset: light}}]\n"
            "budget: {max_calls: 60}\n",
        )
    )
    plan = make_plan(config)
    assert plan.sizes == Sizes(20, 10, 10)
    assert [s.optimizer for s in plan.stages] == ["pareto", "fewshot"]
    assert plan.stages[1].params["trials"] == 8  # the light preset
    assert set(plan.stages[0].presets) == {"light", "medium", "heavy"}
    light, heavy = plan.stages[0].presets["light"], plan.stages[0].presets["heavy"]
    assert light.total < heavy.total
    assert plan.calls.total == 60  # capped by max_calls
    assert plan.cost_usd == (0.0, 0.0) and not plan.paid
    assert any("fewer" in w or "only" in w for w in plan.warnings)
    text = plan.render()
    assert "pareto → fewshot" in text and "capped by max_calls 60" in text and "$0" in text


def test_plan_prices_a_paid_model_and_asks_before_a_dear_run(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "model: openai/gpt-4o-mini\noptimizer: {name: metaprompt}\n"))
    plan = make_plan(config, prices={"openai/gpt-4o-mini": Price.per_million(0.15, 0.60)})
    assert plan.paid and plan.cost_usd is not None
    low, high = plan.cost_usd
    assert 0 < low < high
    assert needs_confirmation(plan, threshold_usd=low / 10)
    assert not needs_confirmation(plan, threshold_usd=high * 2)
    with pytest.raises(UserError, match="--yes"):
        confirm(plan, threshold_usd=0.0, yes=False, interactive=False, ask=input)
    assert confirm(plan, threshold_usd=0.0, yes=True, interactive=False, ask=input)
    asked: list[str] = []
    assert not confirm(
        plan, threshold_usd=0.0, yes=False, interactive=True, ask=lambda q: asked.append(q) or "n"
    )
    assert confirm(plan, threshold_usd=0.0, yes=False, interactive=True, ask=lambda q: "yes")
    assert asked and "$" in asked[0]


def test_cli_refuses_a_dear_paid_run_without_a_terminal_or_yes(tmp_path: Path) -> None:
    # A separate process: a real stdin that is not a terminal, and the price map read from LiteLLM
    # (whose lazy imports warn, which pytest's warnings-as-errors would carry into later tests).
    path = write_config(tmp_path, "model: openai/gpt-4o-mini\noptimizer: {name: metaprompt}\n")
    cli = [sys.executable, "-c", "from promptlift.cli import entrypoint; entrypoint()"]
    done = subprocess.run(
        [*cli, "optimize", str(path), "--confirm-above", "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "--yes" in done.stderr and "no terminal" in done.stderr
    assert "plan: metaprompt on openai/gpt-4o-mini" in done.stdout  # the plan is shown first


def test_cli_dry_run_prints_the_plan_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "optimizer: {name: evolutionary, params: {preset: light}}\n")
    assert main(["optimize", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "evolutionary" in out and "presets (calls): light" in out and "$0 (local models)" in out


def test_an_llm_judge_is_planned_and_priced(tmp_path: Path) -> None:
    """Every scored answer costs one more call, on the judge's model: the plan counts, caps and
    prices it (the run counts it against max_calls too)."""
    prices = {
        "openai/gpt-4o-mini": Price.per_million(0.15, 0.60),
        "openai/gpt-4o": Price.per_million(2.5, 10.0),
    }
    judge = "metric: {type: llm_judge, rubric: 'Is it the right label?', field: label, model: openai/gpt-4o}"

    def plan_of(body: str, judged: bool) -> Plan:
        path = write_config(tmp_path, "model: openai/gpt-4o-mini\n" + body)
        if judged:
            path.write_text(path.read_text().replace("metric: {type: exact_match, field: label}", judge))
        return make_plan(load_config(path), prices=prices)

    plain, judged = plan_of("", False), plan_of("", True)
    assert (judged.calls.task, judged.calls.reasoning) == (plain.calls.task, plain.calls.reasoning)
    assert judged.calls.judge == judged.calls.task and plain.calls.judge == 0
    assert judged.calls.total == plain.calls.total + plain.calls.task
    assert judged.judge_model == "openai/gpt-4o" and plain.judge_model is None
    assert plain.cost_usd is not None and judged.cost_usd is not None
    # at least the judge's 64-token replies on gpt-4o, on top of the same task calls
    assert judged.cost_usd[1] - plain.cost_usd[1] >= judged.calls.judge * 64 * 10.0 / 1e6
    text = judged.render()
    assert f"judge: ~{judged.calls.judge} calls on openai/gpt-4o" in text and " judge calls" in text
    assert judged.to_dict()["judge_calls"] == judged.calls.judge and plain.to_dict()["judge_calls"] == 0
    capped = plan_of("budget: {max_calls: 60}\n", True)
    assert capped.calls.total == 60 and capped.calls.judge == capped.calls.task  # the cap counts the judge


@pytest.mark.parametrize("max_calls", [60, 101, 103, 150])
def test_a_capped_plan_never_invents_calls(max_calls: int) -> None:
    budget = Budget(max_calls=max_calls)
    for calls in (CallEstimate(200, 0, 200), CallEstimate(200, 30, 200), CallEstimate(200, 30)):
        capped = cap(calls, budget)
        assert capped.total <= max_calls and min(capped.task, capped.reasoning, capped.judge) >= 0
        assert capped.reasoning <= calls.reasoning and capped.judge == (capped.task if calls.judge else 0)
