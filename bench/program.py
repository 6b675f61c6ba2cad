"""The program example (examples/program: a ``city`` prompt, then a ``country`` prompt) optimized.

    uv run --locked --all-extras python -m bench.program                  # everything below
    uv run --locked --all-extras python -m bench.program --only example   # the example alone
    (a section run alone replaces its own part of bench/results/program.json, keeping the others)

``example``: the example's own config on the embedded model (local/gemma-3-270m, fewshot choosing
both prompts' demos from the program's calls): initial vs best on the test split, each with its
interval, the paired test, calls and seconds, and which prompts the best program changed.

``merge-local``: pareto with ``merge: true`` and ``merge: false`` on the same program and model (the
base model is its own reasoning model too, rewriting one prompt's instruction a proposal through
the rewrite scaffold): merges fired, candidates accepted, validation and test scores.

``merge-scripted``: the same comparison over several seeds against a scripted model on a loopback
server (real LiteLLM over HTTP, the example's program and data). The scripted ``city`` step answers
right on half the rows (by a hash of the sentence); once its instruction says "only the city", on
four in five, but not on all of the first half (so the first child does not dominate the starting
program on every row, and both stay on the Pareto front). The ``country`` step answers right on two
rows in three, and on every row once told "only the country". The scripted reasoning model proposes
the fixing sentence for whichever prompt it is asked to rewrite (with a tag drawn from the request,
so that each proposal is new text, as a real model's would be). So a child that fixed ``city`` and
a sibling that fixed ``country`` can merge into the program that has both: it shows whether merge
fires and what it buys when the gains really are per prompt, not what a real model gains.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import yaml

from bench.common import RESULTS, save
from promptlift.optimize.config import load_config
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.session import run_config
from promptlift.testing.server import LoopbackServer, RecordedRequest, Reply, ok

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "program"
CITY_HINT = "only the city"
COUNTRY_HINT = "only the country"
PROPOSALS = {
    "city": f"Name the city the sentence mentions. Answer with {CITY_HINT}, nothing else.",
    "country": f"Name the country the city is in. Answer with {COUNTRY_HINT}, nothing else.",
}


def _pareto(merge: bool, max_metric_calls: int) -> dict[str, Any]:
    return {"name": "pareto", "params": {"max_metric_calls": max_metric_calls, "merge": merge}}


def _configure(folder: Path, **changes: Any) -> Path:
    """A copy of the example in ``folder`` with ``changes`` to its config (store and cache kept in
    the copy, so every run starts cold)."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("runs", "__pycache__", "*.md"))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config.update(changes)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def summarize(result: OptimizationResult, seconds: float) -> dict[str, Any]:
    """What every section reports of one run."""
    summary = result.summary()
    initial, best = result.initial.prompt, result.best.prompt
    changed = [
        name
        for name in getattr(best, "prompts", {})
        if best.prompts[name] != initial.prompts[name]  # type: ignore[union-attr]
    ]
    return {
        "validation_initial": summary["initial_score"],
        "validation_best": summary["best_score"],
        "test_initial": summary["test_initial_score"],
        "test_initial_ci": summary["test_initial_score_ci"],
        "test_best": summary["test_best_score"],
        "test_best_ci": summary["test_best_score_ci"],
        "test_gain": summary["test_gain"],
        "prompts_changed": changed,
        "best_origin": result.best.origin,
        "best_id": result.best.id,
        "candidates": len(result.history),
        "merges": sum(c.origin.startswith("merge") for c in result.history),
        "lineage": [[c.id, c.parent, c.origin, round(c.score, 3)] for c in result.history],
        "accepted_reflections": sum(c.origin.startswith("reflect") for c in result.history),
        "calls": summary["calls"],
        "task_calls": summary["task_calls"],
        "reasoning_calls": summary["reasoning_calls"],
        "stop_reason": summary["stop_reason"],
        "seconds": round(seconds, 1),
        "best_prompts": {n: p.to_dict() for n, p in getattr(best, "prompts", {}).items()},
    }


def run(config_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result = run_config(load_config(config_path))
    return summarize(result, time.perf_counter() - started)


def example(tmp: Path) -> dict[str, Any]:
    """The example as shipped, then each prompt's best demos alone (the other prompt as it started)
    on the same test rows: which step the gain comes from."""
    from promptlift.optimize.session import evaluate_config

    path = _configure(tmp / "example")
    started = time.perf_counter()
    result = run_config(load_config(path))
    out = summarize(result, time.perf_counter() - started)
    config = load_config(path)
    initial, best = result.initial.prompt, result.best.prompt
    alone = {}
    for name in out["prompts_changed"]:
        mixed = initial.with_prompt(name, best.prompts[name])  # type: ignore[union-attr]
        report = evaluate_config(dataclasses.replace(config, prompt=mixed))
        alone[name] = {"validation": report["validation_score"], "test": report["test_score"]}
    out["only_this_prompt_changed"] = alone
    return out


def merge_local(tmp: Path, max_metric_calls: int) -> dict[str, Any]:
    out = {}
    for merge in (True, False):
        path = _configure(tmp / f"local-merge-{merge}", optimizer=_pareto(merge, max_metric_calls))
        out[f"merge={str(merge).lower()}"] = run(path)
        print(f"  local merge={merge}: {_line(out[f'merge={str(merge).lower()}'])}", flush=True)
    return out


# -- the scripted model ------------------------------------------------------------------------------
def _rows() -> dict[str, dict[str, str]]:
    lines = (EXAMPLE / "trips.jsonl").read_text().splitlines()
    return {row["sentence"]: row for row in map(json.loads, lines)}


ROWS = _rows()
CODE_OF = {row["city"]: row["code"] for row in ROWS.values()}


def scripted(body: dict[str, Any]) -> str:
    """The scripted model's answer to one chat request (task step or reasoning request)."""
    messages = body["messages"]
    last = str(messages[-1]["content"])
    if "You improve one part of a prompt" in last:  # pareto's reflection request
        for name, proposal in PROPOSALS.items():
            if f"This prompt ({name!r})" in last:  # worded anew for each request, as a model would
                return f"{proposal} ({zlib.crc32(last.encode()) % 997})"
        return "Answer carefully."
    told = " ".join(str(m.get("content") or "") for m in messages if m["role"] == "system")
    if last.startswith("Sentence:"):
        sentence = last.removeprefix("Sentence:").rsplit("\n", 1)[0].strip()
        city = ROWS[sentence]["city"] if sentence in ROWS else "unknown"
        mark = zlib.crc32(sentence.encode())
        right = mark % 5 != 0 if CITY_HINT in told else mark % 2 == 0
        return city if right else f"the city of {city}"
    if last.startswith("City:"):
        city = last.removeprefix("City:").rsplit("\n", 1)[0].strip()
        if city not in CODE_OF:
            return "unknown"
        right = COUNTRY_HINT in told or zlib.crc32(city.encode()) % 3 != 0
        return CODE_OF[city] if right else f"{CODE_OF[city]} (the country code)"
    return "unknown"


def handle(request: RecordedRequest) -> Reply:
    return ok(scripted(request.json))


def merge_scripted(tmp: Path, seeds: list[int], max_metric_calls: int) -> dict[str, Any]:
    out: dict[str, list[dict[str, Any]]] = {"merge=true": [], "merge=false": []}
    with LoopbackServer() as server:
        server.handler = handle
        for seed in seeds:
            for merge in (True, False):
                path = _configure(
                    tmp / f"scripted-{seed}-{merge}",
                    model="openai/scripted-program",
                    api_base=server.openai_base,
                    optimizer=_pareto(merge, max_metric_calls),
                    budget={"max_calls": 2000},
                    seed=seed,
                )
                cell = {"seed": seed, **run(path)}
                out[f"merge={str(merge).lower()}"].append(cell)
                print(f"  scripted seed {seed} merge={merge}: {_line(cell)}", flush=True)
    return out


def _line(cell: dict[str, Any]) -> str:
    gain = cell["test_gain"]
    return (
        f"test {cell['test_initial']:.3f} -> {cell['test_best']:.3f} (gain {gain['value']:+.3f} "
        f"{gain['ci']}, p={gain['p_value']:.3g}); merges {cell['merges']}, accepted reflections "
        f"{cell['accepted_reflections']}, changed {cell['prompts_changed']}, best from "
        f"{cell['best_origin']!r}; {cell['calls']} calls, {cell['seconds']} s"
    )


SECTIONS = ("example", "merge-local", "merge-scripted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.program")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="sections to run (default: all)")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="merge-scripted's seeds")
    parser.add_argument("--local-metric-calls", type=int, default=60, help="merge-local's pareto budget")
    args = parser.parse_args(argv)
    wanted = args.only or SECTIONS
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")  # the scripted model's route
    out: dict[str, Any] = {"model": "local/gemma-3-270m"}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if "example" in wanted:
            out["example"] = example(tmp)
            print(f"example: {_line(out['example'])}", flush=True)
        if "merge-local" in wanted:
            out["merge_local"] = merge_local(tmp, args.local_metric_calls)
        if "merge-scripted" in wanted:
            seeds = [int(s) for s in args.seeds.split(",")]
            out["merge_scripted"] = merge_scripted(tmp, seeds, max_metric_calls=120)
    previous = RESULTS / "program.json"
    if args.only and previous.exists():  # a section run alone replaces only its own part
        kept = {k: v for k, v in json.loads(previous.read_text()).items() if k != "machine"}
        out = {**kept, **out}
    path = save("program", out)
    print(f"written {path} at {time.strftime('%H:%M')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
