"""How long a plan takes in a fresh process, beside what importing LiteLLM alone takes.

``promptlift optimize --dry-run`` on a paid model prices the plan; before issue 12 the planner read
prices through the provider layer, which imported LiteLLM (its whole SDK) on every plan. Now it reads
LiteLLM's price map as a JSON file. Both are timed as subprocesses, interleaved, so the machine's
drift hits each the same:

    uv run --all-extras python -m bench.plan_start [--rounds 5]

Target (issue 12): a plan never imports litellm, so it takes a fraction of ``import litellm``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAN = """
import sys
from promptlift.optimize.config import load_config
from promptlift.optimize.plan import make_plan
plan = make_plan(load_config(sys.argv[1]))
assert plan.cost_usd is not None and plan.cost_usd[1] > 0, plan.cost_usd  # priced from the map
assert "litellm" not in sys.modules, "the plan imported litellm"
"""
IMPORT = "import litellm"


def _config(folder: Path) -> Path:
    example = Path(__file__).resolve().parent.parent / "examples" / "sentiment"
    body = (
        (example / "config.yaml")
        .read_text()
        .replace("model: local/gemma-3-270m\n", "model: openai/gpt-4o-mini\n")
    )
    path = folder / "config.yaml"
    path.write_text(body.replace("path: reviews.jsonl", f"path: {example / 'reviews.jsonl'}"))
    return path


def _run(code: str, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, *args],
        check=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = str(_config(Path(tmp)))
        _run(PLAN, config), _run(IMPORT)  # warm the file cache for both
        plan, lite = [], []
        for _ in range(args.rounds):
            plan.append(_run(PLAN, config))
            lite.append(_run(IMPORT))
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "plan_s_median": statistics.median(plan),
        "import_litellm_s_median": statistics.median(lite),
        "ratio": statistics.median(plan) / statistics.median(lite),
        "rounds": args.rounds,
    }
    out = Path(__file__).resolve().parent / "results" / "plan_start.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
