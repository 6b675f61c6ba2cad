"""The client layer against the peers' call paths, on one loopback OpenAI-compatible server.

    python -m bench.clients                      # every path whose library is installed
    python -m bench.clients --paths httpx,promptlift --sizes small

The server (``bench.loopback``, a child process) answers every request after a fixed 50 ms.
Paths: raw httpx (the floor), promptlift's ``Client.acomplete``, bare ``litellm.acompletion``,
LiteLLM's ``Router.acompletion`` and DSPy's ``dspy.LM.acall``; all async, each call's prompt
distinct so nothing is served from a cache. Measured:

- overhead: mean latency of sequential calls minus the server's 50 ms, and minus raw httpx's;
- throughput (calls/s) at concurrency 1, 8, 32 and 128;
- cache-hit latency: promptlift memory and SQLite, DSPy memory and disk;
- 20% of answers 429 with ``Retry-After: 1`` (in-process server, so requests can be counted):
  success rate, requests that reached the server, time to finish, each path with 3 retries.

DSPy and LiteLLM are imported only when their path is asked for; in promptlift's own
environment only the httpx and promptlift paths exist (the others are reported as missing).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import save
from bench.loopback import ServerProcess, chooser

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

MODEL = "openai/loopback"
KEY = "sk-loopback"
PATHS = ("httpx", "promptlift", "native", "litellm", "router", "dspy")
NEEDS = {
    "litellm": "litellm",
    "router": "litellm",
    "dspy": "dspy",
    "httpx": "httpx",
    "promptlift": "litellm",
    "native": "aiohttp",
}


@dataclass(frozen=True)
class Sizes:
    sequential: int = 60
    per_level: int = 4  # calls per unit of concurrency
    min_calls: int = 40  # per concurrency level
    levels: tuple[int, ...] = (1, 8, 32, 128)
    cache_hits: int = 200
    limited_calls: int = 100
    retry_after: float = 1.0


SMALL = Sizes(
    sequential=3, per_level=1, min_calls=4, levels=(1, 8), cache_hits=5, limited_calls=10, retry_after=0.05
)


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Request {i}: classify this review. Great film."}]


class Path:
    """One call path: ``call(i)`` sends one distinct request and returns True on success."""

    name = "path"

    def failed(self, exc: BaseException) -> bool:
        """Count a failed call by its exception type (kept in ``errors``) and report it failed."""
        errors: dict[str, int] = self.__dict__.setdefault("errors", {})
        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        return False

    async def call(self, i: int) -> bool:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class HttpxPath(Path):
    name = "httpx"

    def __init__(self, base: str, retries: int = 0):
        import httpx

        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self.http = httpx.AsyncClient(base_url=base, limits=limits, timeout=30)
        self.headers = {"Authorization": f"Bearer {KEY}"}

    async def call(self, i: int) -> bool:
        r = await self.http.post(
            "/chat/completions", json={"model": "loopback", "messages": messages(i)}, headers=self.headers
        )
        return r.status_code == 200 and bool(r.json()["choices"][0]["message"]["content"])

    async def aclose(self) -> None:
        await self.http.aclose()


class PromptliftPath(Path):
    name = "promptlift"

    def __init__(self, base: str, retries: int = 2, cache: Any = None, transport: str = "litellm"):
        from promptlift import Client, ClientConfig, Secret
        from promptlift.client.config import ModelPrice
        from promptlift.client.retry import RetryPolicy

        self.client = Client(
            ClientConfig(
                models=(MODEL,),
                api_base=base,
                api_key=Secret(KEY),
                timeout=30,
                concurrency=256,
                retry=RetryPolicy(max_attempts=retries + 1),
                cache=cache,
                prices={MODEL: ModelPrice()},
                transport=transport,
            )
        )

    async def call(self, i: int) -> bool:
        from promptlift import PromptliftError

        try:
            out = await self.client.acomplete(messages(i), temperature=0)
        except PromptliftError as exc:
            return self.failed(exc)
        return bool(out.content)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.client.close)


class NativePath(PromptliftPath):
    """promptlift's ``Client`` with ``transport="native"``: the same stack, aiohttp under it."""

    name = "native"

    def __init__(self, base: str, retries: int = 2, cache: Any = None):
        super().__init__(base, retries, cache, transport="native")


class LiteLLMPath(Path):
    name = "litellm"

    def __init__(self, base: str, retries: int = 0):
        import litellm

        self.litellm, self.base, self.retries = litellm, base, retries

    async def call(self, i: int) -> bool:
        try:
            out = await self.litellm.acompletion(
                model=MODEL,
                messages=messages(i),
                api_base=self.base,
                api_key=KEY,
                timeout=30,
                num_retries=self.retries,
            )
        except Exception as exc:
            return self.failed(exc)
        return bool(out.choices[0].message.content)


class RouterPath(Path):
    name = "router"

    def __init__(self, base: str, retries: int = 0):
        from litellm import Router

        params = {"model": MODEL, "api_base": base, "api_key": KEY, "timeout": 30}
        self.router = Router(model_list=[{"model_name": "m", "litellm_params": params}], num_retries=retries)

    async def call(self, i: int) -> bool:
        try:
            out = await self.router.acompletion(model="m", messages=messages(i))
        except Exception as exc:
            return self.failed(exc)
        return bool(out.choices[0].message.content)


class DSPyPath(Path):
    name = "dspy"

    def __init__(self, base: str, retries: int = 0, cache: bool = False):
        import dspy

        self.lm = dspy.LM(MODEL, api_base=base, api_key=KEY, cache=cache, num_retries=retries, timeout=30)

    async def call(self, i: int) -> bool:
        try:
            out = await self.lm.acall(messages(i)[0]["content"])
        except Exception as exc:
            return self.failed(exc)
        return bool(out and out[0])


BUILDERS: dict[str, Callable[..., Path]] = {
    "httpx": HttpxPath,
    "promptlift": PromptliftPath,
    "native": NativePath,
    "litellm": LiteLLMPath,
    "router": RouterPath,
    "dspy": DSPyPath,
}


def available(name: str) -> bool:
    return importlib.util.find_spec(NEEDS[name]) is not None


async def run_at(path: Path, n: int, concurrency: int, start: int) -> tuple[float, int]:
    """``n`` calls with ``concurrency`` in flight: (seconds, successes)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> bool:
        async with sem:
            return await path.call(start + i)

    t0 = time.perf_counter()
    oks = await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0, sum(oks)


async def sequential(path: Path, n: int, start: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await path.call(start + i)
        out.append(time.perf_counter() - t0)
    return out


async def measure_path(name: str, base: str, sizes: Sizes, delay: float) -> dict[str, Any]:
    path = BUILDERS[name](base, 2 if name in ("promptlift", "native") else 0)
    try:
        await run_at(path, 5, 1, 10_000_000)  # warm up: imports, connections
        lat = await sequential(path, sizes.sequential, 0)
        out: dict[str, Any] = {
            "sequential_mean_ms": statistics.fmean(lat) * 1000,
            "sequential_median_ms": statistics.median(lat) * 1000,
            "overhead_ms": (statistics.fmean(lat) - delay) * 1000,
            "throughput": {},
        }
        for level in sizes.levels:
            n = max(sizes.min_calls, sizes.per_level * level)
            cpu = time.process_time()  # this process only: the server is a child process of its own
            seconds, oks = await run_at(path, n, level, 1_000_000 * (level + 1))
            out["throughput"][str(level)] = {
                "calls": n,
                "ok": oks,
                "seconds": seconds,
                "calls_per_s": n / seconds,
                "cpu_ms_per_call": (time.process_time() - cpu) / n * 1000,
            }
    finally:
        await path.aclose()
    return out


async def cache_hits(base: str, sizes: Sizes, names: list[str]) -> dict[str, Any]:
    """Mean latency of a cache hit, per cache level."""
    from promptlift.client.config import CacheConfig

    out: dict[str, Any] = {}
    n = sizes.cache_hits

    async def hits(path: Path, keys: range) -> float:
        t0 = time.perf_counter()
        for i in keys:
            assert await path.call(i)
        return (time.perf_counter() - t0) / len(keys) * 1000

    with tempfile.TemporaryDirectory() as tmp:
        if "promptlift" in names:
            mem = PromptliftPath(base, cache=CacheConfig())
            await mem.call(0)
            out["promptlift_memory_ms"] = await hits(mem, range(1))  # warm
            out["promptlift_memory_ms"] = statistics.fmean([await hits(mem, range(1)) for _ in range(n)])
            await mem.aclose()
            path = os.path.join(tmp, "cache.sqlite")
            fill = PromptliftPath(base, cache=CacheConfig(path=path))
            await run_at(fill, n, 8, 0)
            await fill.aclose()
            cold = PromptliftPath(base, cache=CacheConfig(path=path))
            out["promptlift_sqlite_ms"] = await hits(cold, range(n))
            await cold.aclose()
        if "dspy" in names:
            import dspy

            dspy.configure_cache(
                enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=tmp + "/dspy"
            )
            lm = DSPyPath(base, cache=True)
            await lm.call(0)
            out["dspy_memory_ms"] = statistics.fmean([await hits(lm, range(1)) for _ in range(n)])
            await run_at(lm, n, 8, 1000)
            dspy.cache.reset_memory_cache()
            out["dspy_disk_ms"] = await hits(lm, range(1000, 1000 + n))
    return out


async def rate_limited(names: list[str], sizes: Sizes, delay: float) -> dict[str, Any]:
    """20% 429s with Retry-After (1 s); 3 retries for every path (raw httpx: none, the floor)."""
    from promptlift.testing.server import LoopbackServer

    out: dict[str, Any] = {}
    for name in names:
        with LoopbackServer() as srv:
            srv.handler = chooser(delay, 0.2, sizes.retry_after, seed=7)
            path = BUILDERS[name](srv.openai_base, 3)
            try:
                seconds, oks = await run_at(path, sizes.limited_calls, 8, 0)
            finally:
                await path.aclose()
            reqs = srv.requests
            limited = sum(1 for r in reqs if r.protocol == "openai") - oks
            out[name] = {
                "calls": sizes.limited_calls,
                "ok": oks,
                "success_rate": oks / sizes.limited_calls,
                "requests": len(reqs),
                "requests_beyond_calls": len(reqs) - sizes.limited_calls,
                "rate_limited_answers_seen": max(0, limited),
                "seconds": seconds,
                "errors": dict(getattr(path, "errors", {})),
            }
    return out


def table(results: dict[str, Any]) -> str:
    paths = results["paths"]
    floor = paths.get("httpx", {}).get("sequential_mean_ms")
    levels = results["sizes"]["levels"]
    head = "| path | mean call ms (50 ms server) | overhead ms | vs httpx ms | " + " | ".join(
        f"calls/s @{lv}" for lv in levels
    )
    head += f" | CPU ms/call @{levels[-1]}"
    lines = [head + " |", "|---" * (5 + len(levels)) + "|"]
    for name, r in paths.items():
        if "missing" in r:
            lines.append(f"| {name} | {r['missing']} |" + " |" * (4 + len(levels)))
            continue
        rel = f"{r['sequential_mean_ms'] - floor:+.2f}" if floor else "–"
        tps = " | ".join(f"{r['throughput'][str(lv)]['calls_per_s']:.0f}" for lv in levels)
        cpu = r["throughput"][str(levels[-1])].get("cpu_ms_per_call", float("nan"))
        lines.append(
            f"| {name} | {r['sequential_mean_ms']:.2f} | {r['overhead_ms']:.2f} | {rel} | {tps} | {cpu:.2f} |"
        )
    lines += ["", "| cache | mean hit ms |", "|---|---|"]
    lines += [f"| {k.removesuffix('_ms')} | {v:.3f} |" for k, v in results["cache"].items()]
    lines += [
        "",
        "| path (3 retries) | success | requests sent | seconds |",
        "|---|---|---|---|",
    ]
    for name, r in results["rate_limited"].items():
        lines.append(f"| {name} | {r['ok']}/{r['calls']} | {r['requests']} | {r['seconds']:.2f} |")
    return "\n".join(lines)


async def amain(names: list[str], sizes: Sizes, delay: float) -> dict[str, Any]:
    results: dict[str, Any] = {"delay_s": delay, "sizes": sizes.__dict__ | {"levels": list(sizes.levels)}}
    results["paths"] = {}
    with ServerProcess(delay) as server:
        for name in names:
            if not available(name):
                results["paths"][name] = {"missing": f"{NEEDS[name]} is not installed here"}
                continue
            results["paths"][name] = await measure_path(name, server.base, sizes, delay)
            print(f"{name}: {results['paths'][name]['sequential_mean_ms']:.2f} ms", flush=True)
        ok_names = [n for n in names if available(n)]
        results["cache"] = await cache_hits(server.base, sizes, ok_names)
    results["rate_limited"] = await rate_limited(ok_names, sizes, delay)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--sizes", choices=("full", "small"), default="full")
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--name", default="clients_vs_peers")
    args = p.parse_args(argv)
    sizes = Sizes() if args.sizes == "full" else SMALL
    results = asyncio.run(amain(args.paths.split(","), sizes, args.delay))
    results["table_markdown"] = table(results)
    path = save(args.name, results)
    print(results["table_markdown"])
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
