"""promptlift's loopback model server in a process of its own, for the client-layer benchmark.

    python -m bench.loopback --delay 0.05 [--rate-limited 0.2 --retry-after 1] [--seed 0]

Prints ``PORT <n>`` once it listens, answers each ``count`` line on its standard input with
``COUNT <requests seen>``, and serves until its standard input closes. A separate process keeps
the server's threads off the benchmarked client's interpreter lock.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok, rate_limited


def chooser(
    delay: float, rate_limited_share: float, retry_after: float, seed: int
) -> Callable[[RecordedRequest], Reply]:
    """Every answer after ``delay`` s; a seeded ``rate_limited_share`` of them are 429s."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def choose(request: RecordedRequest) -> Reply:
        with lock:
            limited = rng.random() < rate_limited_share
        reply = rate_limited(retry_after=retry_after) if limited else ok("positive")
        return replace(reply, delay=delay)

    return choose


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--rate-limited", type=float, default=0.0)
    p.add_argument("--retry-after", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with LoopbackServer() as srv:
        srv.handler = chooser(args.delay, args.rate_limited, args.retry_after, args.seed)
        print(f"PORT {srv.port}", flush=True)
        for line in sys.stdin:  # until the parent closes the pipe
            if line.strip() == "count":
                print(f"COUNT {len(srv.requests)}", flush=True)
    return 0


class ServerProcess:
    """Start ``bench.loopback`` in a child process; ``base`` (alias ``openai_base``) is its
    OpenAI-compatible api_base; ``request_count()`` asks it how many requests it has seen."""

    def __init__(self, delay: float = 0.05):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loopback", "--delay", str(delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        line = self._line()
        if len(line) != 2 or line[0] != "PORT":
            self.close()
            raise RuntimeError(f"the loopback server did not start: {line!r}")
        self.base = self.openai_base = f"http://127.0.0.1:{line[1]}/v1"

    def _line(self) -> list[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().split()

    def request_count(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self._line()[1])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
