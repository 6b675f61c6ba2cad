"""The regression gate: `promptlift eval CONFIG --baseline RUN_OR_PROMPT` exits 1 when the config's
prompt is significantly worse than the baseline on the same test rows, 0 otherwise, and 2 with one
line for a baseline it cannot read.

Real parts: the CLI in a subprocess, the real LiteLLM over HTTP to a loopback server playing a task
model that answers right only with two demos, a real SQLite run store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

DEMOS = "demos: [{fields: {text: wxxxxxx1}, answer: long}, {fields: {text: w2}, answer: short}]"


def model(request: RecordedRequest) -> Reply:
    messages = request.json["messages"]
    word = messages[-1]["content"].split()[1]
    demos = sum(1 for m in messages if m["role"] == "assistant")
    return ok(("long" if len(word) > 5 else "short") if demos >= 2 else "unsure")


def write(folder: Path, api_base: str, *, demos: bool, name: str = "config.yaml") -> Path:
    folder.mkdir(exist_ok=True)
    rows = [{"text": f"w{'x' * (i % 7)}{i}"} for i in range(40)]
    rows = [{**r, "label": "long" if len(r["text"]) > 5 else "short"} for r in rows]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = f", {DEMOS}" if demos else ""
    path = folder / name
    path.write_text(
        f"model: openai/fake-task\napi_base: {api_base}\n"
        f"prompt: {{system: 'Label the word.', user: 'Word: {{text}}', params: {{max_tokens: 2}}{extra}}}\n"
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {max_demos: 2, trials: 3}}\n"
        "budget: {max_calls: 300}\nstore: runs/\n"
    )
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-gate-not-a-real-key-01"}
    return subprocess.run(
        [sys.executable, "-m", "promptlift", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with LoopbackServer() as s:
        s.handler = model
        yield s


def gate(config: Path, baseline: str, *extra: str) -> tuple[int, dict[str, Any]]:
    done = cli("eval", str(config), "--baseline", baseline, "--json", *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_prompt_edit_that_breaks_rows_fails_the_gate_and_a_fix_passes(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    good = write(tmp_path, server.openai_base, demos=True, name="good.yaml")
    bad = write(tmp_path, server.openai_base, demos=False, name="bad.yaml")

    code, report = gate(bad, str(good))  # the edit dropped the demos: every test row breaks
    assert code == 1 and report["regressed"] is True
    assert report["gain"]["verdict"] == "worse" and report["gain"]["value"] == -1.0
    assert report["broken"] == report["rows"] == 10 and report["fixed"] == 0
    assert report["gain"]["method"] == "mcnemar-exact" and report["gain"]["p_value"] < 0.05

    code, report = gate(good, str(bad))  # the other way round: a significant gain passes
    assert code == 0 and report["regressed"] is False and report["gain"]["verdict"] == "significant"

    code, report = gate(good, str(good))  # no change: passes
    assert code == 0 and report["gain"]["value"] == 0.0 and report["broken"] == 0

    # A stricter alpha than the evidence allows: the same drop does not fail the gate.
    code, report = gate(bad, str(good), "--alpha", "0.0001")
    assert code == 0 and report["gain"]["value"] == -1.0 and report["regressed"] is False

    text = cli("eval", str(bad), "--baseline", str(good))
    assert text.returncode == 1
    assert "gate       FAIL: significantly worse than the baseline" in text.stdout
    assert "10 broken" in text.stdout and "[" in text.stdout  # intervals in text mode too


def test_a_run_id_is_a_baseline_too_and_its_best_prompt_is_used(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path, server.openai_base, demos=False)
    optimized = cli("optimize", str(config), "--json", "--yes")
    assert optimized.returncode == 0, optimized.stderr
    result = json.loads(optimized.stdout)
    assert result["test_best_score"] > result["test_initial_score"]
    code, report = gate(config, result["run_id"])  # the config's own prompt is worse than the run's best
    assert code == 1 and report["baseline"]["prompt"] == result["best_prompt"]
    assert report["baseline"]["test_score"] == result["test_best_score"]


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ("no-such-run", "--baseline no-such-run: "),
        ("notes.txt", "not a prompt"),
        ("broken.yaml", "not a YAML or JSON file"),
    ],
)
def test_a_baseline_it_cannot_read_is_one_line_and_exit_2(
    tmp_path: Path,
    server,
    baseline: str,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    config = write(tmp_path, server.openai_base, demos=False)
    (tmp_path / "notes.txt").write_text("just some notes\n")
    (tmp_path / "broken.yaml").write_text("prompt: [unclosed\n")
    done = cli("eval", str(config), "--baseline", str(tmp_path / baseline) if "." in baseline else baseline)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert server.requests == []  # refused before any call


def test_an_empty_baseline_is_refused_not_a_silent_pass(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path, server.openai_base, demos=False)
    done = cli("eval", str(config), "--baseline", "")  # what --baseline "$UNSET" gives in CI
    assert done.returncode == 2 and "--baseline is empty" in done.stderr
    folder = cli("eval", str(config), "--baseline", str(tmp_path))
    assert folder.returncode == 2 and "is a folder" in folder.stderr
    assert server.requests == []


def test_alpha_without_a_baseline_is_refused_not_ignored(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path, server.openai_base, demos=False)
    done = cli("eval", str(config), "--alpha", "0.01")
    assert done.returncode == 2 and "give it with --baseline" in done.stderr and server.requests == []


def test_alpha_out_of_range_is_refused(tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path, server.openai_base, demos=False)
    done = cli("eval", str(config), "--baseline", str(config), "--alpha", "0.7")
    assert done.returncode == 2 and "--alpha" in done.stderr and "Traceback" not in done.stderr
