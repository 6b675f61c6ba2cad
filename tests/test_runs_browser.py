"""The run browser: `promptlift runs` list/show/export/compare/delete, read from a real run store
written by real runs (the CLI in subprocesses, LiteLLM over HTTP to a loopback task model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptlift.optimize.config import load_config
from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok


def model(request: RecordedRequest) -> Reply:
    messages = request.json["messages"]
    word = messages[-1]["content"].split()[1]
    demos = sum(1 for m in messages if m["role"] == "assistant")
    return ok(("long" if len(word) > 5 else "short") if demos >= 2 else "unsure")


def write(folder: Path, api_base: str, seed: int) -> Path:
    folder.mkdir(exist_ok=True)
    rows = [{"text": f"w{'x' * (i % 7)}{i}"} for i in range(40)]
    rows = [{**r, "label": "long" if len(r["text"]) > 5 else "short"} for r in rows]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / f"config{seed}.yaml"
    path.write_text(
        f"model: openai/fake-task\napi_base: {api_base}\n"
        "prompt: {system: 'Label the word.', user: 'Word: {text}', params: {max_tokens: 2}}\n"
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {max_demos: 3, trials: 3}}\n"
        f"budget: {{max_calls: 300}}\nseed: {seed}\nstore: runs/\n"
    )
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-browser-not-a-key-01"}
    return subprocess.run(
        [sys.executable, "-m", "promptlift", *args], capture_output=True, text=True, env=env, timeout=300
    )


def ok_json(*args: str) -> Any:
    done = cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("browser")
    with LoopbackServer() as server:
        server.handler = model
        configs = [write(folder, server.openai_base, seed) for seed in (1, 2)]
        runs = [cli("optimize", str(c), "--yes", "--json") for c in configs]
        assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
        results = [json.loads(r.stdout) for r in runs]
        logs.extend(r.stderr for r in runs)
        yield folder, configs, results


logs: list[str] = []  # each run's stderr, not a terminal here


def test_a_run_without_a_terminal_logs_one_line_per_round(two_runs) -> None:  # type: ignore[no-untyped-def]
    _, _, results = two_runs
    lines = [li for li in logs[0].splitlines() if li.startswith("promptlift: round ")]
    rounds = [int(li.split()[2]) for li in lines]
    assert len(lines) >= 3 and rounds == sorted(set(rounds)), lines  # one per round, in order
    assert "\r" not in logs[0] and "\033" not in logs[0]
    last = lines[-1]
    assert f"best {results[0]['best_score']:.3f} [" in last and " calls · $" in last and "ETA" in last


def test_list_shows_each_run_with_its_scores_intervals_calls_and_cost(two_runs) -> None:  # type: ignore[no-untyped-def]
    _, configs, results = two_runs
    listed = ok_json("runs", str(configs[0]))
    assert [r["id"] for r in listed] == [r["run_id"] for r in reversed(results)]  # newest first
    for row, result in zip(reversed(listed), results, strict=True):
        assert row["status"] == "finished" and row["model"] == "openai/fake-task"
        assert row["test_best_score"] == result["test_best_score"] and row["calls"] == result["calls"]
        assert row["test_best_score_ci"] == result["test_best_score_ci"]
    text = cli("runs", "--store", str(configs[0]))
    assert text.returncode == 0
    line = next(li for li in text.stdout.splitlines() if li.startswith(results[0]["run_id"]))
    assert "finished" in line and "best " in line and "openai/fake-task" in line and " → " in line


def test_show_gives_the_change_the_rows_the_diff_and_the_top_candidates(two_runs) -> None:  # type: ignore[no-untyped-def]
    _, configs, results = two_runs
    run = results[0]
    shown = ok_json("runs", "show", run["run_id"], "--store", str(configs[0]))
    assert shown["test"]["best"] == run["test_best_score"] and shown["test"]["gain"] == run["test_gain"]
    rows = shown["rows"]
    assert rows["fixed"] + rows["regressed"] + rows["unchanged"] == 10
    assert rows["fixed"] > 0 and shown["regressed_rows"] == []
    assert shown["candidates"] == run["candidates"] and shown["top"][0]["score"] == run["best_score"]
    assert any(line.startswith("+") and "-> long" in line for line in shown["diff"])  # the demos it added
    text = cli("runs", "show", run["run_id"], "--store", str(configs[0])).stdout
    assert "fixed ·" in text and "best prompt against the initial one:" in text and "p = " in text


def test_export_writes_the_best_prompt_as_a_config_that_loads_and_every_candidate(two_runs) -> None:  # type: ignore[no-untyped-def]
    folder, configs, results = two_runs
    run = results[0]
    done = cli("runs", "export", run["run_id"], "--store", str(configs[0]), "--output", str(folder))
    assert done.returncode == 0, done.stderr
    config = load_config(folder / "best.yaml")  # paths as in the run's config: beside it, it loads
    assert config.prompt.to_dict() == run["best_prompt"]
    assert "optimizer_params" not in yaml.safe_load((folder / "best.yaml").read_text())
    lines = (folder / "candidates.jsonl").read_text().splitlines()
    assert len(lines) == run["candidates"]
    first = json.loads(lines[0])
    assert first["origin"] == "initial" and len(first["evaluation"]["rows"]) == 10
    assert json.loads((folder / "result.json").read_text())["best_prompt"] == run["best_prompt"]


def test_compare_pairs_two_runs_on_their_shared_test_rows(two_runs) -> None:  # type: ignore[no-untyped-def]
    _, configs, results = two_runs
    a, b = results[0]["run_id"], results[1]["run_id"]
    report = ok_json("runs", "compare", a, b, "--store", str(configs[0]))
    assert report["shared_rows"] == 10
    assert report["b_minus_a"]["value"] == pytest.approx(
        results[1]["test_best_score"] - results[0]["test_best_score"]
    )
    assert report["b_minus_a"]["method"] == "mcnemar-exact"


def test_delete_removes_a_run_and_a_missing_or_unfinished_run_is_one_line(two_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, configs, _ = two_runs
    store_path = folder / "runs" / "runs.sqlite"
    store = RunStore(store_path)
    unfinished = store.create_run("fewshot", {"model": "openai/fake-task"})
    store.finish_run(unfinished, "failed", {"error": "ProviderUnavailable: down"})
    store.close()
    for args in (("show", unfinished), ("export", unfinished, "--output", str(tmp_path)), ("show", "nope")):
        done = cli("runs", *args, "--store", str(configs[0]))
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "--resume" in cli("runs", "show", unfinished, "--store", str(configs[0])).stderr
    deleted = ok_json("runs", "delete", unfinished, "--store", str(configs[0]))
    assert deleted["runs"] == 1
    assert unfinished not in [r["id"] for r in ok_json("runs", str(configs[0]))]
    assert len(ok_json("runs", str(configs[0]))) == 2  # the others are untouched


def test_a_report_or_export_to_a_path_that_cannot_be_written_is_one_line(two_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, configs, results = two_runs
    run = results[0]["run_id"]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (
        ("report", run, "--html", str(blocker / "report.html")),
        ("runs", "export", run, "--output", str(blocker / "sub")),
        ("report", run, "--html", ""),
    ):
        done = cli(*args, "--store", str(configs[0]))
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
