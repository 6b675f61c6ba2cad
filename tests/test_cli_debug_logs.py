"""``-vv`` end to end: main(argv) → real LiteLLM → the loopback server, every stream captured at the
file-descriptor level (a ``print()`` and a handler holding the real stdout are both caught)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from promptlift import log as plog
from promptlift.cli import main
from promptlift.providers.litellm import import_litellm
from promptlift.testing.server import LoopbackServer, ok, unauthorized

CANARY = "azcanary-0f3b9d27c4e1a8"  # the key, as Azure's 401 body echoes it back
NAMES = (
    "promptlift",
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "httpx",
    "httpcore",
    "openai",
    "aiohttp",
)


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """-vv changes process-wide logging; every later test must find it as it was."""
    monkeypatch.setenv("AZURE_API_KEY", CANARY)
    monkeypatch.setenv("AZURE_API_VERSION", "2024-06-01")
    monkeypatch.delenv("LITELLM_LOG", raising=False)
    litellm = import_litellm()
    loggers = [logging.getLogger(n) for n in NAMES]
    saved = [(lg, lg.level, list(lg.handlers), list(lg.filters)) for lg in loggers]
    verbose = litellm.set_verbose
    yield
    litellm.set_verbose = verbose
    plog.litellm_logging(debug=False)
    for lg, level, handlers, filters in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.filters[:] = filters


def _complete(srv: LoopbackServer, *flags: str) -> int:
    argv = ["-vv", "complete", "--model", "azure/dep", "--api-base", srv.url, "--max-retries", "0"]
    return main([*argv, *flags, "hi"])


def test_vv_json_keeps_stdout_to_the_json_and_logs_redacted_to_stderr(
    loopback: LoopbackServer, capfd: pytest.CaptureFixture[str]
) -> None:
    loopback.script(ok("fine"))
    assert _complete(loopback, "--json") == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["content"] == "fine"
    assert "DEBUG LiteLLM:" in err  # -vv still shows LiteLLM's debug lines, on stderr
    assert CANARY not in out + err


def test_vv_a_401_that_echoes_the_key_prints_it_nowhere(
    loopback: LoopbackServer, capfd: pytest.CaptureFixture[str]
) -> None:
    loopback.script(unauthorized(f"Access denied: the key {CANARY} is not valid for this resource"))
    assert _complete(loopback, "--json") == 1
    out, err = capfd.readouterr()
    assert out == ""
    assert "AuthenticationFailed" in err and "RAW RESPONSE" in err  # the body was logged, redacted
    assert CANARY not in err


def test_set_verbose_and_litellm_log_print_nothing_to_stdout(
    loopback: LoopbackServer, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``litellm.set_verbose`` makes LiteLLM ``print()`` request details; ``LITELLM_LOG`` sets its
    loggers' level. Both are honoured as log lines, through redaction, on stderr."""
    monkeypatch.setenv("LITELLM_LOG", "DEBUG")
    import_litellm().set_verbose = True
    loopback.script(ok("fine"), unauthorized(f"Access denied: the key {CANARY} is not valid"))
    assert main(["complete", "--json", "--model", "azure/dep", "--api-base", loopback.url, "hi"]) == 0
    assert main(["complete", "--json", "--model", "azure/dep", "--api-base", loopback.url, "hi"]) == 1
    out, err = capfd.readouterr()
    assert json.loads(out)["content"] == "fine"  # one line: the first call's JSON, nothing else
    assert "DEBUG LiteLLM:" in err and CANARY not in out + err


@pytest.mark.slow
def test_vv_json_in_a_fresh_process_where_litellm_loads_after_the_flags(loopback: LoopbackServer) -> None:
    """The command as users run it: -vv is set before litellm is imported, and litellm logs through
    its own stdout handler while it loads."""
    loopback.script(ok("fine"))
    code = "import sys; from promptlift.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["-vv", "complete", "--json", "--model", "azure/dep", "--api-base", loopback.url, "hi"]
    env = {**os.environ, "AZURE_API_KEY": CANARY, "AZURE_API_VERSION": "2024-06-01"}
    env.pop("LITELLM_LOG", None)
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["content"] == "fine"
    assert "DEBUG LiteLLM:" in done.stderr and CANARY not in done.stdout + done.stderr
