"""The optimizer table: promptlift's optimizers against DSPy's and GEPA's, same model, data and budget.

    make bench-peers            # everything (peers in bench/.venv-peers)
    python -m bench.optimizers --systems promptlift.fewshot,dspy.mipro --datasets imdb --seeds 0

Each finished cell is appended to ``bench/results/optimizers.jsonl`` at once (a long run that is
stopped keeps what it finished; a cell already there is skipped on the next run, so the command
resumes). ``--render`` folds every ``bench/results/optimizers*.jsonl`` (slices of the grid run side
by side write their own with ``--out``) into ``bench/results/optimizers.json`` and prints the
Markdown tables: every system, then promptlift's best against the peers' best.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cell import Cell, Setup, pin_model_threads
from bench.common import RESULTS, save
from bench.data import TASKS, Sizes, cut

PROMPTLIFT = (
    "promptlift.fewshot",
    "promptlift.pareto",
    "promptlift.metaprompt",
    "promptlift.evolutionary",
    "promptlift.failure_modes",
)
PEERS = (
    "dspy.labeled",
    "dspy.bootstrap_rs",
    "dspy.mipro",
    "dspy.gepa",
    "gepa.adapter",
)
CELLS = RESULTS / "optimizers.jsonl"


def runner(system: str) -> Callable[[Setup], Cell]:
    family, _, name = system.partition(".")
    if family == "promptlift":
        from bench.peers import promptlift_side

        return lambda setup: promptlift_side.run(name, setup)
    if family == "dspy":
        from bench.peers import dspy_side

        return lambda setup: dspy_side.run(name, setup)
    if family == "gepa":
        from bench.peers import gepa_side

        return gepa_side.run
    raise SystemExit(f"unknown system {system!r}")


CellKey = tuple[str, str, int, int, str]


def cell_key(c: dict[str, Any]) -> CellKey:
    """A cell's identity: system, dataset, seed, budget and the split sizes it ran with."""
    sizes = c.get("notes", {}).get("sizes", {})
    return (c["system"], c["dataset"], c["seed"], c["budget"], json.dumps(sizes, sort_keys=True))


def done(out: Path) -> set[CellKey]:
    """Cells finished in any cells file (and ``out``): the grid resumes across slices. A cell that
    crashed counts as done (its error is the finding); delete its line to run it again."""
    paths = sorted({*cell_files(), *([out] if out.is_file() else [])})
    return {cell_key(c) for c in read_cells(paths)}


def run_cell(system: str, dataset: str, seed: int, budget: int, sizes: Sizes) -> Cell:
    task = TASKS[dataset]()
    setup = Setup(task, cut(task, sizes, seed), budget, seed)
    started = time.perf_counter()
    try:
        cell = runner(system)(setup)
    except Exception as exc:  # one broken cell must not lose the grid; the error is the finding
        cell = Cell(system, dataset, seed, budget, error=f"{type(exc).__name__}: {exc}")
        cell.notes["traceback"] = traceback.format_exc()[-3000:]
        cell.wall_s = time.perf_counter() - started
    cell.notes["sizes"] = vars(sizes)
    return cell


def _mean_sd(values: list[float]) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.fmean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def _first_line(error: str) -> str:
    return error.strip().splitlines()[0][:120].replace("|", "/") if error.strip() else ""


def _guarded(cell: dict[str, Any]) -> dict[str, Any]:
    """Cells from before the guard counted refused calls apart (2026-11-30) counted them as task
    calls; the guard is deterministic, so the calls sent were the guard's worth and the rest refused."""
    guard = 2 * cell["budget"]
    if cell["system"].startswith("dspy.") and cell["task_calls"] > guard:
        notes = {**cell.get("notes", {}), "refused_by_guard": {"task": cell["task_calls"] - guard}}
        return {**cell, "task_calls": guard, "notes": notes}
    return {**cell, "notes": cell.get("notes", {})}


def table(cells: list[dict[str, Any]]) -> str:
    """One row per dataset × system × budget: mean ± sd over the seeds that ran."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["budget"], c["system"]), []).append(c)
    lines = [
        "| dataset | budget | system | seeds | test start | test optimized | task calls | "
        "reasoning calls | wall s | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, budget, system), group in sorted(groups.items()):
        ok = [_guarded(c) for c in group if not c["error"]]
        notes = {_first_line(c["error"]) for c in group if c["error"]}
        stopped = [c for c in ok if c["notes"].get("refused_by_guard")]
        if stopped:
            notes.add(f"{len(stopped)} of {len(ok)} stopped at the 2x call guard")
        note = "; ".join(sorted(notes))
        if not ok:  # every seed crashed: what it measured and spent before the crash
            started = [c["test_start"] for c in group if not math.isnan(c["test_start"])]
            calls = statistics.fmean(c["task_calls"] for c in group)
            reasoning = statistics.fmean(c["reasoning_calls"] for c in group)
            wall = statistics.fmean(c["wall_s"] for c in group)
            note = f"{len(group)} of {len(group)} crashed: {note}"
            lines.append(
                f"| {dataset} | {budget} | {system} | 0/{len(group)} | {_mean_sd(started)} | – | "
                f"{calls:.0f} | {reasoning:.0f} | {wall:.0f} | {note} |"
            )
            continue
        calls = statistics.fmean(c["task_calls"] for c in ok)
        reasoning = statistics.fmean(c["reasoning_calls"] for c in ok)
        wall = statistics.fmean(c["wall_s"] for c in ok)
        lines.append(
            f"| {dataset} | {budget} | {system} | {len(ok)}/{len(group)} | "
            f"{_mean_sd([c['test_start'] for c in ok])} | {_mean_sd([c['test_best'] for c in ok])} | "
            f"{calls:.0f} | {reasoning:.0f} | {wall:.0f} | {note} |"
        )
    return "\n".join(lines)


# Two-sided 5% critical values of Student's t by degrees of freedom (beyond 10, the normal's 1.96
# is within 15% and errs lenient by that much only).
_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}


def _verdict(ours: list[float], peer: list[float], rows: int) -> str:
    """Ahead or behind only when the lead is clear of noise, at 5% on the difference of mean test
    scores. Each side's variance is the larger of the binomial one over every scored row (``rows``
    per seed; seeds cut different rows; the proportion shrunk by half a row, so 0 of 120 is not
    certainty) and the spread between its seeds; when a seed spread counts, the cut-off is Student's
    t on the seeds' degrees of freedom, not the normal's. Each side's best is picked by this same
    test mean, so a lead is slightly flattered on the side with more systems. A guide, not a proof."""

    def variance(scores: list[float]) -> tuple[float, bool]:
        n = len(scores) * rows
        p = (statistics.fmean(scores) * n + 0.5) / (n + 1)
        binomial = p * (1 - p) / n
        between = statistics.variance(scores) / len(scores) if len(scores) > 1 else 0.0
        return max(binomial, between), between > binomial

    p1, p2 = statistics.fmean(ours), statistics.fmean(peer)
    if p1 == p2:
        return "level"
    (v1, seeds1), (v2, seeds2) = variance(ours), variance(peer)
    df = len(ours) + len(peer) - 2
    critical = _T975.get(df, 1.96) if (seeds1 or seeds2) and df >= 1 else 1.96
    z = (p1 - p2) / math.sqrt(v1 + v2)
    return "ahead" if z > critical else ("behind" if z < -critical else "within noise")


def leaders(cells: list[dict[str, Any]]) -> str:
    """Per dataset and budget: promptlift's best system against the best peer, by mean test score
    over the seeds each ran; the lead in test rows per seed, and whether it is clear of noise."""
    means: dict[tuple[str, int, int], dict[str, list[float]]] = {}
    for c in cells:
        if not c["error"]:
            rows = int(c.get("notes", {}).get("sizes", {}).get("test", 40))  # test splits of one size only
            means.setdefault((c["dataset"], c["budget"], rows), {}).setdefault(c["system"], []).append(
                c["test_best"]
            )
    lines = [
        "| dataset | budget | promptlift's best | peers' best | ahead by | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, systems in sorted(means.items()):
        ours = {s: v for s, v in systems.items() if s.startswith("promptlift.")}
        peers = {s: v for s, v in systems.items() if not s.startswith("promptlift.")}
        if not ours or not peers:
            continue
        best_ours = max(ours, key=lambda s: statistics.fmean(ours[s]))
        best_peer = max(peers, key=lambda s: statistics.fmean(peers[s]))
        lead = statistics.fmean(ours[best_ours]) - statistics.fmean(peers[best_peer])
        rows = key[2]
        verdict = _verdict(ours[best_ours], peers[best_peer], rows)
        ours_text = f"{best_ours} {_mean_sd(ours[best_ours])} (n={len(ours[best_ours])})"
        peer_text = f"{best_peer} {_mean_sd(peers[best_peer])} (n={len(peers[best_peer])})"
        lead_text = f"{lead:+.3f} ({lead * rows:+.1f} of {rows} rows)"
        lines.append(f"| {key[0]} | {key[1]} | {ours_text} | {peer_text} | {lead_text} | {verdict} |")
    return "\n".join(lines)


def cell_files(results: Path = RESULTS) -> list[Path]:
    """Every cells file: slices of the grid run in parallel write their own (``--out``)."""
    return sorted(results.glob("optimizers*.jsonl"))


def read_cells(paths: list[Path]) -> list[dict[str, Any]]:
    """Every cell once: a cell run again (in another slice's file) counts once, the later line wins."""
    unique: dict[CellKey, dict[str, Any]] = {}
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                c = json.loads(line)
            except ValueError:  # a line cut short by a killed run: that cell simply runs again
                print(f"{path}:{number}: not a whole cell, skipped", file=sys.stderr)
                continue
            unique[cell_key(c)] = c
    return list(unique.values())


def render(paths: list[Path] | None = None) -> str:
    cells = read_cells(paths or cell_files())
    text = table(cells) + "\n\n" + leaders(cells)
    save("optimizers", {"cells": cells, "table_markdown": text})
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(PROMPTLIFT + PEERS))
    p.add_argument("--datasets", default="imdb,boolq,gsm8k")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budgets", default="300,1000")
    p.add_argument("--sizes", default="30,20,40", help="train,validation,test rows")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads of the embedded model")
    p.add_argument("--out", default=str(CELLS))
    p.add_argument("--render", action="store_true", help="only fold the cells into the JSON and table")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.render:
        print(render())
        return 0
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pin_model_threads(args.threads)
    sizes = Sizes(*(int(x) for x in args.sizes.split(",")))
    finished = done(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for budget in (int(b) for b in args.budgets.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            for dataset in args.datasets.split(","):
                for system in args.systems.split(","):
                    key = (system, dataset, seed, budget, json.dumps(vars(sizes), sort_keys=True))
                    if key in finished:
                        continue
                    cell = run_cell(system, dataset, seed, budget, sizes)
                    with out.open("a") as f:
                        f.write(json.dumps(cell.to_dict()) + "\n")
                    print(
                        f"{time.strftime('%H:%M:%S')} {system:22} {dataset:6} seed {seed} B {budget}: "
                        f"test {cell.test_start:.3f} -> {cell.test_best:.3f}, task {cell.task_calls}, "
                        f"reasoning {cell.reasoning_calls}, {cell.wall_s:.0f} s {cell.error[:100]}",
                        flush=True,
                    )
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
