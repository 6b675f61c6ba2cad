"""The same config and seed make the same search whatever the response cache holds; only spend differs.

Real LiteLLM over HTTP to the loopback server, a real SQLite cache file warmed by `eval` first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlift.optimize.config import load_config
from promptlift.optimize.session import evaluate_config, run_config
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok


def model(request: RecordedRequest) -> Reply:
    messages = request.json["messages"]
    word = messages[-1]["content"].split()[1]
    demos = sum(1 for m in messages if m["role"] == "assistant")
    return ok(("long" if len(word) > 5 else "short") if demos >= 2 else "unsure")


def write_config(folder: Path, api_base: str) -> Path:
    folder.mkdir()
    words = [f"w{'x' * (i % 7)}{i}" for i in range(40)]
    rows = [{"text": w, "label": "long" if len(w) > 5 else "short"} for w in words]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = folder / "config.yaml"
    config.write_text(
        f"model: openai/fake-task\napi_base: {api_base}\nconcurrency: 2\n"
        "prompt: {system: 'Label the word.', user: 'Word: {text}\\nLength:', params: {max_tokens: 2}}\n"
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {max_demos: 3, trials: 20}}\n"
        "budget: {max_calls: 80}\nseed: 7\nstore: runs/\ncache: cache.sqlite\n"
    )
    return config


def test_a_warm_cache_changes_what_is_paid_not_the_search(
    tmp_path: Path, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.handler = model
    cold = run_config(load_config(write_config(tmp_path / "cold", loopback.openai_base)))
    warm_config = load_config(write_config(tmp_path / "warm", loopback.openai_base))
    evaluate_config(warm_config)  # caches the starting prompt's validation and test answers
    warm = run_config(warm_config)

    assert [c.prompt for c in warm.history] == [c.prompt for c in cold.history]
    assert warm.best.prompt == cold.best.prompt and warm.stop_reason == cold.stop_reason
    assert warm.spend.work_calls == cold.spend.work_calls <= 80
    assert warm.spend.calls == cold.spend.calls - 20  # the 10 + 10 starting rows came from the cache
    assert warm.summary()["cached_calls"] == 20
