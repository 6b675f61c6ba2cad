"""``promptlift eval --provider-batch`` and ``provider_batch.test_scoring`` in an optimize run:
the scoring calls go as Batch API jobs to the loopback server, with the same scores as live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.errors import ConfigError
from promptlift.optimize.config import load_config
from promptlift.optimize.session import run_config
from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

KEY = "sk-canary-eval-batch-0123456789"
MODEL = "openai/gpt-4o-mini"


def label(request: RecordedRequest) -> Reply | None:
    if request.protocol == "batch":
        return None
    text = request.conversation[-1].text
    return ok("pos" if "great" in text else "neg")


def write_config(folder: Path, api_base: str, extra: str = "", model: str = MODEL) -> Path:
    folder.mkdir(exist_ok=True)
    rows = [
        {"text": f"w{i} {'great' if i % 2 else 'awful'}", "label": "pos" if i % 2 else "neg"}
        for i in range(16)
    ]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "config.yaml"
    path.write_text(
        f"model: {model}\napi_base: {api_base}\nconcurrency: 4\n"
        "prompt: {system: 'Classify.', user: 'Review: {text}', params: {max_tokens: 2, temperature: 0}}\n"
        "dataset: {path: data.jsonl, split: {train: 0.5, validation: 0.25, test: 0.25, seed: 1}}\n"
        "metric: {type: exact_match, field: label}\n"
        "optimizer: {name: fewshot, params: {max_demos: 2, trials: 2}}\n"
        f"budget: {{max_calls: 200}}\nseed: 3\nstore: runs/\ncache: false\n{extra}"
    )
    return path


@pytest.fixture
def server(loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    loopback.handler = label
    return loopback


def test_eval_with_provider_batch_scores_as_live_at_half_price(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, server.openai_base)
    assert main(["eval", str(path), "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert server.batches.created == []
    batch = ["eval", str(path), "--json", "--provider-batch", "--poll-interval", "0.01"]
    assert main(batch) == 0
    batched = json.loads(capsys.readouterr().out)
    assert len(server.batches.created) == 2  # validation, then test
    assert [len(j.lines) for j in server.batches.created] == [live["validation_rows"], live["test_rows"]]
    assert batched["test_score"] == live["test_score"] == 1.0
    assert batched["cost_usd"] == pytest.approx(live["cost_usd"] / 2)


def test_eval_provider_batch_refuses_a_model_without_a_batch_api(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, server.openai_base, model="hosted_vllm/my-model")
    assert main(["eval", str(path), "--provider-batch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "has no provider Batch API" in err[-1] and "drop --provider-batch" in err[-1]
    assert all("warning" in line for line in err[:-1])  # the split-size warnings, then the one refusal
    assert server.requests == []


def test_optimize_scores_the_test_split_in_a_batch_job_and_keeps_the_job_in_the_run_store(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path, server.openai_base, "provider_batch: {test_scoring: true, poll_interval: 0.01}\n"
    )
    result = run_config(load_config(path))
    summary = result.summary()
    live_path = write_config(tmp_path / "live", server.openai_base)
    live = run_config(load_config(live_path)).summary()
    assert (
        summary["best_prompt"] == live["best_prompt"]
        and summary["test_best_score"] == live["test_best_score"]
    )
    # what batching saved, from the reported usage: the live run's cost, less the batch run's
    assert summary["batch_saved_usd"] > 0 and live["batch_saved_usd"] == 0
    assert summary["cost_usd"] + summary["batch_saved_usd"] == pytest.approx(live["cost_usd"])
    test_rows = len(result.best_test.rows)
    assert server.batches.created and all(len(j.lines) == test_rows for j in server.batches.created)
    assert result.best_test.mean == 1.0
    store = RunStore(tmp_path / "runs")
    try:
        steps = store.steps(str(result.run_id))
    finally:
        store.close()
    jobs = [k for k in steps if k.endswith(":batch-job")]
    assert jobs and all(steps[k] is None for k in jobs)  # written, then cleared once collected
    assert main(["runs", "show", str(result.run_id), "--store", str(tmp_path / "runs")]) == 0
    shown = capsys.readouterr().out
    assert f"batch API   saved ${summary['batch_saved_usd']:.4f} on the test scoring" in shown


def test_a_config_with_provider_batch_on_a_local_model_is_refused(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, "http://127.0.0.1:9", "provider_batch: {test_scoring: true}\n", model="local/gemma-3-270m"
    )
    with pytest.raises(ConfigError, match="no provider Batch API"):
        load_config(path)


def test_the_plan_shows_the_cost_with_and_without_batch_scoring(tmp_path: Path) -> None:
    from promptlift.optimize.plan import make_plan

    off = make_plan(load_config(write_config(tmp_path / "off", "http://127.0.0.1:9")))
    on = make_plan(
        load_config(
            write_config(tmp_path / "on", "http://127.0.0.1:9", "provider_batch: {test_scoring: true}\n")
        )
    )
    assert off.batch is not None and on.batch is not None and not off.batch.on and on.batch.on
    assert on.batch.saved_usd == pytest.approx(on.batch.live_usd / 2) and on.batch.saved_usd > 0
    assert off.cost_usd and on.cost_usd
    assert on.cost_usd[1] == pytest.approx(off.cost_usd[1] - on.batch.saved_usd)
    assert "batch test scoring off" in off.render() and "cost with batch scoring" in off.render()
    assert "batch test scoring on" in on.render() and "cost without batch scoring" in on.render()
    assert on.to_dict()["batch_test_scoring"]["saved_usd"] == pytest.approx(on.batch.saved_usd)


def test_optimize_killed_mid_poll_resumes_its_test_scoring_job(
    server: LoopbackServer, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    path = write_config(
        tmp_path, server.openai_base, "provider_batch: {test_scoring: true, poll_interval: 0.01}\n"
    )
    server.batches.polls_before_done = 10**9
    cmd = [sys.executable, "-m", "promptlift", "optimize", str(path), "--yes"]
    proc = subprocess.Popen(
        cmd, env={**os.environ, "OPENAI_API_KEY": KEY}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not any(r.method == "GET" and "/batches/" in r.path for r in server.requests):
            assert proc.poll() is None and time.monotonic() < deadline, "the run never polled its job"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = time.monotonic()
    first = server.batches.created[0]
    assert len(server.batches.created) == 1
    store = RunStore(tmp_path / "runs")
    try:
        run_id = store.runs()[0]["id"]
        assert any(k.endswith(":batch-job") and v for k, v in store.steps(run_id).items())
    finally:
        store.close()
    server.batches.polls_before_done = 1
    assert main(["optimize", str(path), "--yes", "--resume", run_id]) == 0
    again = [j for j in server.batches.created if j.lines == first.lines]
    assert again == [first]  # the starting prompt's test scoring: collected, not submitted again
    polled = [r for r in server.requests if r.method == "GET" and r.path.endswith("/batches/" + first.id)]
    assert any(r.time > killed_at for r in polled)  # the resumed run polled the job the killed one made


def test_eval_killed_mid_poll_resumes_its_job_from_the_store_folder(
    server: LoopbackServer, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    path = write_config(tmp_path, server.openai_base)
    server.batches.polls_before_done = 10**9
    cmd = [
        sys.executable,
        "-m",
        "promptlift",
        "eval",
        str(path),
        "--provider-batch",
        "--poll-interval",
        "0.01",
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, "OPENAI_API_KEY": KEY}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not any(r.method == "GET" and "/batches/" in r.path for r in server.requests):
            assert proc.poll() is None and time.monotonic() < deadline, "eval never polled its job"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(server.batches.created) == 1 and list((tmp_path / "runs").glob("eval-batch-*.json"))
    server.batches.polls_before_done = 1
    assert main(["eval", str(path), "--provider-batch", "--poll-interval", "0.01"]) == 0
    assert len(server.batches.created) == 2  # the validation job resumed; only the test split's is new
    assert not list((tmp_path / "runs").glob("eval-batch-*.json"))
