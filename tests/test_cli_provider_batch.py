"""``promptlift batch --provider-batch`` end to end against the loopback server's Batch APIs, resume
after a real kill -9 included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.testing.server import LoopbackServer, bad_request, ok

KEY = "sk-canary-cli-provider-batch-0123456789"


@pytest.fixture(scope="module")
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def server(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    srv.reset()
    srv.handler = lambda r: ok("answer to " + r.conversation[-1].text) if r.protocol != "batch" else None
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    return srv


def write_input(path: Path, n: int) -> Path:
    rows = [json.dumps({"id": i, "prompt": f"q{i}", "max_tokens": 10}) for i in range(n)]
    rows.insert(2, "{not json")
    path.write_text("\n".join(rows) + "\n")
    return path


def argv(server: LoopbackServer, tmp: Path, model: str = "openai/gpt-4o-mini", *extra: str) -> list[str]:
    base = server.openai_base if model.startswith("openai/") else server.url
    return [
        "batch", "--input", str(tmp / "in.jsonl"), "--output", str(tmp / "out.jsonl"), "--model", model,
        "--api-base", base, "--no-cache", "--provider-batch", "--poll-interval", "0.02", *extra,
    ]  # fmt: skip


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"])
def test_one_line_out_per_line_in_in_order_with_typed_errors(
    server: LoopbackServer, tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path / "in.jsonl", 6)
    server.batches.fail = {3: bad_request("no such parameter")}
    assert main(argv(server, tmp_path, model, "--metrics-json", str(tmp_path / "m.json"))) == 1
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["total"]["ok"] == 5 and metrics["total"]["failed"] == 1  # the job's lines, as calls
    out = read(tmp_path / "out.jsonl")
    assert [x["line"] for x in out] == [1, 2, 3, 4, 5, 6, 7]
    assert out[2]["ok"] is False and out[2]["error"]["type"] == "DatasetError"  # type: ignore[index]
    answered = [x for x in out if x["ok"]]
    assert [x["content"] for x in answered] == [f"answer to q{i}" for i in (0, 1, 2, 4, 5)]
    failed = out[4]  # the job's fourth line: input line 5, q3
    assert failed["id"] == 3 and failed["error"]["type"] == "BadRequest"  # type: ignore[index]
    assert len(server.batches.created) == 1
    assert not (tmp_path / "out.jsonl.batch-job.json").exists()
    err = capsys.readouterr().err
    assert "1 created, 0 resumed" in err and "at the batch rate" in err
    assert KEY not in (tmp_path / "out.jsonl").read_text()


def test_a_job_over_max_cost_is_refused_before_any_upload(server: LoopbackServer, tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl", 5)
    assert main(argv(server, tmp_path, "openai/gpt-4o-mini", "--max-cost", "0.0000001")) == 1
    out = read(tmp_path / "out.jsonl")
    assert len(out) == 6 and all(x["error"]["type"] == "BudgetExceeded" for x in out if x["line"] != 3)  # type: ignore[index]
    assert [r for r in server.requests if r.protocol == "batch"] == []


def test_a_model_without_a_batch_api_is_refused_with_exit_2(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_input(tmp_path / "in.jsonl", 2)
    assert main(argv(server, tmp_path, "local/gemma-3-270m")) == 2
    assert "no provider Batch API" in capsys.readouterr().err
    server.batches.enabled = False
    assert main(argv(server, tmp_path, "openai/my-model")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "has no Batch API" in err[-1] and "drop --provider-batch" in err[-1]
    assert not any(r.path.endswith("/files") for r in server.requests)
    assert main(argv(server, tmp_path, "openai/gpt-4o-mini", "--rpm", "60")) == 2
    assert "--rpm does not apply" in capsys.readouterr().err


def test_resume_after_kill_9_creates_no_second_job(server: LoopbackServer, tmp_path: Path) -> None:
    write_input(tmp_path / "in.jsonl", 8)
    server.batches.polls_before_done = 10**9
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    cmd = [sys.executable, "-m", "promptlift", *argv(server, tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(r.method == "GET" and "/batches/" in r.path for r in server.requests):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the first run never polled"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    record = json.loads((tmp_path / "out.jsonl.batch-job.json").read_text())
    assert KEY not in json.dumps(record)
    server.batches.polls_before_done = 1
    assert main(argv(server, tmp_path)) == 1  # the unreadable line
    assert len(server.batches.created) == 1
    out = read(tmp_path / "out.jsonl")
    assert [x["line"] for x in out] == list(range(1, 10))
    assert [x["content"] for x in out if x["ok"]] == [f"answer to q{i}" for i in range(8)]
    assert not (tmp_path / "out.jsonl.batch-job.json").exists()
