"""`promptlift runs`: a missing store is an error naming it; a config names its store; a failed run
says failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.testing.server import LoopbackServer, ok, unauthorized


def test_a_missing_store_is_an_error_and_nothing_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "a" / "missing" / "dir"
    assert main(["runs", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("promptlift: error: no run store at") and str(missing) in err
    assert not (tmp_path / "a").exists()


def test_runs_takes_the_config_and_shows_a_failed_run_as_failed(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    monkeypatch.chdir(tmp_path)  # `runs/` of the working directory is not the config's store
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(8)))
    config = folder / "config.yaml"
    config.write_text(
        f"model: openai/loop\napi_base: {loopback.openai_base}\nretry: {{max_attempts: 1}}\n"
        "prompt: {user: 'Text: {text}\\nLabel:', params: {max_tokens: 2}}\n"
        "dataset: {path: rows.jsonl}\nmetric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {trials: 2}}\nstore: runs/\ncache: false\n"
    )
    loopback.set_default(ok("a"))
    assert main(["optimize", str(config), "--yes", "--json"]) == 0
    finished = json.loads(capsys.readouterr().out)["run_id"]
    loopback.set_default(unauthorized())
    assert main(["optimize", str(config), "--yes", "--json"]) == 1
    capsys.readouterr()

    assert main(["runs", str(config), "--json"]) == 0
    runs = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert runs[finished]["status"] == "finished"
    (failed,) = [r for r in runs.values() if r["id"] != finished]
    assert failed["status"] == "failed"


def test_no_argument_finds_the_store_a_config_below_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `make demo` the runs are in examples/sentiment/runs/ (relative to its config): a bare
    `promptlift runs` at the repository root lists them, and says which store it read."""
    from promptlift.optimize.store import RunStore

    monkeypatch.chdir(tmp_path)
    assert main(["runs"]) == 2  # no store anywhere: how to name one
    assert "promptlift runs CONFIG.yaml" in capsys.readouterr().err
    demo = tmp_path / "examples" / "sentiment"
    demo.mkdir(parents=True)
    (demo / "config.yaml").write_text("model: m\nstore: runs/\n")
    (tmp_path / "examples" / "notes.yaml").write_text("- not a config\n")
    assert main(["runs"]) == 2  # a config names a store no run has written yet: it says so
    assert "names a store that exists yet" in capsys.readouterr().err
    store = RunStore(demo / "runs")
    run_id = store.create_run("fewshot", {})
    store.close()
    assert main(["runs", "--json"]) == 0
    captured = capsys.readouterr()
    assert [r["id"] for r in json.loads(captured.out)] == [run_id]
    assert "examples/sentiment/config.yaml" in captured.err
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    (other / "c.yml").write_text("store: ~/other/mine\n")  # `~` expanded, as a run expands it
    RunStore(other / "mine").close()
    assert main(["runs"]) == 2  # two stores: named, and how to pick one
    err = capsys.readouterr().err
    assert "examples/sentiment/config.yaml" in err and "other/c.yml" in err
    RunStore(tmp_path / "runs").close()
    assert main(["runs", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []  # ./runs/ first
