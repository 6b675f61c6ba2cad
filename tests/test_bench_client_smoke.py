"""A tiny run of bench/client_throughput.py, so the harness cannot rot. Structure only, no timings."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ lives beside src/, not in it

from bench import client_throughput as bench


@pytest.fixture(scope="module")
def server() -> Iterator[bench.ServerProcess]:
    with bench.ServerProcess(0.0) as srv:
        yield srv


def test_throughput_counts_every_call_and_gives_positive_ratios(server: bench.ServerProcess) -> None:
    result = asyncio.run(bench.measure_throughput(server, levels=(2,), calls=20, rounds=2, per_slot=1))
    assert result["requests_seen_by_server"] == result["calls_sent"] == 20 * 2 * 3  # 2 rounds + warm-up
    point = result["points"]["2"]
    assert point["rounds"] == 2 and point["calls_per_round"] == 20
    assert point["failures"] == {"litellm": 0, "client": 0}
    assert point["median_paired_ratio"] > 0 and point["ratio_of_medians"] > 0 and point["cpu_ratio"] > 0
    assert all(v > 0 for v in point["median_calls_per_s"].values())


def test_cache_hits_never_reach_the_server(server: bench.ServerProcess, tmp_path: Path) -> None:
    result = asyncio.run(bench.measure_cache_latency(server, entries=10, passes=2, tmpdir=str(tmp_path)))
    assert result["requests_seen_by_server"] == result["calls_sent"] == 20
    assert result["memory_level_hits"] == 10 * 2 * 3  # get, lookup and acomplete, two passes each
    rows = [*result["memory"].values(), *result["sqlite"].values()]
    assert len(rows) == 7  # memory: get, lookup, acomplete; SQLite: get fresh and stale, lookup, acomplete
    for row in rows:
        assert row["n"] == 20 and 0 < row["p50_ms"] <= row["p99_ms"]


def test_memory_per_entry_is_measured(tmp_path: Path) -> None:
    result = bench.measure_memory(entries=200, content_chars=100, tmpdir=str(tmp_path))
    assert result["entries"] == 200 and result["json_bytes_per_entry"] > 100
    assert result["memory_traced_mib_per_10k"] > 0 and result["sqlite_file_mib_per_10k"] > 0


def test_report_renders_verdicts(server: bench.ServerProcess, tmp_path: Path) -> None:
    results = {
        "throughput": asyncio.run(
            bench.measure_throughput(server, levels=(32,), calls=10, rounds=2, per_slot=1)
        ),
        "cache_latency": asyncio.run(bench.measure_cache_latency(server, 5, 1, str(tmp_path))),
        "memory": [bench.measure_memory(50, 31, str(tmp_path))],
    }
    results["verdicts"] = bench.verdicts(results)
    assert set(results["verdicts"]) == {
        "throughput_at_32",
        "memory_get",
        "memory_lookup",
        "sqlite_get_fresh",
        "sqlite_get_stale",
        "sqlite_lookup",
    }
    text = bench.table(results)
    assert "| 32 |" in text and "throughput_at_32" in text


def test_judge_bench_counts_the_judges_calls(server: bench.ServerProcess) -> None:
    from bench import judge

    # evaluate_once raises unless the evaluation counted one task and one judge call per row
    assert judge.evaluate_once(server.base, rows=6, concurrency=3, judged=True) > 0
    assert judge.evaluate_once(server.base, rows=6, concurrency=3, judged=False) > 0
