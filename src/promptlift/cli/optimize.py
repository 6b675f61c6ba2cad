"""``promptlift optimize`` / ``eval`` / ``runs``: run a config, score a prompt, list past runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from promptlift.cli.validators import non_negative_float
from promptlift.jsonout import dumps


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("optimize", help="optimize the prompt of a config file")
    p.add_argument("config", help="the run's YAML config")
    p.add_argument("--json", action="store_true", help="print one JSON object with the result")
    p.add_argument("--yes", action="store_true", help="skip any confirmation prompt")
    p.add_argument("--resume", metavar="RUN_ID", help="resume a killed run from its checkpoint")
    p.add_argument(
        "--new-run",
        action="store_true",
        help="with --resume: if the config changed since the run started, start a new run from it",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan (calls, cost, presets) and stop")
    p.add_argument(
        "--confirm-above",
        type=non_negative_float,
        default=1.0,
        metavar="USD",
        help="with paid models, ask before a run whose estimate may exceed this (default 1)",
    )
    from promptlift.cli.endpoints import add_allow_host

    add_allow_host(p)
    p.set_defaults(run=run_optimize)
    e = sub.add_parser("eval", help="score the prompt of a config file on validation and test")
    e.add_argument("config")
    e.add_argument("--json", action="store_true")
    add_allow_host(e)
    e.set_defaults(run=run_eval)
    r = sub.add_parser("runs", help="list the runs in a store")
    r.add_argument(
        "store",
        nargs="?",
        help="the store folder or file, or a run's CONFIG.yaml (its store:); default ./runs/, else the "
        "one store that a config under this folder names",
    )
    r.add_argument("--json", action="store_true")
    r.set_defaults(run=run_runs)


def run_optimize(args: argparse.Namespace) -> int:
    from promptlift.cli.progress import Progress, print_summary
    from promptlift.optimize.config import load_config
    from promptlift.optimize.plan import confirm, make_plan, plan_vs_actual
    from promptlift.optimize.session import run_config, split_warnings

    config = _with_hosts(load_config(args.config), args)
    warnings = split_warnings(config)  # loads and checks the data: an error comes before any warning
    plan = make_plan(config)
    for warning in warnings:
        print(f"promptlift: warning: {warning}", file=sys.stderr)
    if args.dry_run:
        print(dumps(plan.to_dict()) if args.json else plan.render())
        plan.check()  # a run that could not score one candidate: exit 2, as the run itself would
        return 0
    print(plan.render(), file=sys.stderr if args.json else sys.stdout)
    plan.check()
    interactive = sys.stdin.isatty()
    if not confirm(plan, threshold_usd=args.confirm_above, yes=args.yes, interactive=interactive, ask=_ask):
        print("promptlift: not run", file=sys.stderr)
        return 1
    progress = Progress(config.budget, enabled=not args.json and sys.stderr.isatty())
    result = run_config(config, on_event=progress.on_event, resume=args.resume, new_run=args.new_run)
    progress.close()
    if args.json:
        print(dumps({**result.summary(), "plan": plan.to_dict()}))
    else:
        print_summary(result)
        print(plan_vs_actual(plan, result))
    return 0


def _ask(question: str) -> str:
    """``input``, with the end of input (Ctrl-D) as a usage error rather than a traceback."""
    from promptlift.errors import UserError

    try:
        return input(question)
    except EOFError:
        print()  # the question was left on an open line of stdout
        raise UserError("no answer to the confirmation (end of input); pass --yes to run it") from None


def run_eval(args: argparse.Namespace) -> int:
    from promptlift.optimize.config import load_config
    from promptlift.optimize.session import evaluate_config, split_warnings

    config = _with_hosts(load_config(args.config), args)
    for warning in split_warnings(config):
        print(f"promptlift: warning: {warning}", file=sys.stderr)
    report = evaluate_config(config)
    if args.json:
        print(dumps({k: v for k, v in report.items() if k not in ("validation", "test")}))
    else:
        print(f"model       {report['model']}")
        print(f"validation  {report['validation_score']:.3f}  ({report['validation_rows']} rows)")
        print(f"test        {report['test_score']:.3f}  ({report['test_rows']} rows)")
        print(f"calls {report['calls']}  cost ${report['cost_usd']:.4f}  {report['duration_s']:.1f} s")
        if report["cached_input_tokens"]:
            print(
                f"prompt cache {report['cached_input_tokens']} input tokens read  "
                f"saved ${report['cache_saved_usd']:.4f}"
            )
    return 0


def run_runs(args: argparse.Namespace) -> int:
    from promptlift.optimize.store import RunStore

    store = RunStore(_store_path(args.store) if args.store else _default_store(), create=False)
    rows: list[dict[str, Any]] = []
    for run in store.runs():
        full = store.run(run["id"])
        result = full["result"] or {}
        rows.append(
            {**run, "best_score": result.get("best_score"), "test_best_score": result.get("test_best_score")}
        )
    if args.json:
        print(dumps(rows))
    else:
        for row in rows:
            best = "-" if row["best_score"] is None else f"{row['best_score']:.3f}"
            print(f"{row['id']}  {row['optimizer']:<11} {row['status']:<9} best {best}")
    return 0


def _default_store() -> str:
    """``./runs/`` if it holds a store; else the one existing store named by a config in this folder
    or up to two below it (``make demo`` writes to ``examples/sentiment/runs/``, relative to its
    config). Several are an error listing them, none one saying how to name a store."""
    from promptlift.errors import ConfigError

    if Path("runs/runs.sqlite").is_file():
        return "runs/"
    found = _config_stores(Path("."))
    if len(set(found.values())) == 1:  # configs beside each other often share one store
        config, store = next(iter(found.items()))
        print(f"promptlift: listing {store} (the store: of {config})", file=sys.stderr)
        return str(store)
    if found:
        named = ", ".join(f"{c} ({s})" for c, s in list(found.items())[:5])
        raise ConfigError(
            f"no run store at runs/; configs here name several: {named}: pick one with "
            f"promptlift runs CONFIG.yaml"
        )
    raise ConfigError(
        "no run store at runs/, and no config under this folder names a store that exists yet (one "
        "appears when a run writes to it); name the store folder (a config's `store:`, relative to the "
        "config) or the run's config: promptlift runs CONFIG.yaml"
    )


def _config_stores(root: Path) -> dict[str, Path]:
    """Config files (``*.yaml``/``*.yml``, up to two folders down, hidden ones skipped) whose
    ``store:`` exists, resolved as a run resolves it (relative to the config, ``~`` expanded)."""
    import yaml

    found: dict[str, Path] = {}
    for pattern in ("*.y*ml", "*/*.y*ml", "*/*/*.y*ml"):
        for path in sorted(root.glob(pattern)):
            if any(part.startswith(".") for part in path.parts) or path.suffix not in (".yaml", ".yml"):
                continue
            try:
                store = yaml.safe_load(path.read_text(encoding="utf-8")).get("store")
            except Exception:  # any YAML that is not a readable mapping is not a run config
                continue
            if not isinstance(store, str):
                continue
            where = Path(store).expanduser()
            where = where if where.is_absolute() else path.parent / where
            if (where / "runs.sqlite").is_file() or (where.suffix and where.is_file()):
                found[str(path)] = where
    return found


def _store_path(given: str) -> str:
    """A config file names its store (``store:``, relative to the config, as a run resolves it)."""
    if given.endswith((".yaml", ".yml")):
        from promptlift.errors import ConfigError
        from promptlift.optimize.config import load_config

        config = load_config(given)
        if config.store is None:
            raise ConfigError(f"{given} has no `store:`; its runs were not recorded")
        return str(config.store)
    return given


def _with_hosts(config: Any, args: argparse.Namespace) -> Any:
    """``--allow-host`` over the config's ``allowed_hosts``."""
    from dataclasses import replace

    from promptlift.cli.endpoints import allowed_hosts
    from promptlift.client.config import ModelSpec
    from promptlift.providers.credentials import check_host

    hosts = allowed_hosts(args, config.allowed_hosts)
    # The endpoints the config names are checked now, before the split warnings and any call; the
    # hosts LiteLLM would pick itself (no api_base) are checked when the client is built.
    if config.api_base:
        check_host(config.api_base, hosts)
    for spec in config.chain:
        if isinstance(spec, ModelSpec) and spec.api_base:
            check_host(spec.api_base, hosts, what=f"the api_base of {spec.model}")
    return replace(config, allowed_hosts=hosts)
