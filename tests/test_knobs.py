"""The library's breaker and price knobs from the YAML run config and the CLI.

``fallback:`` (``FallbackPolicy``) and the rate mapping of ``prices:`` (``ModelPrice``'s cache and
reasoning rates) from YAML; ``--breaker-threshold``, ``--breaker-cooldown`` and
``--no-wait-for-probe`` on ``batch`` and ``complete``. LiteLLM over HTTP to the loopback server.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from promptlift import errors
from promptlift.cli import main
from promptlift.client.fallback import FallbackPolicy
from promptlift.optimize.config import load_config
from promptlift.optimize.session import prepare
from promptlift.pricing import ModelPrice
from promptlift.testing.replies import metered
from promptlift.testing.server import LoopbackServer, ok, server_error

KEY = "sk-test-knobs-0123456789"
ROWS = "".join(json.dumps({"text": f"t{i}", "label": "a"}) + "\n" for i in range(8))


def config_file(tmp_path: Path, **settings: Any) -> Path:
    (tmp_path / "d.jsonl").write_text(ROWS, encoding="utf-8")
    config = {
        "prompt": {"user": "{text}"},
        "dataset": {"path": "d.jsonl"},
        "metric": {"type": "exact_match", "field": "label"},
        "cache": False,
        **settings,
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# -- fallback: from YAML ---------------------------------------------------------------------------
def test_yaml_fallback_reaches_the_client_a_paused_chain_fails_fast(
    loopback: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    loopback.set_default(server_error())
    path = config_file(
        tmp_path,
        model="openai/x",
        api_base=loopback.openai_base,
        retry={"max_attempts": 1},
        fallback={"failure_threshold": 1, "cooldown": 600, "wait_for_probe": False},
    )
    prepared = prepare(load_config(path))
    with prepared.client as client:
        with pytest.raises(errors.ProviderError) as first:
            client.complete("one", max_tokens=4)
        assert "circuit open" not in str(first.value)  # the server's 500
        # the one-model chain's breaker opened after one failure (the default takes 5), and with
        # wait_for_probe false the next call fails at once instead of waiting out the cool-down
        with pytest.raises(errors.ProviderUnavailable) as second:
            client.complete("two", max_tokens=4)
    assert "circuit open" in str(second.value) and second.value.retry_after is not None
    assert second.value.retry_after > 500
    assert len(loopback.requests) == 1


def test_yaml_fallback_keys_and_their_defaults(tmp_path: Path) -> None:
    assert load_config(config_file(tmp_path)).fallback == FallbackPolicy()
    given = {"failure_threshold": 0, "cooldown": 2.5, "wait_for_probe": False}
    assert load_config(config_file(tmp_path, fallback=given)).fallback == FallbackPolicy(0, 2.5, True, False)


@pytest.mark.parametrize(
    "settings",
    [{"failure_threshold": -1}, {"failure_threshold": 1.5}, {"cooldown": -1}, {"cooldown": math.nan}],
)
def test_the_library_refuses_a_policy_that_means_nothing(settings: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError, match=next(iter(settings))):
        FallbackPolicy(**settings)


# -- fallback: from the CLI ------------------------------------------------------------------------
def test_batch_breaker_flags_reach_the_client(
    loopback: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    loopback.set_default(server_error())
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(3)))
    argv = ["batch", "--input", str(source), "--output", str(target), "--model", "openai/x"]
    argv += ["--api-base", loopback.openai_base, "--concurrency", "1", "--max-retries", "0", "--no-cache"]
    code = main([*argv, "--breaker-threshold", "1", "--breaker-cooldown", "600", "--no-wait-for-probe"])
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert code == 1 and [line["ok"] for line in lines] == [False, False, False]
    assert ["circuit open" in line["error"]["message"] for line in lines] == [False, True, True]
    assert len(loopback.requests) == 1  # lines 2 and 3 found the breaker open and did not wait


def test_complete_breaker_flags_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import promptlift.client as client_module

    seen: list[Any] = []

    class Recorder:
        def __init__(self, config: Any) -> None:
            seen.append(config)
            raise errors.ConfigError("recorded")

    monkeypatch.setattr(client_module, "Client", Recorder)
    argv = ["complete", "hi", "--model", "openai/x", "--breaker-threshold", "2", "--breaker-cooldown", "7"]
    assert main([*argv, "--no-wait-for-probe"]) == 2
    assert seen[0].fallback == FallbackPolicy(failure_threshold=2, cooldown=7.0, wait_for_probe=False)
    assert main(["complete", "hi", "--model", "openai/x"]) == 2
    assert seen[1].fallback == FallbackPolicy()


# -- prices: the rate mapping ----------------------------------------------------------------------
def test_a_yaml_cache_write_rate_prices_a_call_that_writes_the_cache(
    loopback: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    model = "anthropic/my-claude-deployment"
    loopback.set_default(metered(ok("hi", input_tokens=1000, output_tokens=50), cache_write_tokens=600))
    rates = {"input": 1.0, "output": 2.0, "cache_write": 4.0}
    path = config_file(tmp_path, model=model, api_base=loopback.url, prices={model: rates})
    with prepare(load_config(path)).client as client:
        answer = client.complete("hi", max_tokens=8)
    assert answer.usage.cache_write_tokens == 600
    assert answer.cost_usd == pytest.approx((400 * 1.0 + 600 * 4.0 + 50 * 2.0) / 1e6)


def test_yaml_prices_take_a_pair_or_every_rate(tmp_path: Path) -> None:
    prices = {
        "a/pair": [0.15, 0.6],
        "a/full": {
            "input": 0.15,
            "output": 0.6,
            "cached_input": 0.075,
            "cache_write": 0.1875,
            "reasoning": 0.6,
        },
    }
    loaded = load_config(config_file(tmp_path, prices=prices)).prices
    assert loaded["a/pair"] == ModelPrice(0.15, 0.6)
    assert loaded["a/full"] == ModelPrice(0.15, 0.6, 0.075, 0.1875, 0.6)
