"""``promptlift optimize`` / ``eval`` / ``runs``: run a config, score a prompt, list past runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("optimize", help="optimize the prompt of a config file")
    p.add_argument("config", help="the run's YAML config")
    p.add_argument("--json", action="store_true", help="print one JSON object with the result")
    p.add_argument("--yes", action="store_true", help="skip any confirmation prompt")
    p.add_argument("--resume", metavar="RUN_ID", help="resume a killed run from its checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the plan (calls, cost, presets) and stop")
    p.add_argument(
        "--confirm-above",
        type=float,
        default=1.0,
        metavar="USD",
        help="with paid models, ask before a run whose estimate may exceed this (default 1)",
    )
    p.set_defaults(run=run_optimize)
    e = sub.add_parser("eval", help="score the prompt of a config file on validation and test")
    e.add_argument("config")
    e.add_argument("--json", action="store_true")
    e.set_defaults(run=run_eval)
    r = sub.add_parser("runs", help="list the runs in a store")
    r.add_argument("store", nargs="?", default="runs/", help="the store folder or file (default runs/)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(run=run_runs)


def run_optimize(args: argparse.Namespace) -> int:
    from promptlift.cli.progress import Progress, print_summary
    from promptlift.optimize.config import load_config
    from promptlift.optimize.plan import confirm, make_plan, plan_vs_actual
    from promptlift.optimize.session import run_config, split_warnings

    config = load_config(args.config)
    for warning in split_warnings(config):
        print(f"promptlift: warning: {warning}", file=sys.stderr)
    plan = make_plan(config)
    if args.dry_run:
        print(json.dumps(plan.to_dict()) if args.json else plan.render())
        plan.check()  # a run that could not score one candidate: exit 2, as the run itself would
        return 0
    print(plan.render(), file=sys.stderr if args.json else sys.stdout)
    plan.check()
    interactive = sys.stdin.isatty()
    if not confirm(plan, threshold_usd=args.confirm_above, yes=args.yes, interactive=interactive, ask=input):
        print("promptlift: not run", file=sys.stderr)
        return 1
    progress = Progress(config.budget, enabled=not args.json and sys.stderr.isatty())
    result = run_config(config, on_event=progress.on_event, resume=args.resume)
    progress.close()
    if args.json:
        print(json.dumps({**result.summary(), "plan": plan.to_dict()}))
    else:
        print_summary(result)
        print(plan_vs_actual(plan, result))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from promptlift.optimize.config import load_config
    from promptlift.optimize.session import evaluate_config

    report = evaluate_config(load_config(args.config))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k not in ("validation", "test")}))
    else:
        print(f"model       {report['model']}")
        print(f"validation  {report['validation_score']:.3f}  ({report['validation_rows']} rows)")
        print(f"test        {report['test_score']:.3f}  ({report['test_rows']} rows)")
        print(f"calls {report['calls']}  cost ${report['cost_usd']:.4f}  {report['duration_s']:.1f} s")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    from promptlift.optimize.store import RunStore

    store = RunStore(args.store)
    rows: list[dict[str, Any]] = []
    for run in store.runs():
        full = store.run(run["id"])
        result = full["result"] or {}
        rows.append(
            {**run, "best_score": result.get("best_score"), "test_best_score": result.get("test_best_score")}
        )
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            best = "-" if row["best_score"] is None else f"{row['best_score']:.3f}"
            print(f"{row['id']}  {row['optimizer']:<11} {row['status']:<9} best {best}")
    return 0
