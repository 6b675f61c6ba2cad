"""What an LLM judge adds to an evaluation's wall time, over loopback HTTP with a fixed latency.

    uv run --all-extras python -m bench.judge [--rows 64] [--concurrency 16] [--delay-ms 50]

Each row is one task call; with a judge, one more call grades its answer. Both go through the same
client, so with the judge's calls side by side an evaluation with a judge should take about twice
one without (two round trips per row), not a judge round trip per row one after another. Writes
``bench/results/judge.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bench.common import save, summary
from bench.loopback import ServerProcess
from promptlift import Client, ClientConfig, Secret
from promptlift.optimize import Dataset, Evaluator, Prompt
from promptlift.optimize.metrics import ExactMatch, LLMJudge, Metric


def evaluate_once(base: str, rows: int, concurrency: int, judged: bool) -> float:
    data = Dataset.from_records([{"text": f"review {i}", "label": "positive"} for i in range(rows)])
    config = ClientConfig(
        models=("openai/bench-task",), api_base=base, api_key=Secret("sk-bench-0000"), concurrency=concurrency
    )
    with Client(config) as client:
        metric: Metric = (
            LLMJudge(client, "Is the label right?", "openai/bench-judge", "text", "label")
            if judged
            else ExactMatch("label")
        )
        started = time.perf_counter()
        evaluation = asyncio.run(Evaluator(client, metric).evaluate(Prompt(user="{text}"), data))
        elapsed = time.perf_counter() - started
    want = 2 * rows if judged else rows
    if evaluation.spend.calls != want:
        raise RuntimeError(f"expected {want} calls, the evaluation counted {evaluation.spend.calls}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    samples: dict[str, list[float]] = {"plain": [], "judged": []}
    with ServerProcess(args.delay_ms / 1e3) as server:
        evaluate_once(server.base, 4, 4, True)  # warm-up: litellm's import and first connections
        for _ in range(args.repeat):  # alternated, so a busy moment hits both sides alike
            for kind, times in samples.items():
                times.append(evaluate_once(server.base, args.rows, args.concurrency, kind == "judged"))
    plain, judged = summary(samples["plain"]), summary(samples["judged"])
    ratio = judged["median_s"] / plain["median_s"]
    serial_floor = args.rows * args.delay_ms / 1e3  # one judge round trip after another
    save("judge", {"args": vars(args), "plain": plain, "judged": judged, "ratio": ratio})
    print(
        f"{args.rows} rows, concurrency {args.concurrency}, {args.delay_ms:g} ms a call: "
        f"without a judge {plain['median_s']:.3f} s, with one {judged['median_s']:.3f} s "
        f"(x{ratio:.2f}; judge calls one at a time would take at least {serial_floor:.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
