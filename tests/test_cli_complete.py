"""``promptlift complete`` end to end: main(argv) → Client → real LiteLLM → the loopback server."""

from __future__ import annotations

import json
import logging

import pytest

from promptlift import log as plog
from promptlift.cli import main
from promptlift.testing.server import LoopbackServer, ok, server_error, unauthorized

Capture = pytest.CaptureFixture[str]
JSON_FIELDS = {
    "content",
    "model",
    "provider",
    "usage",
    "cost_usd",
    "latency_s",
    "attempts",
    "cached",
    "finish_reason",
    "fallback_used",
}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-test-000000001")


def test_json_output_has_every_listed_field(loopback: LoopbackServer, capsys: Capture) -> None:
    loopback.script(ok("bonjour", input_tokens=9, output_tokens=1))
    argv = ["complete", "--model", "openai/gpt-4o-mini", "--api-base", loopback.openai_base, "--json"]
    code = main([*argv, "--system", "answer in French", "--temperature", "0.1", "--max-tokens", "5", "hi"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(out) >= JSON_FIELDS
    assert (
        out["content"] == "bonjour" and out["model"] == "openai/gpt-4o-mini" and out["provider"] == "openai"
    )
    assert out["usage"] == {
        "input_tokens": 9,
        "output_tokens": 1,
        "total_tokens": 10,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "reported": True,
    }
    assert out["attempts"] == 1 and out["fallback_used"] is False and out["cached"] is False
    body = loopback.requests[0].json
    assert body["messages"][0] == {"role": "system", "content": "answer in French"}
    assert body["temperature"] == 0.1 and body["max_tokens"] == 5


def test_repeated_model_is_a_fallback_chain_and_max_retries_counts(
    loopback: LoopbackServer, capsys: Capture
) -> None:
    loopback.set_default(server_error(503), model="first")
    argv = [
        "complete",
        "--model",
        "openai/first",
        "--model",
        "openai/second",
        "--api-base",
        loopback.openai_base,
    ]
    code = main([*argv, "--max-retries", "1", "--json", "hi"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["model"] == "openai/second" and out["fallback_used"] is True
    assert out["attempts"] == 3
    assert [r.model for r in loopback.requests] == ["first", "first", "second"]


def test_plain_output(loopback: LoopbackServer, capsys: Capture) -> None:
    loopback.script(ok("just the text"))
    assert main(["complete", "--model", "openai/m", "--api-base", loopback.openai_base, "hi"]) == 0
    assert capsys.readouterr().out == "just the text\n"


def test_a_failed_call_exits_1_with_one_line(loopback: LoopbackServer, capsys: Capture) -> None:
    loopback.set_default(unauthorized())
    code = main(
        ["complete", "--model", "openai/m", "--api-base", loopback.openai_base, "--max-retries", "5", "hi"]
    )
    err = capsys.readouterr().err
    assert code == 1 and len(loopback.requests) == 1
    assert err.count("\n") == 1 and err.startswith("promptlift: error: AuthenticationFailed (HTTP 401)")
    assert "sk-cli-test-000000001" not in err


def test_config_and_usage_errors_exit_2(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["complete", "--model", "anthropic/claude-3-5-haiku-20241022", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ConfigError" in err and "ANTHROPIC_API_KEY" in err
    assert main(["complete", "--max-retries", "-1", "hi"]) == 2
    assert main(["complete", "--timeout", "0", "hi"]) == 2


def test_vv_keeps_litellm_logs_on_after_litellm_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """-vv turns LiteLLM's loggers on; the provider silences them when it imports litellm, which
    happens later, and must not undo the -vv."""
    monkeypatch.delenv("LITELLM_LOG", raising=False)
    names = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
    levels = {n: logging.getLogger(n).level for n in names}
    handlers = list(plog.logger.handlers)
    try:
        plog.configure_cli_logging(2)
        plog.litellm_logging()  # what providers.litellm.import_litellm calls
        assert {logging.getLogger(n).level for n in names} == {logging.DEBUG}
        plog.configure_cli_logging(0)
        plog.litellm_logging()
        assert {logging.getLogger(n).level for n in names} == {logging.CRITICAL}
    finally:
        plog.litellm_logging(debug=False)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
        plog.logger.handlers[:] = handlers
