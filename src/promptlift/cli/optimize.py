"""``promptlift optimize`` / ``eval`` / ``runs``: run a config, score a prompt, list past runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from promptlift.cli.validators import non_negative_float, significance
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
    e = sub.add_parser(
        "eval",
        help="score the prompt of a config file on validation and test; with --baseline, a regression "
        "gate (exit 1 when significantly worse than the baseline on the same test rows)",
    )
    e.add_argument("config")
    e.add_argument("--json", action="store_true")
    e.add_argument(
        "--baseline",
        metavar="RUN_OR_PROMPT",
        help="a run id in the config's store (its best prompt), or a file: a run config (its prompt) or "
        "a prompt as a run exports it (YAML or JSON)",
    )
    e.add_argument(
        "--alpha",
        type=significance,
        default=None,
        help="significance level of the paired test (default 0.05): a drop with p below it fails",
    )
    e.add_argument(
        "--provider-batch",
        action="store_true",
        help="score through the provider's Batch API (openai/, anthropic/): half price, within 24 h",
    )
    e.add_argument(
        "--poll-interval", type=float, default=30.0, metavar="S", help="with --provider-batch (default 30)"
    )
    e.add_argument(
        "--max-wait", type=float, metavar="S", help="with --provider-batch: give up after S seconds"
    )
    add_allow_host(e)
    e.set_defaults(run=run_eval)


def run_optimize(args: argparse.Namespace) -> int:
    from promptlift.cli.progress import Progress, print_summary
    from promptlift.errors import ConfigError
    from promptlift.optimize.config import load_config
    from promptlift.optimize.plan import confirm, make_plan, plan_vs_actual
    from promptlift.optimize.session import run_config, split_warnings

    if args.new_run and not args.resume:
        raise ConfigError(
            "--new-run says what --resume does when the config changed; give it with --resume RUN_ID"
        )
    if args.resume is not None and not args.resume.strip():
        raise ConfigError(
            "--resume is empty (an unset variable?); name a run id (`promptlift runs` lists them)"
        )
    config = _with_hosts(load_config(args.config), args)
    warnings = split_warnings(config)  # loads and checks the data: an error comes before any warning
    plan = make_plan(config)
    if args.resume:  # before the plan is shown: a mistyped id, or a run a live process drives
        _check_resumable(config, args.resume, live=not args.dry_run)
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
    # On a terminal a redrawn line; in a log (CI, nohup) a line per round; with --json, stdout's
    # one object and stderr's line per round both (a script reads stdout, a person the log).
    progress = Progress(config.budget, enabled=True, terminal=not args.json and sys.stderr.isatty())
    result = run_config(
        config, on_event=progress.on_event, resume=args.resume, new_run=args.new_run, plan=plan
    )
    progress.close()
    if args.json:
        print(dumps({**result.summary(), "plan": plan.to_dict()}))
    else:
        print_summary(result)
        print(plan_vs_actual(plan, result))
    return 0


def _check_resumable(config: Any, run_id: str, *, live: bool) -> None:
    """``--resume RUN`` (``--dry-run`` too): the run must be in the config's store, which is only
    read: a mistyped id or store creates no empty store. ``live``: also refuse a run another live
    process drives (``RunInUse``, exit 2); the claim in ``run_config`` refuses it again,
    atomically, should that process start in between."""
    from promptlift.errors import ConfigError
    from promptlift.optimize.store import RunStore

    if config.store is None:
        raise ConfigError(f"--resume {run_id}: {config.path} has no `store:`, so it has no runs to resume")
    where = Path(config.store)
    where = where / "runs.sqlite" if where.suffix == "" or where.is_dir() else where
    if not where.is_file():
        raise ConfigError(
            f"--resume {run_id}: no run store at {where} yet (a run writes it); `promptlift runs "
            f"{config.path}` lists the runs of this config"
        )
    store = RunStore(where, create=False)
    try:
        try:
            store.run(run_id)
        except ConfigError as exc:
            raise ConfigError(f"--resume {run_id}: {exc}") from None
        if live:
            store.check_claimable(run_id)
    finally:
        store.close()


def _batch_scoring(args: argparse.Namespace) -> Any:
    """``eval --provider-batch``'s scoring settings, or None; flags that mean nothing refused."""
    from promptlift.errors import ConfigError

    for flag, value, low in (
        ("--poll-interval", args.poll_interval, 0.0),
        ("--max-wait", args.max_wait, 0.0),
    ):
        if value is not None and not value > low:
            raise ConfigError(f"{flag} must be more than 0 (seconds), got {value:g}")
    if not args.provider_batch:
        if args.max_wait is not None:
            raise ConfigError("--max-wait is how long --provider-batch waits: give --provider-batch too")
        return None
    if args.baseline is not None:
        raise ConfigError(
            "--provider-batch scores one prompt; the --baseline gate runs live: drop one of them"
        )
    from promptlift.client.provider_batch import PollPolicy
    from promptlift.optimize.evaluation import BatchScoring

    return BatchScoring(PollPolicy(args.poll_interval, args.poll_interval * 10, max_wait_s=args.max_wait))


def _ask(question: str) -> str:
    """``input``, with the end of input (Ctrl-D) as a usage error rather than a traceback."""
    from promptlift.errors import UserError

    try:
        return input(question)
    except EOFError:
        print()  # the question was left on an open line of stdout
        raise UserError("no answer to the confirmation (end of input); pass --yes to run it") from None


def run_eval(args: argparse.Namespace) -> int:
    from promptlift.errors import ConfigError
    from promptlift.optimize.config import load_config
    from promptlift.optimize.session import evaluate_config, split_warnings

    if args.baseline is None and args.alpha is not None:
        raise ConfigError("--alpha is the regression gate's; give it with --baseline RUN_OR_PROMPT")
    if args.baseline is not None and not args.baseline.strip():
        raise ConfigError("--baseline is empty (an unset variable?); name a run id or a prompt file")
    batch = _batch_scoring(args)
    config = _with_hosts(load_config(args.config), args)
    baseline = _baseline(config, args.baseline) if args.baseline else None
    for warning in split_warnings(config):
        print(f"promptlift: warning: {warning}", file=sys.stderr)
    if baseline is not None:
        return _gate(config, baseline, args)
    report = evaluate_config(config, batch=batch)
    if args.json:
        print(dumps(_brief(report)))
    else:
        print(f"model       {report['model']}")
        for split in ("validation", "test"):
            ci = _interval(report[f"{split}_score_ci"])
            print(f"{split:<11} {report[f'{split}_score']:.3f}  {ci}  ({report[f'{split}_rows']} rows)")
        print(f"calls {report['calls']}  cost ${report['cost_usd']:.4f}  {report['duration_s']:.1f} s")
        if "batch_saved_usd" in report:
            print(f"provider batch  saved ${report['batch_saved_usd']:.4f} against the list price")
        if report["cached_input_tokens"]:
            print(
                f"prompt cache {report['cached_input_tokens']} input tokens read  "
                f"saved ${report['cache_saved_usd']:.4f}"
            )
    return 0


def _brief(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("validation", "test")}


def _interval(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "[-]"


def _gate(config: Any, baseline: Any, args: argparse.Namespace) -> int:
    """Exit 1 when the config's prompt is significantly worse than the baseline; 0 otherwise."""
    from promptlift.optimize.session import gate_config

    alpha = 0.05 if args.alpha is None else args.alpha
    report = gate_config(config, baseline, alpha=alpha)
    if args.json:
        brief = {**report, "baseline": _brief(report["baseline"]), "candidate": _brief(report["candidate"])}
        print(dumps(brief))
    else:
        rows = report["rows"]
        for name in ("baseline", "candidate"):
            side = report[name]
            print(
                f"{name:<10} test {side['test_score']:.3f}  {_interval(side['test_score_ci'])}  ({rows} rows)"
            )
        gain = report["gain"]
        print(
            f"change     {gain['value']:+.3f}  {_interval(gain['ci'])}  p = {gain['p_value']:.3g} "
            f"({gain['method']}): {gain['verdict']}"
        )
        same = rows - report["fixed"] - report["broken"]
        print(f"rows       {report['fixed']} fixed · {report['broken']} broken · {same} unchanged")
        print(f"calls {report['calls']}  cost ${report['cost_usd']:.4f}")
        verdict = "FAIL: significantly worse than the baseline" if report["regressed"] else "pass"
        print(f"gate       {verdict} (alpha {alpha:g})")
    return 1 if report["regressed"] else 0


def _baseline(config: Any, given: str) -> Any:
    """``--baseline``: a file (a run config, or a prompt as a run exports it) or a run id; checked
    as a config's ``prompt:`` is (keys, braces) and against this config's dataset (placeholders)."""
    baseline = _baseline_subject(config, given)
    from promptlift.errors import ConfigError, UserError
    from promptlift.optimize.dataset import Dataset

    fields = Dataset.load(config.dataset_path).fields  # the config's own errors come as they would
    try:
        baseline.check(fields)
    except UserError as exc:
        raise ConfigError(f"--baseline {given}: {exc}") from None
    return baseline


def _baseline_subject(config: Any, given: str) -> Any:
    import yaml

    from promptlift.errors import ConfigError
    from promptlift.optimize.config import PROGRAM_KEYS, PROMPT_KEYS, load_config, prompt_from_file

    path = Path(given).expanduser()
    if path.is_dir():
        raise ConfigError(f"--baseline {given} is a folder; name a run id, a run config or a prompt file")
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--baseline {given}: not a YAML or JSON file ({type(exc).__name__})") from None
        except OSError as exc:
            raise ConfigError(f"--baseline {given}: cannot be read ({exc.strerror or exc})") from None
        if isinstance(data, dict) and ("dataset" in data or "metric" in data):
            return load_config(path).prompt  # another run config: its prompt, checked as its config's
        if isinstance(data, dict) and isinstance(data.get("best_prompt"), dict):
            data = data["best_prompt"]  # a run's JSON result
        if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and len(data) == 1:
            data = data["prompt"]  # a config's `prompt:` section on its own
        if not isinstance(data, dict) or not ((PROMPT_KEYS | set(PROGRAM_KEYS)) & set(data)):
            raise ConfigError(
                f"--baseline {given}: not a prompt (a mapping with `user:` or `messages:`, or `program:` "
                "and `prompts:`) nor a run config"
            )
        return prompt_from_file(data, f"--baseline {given}", path.parent)
    if config.store is None:
        raise ConfigError(
            f"--baseline {given}: no such file, and the config has no `store:` to find a run in"
        )
    from promptlift.optimize.program import from_dict
    from promptlift.optimize.store import RunStore

    try:
        store = RunStore(config.store, create=False)  # read only: a mistyped id creates no store
    except ConfigError as exc:
        raise ConfigError(f"--baseline {given}: no such file; {exc}") from None
    try:
        result = store.run(given)["result"] or {}
    except ConfigError as exc:
        raise ConfigError(f"--baseline {given}: no such file; {exc}") from None
    finally:
        store.close()
    if "best_prompt" not in result:
        raise ConfigError(f"--baseline {given}: the run has no result yet (it did not finish)")
    return from_dict(result["best_prompt"], base_dir=config.path.parent)


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
