"""`optimize` with a max_calls too small to score the starting prompt is refused before any call
(exit 2, one line naming the calls needed), as `eval` refuses it. Between that and one candidate the
plan refuses it (too small for one candidate: it could only score the start); at exactly one
candidate's worth it runs, within its budget."""

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


def test_a_budget_of_exactly_one_candidate_runs_and_one_less_is_refused(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    # start 5 + 5, one candidate on 5 validation rows, the best on 5 test rows: 20 calls
    assert main(["optimize", str(config(tmp_path, loopback.openai_base, max_calls=19)), "--yes"]) == 2
    assert "too small for one candidate" in capsys.readouterr().err and loopback.requests == []
    assert main(["optimize", str(config(tmp_path, loopback.openai_base, max_calls=20)), "--yes"]) == 0
    assert 10 < len(loopback.requests) <= 20
