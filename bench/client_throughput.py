"""Client throughput vs bare LiteLLM, cache-hit latency, and cache memory per 10,000 entries (issue 4).

    uv run --all-extras python -m bench.client_throughput [--calls 300] [--rounds 8] [--delay-ms 0]

1. Throughput (calls/s) at concurrency 1, 8, 32, 128: ``Client.abatch`` (cache off,
   ``config.concurrency = N``, one attempt per call, breakers off) against bare
   ``litellm.acompletion`` under an ``asyncio.Semaphore(N)`` (``num_retries=0``, ``max_retries=0``).
   Both send the same request to the same loopback server, which runs in a child process so its
   threads stay off the benchmarked interpreter's lock. Rounds alternate A/B, B/A, ... so drift in
   the machine's speed hits both sides alike; medians over rounds and the median of the per-round
   ratios are reported, with the client process's CPU time per call (less sensitive to other jobs
   on the machine than wall time).
2. Cache-hit latency p50/p99, per lookup: the memory level, and the SQLite level alone (memory level
   cold, so every lookup reads the file), at the cache API (``ResponseCache.get`` with the key;
   ``CachingProvider.lookup`` with the request, key hashing included) and end to end through
   ``Client.acomplete``. SQLite twice: entries written just now, and entries last used over a
   minute ago (the first hit then also writes ``last_used`` back, as on a re-run of yesterday's batch).
3. Memory of 10,000 cached entries: the memory level's RSS growth and tracemalloc'd bytes, and
   the SQLite file's size, for a short answer and a 1,000-character one.

Targets (issue 4): client ≥ 0.9× bare LiteLLM's throughput at concurrency 32; cache hit p50/p99
≤ 0.1 ms from memory and ≤ 2 ms from SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import machine, save
from bench.loopback import ServerProcess

MODEL = "openai/gpt-4o-mini"
KEY = "sk-bench-0000000000000000"
MESSAGES = [{"role": "user", "content": "Say hello in one word."}]
ANSWER = "Hello from the loopback server."
LEVELS = (1, 8, 32, 128)
TARGET_RATIO_AT_32 = 0.9
TARGET_MEMORY_MS = 0.1
TARGET_SQLITE_MS = 2.0


# -- helpers --------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_ms(samples_s: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples_s, 50) * 1e3, 4),
        "p99_ms": round(percentile(samples_s, 99) * 1e3, 4),
        "mean_ms": round(statistics.fmean(samples_s) * 1e3, 4),
        "n": len(samples_s),
    }


def _client(base: str, concurrency: int, cache: Any = None) -> Any:
    """The client as a user would build it, with retries and breakers off to match bare LiteLLM."""
    from promptlift import Client, ClientConfig, Secret
    from promptlift.client.fallback import FallbackPolicy
    from promptlift.client.retry import RetryPolicy

    config = ClientConfig(
        models=(MODEL,),
        api_base=base,
        api_key=Secret(KEY),
        timeout=30,
        concurrency=concurrency,
        cache=cache,
        retry=RetryPolicy(max_attempts=1),
        fallback=FallbackPolicy(failure_threshold=0),
    )
    return Client(config)


def _requests(client: Any, n: int, distinct: bool = False) -> list[Any]:
    if not distinct:
        return [client.request(MESSAGES, max_tokens=8, timeout=30)] * n
    # temperature 0: a request without one counts as sampled, which the cache skips by default
    return [
        client.request(f"Say hello in one word. ({i})", max_tokens=8, temperature=0, timeout=30)
        for i in range(n)
    ]


# -- 1. throughput --------------------------------------------------------------------------------


async def _bare_batch(litellm: Any, base: str, n: int, concurrency: int) -> int:
    """n calls of bare ``litellm.acompletion``, at most ``concurrency`` at once; returns the failures."""
    sem = asyncio.Semaphore(concurrency)

    async def one() -> Any:
        async with sem:
            return await litellm.acompletion(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=8,
                api_base=base,
                api_key=KEY,
                timeout=30,
                num_retries=0,
                max_retries=0,
            )

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return sum(isinstance(r, BaseException) for r in results)


async def _client_batch(client: Any, requests: list[Any]) -> int:
    from promptlift.errors import PromptliftError

    results = await client.abatch(requests)
    return sum(isinstance(r, PromptliftError) for r in results)


async def _timed(run: Callable[[], Awaitable[int]], n: int) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    failures = await run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"calls_per_s": n / wall, "cpu_ms_per_call": cpu / n * 1e3, "failures": failures}


async def measure_throughput(
    server: ServerProcess,
    levels: Sequence[int] = LEVELS,
    calls: int = 300,
    rounds: int = 8,
    per_slot: int = 4,
) -> dict[str, Any]:
    """Calls/s of both sides at each concurrency; ``calls`` per round, at least ``per_slot`` × N."""
    from promptlift.providers.litellm import import_litellm

    litellm = import_litellm()
    base = server.openai_base
    sent_before = server.request_count()
    sent = 0
    points: dict[str, Any] = {}
    for level in levels:
        n = max(calls, per_slot * level)
        client = _client(base, level)
        requests = _requests(client, n)
        sides: dict[str, Callable[[], Awaitable[int]]] = {
            "litellm": lambda level=level, n=n: _bare_batch(litellm, base, n, level),
            "client": lambda client=client, requests=requests: _client_batch(client, requests),
        }
        for run in sides.values():  # warm up: connections for every slot, imports, price lookups
            await run()
            sent += n
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                rows[name].append(await _timed(sides[name], n))
                sent += n
        await asyncio.to_thread(client.close)
        points[str(level)] = _point(rows, n)
    return {
        "calls_sent": sent,
        "requests_seen_by_server": server.request_count() - sent_before,
        "points": points,
    }


def _point(rows: dict[str, list[dict[str, float]]], n: int) -> dict[str, Any]:
    rate = {k: [row["calls_per_s"] for row in v] for k, v in rows.items()}
    cpu = {k: [row["cpu_ms_per_call"] for row in v] for k, v in rows.items()}
    paired = [c / b for c, b in zip(rate["client"], rate["litellm"], strict=True)]
    return {
        "calls_per_round": n,
        "rounds": len(paired),
        "median_calls_per_s": {k: round(statistics.median(v), 1) for k, v in rate.items()},
        "ratio_of_medians": round(statistics.median(rate["client"]) / statistics.median(rate["litellm"]), 3),
        "median_paired_ratio": round(statistics.median(paired), 3),
        "paired_ratio_range": [round(min(paired), 3), round(max(paired), 3)],
        "median_cpu_ms_per_call": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "cpu_ratio": round(statistics.median(cpu["client"]) / statistics.median(cpu["litellm"]), 3),
        "failures": {k: int(sum(row["failures"] for row in v)) for k, v in rows.items()},
    }


# -- 2. cache-hit latency -------------------------------------------------------------------------


def _each(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[float]:
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - started)
    return out


async def _each_async(fn: Callable[[Any], Awaitable[Any]], items: Sequence[Any]) -> list[float]:
    out = []
    for item in items:
        started = time.perf_counter()
        await fn(item)
        out.append(time.perf_counter() - started)
    return out


def _age(path: str, seconds: float) -> None:
    """Make every entry look last used ``seconds`` ago (so the next hit writes ``last_used``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE responses SET last_used = ?", (time.time() - seconds,))
    finally:
        conn.close()


async def measure_cache_latency(
    server: ServerProcess, entries: int = 1000, passes: int = 5, tmpdir: str | None = None
) -> dict[str, Any]:
    """p50/p99 per hit. ``entries`` distinct requests are answered once by the server, then hit."""
    from promptlift.client.cache import ResponseCache
    from promptlift.client.config import CacheConfig

    base = server.openai_base
    before = server.request_count()
    out: dict[str, Any] = {"entries": entries, "passes": passes}
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        # memory level
        client = _client(base, 32, CacheConfig(path=None))
        requests = _requests(client, entries, distinct=True)
        await client.abatch(requests)
        part = client.parts["cache"]
        keys = [part.key(r) for r in requests]
        out["memory"] = {
            "get": latency_ms(_each(client.cache.get, keys * passes)),
            "lookup": latency_ms(_each(part.lookup, requests * passes)),
            "client_acomplete": latency_ms(await _each_async(client.acomplete, requests * passes)),
        }
        memory_stats = client.cache.stats()
        await asyncio.to_thread(client.close)

        # SQLite level alone: the memory level is cold for every lookup timed.
        path = os.path.join(tmp, "cache.sqlite")
        writer = _client(base, 32, CacheConfig(path=path))
        await writer.abatch(requests)
        await asyncio.to_thread(writer.close)
        sqlite: dict[str, Any] = {}
        for label, stale in (("fresh", False), ("stale", True)):
            get_s: list[float] = []
            for _ in range(passes):  # a fresh ResponseCache on the same file: nothing in memory
                if stale:
                    _age(path, 3600)
                cache = ResponseCache(CacheConfig(path=path))
                get_s += _each(cache.get, keys)
                assert cache.stats().memory_hits == 0 and cache.stats().hits == entries
                cache.close()
            sqlite[f"get_{label}"] = latency_ms(get_s)
        reader = _client(base, 32, CacheConfig(path=path))
        part = reader.parts["cache"]
        lookup_s: list[float] = []
        e2e_s: list[float] = []
        for _ in range(passes):
            part.cache.memory.clear()
            lookup_s += _each(part.lookup, requests)
            part.cache.memory.clear()
            e2e_s += await _each_async(reader.acomplete, requests)
        assert reader.cache.stats().memory_hits == 0
        sqlite["lookup"] = latency_ms(lookup_s)
        sqlite["client_acomplete"] = latency_ms(e2e_s)
        out["sqlite"] = sqlite
        await asyncio.to_thread(reader.close)
    out["requests_seen_by_server"] = server.request_count() - before
    out["calls_sent"] = 2 * entries  # one fill of the memory level, one of the file; every hit is free
    out["memory_level_hits"] = memory_stats.hits
    return out


# -- 3. memory per 10,000 entries -----------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fill(cache: Any, entries: int, content_chars: int) -> int:
    """Put ``entries`` distinct answers, keyed as the client keys them; returns the JSON bytes."""
    from promptlift.client.cache import cache_key
    from promptlift.types import Completion, CompletionRequest, Message, Usage

    total = 0
    for i in range(entries):
        request = CompletionRequest(
            model=MODEL, messages=(Message("user", f"Question number {i}?"),), max_tokens=256
        )
        content = f"Answer {i}: " + "x" * max(0, content_chars - 12)
        completion = Completion(
            content=content[:content_chars],
            model=MODEL,
            provider="openai",
            usage=Usage(input_tokens=12, output_tokens=max(1, content_chars // 4)),
            cost_usd=0.0000123,
            latency_s=0.0123,
        )
        cache.put(cache_key(request, api_base="http://127.0.0.1:1/v1"), completion)
        total += len(json.dumps(completion.to_dict(), separators=(",", ":")))
    return total


def measure_memory(
    entries: int = 10_000, content_chars: int = len(ANSWER), tmpdir: str | None = None
) -> dict:
    """Bytes held by ``entries`` entries in the memory level (RSS and tracemalloc) and on disk."""
    from promptlift.client.cache import ResponseCache
    from promptlift.client.config import CacheConfig

    config = CacheConfig(path=None, memory_entries=entries)
    gc.collect()
    rss_before = _rss_bytes()
    cache = ResponseCache(config)
    json_bytes = _fill(cache, entries, content_chars)
    gc.collect()
    rss = _rss_bytes() - rss_before
    assert len(cache.memory) == entries
    del cache
    gc.collect()

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        cache = ResponseCache(config)
        _fill(cache, entries, content_chars)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del cache

    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        path = os.path.join(tmp, "cache.sqlite")
        store = ResponseCache(CacheConfig(path=path, memory_entries=0))
        _fill(store, entries, content_chars)
        assert store.stats().entries == entries
        store.close()  # checkpoints the WAL into the file
        file_bytes = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    per_10k = 10_000 / entries
    return {
        "entries": entries,
        "content_chars": content_chars,
        "json_bytes_per_entry": round(json_bytes / entries),
        "memory_rss_mib_per_10k": round(rss * per_10k / 2**20, 2),
        "memory_traced_mib_per_10k": round(traced * per_10k / 2**20, 2),
        "sqlite_file_mib_per_10k": round(file_bytes * per_10k / 2**20, 2),
    }


# -- report ---------------------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    point = results["throughput"]["points"].get("32")
    if point:
        ratio = point["median_paired_ratio"]
        out["throughput_at_32"] = {
            "value": ratio,
            "target": f">= {TARGET_RATIO_AT_32}",
            "pass": ratio >= TARGET_RATIO_AT_32,
        }
    cache = results["cache_latency"]
    for level, target, measures in (
        ("memory", TARGET_MEMORY_MS, ("get", "lookup")),
        ("sqlite", TARGET_SQLITE_MS, ("get_fresh", "get_stale", "lookup")),
    ):
        for name in measures:
            row = cache[level][name]
            out[f"{level}_{name}"] = {
                "p50_ms": row["p50_ms"],
                "p99_ms": row["p99_ms"],
                "target": f"<= {target} ms",
                "pass": row["p50_ms"] <= target and row["p99_ms"] <= target,
            }
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| concurrency | calls/round | `litellm.acompletion` calls/s | `Client.abatch` calls/s "
        "| client / litellm (median of paired rounds, range) | CPU ms/call litellm / client |",
        "|---|---|---|---|---|---|",
    ]
    for level, p in results["throughput"]["points"].items():
        rate, cpu = p["median_calls_per_s"], p["median_cpu_ms_per_call"]
        lo, hi = p["paired_ratio_range"]
        lines.append(
            f"| {level} | {p['calls_per_round']} | {rate['litellm']:.0f} | {rate['client']:.0f} | "
            f"{p['median_paired_ratio']:.2f} ({lo:.2f}–{hi:.2f}) "
            f"| {cpu['litellm']:.2f} / {cpu['client']:.2f} |"
        )
    lines += ["", "| cache hit | p50 ms | p99 ms | mean ms |", "|---|---|---|---|"]
    for level, rows in results["cache_latency"].items():
        if not isinstance(rows, dict):
            continue
        for name, row in rows.items():
            lines.append(
                f"| {level} {name} | {row['p50_ms']:.4f} | {row['p99_ms']:.4f} | {row['mean_ms']:.4f} |"
            )
    lines += [
        "",
        "| answer chars | JSON bytes/entry | memory RSS MiB / 10k | tracemalloc MiB / 10k | "
        "SQLite file MiB / 10k |",
        "|---|---|---|---|---|",
    ]
    for m in results["memory"]:
        lines.append(
            f"| {m['content_chars']} | {m['json_bytes_per_entry']} | {m['memory_rss_mib_per_10k']} | "
            f"{m['memory_traced_mib_per_10k']} | {m['sqlite_file_mib_per_10k']} |"
        )
    lines += ["", "| target | value | pass |", "|---|---|---|"]
    for name, v in results["verdicts"].items():
        value = v["value"] if "value" in v else f"p50 {v['p50_ms']} / p99 {v['p99_ms']} ms"
        lines.append(f"| {name} {v['target']} | {value} | {'pass' if v['pass'] else 'FAIL'} |")
    return "\n".join(lines)


def memory_in_child(entries: int, content_chars: int) -> dict[str, Any]:
    """``measure_memory`` in a fresh interpreter, so RSS growth is not hidden by memory freed earlier."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.client_throughput",
            "--memory-probe",
            str(content_chars),
            "--entries",
            str(entries),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return dict(json.loads(done.stdout))


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    memory = [memory_in_child(args.entries, chars) for chars in (len(ANSWER), 1000)]
    with ServerProcess(args.delay_ms / 1e3) as server:
        throughput = await measure_throughput(server, args.levels, args.calls, args.rounds)
        cache_latency = await measure_cache_latency(server, args.hit_entries, args.passes)
    return {"throughput": throughput, "cache_latency": cache_latency, "memory": memory}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per round and side (at least 4 x N)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per concurrency (A/B, B/A, ...)")
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--delay-ms", type=float, default=0.0, help="the server's answer delay")
    parser.add_argument("--hit-entries", type=int, default=1000, help="distinct cached requests to hit")
    parser.add_argument("--passes", type=int, default=5, help="hits per cached request")
    parser.add_argument("--entries", type=int, default=10_000, help="entries for the memory measurement")
    parser.add_argument("--memory-probe", type=int, metavar="CHARS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe is not None:
        print(json.dumps(measure_memory(args.entries, args.memory_probe)))
        return 0
    from promptlift.providers.litellm import import_litellm

    import_litellm()
    from importlib.metadata import version

    results = asyncio.run(amain(args))
    results["verdicts"] = verdicts(results)
    results["settings"] = {
        **{k: v for k, v in vars(args).items() if k != "memory_probe"},
        "litellm": version("litellm"),
        "load_average": os.getloadavg(),
    }
    path = save("client_throughput", results)
    print(table(results))
    print(json.dumps({"machine": machine(), "saved": str(path)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
