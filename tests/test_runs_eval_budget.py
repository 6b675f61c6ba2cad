"""`promptlift eval` honours the config's `budget:` as `optimize` does, before any call is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.testing.server import LoopbackServer, ok


def write_config(folder: Path, api_base: str, extra: str) -> Path:
    (folder / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = folder / "config.yaml"
    config.write_text(
        f"model: openai/unpriced-loop\napi_base: {api_base}\n"
        "prompt: {user: 'Text: {text}\\nLabel:', params: {max_tokens: 2}}\n"
        "dataset: {path: rows.jsonl}\nmetric: {type: exact_match, field: label}\ncache: false\n" + extra
    )
    return config


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (
            "budget: {max_calls: 5}\n",
            "eval needs 8 calls (4 validation + 4 test rows) but budget.max_calls is 5",
        ),
        ("budget: {max_cost_usd: 1}\n", "no price is known"),
    ],
    ids=["max_calls", "max_cost_usd_unpriced"],
)
def test_eval_refuses_a_budget_it_cannot_keep_before_any_call(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    budget: str,
    message: str,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    assert main(["eval", str(write_config(tmp_path, loopback.openai_base, budget))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("promptlift: error:") and message in err
    assert "Traceback" not in err and loopback.requests == []


def test_eval_within_its_budget_runs(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    extra = (
        "budget: {max_calls: 8, max_cost_usd: 1, max_minutes: 5}\nprices: {openai/unpriced-loop: [1, 1]}\n"
    )
    assert main(["eval", str(write_config(tmp_path, loopback.openai_base, extra))]) == 0
    assert len(loopback.requests) == 8 and "test        1.000" in capsys.readouterr().out
