"""Each optimizer on the bundled example over several seeds: the test gain with its interval.

    uv run --all-extras python -m bench.seeds [--seeds 0,1,2] [--max-calls 300] [--max-minutes 3]

The seed changes both the train/validation/test split and the optimizer's own randomness. Each
run's test gain is the paired comparison of best vs initial prompt on that run's test rows
(exact McNemar for the 0/1 metric), so a reader sees which gains are real and which are noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from bench.common import save

EXAMPLE = Path(__file__).parent.parent / "examples" / "sentiment" / "config.yaml"
OPTIMIZERS = ("fewshot", "metaprompt", "evolutionary", "pareto", "failure_modes", "parameters")


def run_one(name: str, seed: int, max_calls: int, max_minutes: float) -> dict[str, Any]:
    from promptlift.optimize.config import OptimizerSpec, load_config
    from promptlift.optimize.run import Budget
    from promptlift.optimize.session import run_config

    base = load_config(EXAMPLE)
    split = {**base.split, "seed": seed}
    config = dataclasses.replace(
        base,
        optimizers=(OptimizerSpec(name, {"preset": "light"}),),
        seed=seed,
        split=split,
        budget=Budget(max_calls=max_calls, max_minutes=max_minutes),
        store=None,
        cache=None,
    )
    started = time.monotonic()
    summary = run_config(config).summary()
    gain = summary["test_gain"]
    return {
        "optimizer": name,
        "seed": seed,
        "test_initial": summary["test_initial_score"],
        "test_best": summary["test_best_score"],
        "gain": gain["value"],
        "gain_ci": gain["ci"],
        "p_value": gain["p_value"],
        "verdict": gain["verdict"],
        "calls": summary["calls"],
        "minutes": (time.monotonic() - started) / 60,
        "stop_reason": summary["stop_reason"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--max-calls", type=int, default=300)
    parser.add_argument("--max-minutes", type=float, default=3.0)
    args = parser.parse_args()
    rows = []
    for name in args.optimizers.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            row = run_one(name, seed, args.max_calls, args.max_minutes)
            rows.append(row)
            print(json.dumps(row), flush=True)
    save("seeds", {"rows": rows, "max_calls": args.max_calls, "max_minutes": args.max_minutes})
    print("| optimizer | seed | test before → after | gain [95% CI] | p | verdict | calls | min |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["gain_ci"]
        print(
            f"| {r['optimizer']} | {r['seed']} | {r['test_initial']:.3f} → {r['test_best']:.3f} | "
            f"{r['gain']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {r['p_value']:.2g} | {r['verdict']} | "
            f"{r['calls']} | {r['minutes']:.1f} |"
        )


if __name__ == "__main__":
    main()
