"""Prompt caching in a run: the plan's expected cost with and without it, the one warning for a
template that defeats it, and the run's summary of what the provider's cache saved (real LiteLLM
over HTTP to the loopback server, which reports cache reads and writes as Anthropic does)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.optimize.cache_plan import ROW_FIRST
from promptlift.optimize.config import load_config
from promptlift.optimize.plan import make_plan
from promptlift.optimize.prompt import Demo, Prompt, Turn
from promptlift.optimize.session import run_config
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

SONNET, NOWHERE = "anthropic/claude-sonnet-4-5", "http://127.0.0.1:9"  # a plan sends nothing
GUIDE = " ".join(f"guideline{i}" for i in range(400))  # ~1,300 estimated tokens


def write_config(folder: Path, *, model: str, api_base: str, system: str, extra: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    rows = [
        {"text": f"w{i} {'great' if i % 2 else 'awful'}", "label": "pos" if i % 2 else "neg"}
        for i in range(24)
    ]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = folder / "config.yaml"
    config.write_text(
        f"model: {model}\napi_base: {api_base}\nconcurrency: 4\n"
        f"prompt: {{system: {json.dumps(system)}, user: 'Review: {{text}}', params: {{max_tokens: 2}}}}\n"
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {max_demos: 2, trials: 3}}\n"
        f"budget: {{max_calls: 200}}\nseed: 3\nstore: runs/\ncache: false\n{extra}"
    )
    return config


def test_the_plan_shows_the_cost_with_and_without_caching_for_a_prefix_that_qualifies(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, model=SONNET, api_base=NOWHERE, system=GUIDE)
    plan = make_plan(load_config(path))
    assert plan.caching is not None and plan.caching.qualifies
    assert 0 < plan.caching.saved_usd < plan.caching.full_usd
    text = plan.render()
    assert "qualifies on anthropic" in text and "without caching" in text and "cost with caching" in text
    assert (
        plan.to_dict()["prompt_cache"]["task_input_usd_with"]
        < plan.to_dict()["prompt_cache"]["task_input_usd_without"]
    )
    assert plan.warnings == ()


def test_a_short_prefix_is_said_to_be_under_the_minimum(tmp_path: Path) -> None:
    path = write_config(tmp_path, model=SONNET, api_base=NOWHERE, system="Classify.")
    plan = make_plan(load_config(path))
    assert plan.caching is not None and not plan.caching.qualifies and plan.caching.saved_usd == 0
    assert "under anthropic's minimum of 1024" in plan.render()


def test_a_row_field_in_the_system_text_gets_one_warning(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, model="openai/gpt-4o-mini", api_base=NOWHERE, system=GUIDE + " Review: {text}"
    )
    plan = make_plan(load_config(path))
    assert plan.warnings.count(ROW_FIRST) == 1 and plan.caching is None
    assert plan.render().count("prompt cache (nor") == 1


def model(request: RecordedRequest) -> Reply:
    """Right once it has seen two demos; the same answers whatever the cache did."""
    turns = request.conversation
    demos = sum(1 for t in turns if t.role == "assistant")
    text = turns[-1].text
    answer = ("pos" if "great" in text else "neg") if demos >= 2 else "unsure"
    return ok(answer)


def test_the_run_summary_shows_cached_input_and_what_caching_saved(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
    loopback.handler = model
    results = {}
    for name, switch in (("off", "prompt_cache: false\n"), ("on", "")):
        loopback.emulate_prompt_cache(minimum=200)
        path = write_config(tmp_path / name, model=SONNET, api_base=loopback.url, system=GUIDE, extra=switch)
        results[name] = run_config(load_config(path))
    off, on = results["off"].summary(), results["on"].summary()
    assert off["cached_input_tokens"] == 0 and off["cache_saved_usd"] == 0
    assert on["cached_input_tokens"] > 0 and on["cache_saved_usd"] > 0
    assert on["best_prompt"] == off["best_prompt"] and on["test_best_score"] == off["test_best_score"]
    assert on["calls"] == off["calls"]
    # what was saved, from the reported usage, is what the same run cost without caching
    assert on["cost_usd"] + on["cache_saved_usd"] == pytest.approx(off["cost_usd"])

    loopback.emulate_prompt_cache(minimum=200)
    path = write_config(tmp_path / "cli", model=SONNET, api_base=loopback.url, system=GUIDE)
    assert main(["optimize", str(path), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "prompt cache:" in out and "input tokens read from the provider's cache" in out
    run_id = str(results["on"].run_id)
    assert main(["runs", "show", run_id, "--store", str(tmp_path / "on" / "config.yaml")]) == 0
    shown = capsys.readouterr().out  # the stored run shows it too
    assert f"prompt cache {on['cached_input_tokens']} input tokens read from the provider's cache" in shown


def test_the_benchmark_config_is_the_example_with_caching_on_or_off(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside src/
    from bench import caching

    assert len(caching.guide().split()) > 1024  # over every provider's minimum, in the server's words
    for on in (True, False):
        path = caching.write_config(tmp_path / str(on), SONNET, NOWHERE, caching.guide(), on)
        config = load_config(path)
        assert config.prompt_cache is on and config.cache is None and config.budget.max_calls == 600
        assert make_plan(config).caching.qualifies  # type: ignore[union-attr]


def test_the_shared_prefix_is_what_every_rows_messages_start_with() -> None:
    prompt = Prompt(
        user="Q: {q}",
        system="Answer briefly.",
        demos=(Demo({"q": "one"}, "1"),),
        turns=(Turn("user", "A fixed note."), Turn(history="chat"), Turn("user", "Now {q}")),
    )
    shared = prompt.shared_messages()
    assert [m.role for m in shared] == ["system", "user", "assistant", "user"]  # stops at the history slot
    for row in ({"q": "two", "chat": []}, {"q": "three", "chat": [{"role": "user", "content": "hi"}]}):
        assert prompt.messages(row)[: len(shared)] == shared
    assert Prompt(user="Q: {q}", system="About {q}.").shared_messages() == ()
