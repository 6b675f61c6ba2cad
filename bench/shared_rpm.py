"""Three processes under one shared rpm limit vs one process alone (issue 18).

One loopback server (``promptlift.testing.server``) stamps every request's arrival; Debian's
``redis-server`` on a loopback port holds the shared bucket. Three scenarios, each with
``--calls`` calls per process, run in one go so they see the same machine load:

- ``alone``: one process, its limit in Redis (what one job gets);
- ``shared``: three processes at once, one limit in Redis between them (the limit must hold: their
  arrivals together never exceed the burst plus the rate);
- ``local``: three processes at once, each with its own in-process limit (what a team gets without
  the shared bucket: three times the quota, the provider's 429s).

For each: the calls the server saw, the throughput over the run (calls after the burst divided by
the time from the first arrival to the last), the limit, and the worst window (the most arrivals
above ``burst + rate × window`` over every window; 0 means the limit held).

    uv run --all-extras python -m bench.shared_rpm [--rpm 1200] [--calls 60]

Writes ``bench/results/shared_rpm.json``.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import textwrap
import time
from typing import Any

from bench.common import machine, save

# Seconds by which a send and the server's arrival stamp may disagree (the tests' allowance too).
SLACK = 0.03

CHILD = textwrap.dedent(
    """
    import sys
    from promptlift import Client, ClientConfig, Secret
    from promptlift.client.config import RateLimit

    redis_url, base, who, n, rpm, burst_s = sys.argv[1:7]
    shared = redis_url if redis_url != "-" else None
    limit = RateLimit("openai/x", rpm=float(rpm), burst_s=float(burst_s), shared=shared)
    config = ClientConfig(
        models=("openai/x",), api_base=base, api_key=Secret("sk-bench-shared-rpm-0000"),
        concurrency=32, rate_limits=(limit,), transport="native",
    )
    with Client(config) as client:
        client.complete("warm up " + who, temperature=0)  # imports and connections before the clock
        print("ready", flush=True)
        sys.stdin.readline()
        results = client.batch([client.request(f"{who} {i}", temperature=0) for i in range(int(n))])
    print(sum(isinstance(r, Exception) for r in results), flush=True)
    """
)


def run(server: Any, redis_url: str, processes: int, calls: int, rpm: float, burst_s: float) -> None:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                redis_url,
                server.openai_base,
                f"p{i}",
                *map(str, (calls, rpm, burst_s)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(proc.stderr.read() if proc.stderr else line)
        time.sleep(burst_s + 0.5)  # every bucket full again after the warm-up calls
        server.reset()  # only the measured calls
        go_and_wait(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def go_and_wait(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0 or out.strip() != "0":
            raise RuntimeError(f"a process failed calls: {out.strip()} {err[-500:]}")


def worst_window(times: list[float], rate: float, burst: float) -> int:
    """The most arrivals in any window above what the bucket allows in it (0: the limit held)."""
    times = sorted(times)
    worst = 0
    for i in range(len(times)):
        for j in range(i, len(times)):
            allowed = burst + (times[j] - times[i]) * rate
            worst = max(worst, math.ceil((j - i + 1) - allowed - SLACK * rate))
    return max(0, worst)


def measure(
    server: Any, redis_url: str, processes: int, calls: int, rpm: float, burst_s: float
) -> dict[str, Any]:
    run(server, redis_url, processes, calls, rpm, burst_s)
    times = sorted(r.time for r in server.requests)
    rate, burst = rpm / 60, rpm / 60 * burst_s
    span = times[-1] - times[0]
    per_s = (len(times) - burst) / span if span > 0 else float("inf")
    return {
        "processes": processes,
        "calls": len(times),
        "limit_per_s": rate,
        "throughput_per_s": round(per_s, 2),
        "of_limit": round(per_s / rate, 3),
        "seconds": round(span, 2),
        "over_limit_in_worst_window": worst_window(times, rate, burst),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rpm", type=float, default=1200.0)
    parser.add_argument("--calls", type=int, default=60, help="calls per process")
    parser.add_argument("--burst-s", type=float, default=0.2)
    args = parser.parse_args()
    from promptlift.testing.redis_server import RedisServer
    from promptlift.testing.server import LoopbackServer

    results: dict[str, Any] = {"rpm": args.rpm, "calls_per_process": args.calls, "burst_s": args.burst_s}
    with RedisServer() as redis_server, LoopbackServer() as server:
        results["alone"] = measure(server, redis_server.url, 1, args.calls, args.rpm, args.burst_s)
        results["shared"] = measure(server, redis_server.url, 3, args.calls, args.rpm, args.burst_s)
        results["local"] = measure(server, "-", 3, args.calls, args.rpm, args.burst_s)
    path = save("shared_rpm", results)
    print({"machine": machine(), **results})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
