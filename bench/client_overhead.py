"""Mean per-call time of Client.acomplete vs bare litellm.acompletion vs raw httpx, concurrency 1.

All three send the same OpenAI chat-completions request to the same loopback server
(``promptlift.testing.server``), one call at a time, in interleaved rounds so that drift in the
machine's speed hits each the same. The client runs its whole default stack (metrics, budget
bookkeeping, fallback, retry, attempt meter) with the cache off.

    uv run --all-extras python -m bench.client_overhead [--calls 2000] [--rounds 10]

Target (issue 3): Client.acomplete within 1.15x of bare litellm.acompletion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

KEY = "sk-bench-0000000000000000"
MESSAGES = [{"role": "user", "content": "Say hello in one word."}]


async def _time(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def measure(calls: int, rounds: int) -> dict[str, Any]:
    import httpx

    from promptlift import Client, ClientConfig, Secret
    from promptlift.providers.litellm import import_litellm
    from promptlift.testing.server import LoopbackServer

    litellm = import_litellm()
    with LoopbackServer() as srv:
        url = srv.openai_base + "/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 8}
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"})
        client = Client(
            ClientConfig(models=("openai/gpt-4o-mini",), api_base=srv.openai_base, api_key=Secret(KEY))
        )

        async def raw() -> None:
            (await http.post(url, json=body)).json()

        async def bare() -> None:
            await litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=MESSAGES,
                max_tokens=8,
                api_base=srv.openai_base,
                api_key=KEY,
                timeout=30,
                num_retries=0,
                max_retries=0,
            )

        async def ours() -> None:
            await client.acomplete(MESSAGES, max_tokens=8, timeout=30)

        contenders = {"raw_httpx": raw, "litellm_acompletion": bare, "client_acomplete": ours}
        for call in contenders.values():  # warm up connections, imports, price lookups
            await _time(call, 50)
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        per_round = max(1, calls // rounds)
        for _ in range(rounds):
            for name, call in contenders.items():
                samples[name] += await _time(call, per_round)
        await http.aclose()
        client.close()
        requests = len(srv.requests)
    means = {name: statistics.fmean(s) for name, s in samples.items()}
    return {
        "calls_each": per_round * rounds,
        "requests_seen_by_server": requests,
        "mean_ms": {k: round(v * 1e3, 3) for k, v in means.items()},
        "median_ms": {k: round(statistics.median(s) * 1e3, 3) for k, s in samples.items()},
        "client_vs_litellm": round(means["client_acomplete"] / means["litellm_acompletion"], 3),
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per contender")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    result = asyncio.run(measure(args.calls, args.rounds))
    print(json.dumps({"machine": machine(), **result}, indent=2))


if __name__ == "__main__":
    main()
