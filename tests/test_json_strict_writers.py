"""Every JSON writer writes strict JSON: a NaN reaches `complete --json`, the batch output, the
response cache and the metrics snapshot as null (`promptlift.jsonout.dumps`).

A NaN cannot come from a server here (our pricing turns finite prices into the cost), so it is put in
where a bad price map entry would put it: the provider's cost function, with the call on the wire."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from promptlift import pricing
from promptlift.cli import main
from promptlift.client.metrics import MetricsSnapshot, ModelStats
from promptlift.testing.server import LoopbackServer, ok


def _strict(text: str) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def nan_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-json-test-000000001")
    monkeypatch.setattr(pricing, "cost_usd", lambda *a, **k: math.nan)


@pytest.mark.usefixtures("nan_cost")
def test_complete_json(loopback: LoopbackServer, capsys: pytest.CaptureFixture[str]) -> None:
    loopback.set_default(ok("hello"))
    argv = ["complete", "--model", "openai/x", "--api-base", loopback.openai_base, "--json", "hi"]
    assert main(argv) == 0
    out = _strict(capsys.readouterr().out)
    assert out["content"] == "hello" and out["cost_usd"] is None


@pytest.mark.usefixtures("nan_cost")
def test_batch_output_line_and_its_cache_entry(loopback: LoopbackServer, tmp_path: Path) -> None:
    loopback.set_default(ok("hello"))
    inp, out, cache = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "cache.sqlite"
    inp.write_text('{"prompt": "hi"}\n')
    argv = ["batch", "--input", str(inp), "--output", str(out), "--model", "openai/x", "--cache", str(cache)]
    assert main([*argv, "--api-base", loopback.openai_base]) == 0
    (line,) = out.read_text().splitlines()
    record = _strict(line)
    assert record["ok"] is True and record["cost_usd"] is None
    (value,) = sqlite3.connect(cache).execute("SELECT value FROM responses").fetchone()
    assert _strict(value)["cost_usd"] is None
    out.unlink()
    assert main([*argv, "--api-base", loopback.openai_base]) == 0  # the null entry reads back
    assert _strict(out.read_text())["cached"] is True
    assert len(loopback.requests) == 1


def test_metrics_snapshot_json() -> None:
    stats = ModelStats(**{f: math.nan if f.endswith("_s") else 0 for f in ModelStats.__dataclass_fields__})
    text = MetricsSnapshot(models={"openai/x": stats}, total=stats).to_json()
    assert _strict(text)["total"]["latency_p50_s"] is None
