"""`--resume` of a run whose process is alive is refused (one line, exit 2, nothing sent); the claim
is atomic (of two resumers racing, one wins); a run whose process was killed still resumes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.optimize.liveness import RunInUse, _start_ticks, owner
from promptlift.optimize.store import RunStore
from promptlift.testing.server import LoopbackServer, ok

CONFIG = (
    "model: openai/loop\napi_base: {base}\n"
    "prompt: {{system: 'Label it.', user: 'Text: {{text}}\\nLabel:', params: {{max_tokens: 2}}}}\n"
    "dataset: {{path: rows.jsonl}}\nmetric: {{type: exact_match, field: label}}\n"
    "optimizer: {{name: fewshot, params: {{trials: 3}}}}\n"
    "budget: {{max_calls: 60}}\nstore: runs/\ncache: false\n"
)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _owned_by(store_path: Path, run_id: str, pid: int) -> None:
    """The run as a live process left it: running, owned by ``pid`` on this host and boot."""
    for _ in range(100):  # /proc/PID/stat is there as soon as the child is forked
        if _start_ticks(pid) is not None:
            break
        time.sleep(0.01)
    recorded = {**owner(), "pid": pid, "start": _start_ticks(pid)}
    conn = sqlite3.connect(store_path)
    conn.execute(
        "UPDATE runs SET status = 'running', owner = ?, updated = ? WHERE id = ?",
        (json.dumps(recorded), time.time(), run_id),
    )
    conn.commit()
    conn.close()


def test_resume_of_a_live_run_is_refused_before_any_call_and_a_killed_one_resumes(
    tmp_path: Path,
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000")
    loopback.set_default(ok("a"))
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"text": "t{i}", "label": "a"}}\n' for i in range(16)))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(base=loopback.openai_base))
    assert main(["optimize", str(config), "--yes", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    sent = len(loopback.requests)

    child = _sleeper()  # the process that drives the run, still alive
    try:
        _owned_by(tmp_path / "runs" / "runs.sqlite", run_id, child.pid)
        assert main(["optimize", str(config), "--yes", "--resume", run_id]) == 2
        out, err = capsys.readouterr()
        assert out == ""  # refused before the plan is printed
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(
            f"promptlift: error: run {run_id} is running (its process is alive: pid {child.pid}"
        )
        assert len(loopback.requests) == sent  # nothing sent
        # the library path refuses it too (run_config claims the run atomically)
        from promptlift.optimize.config import load_config
        from promptlift.optimize.session import run_config

        with pytest.raises(RunInUse):
            run_config(load_config(config), resume=run_id)
        assert len(loopback.requests) == sent
        store = RunStore(tmp_path / "runs")
        assert store.run(run_id)["status"] == "running"  # still the other process's
        store.close()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    # its process killed (SIGKILL writes no end): the run is resumable
    assert main(["optimize", str(config), "--yes", "--json", "--resume", run_id]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == run_id


RESUMER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from promptlift.optimize.store import RunStore
    from promptlift.optimize.liveness import RunInUse

    store = RunStore(sys.argv[1])
    go = Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.005)
    try:
        store.claim_run(sys.argv[2])
        print("won", flush=True)
    except RunInUse as exc:
        print("refused", exc, flush=True)
    time.sleep(3)  # alive while the other one claims: as a resumed run's process would be
    """
)


def test_two_processes_resuming_one_run_exactly_one_wins(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run("fewshot", {})
    store.finish_run(run_id, "failed", {"error": "ProviderUnavailable: 503"})
    store.close()
    go = tmp_path / "go"
    script = tmp_path / "resumer.py"
    script.write_text(RESUMER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "runs"), run_id, str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(1.0)  # both have opened the store and wait
    go.touch()
    outs = [p.communicate(timeout=60)[0] for p in procs]
    won = [o for o in outs if o.startswith("won")]
    refused = [o for o in outs if o.startswith("refused")]
    assert len(won) == 1 and len(refused) == 1, outs
    winner = procs[outs.index(won[0])].pid
    assert f"its process is alive: pid {winner}" in refused[0]
    store = RunStore(tmp_path / "runs")
    try:
        stored = (
            sqlite3.connect(store.path).execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        )
        assert json.loads(stored[0])["pid"] == winner
        assert store.run(run_id)["status"] == "killed"  # both have exited now
    finally:
        store.close()


def test_another_hosts_run_is_refused_while_it_writes_and_claimable_once_stale(tmp_path: Path) -> None:
    from promptlift.optimize.liveness import STALE_AFTER_S

    store = RunStore(tmp_path / "runs")
    run_id = store.create_run("fewshot", {})
    store.close()
    elsewhere = {**owner(), "host": "another-host", "pid": 4242}
    conn = sqlite3.connect(tmp_path / "runs" / "runs.sqlite")
    conn.execute(
        "UPDATE runs SET owner = ?, updated = ? WHERE id = ?", (json.dumps(elsewhere), time.time(), run_id)
    )
    conn.commit()
    store = RunStore(tmp_path / "runs")
    with pytest.raises(
        RunInUse, match=r"is running \(pid 4242 on another-host, which wrote to the store \d+ s ago\)"
    ):
        store.claim_run(run_id)
    conn.execute(
        "UPDATE runs SET updated = ? WHERE id = ?", (time.time() - STALE_AFTER_S - 60, run_id)
    )  # silent for longer than a live run ever is: `stale?`
    conn.commit()
    conn.close()
    store.claim_run(run_id)
    assert store.run(run_id)["status"] == "running" and store.owner_of(run_id) == owner()
    store.close()
