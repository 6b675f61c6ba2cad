"""`runs show` of a run with no result gives advice that works: a run that failed on its config is
fixed first (resuming alone meets the same error), a live run is followed, never resumed."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.optimize.liveness import _start_ticks, owner
from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer

CONFIG = (
    "model: openai/loop\napi_base: {base}\n"
    "prompt: {{system: 'Label it.', user: 'Text: {{text}}\\nLabel:', params: {{max_tokens: 2}}}}\n"
    "dataset: {{path: rows.jsonl}}\nmetric: {{type: exact_match, field: label}}\n"
    "optimizer: {{name: fewshot, params: {{trials: 3}}}}\n"
    "budget: {{max_calls: 60}}\nstore: runs/\ncache: false\n"
)


def _show_error(store: Path, run_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["runs", "show", run_id, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_a_run_failed_on_its_config_says_fix_it_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Such runs are rare now (every model's key and route is checked before a run is stored), but
    a store may hold them: from older versions, or from an error only a call could reveal."""
    store = RunStore(tmp_path / "runs")
    failed = store.create_run("fewshot", {})
    store.finish_run(
        failed, "failed", {"error": "ConfigError: no API key: set LOOP_KEY (models[0].api_key_env)"}
    )
    store.close()
    err = _show_error(tmp_path / "runs", failed, capsys)
    assert "ConfigError: " in err and "LOOP_KEY" in err
    assert "resuming alone meets the same error; fix the config" in err


def test_a_missing_key_is_found_before_a_run_is_stored(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("LOOP_KEY", raising=False)
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = tmp_path / "config.yaml"
    keyed = f"model: [{{model: openai/loop, api_base: '{loopback.openai_base}', api_key_env: LOOP_KEY}}]\n"
    config.write_text(keyed + CONFIG.format(base=loopback.openai_base).split("\n", 2)[2])
    assert main(["optimize", str(config), "--yes"]) == 2
    assert "LOOP_KEY" in capsys.readouterr().err
    assert not loopback.requests and not (tmp_path / "runs" / "runs.sqlite").exists()


def test_a_live_run_is_followed_not_resumed_and_a_provider_failure_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = RunStore(tmp_path / "runs")
    live, failed = store.create_run("fewshot", {}), store.create_run("fewshot", {})
    store.finish_run(failed, "failed", {"error": "ProviderUnavailable: 503 overloaded"})
    store.close()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        for _ in range(100):
            if _start_ticks(child.pid) is not None:
                break
            time.sleep(0.01)
        conn = sqlite3.connect(tmp_path / "runs" / "runs.sqlite")
        conn.execute(
            "UPDATE runs SET owner = ? WHERE id = ?",
            (json.dumps({**owner(), "pid": child.pid, "start": _start_ticks(child.pid)}), live),
        )
        conn.commit()
        conn.close()
        err = _show_error(tmp_path / "runs", live, capsys)
        assert f"run {live} is running (pid {child.pid} on {socket.gethostname()})" in err
        assert "--resume" not in err and f"promptlift runs show {live}" in err
    finally:
        child.kill()
        child.wait()
    err = _show_error(tmp_path / "runs", live, capsys)  # its process killed: now it resumes
    assert f"run {live} is killed" in err and f"--resume {live}` continues it" in err
    err = _show_error(tmp_path / "runs", failed, capsys)
    assert "(ProviderUnavailable: 503 overloaded)" in err and f"--resume {failed}` continues it" in err
