"""``promptlift batch`` and ``promptlift cache`` end to end: LiteLLM over HTTP to the loopback server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlift.cli import main
from promptlift.testing.server import LoopbackServer, bad_request, ok

CANARY = "sk-canary-batch-0123456789abcdef"


@pytest.fixture(scope="module")
def srv() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def server(srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    srv.reset()
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    return srv


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def batch(srv: LoopbackServer, tmp: Path, inp: Path, *extra: str) -> int:
    cache = [] if "--no-cache" in extra else ["--cache", str(tmp / "cache.sqlite")]
    argv = ["batch", "--input", str(inp), "--output", str(tmp / "out.jsonl"), "--model", "openai/x"]
    return main([*argv, "--api-base", srv.openai_base, *cache, "--timeout", "10", *extra])


def test_every_line_answered_in_input_order_and_rerun_calls_nothing(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.handler = lambda r: ok("answer to " + r.json["messages"][-1]["content"])
    rows: list[object] = [{"id": i, "prompt": f"q{i}"} for i in range(20)]
    rows[3] = {
        "id": 3,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q3"}],
    }
    rows[7] = "{not json"
    rows[9] = {"id": 9, "prompt": "q9", "temperature": 0.0, "max_tokens": 5}
    inp = write_lines(tmp_path / "in.jsonl", rows)
    caplog.set_level(logging.DEBUG, logger="promptlift")
    assert batch(server, tmp_path, inp, "--concurrency", "8", "--metrics-json", str(tmp_path / "m.json")) == 1
    out = read_lines(tmp_path / "out.jsonl")
    assert len(out) == 20
    assert [o["id"] for o in out] == [*range(7), None, *range(8, 20)]
    assert out[7]["ok"] is False and out[7]["error"]["type"] == "DatasetError"  # type: ignore[index]
    good = [o for i, o in enumerate(out) if i != 7]
    assert all(o["ok"] and o["content"] == f"answer to q{o['id']}" and not o["cached"] for o in good)
    assert len(server.requests) == 19
    sent = {r.json["messages"][-1]["content"]: r.json for r in server.requests}
    assert sent["q9"]["max_tokens"] == 5 and sent["q3"]["messages"][0]["role"] == "system"
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["total"]["attempts"] == len(server.requests) == 19
    # Re-run, as after a kill: nothing already answered is sent again; the unreadable line is re-read.
    assert batch(server, tmp_path, inp) == 1
    again = read_lines(tmp_path / "out.jsonl")
    assert len(server.requests) == 19
    assert [o for i, o in enumerate(again) if i != 7] == good  # kept from the output file as they were
    assert again[7]["ok"] is False and again[7]["line"] == 8
    # The key went to the server, and nowhere else.
    assert {r.key for r in server.requests} == {CANARY}
    for f in tmp_path.iterdir():
        assert CANARY.encode() not in f.read_bytes(), f
    assert CANARY not in caplog.text


def test_a_failed_line_never_loses_the_others(server: LoopbackServer, tmp_path: Path) -> None:
    server.script(bad_request("nope"), model="x")
    server.set_default(ok("fine"))
    inp = write_lines(tmp_path / "in.jsonl", [{"id": "a", "prompt": "p"}])
    assert batch(server, tmp_path, inp, "--no-cache") == 1
    inp = write_lines(tmp_path / "in.jsonl", [{"id": i, "prompt": f"p{i}"} for i in range(5)])
    assert batch(server, tmp_path, inp, "--no-cache", "--concurrency", "1") == 0
    assert [o["ok"] for o in read_lines(tmp_path / "out.jsonl")] == [True] * 5


def test_max_cost_stops_sending_and_records_unsent_lines(server: LoopbackServer, tmp_path: Path) -> None:
    # $1 per million tokens in and out; each call reserves (input estimate + 10) tokens and really
    # uses 5 + 10. The cap fits a handful of calls; then the budget closes.
    server.set_default(ok("one two three four five six seven eight nine ten", input_tokens=5))
    inp = write_lines(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"} for i in range(30)])
    price = ["--input-price", "1000000", "--output-price", "1000000", "--max-tokens", "10"]
    code = batch(server, tmp_path, inp, "--max-cost", "100", "--concurrency", "4", *price)
    out = read_lines(tmp_path / "out.jsonl")
    paid = [o for o in out if o["ok"]]
    refused = [o for o in out if not o["ok"]]
    assert code == 1 and len(out) == 30
    assert paid and refused
    assert {o["error"]["type"] for o in refused} == {"BudgetExceeded"}  # type: ignore[index]
    assert sum(o["cost_usd"] for o in paid) <= 100.0  # type: ignore[misc]
    assert all(o["cost_usd"] == pytest.approx(15.0) for o in paid)
    assert len(server.requests) == len(paid)
    # Re-run with a bigger budget: the paid lines come from the cache, only the rest are sent.
    before = len(server.requests)
    assert batch(server, tmp_path, inp, "--max-cost", "1000", *price) == 0
    assert len(server.requests) - before == len(refused)


def test_cache_command_stats_and_clear(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = write_lines(tmp_path / "in.jsonl", [{"id": i, "prompt": f"p{i}"} for i in range(3)])
    assert batch(server, tmp_path, inp) == 0
    capsys.readouterr()
    assert main(["cache", "stats", "--cache", str(tmp_path / "cache.sqlite")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 3 and stats["namespaces"]["default"]["entries"] == 3
    assert main(["cache", "clear", "--cache", str(tmp_path / "cache.sqlite")]) == 0
    assert "removed 3" in capsys.readouterr().out
    assert main(["cache", "stats", "--cache", str(tmp_path / "missing.sqlite")]) == 2


def test_help_does_not_import_litellm() -> None:
    code = "import sys; from promptlift.cli import main; main(['batch', '--help']); print('litellm' in sys.modules)"  # noqa: E501
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
