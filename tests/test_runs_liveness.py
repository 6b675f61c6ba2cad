"""A `running` run whose process is gone lists as killed; another host's silent run as stale?."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from promptlift.optimize.liveness import STALE_AFTER_S, owner
from promptlift.optimize.store import RunStore


def _set_owner(store: RunStore, run_id: str, recorded: dict[str, object], updated: float) -> None:
    conn = sqlite3.connect(store.path)
    conn.execute(
        "UPDATE runs SET owner = ?, updated = ? WHERE id = ?", (json.dumps(recorded), updated, run_id)
    )
    conn.commit()
    conn.close()


def test_this_process_runs_and_a_gone_or_reused_pid_is_killed(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    alive = store.create_run("fewshot", {})
    assert store.runs()[0]["status"] == "running"
    gone = store.create_run("fewshot", {})
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _set_owner(store, gone, {**owner(), "pid": int(child.stdout)}, time.time())  # reaped: pid is free
    reused = store.create_run("fewshot", {})
    _set_owner(store, reused, {**owner(), "start": (owner()["start"] or 0) + 1}, time.time())
    rebooted = store.create_run("fewshot", {})
    _set_owner(store, rebooted, {**owner(), "boot": "another-boot"}, time.time())
    listed = {r["id"]: r["status"] for r in store.runs()}
    assert listed == {alive: "running", gone: "killed", reused: "killed", rebooted: "killed"}
    assert store.run(gone)["status"] == "killed"
    store.claim_run(gone)  # --resume: this process owns it now
    assert store.run(gone)["status"] == "running"


def test_another_hosts_run_is_stale_when_silent(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    elsewhere = {**owner(), "host": "another-host", "pid": 1}
    recent, silent = store.create_run("fewshot", {}), store.create_run("fewshot", {})
    _set_owner(store, recent, elsewhere, time.time() - 60)
    _set_owner(store, silent, elsewhere, time.time() - STALE_AFTER_S - 60)
    assert {r["id"]: r["status"] for r in store.runs()} == {recent: "running", silent: "stale?"}
    store.finish_run(silent, "finished", {})
    assert store.run(silent)["status"] == "finished"
