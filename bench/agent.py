"""Each optimizer on the agent example (examples/agent) against its scripted tool-calling model.

    python -m bench.agent            # writes bench/results/agent.json and prints the Markdown table

Real parts: the run config of the example, real LiteLLM over HTTP to a loopback server playing the
example's scripted model (``examples/agent/scripted.py``), the example's Python tools, a SQLite
store and cache in a temporary folder. The scripted model gains only when the instruction or a
tool's description tells it to make the second lookup, and the reasoning model proposes that text
only when it is shown the rows' steps: the table shows the machinery (which optimizers reach the
gain through which parts, at what call count, steps per row and time), not what a real model gains.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import save
from promptlift.optimize.config import load_config
from promptlift.optimize.session import run_config
from promptlift.testing.server import LoopbackServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agent"

SYSTEMS: dict[str, dict[str, Any]] = {
    "fewshot": {"name": "fewshot", "params": {"max_demos": 2, "trials": 4}},
    "metaprompt": {"name": "metaprompt", "params": {"rounds": 2, "candidates_per_round": 2}},
    "failure_modes": {"name": "failure_modes", "params": {"rounds": 1, "sample": 6, "max_modes": 2}},
    "evolutionary [system, tools]": {
        "name": "evolutionary",
        "params": {"population": 3, "generations": 2, "elites": 1, "parts": ["system", "tools"]},
    },
    "pareto [system]": {"name": "pareto", "params": {"max_metric_calls": 60, "parts": ["system"]}},
    "pareto [tools]": {"name": "pareto", "params": {"max_metric_calls": 60, "parts": ["tools"]}},
    "pareto [system, tools]": {
        "name": "pareto",
        "params": {"max_metric_calls": 60, "parts": ["system", "tools"]},
    },
    "parameters": {"name": "parameters", "params": {"trials": 3}},
}


def run_one(label: str, optimizer: dict[str, Any], folder: Path) -> dict[str, Any]:
    from scripted import handle  # examples/agent, put on sys.path by main()

    work = folder / label.replace(" ", "_").replace("[", "").replace("]", "").replace(",", "")
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("runs", "__pycache__", "*.md"))
    with LoopbackServer() as server:
        server.handler = handle
        config = yaml.safe_load((work / "config.yaml").read_text())
        config.update(
            model="openai/scripted-agent",
            api_base=server.openai_base,
            optimizer=optimizer,
            budget={"max_calls": 1500},
        )
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        started = time.perf_counter()
        result = run_config(load_config(work / "config.yaml"))
        seconds = time.perf_counter() - started
        requests = server.requests
    task = [r for r in requests if r.json.get("tools")]
    rows = sum(len(c.evaluation.rows) for c in result.history) + len(result.initial_test.rows) * 2
    best = result.best.prompt
    changed = [
        name for name, text in best.components().items() if result.initial.prompt.components()[name] != text
    ]
    return {
        "optimizer": label,
        "test_initial": result.initial_test.mean,
        "test_best": result.best_test.mean,
        "candidates": len(result.history),
        "calls": result.spend.calls,
        "task_calls": len(task),
        "reasoning_calls": len(requests) - len(task),
        "model_calls_per_row": round(len(task) / max(1, rows), 2),
        "changed": changed
        or (["demos"] if best.demos else ["params"] if best.params != result.initial.prompt.params else []),
        "seconds": round(seconds, 1),
    }


def render(cells: list[dict[str, Any]]) -> str:
    lines = [
        "| optimizer | test before → after | candidates | calls (task + reasoning) "
        "| model calls / scored row | what changed | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c['optimizer']} | {c['test_initial']:.2f} → {c['test_best']:.2f} | {c['candidates']} | "
            f"{c['calls']} ({c['task_calls']} + {c['reasoning_calls']}) | {c['model_calls_per_row']} | "
            f"{', '.join(c['changed']) or '—'} | {c['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="optimizer labels to run (default: all)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(EXAMPLE))
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    cells = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, optimizer in SYSTEMS.items():
            if args.only and label not in args.only:
                continue
            cells.append(run_one(label, optimizer, Path(tmp)))
            print(cells[-1], flush=True)
    save("agent", {"cells": cells})
    print(render(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
