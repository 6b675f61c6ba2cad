"""`promptlift status CALL_LOG` for an endpoint where every call failed: the call log records each
failed call's real attempts and latency (retries included), so status shows them, not 0 ms and
0 retries; a call never sent (refused by a budget) records 0 attempts and no latency."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from promptlift import Client, ClientConfig
from promptlift.client.calllog import CallLog
from promptlift.client.config import CallLogConfig
from promptlift.client.health import EndpointHealth, render
from promptlift.client.retry import RetryPolicy
from promptlift.errors import PromptliftError
from promptlift.testing.replies import server_error, slow
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

KEY = "sk-test-status-not-a-real-key-01"
DELAY = 0.05


def handler(request: RecordedRequest) -> Reply:
    """ "openai/down" fails every request (503, after DELAY s); "openai/up" answers."""
    return slow(DELAY, server_error(503, "overloaded")) if request.model == "down" else ok("fine")


def status(log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptlift", "status", str(log), *args],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip


def test_status_shows_the_attempts_and_latency_of_failed_calls(tmp_path: Path) -> None:
    log = tmp_path / "calls.sqlite"
    with LoopbackServer() as server:
        server.handler = handler
        client = Client(
            ClientConfig(
                models=("openai/up",), api_base=server.openai_base, api_key=KEY,
                call_log=CallLogConfig(str(log)),
                retry=RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.02, jitter=False),
            )
        )  # fmt: skip
        with client:
            client.complete("q", temperature=0)
            for i in range(2):
                with contextlib.suppress(PromptliftError):
                    client.complete(f"d{i}", model="openai/down", temperature=0)
        sent_down = sum(1 for r in server.requests if r.model == "down")
    assert sent_down == 6  # 2 calls × 3 attempts

    reader = CallLog(str(log))
    rows = [r for r in reader.rows() if r["model"] == "openai/down"]
    reader.close()
    assert [r["attempts"] for r in rows] == [3, 3] and all(not r["ok"] for r in rows)
    assert all(r["latency_s"] >= 3 * DELAY for r in rows)  # the failure's whole time, retries included

    shown = status(log, "--json")
    assert shown.returncode == 0, shown.stderr
    down = {h["model"]: h for h in json.loads(shown.stdout)}["openai/down"]
    assert down["calls"] == down["failed"] == 2
    assert down["retries"] == 4 and down["attempts"] == 6
    assert down["latency_p50_s"] >= 3 * DELAY and down["latency_p95_s"] >= down["latency_p50_s"]
    text = status(log)
    line = next(x for x in text.stdout.splitlines() if x.startswith("openai/down"))
    assert " · 4 retries · " in line and " 0 ms" not in line, line
    p50 = int(line.split(" · p50 ")[1].split(" ms")[0])
    assert p50 >= 3 * DELAY * 1000, line


def test_a_call_never_sent_records_no_attempt_and_status_shows_no_made_up_latency(tmp_path: Path) -> None:
    from promptlift.client.config import Budget

    log = tmp_path / "calls.sqlite"
    with LoopbackServer() as server:
        server.handler = handler
        client = Client(
            ClientConfig(
                models=("openai/up",), api_base=server.openai_base, api_key=KEY,
                call_log=CallLogConfig(str(log)), budget=Budget(max_calls=0),
            )
        )  # fmt: skip
        with client, contextlib.suppress(PromptliftError):
            client.complete("q", model="openai/down", temperature=0)
        assert not server.requests
    shown = status(log, "--json")
    assert shown.returncode == 0, shown.stderr
    (down,) = json.loads(shown.stdout)
    assert down["calls"] == down["failed"] == 1 and down["attempts"] == 0 and down["retries"] == 0
    assert down["latency_p50_s"] is None and down["latency_p95_s"] is None
    assert " · p50 - · p95 - · " in status(log).stdout
    assert "p50 - · p95 -" in render([EndpointHealth("m", "", 1, 1, latency_p50_s=None, latency_p95_s=None)])
