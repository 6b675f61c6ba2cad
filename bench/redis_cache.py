"""Cache-hit latency: Redis vs SQLite vs memory (issue 18).

Per backend, ``--entries`` distinct answers are written, then read back ``--passes`` times:
``get`` is ``ResponseCache.get(key)``, ``acomplete`` is ``Client.acomplete`` end to end (metrics,
budget, cache) on a hit. For SQLite and Redis the memory level is off (``memory_entries=0``), so
every hit comes from the store. Redis is Debian's ``redis-server`` on a loopback port, started here
(``promptlift.testing.redis_server``), with no persistence.

    uv run --all-extras python -m bench.redis_cache [--entries 1000] [--passes 5]

Writes ``bench/results/redis_cache.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, save


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "n": len(ordered),
    }


def measure(path: str | None, memory_entries: int, entries: int, passes: int) -> dict[str, Any]:
    from promptlift import Client, ClientConfig
    from promptlift.client.config import CacheConfig
    from promptlift.testing import FunctionProvider

    config = ClientConfig(models=("openai/m",), cache=CacheConfig(path=path, memory_entries=memory_entries))
    provider = FunctionProvider(lambda r: "an answer of about thirty chars")
    with Client(config, provider=provider) as client:
        requests = [client.request(f"question {i}", temperature=0) for i in range(entries)]
        for request in requests:
            client.complete(request)
        cache_part = client.parts["cache"]
        keys = [cache_part.key(r) for r in requests]  # type: ignore[attr-defined]
        cache = client.cache
        assert cache is not None
        gets: list[float] = []
        for _ in range(passes):
            for key in keys:
                started = time.perf_counter()
                assert cache.get(key) is not None
                gets.append(time.perf_counter() - started)

        async def hits() -> list[float]:
            out = []
            for _ in range(passes):
                for request in requests:
                    started = time.perf_counter()
                    answer = await client.acomplete(request)
                    out.append(time.perf_counter() - started)
                    assert answer.cached
            return out

        completes = asyncio.run(hits())
    assert len(provider.requests) == entries  # every read was a hit
    return {"get": percentiles(gets), "acomplete": percentiles(completes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    from promptlift.testing.redis_server import RedisServer

    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {"entries": args.entries, "passes": args.passes, "redis_server": version}
    results["memory"] = measure(None, 10_000, args.entries, args.passes)
    with tempfile.TemporaryDirectory() as folder:
        sqlite = str(Path(folder) / "cache.sqlite")
        results["sqlite"] = measure(sqlite, 0, args.entries, args.passes)
    with RedisServer() as server:
        results["redis"] = measure(server.url, 0, args.entries, args.passes)
    path = save("redis_cache", results)
    print({"machine": machine(), **results})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
