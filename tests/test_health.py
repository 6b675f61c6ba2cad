"""Provider health the user can see: `Client.health()` in the process (breaker state, errors by
type, latency, rate-limit headroom) and `promptlift status CALL_LOG` from any shell, over real
LiteLLM calls to a loopback server that fails some of them."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

from promptlift import Client, ClientConfig
from promptlift.client.config import CallLogConfig, RateLimit
from promptlift.client.fallback import FallbackPolicy
from promptlift.client.retry import RetryPolicy
from promptlift.errors import PromptliftError
from promptlift.testing.replies import server_error
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

KEY = "sk-test-health-not-a-real-key-01"


def flaky(request: RecordedRequest) -> Reply:
    """The model "openai/down" always fails (503); "openai/up" answers."""
    return server_error(503, "overloaded") if request.model == "down" else ok("fine")


def run_calls(server: LoopbackServer, log: Path) -> Client:
    client = Client(
        ClientConfig(
            models=("openai/up",), api_base=server.openai_base, api_key=KEY,
            call_log=CallLogConfig(str(log)), retry=RetryPolicy(max_attempts=1),
            fallback=FallbackPolicy(failure_threshold=3, cooldown=60, wait_for_probe=False),
            rate_limits=(RateLimit(rpm=600, scope="openai/up"),),
        )
    )  # fmt: skip
    for i in range(4):
        client.complete(f"q{i}", temperature=0)
    for i in range(5):
        with contextlib.suppress(PromptliftError):  # each fails; the breaker opens after 3
            client.complete(f"d{i}", model="openai/down", temperature=0)
    return client


def test_the_clients_health_shows_an_open_breaker_and_the_errors(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        server.handler = flaky
        with run_calls(server, tmp_path / "calls.sqlite") as client:
            health = {h.model: h for h in client.health()}
            down, up = health["openai/down"], health["openai/up"]
    assert up.calls == 4 and up.failed == 0 and not up.degraded and up.breaker == "closed"
    assert up.rate_limit_headroom is not None and 0.0 < up.rate_limit_headroom < 1.0  # 4 of the burst used
    assert down.calls == 5 and down.failed == 5 and down.breaker == "open"
    assert down.errors == {"ProviderUnavailable": 5}, down.errors
    assert down.degraded.startswith("breaker open") and down.breaker_seconds_left > 50
    assert KEY not in json.dumps([h.to_dict() for h in health.values()])


def test_status_reads_a_call_log_from_another_process_and_flags_what_is_degraded(tmp_path: Path) -> None:
    log = tmp_path / "calls.sqlite"
    with LoopbackServer() as server:
        server.handler = flaky
        run_calls(server, log).close()

    def status_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "promptlift", "status", str(log), *args],
            capture_output=True, text=True, timeout=120, env=dict(os.environ),
        )  # fmt: skip

    shown = status_cli("--json")
    assert shown.returncode == 0, shown.stderr
    by = {h["model"]: h for h in json.loads(shown.stdout)}
    assert by["openai/up"]["calls"] == 4 and by["openai/up"]["degraded"] == ""
    down = by["openai/down"]
    assert down["failed"] == down["calls"] >= 3 and down["error_rate"] == 1.0
    assert down["degraded"].startswith("100% of") and "ProviderUnavailable" in down["degraded"]
    assert down["last_error"].startswith("ProviderUnavailable: ") and "overloaded" in down["last_error"]
    assert KEY not in shown.stdout
    text = status_cli()
    assert "DEGRADED: 100% of" in text.stdout and "openai/up" in text.stdout
    assert status_cli("--check").returncode == 1  # for a monitor: something is degraded
    assert status_cli("--since", "0.0001").stdout.strip() == "no calls recorded"  # nothing that recent
    missing = subprocess.run(
        [sys.executable, "-m", "promptlift", "status", str(tmp_path / "nope.sqlite")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        missing.returncode == 2 and "no call log at" in missing.stderr and "Traceback" not in missing.stderr
    )


def test_status_never_writes_and_refuses_a_file_that_is_not_a_call_log(tmp_path: Path) -> None:
    import hashlib

    from promptlift.optimize.store import RunStore

    store = tmp_path / "runs.sqlite"
    RunStore(store).close()
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    for path, message in ((store, "no calls table"), (empty, "not an SQLite file")):
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        done = subprocess.run(
            [sys.executable, "-m", "promptlift", "status", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # untouched
