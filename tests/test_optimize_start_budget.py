"""`optimize` with a max_calls too small to score the starting prompt is refused before any call
(exit 2, one line naming the calls needed), as `eval` refuses it; at exactly that many it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.testing.server import LoopbackServer, ok


def config(folder: Path, api_base: str, max_calls: int) -> Path:
    # 20 rows split 10 / 5 / 5: the starting prompt's scoring is 5 validation + 5 test = 10 calls.
    (folder / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(20)))
    path = folder / "config.yaml"
    path.write_text(
        f"model: openai/loop\napi_base: {api_base}\nretry: {{max_attempts: 1}}\n"
        "prompt: {user: 'Text: {text}\\nLabel:', params: {max_tokens: 2}}\n"
        "dataset: {path: rows.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25}}\n"
        "metric: {type: exact_match, field: label}\n"
        f"optimizer: {{name: fewshot, params: {{trials: 2}}}}\nbudget: {{max_calls: {max_calls}}}\n"
        "store: runs/\ncache: false\n"
    )
    return path


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_budget_below_the_starting_scoring_is_refused_before_any_call(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dry_run: bool,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    path = config(tmp_path, loopback.openai_base, max_calls=9)
    assert main(["optimize", str(path), "--yes", *(["--dry-run"] if dry_run else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "promptlift: error: optimize needs at least 10 calls to score the starting prompt (5 validation "
        "+ 5 test rows) but budget.max_calls is 9; raise max_calls or use smaller splits"
    )
    assert loopback.requests == []
    assert not (tmp_path / "runs").exists()  # nothing recorded either


def test_a_budget_of_exactly_the_starting_scoring_runs(
    tmp_path: Path, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    assert main(["optimize", str(config(tmp_path, loopback.openai_base, max_calls=10)), "--yes"]) == 0
    assert len(loopback.requests) == 10
