"""``promptlift runs``: the run browser, from the terminal.

    promptlift runs [STORE | CONFIG.yaml]          list the runs (newest first)
    promptlift runs show RUN [--store S] [--json]  one run: scores, change, rows, diff, top candidates
    promptlift runs export RUN --output DIR        the best prompt as a config, every candidate as JSONL
                                                   (the rejected proposals too, with their status)
    promptlift runs compare RUN_A RUN_B            their best prompts, paired on shared test rows
    promptlift runs delete RUN                     remove a run and what it recorded

The store is the folder or file given (``--store``, or a config's ``store:``), else ``./runs/``,
else the one store a config under this folder names. Everything is read from the run store: no
model call is made.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptlift.errors import ConfigError
from promptlift.jsonout import dumps

ACTIONS = ("list", "show", "export", "compare", "delete")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser(
        "runs",
        help="browse the runs in a store: list, show RUN, export RUN, compare A B, delete RUN",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "words",
        nargs="*",
        metavar="[ACTION] ARGS",
        help="nothing or a store/config to list; or show RUN, export RUN, compare RUN_A RUN_B, delete RUN",
    )
    r.add_argument("--store", help="the store folder or file, or a run's CONFIG.yaml (its store:)")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.add_argument("--output", metavar="DIR", help="export: the folder to write into (created)")
    r.set_defaults(run=run_runs)


def run_runs(args: argparse.Namespace) -> int:
    from promptlift.cli.optimize import _default_store, _store_path
    from promptlift.optimize.store import RunStore

    words = list(args.words)
    action = words.pop(0) if words and words[0] in ACTIONS else "list"
    wanted = {"list": (0, 1), "show": (1, 1), "export": (1, 1), "compare": (2, 2), "delete": (1, 1)}[action]
    if not wanted[0] <= len(words) <= wanted[1]:
        shape = {"list": "[STORE]", "show": "RUN", "export": "RUN --output DIR", "compare": "RUN_A RUN_B"}
        raise ConfigError(f"usage: promptlift runs {action} {shape.get(action, 'RUN')} [--store STORE]")
    given = args.store or (words.pop(0) if action == "list" and words else None)
    store = RunStore(_store_path(given) if given else _default_store(), create=False)
    try:
        if action == "list":
            return _list(store, args.json)
        if action == "show":
            return _show(store, words[0], args.json)
        if action == "export":
            return _export(store, words[0], args.output)
        if action == "compare":
            return _compare(store, words[0], words[1], args.json)
        return _delete(store, words[0], args.json)
    finally:
        store.close()


# -- list ------------------------------------------------------------------------------------------
def _entry(store: Any, run: Mapping[str, Any]) -> dict[str, Any]:
    full = store.run(run["id"])
    result = full["result"] or {}
    config = full["config"] or {}
    return {
        **run,
        "model": result.get("model") or _model_name(config.get("model")),
        "initial_score": result.get("test_initial_score"),
        "initial_score_ci": result.get("test_initial_score_ci"),
        "best_score": result.get("best_score"),
        "test_best_score": result.get("test_best_score"),
        "test_best_score_ci": result.get("test_best_score_ci"),
        "calls": result.get("calls"),
        "cached_calls": result.get("cached_calls"),
        "work_calls": work_calls(result),
        "cost_usd": result.get("cost_usd"),
        "error": result.get("error"),
    }


def work_calls(result: Mapping[str, Any], role: str = "") -> int | None:
    """Every call a stored run made, sent or answered by the cache (as its progress line counted);
    ``role`` "task" or "reasoning" for one role's. A run stored before ``work_calls`` was kept: its
    total is sent plus cached, a role's its sent calls (cache hits were not kept per role)."""
    key = f"{role}_calls" if role else "calls"
    if result.get(key) is None:
        return None
    stored = result.get(f"{role}_work_calls" if role else "work_calls")
    if stored is not None:
        return int(stored)
    return int(result[key]) + (0 if role else int(result.get("cached_calls") or 0))


def _model_name(value: Any) -> str:
    if isinstance(value, list):
        return " → ".join(_model_name(v) for v in value)
    if isinstance(value, Mapping):
        return str(value.get("model", "?"))
    return str(value or "local/gemma-3-270m")


def _score(value: Any, ci: Any = None) -> str:
    if value is None:
        return "-"
    shown = f"{value:.3f}"
    return f"{shown} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else shown


def _list(store: Any, as_json: bool) -> int:
    rows = [_entry(store, run) for run in store.runs()]
    if as_json:
        print(dumps(rows))
        return 0
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created"]))
        scores = (
            f"test {_score(row['initial_score'], row['initial_score_ci'])} → "
            f"{_score(row['test_best_score'], row['test_best_score_ci'])}"
            if row["test_best_score"] is not None
            else "-"
        )
        spend = f"{row['work_calls']} calls ${row['cost_usd']:.4f}" if row["calls"] is not None else ""
        # the old listing's fields first: scripts that read "best 0.850" keep working
        print(
            f"{row['id']}  {row['optimizer']:<11} {row['status']:<9} best {_score(row['best_score'])}  "
            f"{when}  {row['model']}  {scores}  {spend}".rstrip()
        )
    return 0


# -- show ------------------------------------------------------------------------------------------
def _finished(store: Any, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    run = store.run(run_id)
    result = run["result"] or {}
    if "best_prompt" not in result:
        raise ConfigError(
            no_result_advice(run_id, run["status"], result.get("error"), store.owner_of(run_id))
        )
    return run, result


def _input_errors() -> frozenset[str]:
    """The names of the errors a fix to the input (config, data, key) cures, as a run stores them."""
    from promptlift.errors import ClientClosed, UserError

    found: set[str] = set()
    todo: list[type] = [UserError]
    while todo:
        cls = todo.pop()
        if cls is not ClientClosed:
            found.add(cls.__name__)
        todo += cls.__subclasses__()
    return frozenset(found)


def no_result_advice(run_id: str, status: str, error: str | None, owner: Mapping[str, Any] | None) -> str:
    """Why a run has no result, and what to do: a live run is followed, not resumed; one that failed
    on its input is fixed first (resuming alone meets the same error); the others resume."""
    from promptlift.optimize.liveness import described

    where = described(owner)
    resume = f"`promptlift optimize CONFIG --resume {run_id}`"
    if status == "running":
        return (
            f"run {run_id} is running ({where or 'its process is alive'}) and has no result yet: its "
            f"progress is on the terminal or log it was started from, `promptlift runs` shows its status, "
            f"and `promptlift runs show {run_id}` its result once it ends"
        )
    if status == "stale?":
        return (
            f"run {run_id} is stale? ({where + ', ' if where else ''}another host, silent for 15 minutes) "
            f"and has no result: if its process is gone, {resume} continues it"
        )
    why = f" ({error})" if error else ""
    if error and error.split(":", 1)[0].strip() in _input_errors():
        return (
            f"run {run_id} is {status}{why} and has no result: resuming alone meets the same error; fix "
            f"the config (or the data, or the key's variable), then {resume} continues it when the fix "
            f"leaves the search as it was (a key, an endpoint, allowed hosts, timeouts), else start again: "
            f"`promptlift optimize CONFIG` (--resume refuses a changed prompt, model, data or metric)"
        )
    return f"run {run_id} is {status}{why} and has no result yet: {resume} continues it"


def _rows(evaluation: Mapping[str, Any] | None) -> dict[int, float]:
    return {int(r["index"]): float(r["score"]) for r in (evaluation or {}).get("rows", [])}


def _outcomes(before: Mapping[int, float], after: Mapping[int, float]) -> dict[str, list[int]]:
    shared = sorted(set(before) & set(after))
    return {
        "fixed": [i for i in shared if after[i] > before[i]],
        "regressed": [i for i in shared if after[i] < before[i]],
        "unchanged": [i for i in shared if after[i] == before[i]],
    }


def prompt_text(prompt: Mapping[str, Any]) -> dict[str, str]:
    """A stored prompt as readable text per part (a program's per prompt), for diffs."""
    if "program" in prompt:
        out = {"program": str(prompt["program"])}
        for name, member in (prompt.get("prompts") or {}).items():
            out.update({f"{name}.{k}": v for k, v in prompt_text(member).items()})
        return out
    out = {"system": str(prompt.get("system", "")), "user": str(prompt.get("user", ""))}
    demos = prompt.get("demos") or []
    if demos:
        out["demos"] = "\n".join(
            f"{json.dumps(d['fields'], ensure_ascii=False)} -> {d['answer']}" for d in demos
        )
    for i, turn in enumerate(prompt.get("turns") or []):
        out[f"turn:{i}"] = json.dumps(turn, ensure_ascii=False)
    for tool in prompt.get("tools") or []:
        out[f"tool:{tool.get('name')}"] = str(tool.get("description", ""))
    if prompt.get("params"):
        out["params"] = json.dumps(prompt["params"], sort_keys=True)
    return out


def prompt_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """A unified diff of two stored prompts, part by part (only the parts that changed)."""
    a, b = prompt_text(before), prompt_text(after)
    lines: list[str] = []
    for part in dict.fromkeys([*a, *b]):
        if a.get(part, "") == b.get(part, ""):
            continue
        lines += list(
            difflib.unified_diff(
                a.get(part, "").splitlines(), b.get(part, "").splitlines(), f"initial {part}", f"best {part}",
                lineterm="",
            )
        )  # fmt: skip
    return lines


def plan_vs_spend(plan: Mapping[str, Any] | None, result: Mapping[str, Any]) -> dict[str, Any]:
    """What the plan expected (``Plan.to_dict`` as stored when the run started; None for a run
    stored before plans were kept, or started from library code) against what the run spent.
    Planned calls count an LLM judge's; spent ``calls`` are those sent, ``cached_calls`` the cache's,
    ``work_calls`` both (what the plan estimated: it does not know what the cache holds). The plan
    estimates no tokens: ``planned.tokens`` is None unless a plan says otherwise."""
    spent = {
        "calls": result.get("calls"),
        "cached_calls": result.get("cached_calls"),
        "work_calls": work_calls(result),  # sent and cached alike, as planned calls are counted
        "tokens": result.get("tokens"),
        "cost_usd": result.get("cost_usd"),
    }
    if not plan:
        return {"plan": None, "planned": None, "spent": spent}
    calls = sum(int(plan.get(k) or 0) for k in ("task_calls", "reasoning_calls", "judge_calls"))
    planned = {"calls": calls, "tokens": plan.get("tokens"), "cost_usd": plan.get("cost_usd")}
    return {"plan": dict(plan), "planned": planned, "spent": spent}


def plan_line(comparison: Mapping[str, Any]) -> str:
    """``plan_vs_spend`` in one line: planned → spent, for calls, tokens and cost."""
    spent = comparison["spent"]
    cached = int(spent.get("cached_calls") or 0)
    total = spent.get("work_calls")
    total = int(spent["calls"] or 0) + cached if total is None else int(total)
    from promptlift.optimize.result import calls_split  # here: the CLI's start imports no optimize layer

    calls = f"{total} calls ({calls_split(total, cached)})"
    tokens, cost = f"{spent['tokens'] or 0} tokens", f"${spent['cost_usd'] or 0:.4f}"
    planned = comparison["planned"]
    if planned is None:
        return f"no plan recorded · spent {calls}, {tokens}, {cost}"
    low_high = planned["cost_usd"]
    planned_cost = f"${low_high[0]:.4f}–{low_high[1]:.4f}" if low_high else "unknown (a price is missing)"
    planned_tokens = f"~{planned['tokens']}" if planned["tokens"] is not None else "not estimated"
    return (
        f"calls ~{planned['calls']} → {calls} · tokens {planned_tokens} → {tokens} · "
        f"cost {planned_cost} → {cost}"
    )


def _rejected_line(r: Mapping[str, Any]) -> str:
    sides = " + ".join(f"#{p}" for p in r["parents"]) or "-"
    return f"  r{r['id']:<4} from {sides}  {r['origin']}: {r['reason']}"


SHOWN_REJECTED = 10  # in text; --json and runs export give them all


def _show(store: Any, run_id: str, as_json: bool) -> int:
    from promptlift.optimize.result import calls_split

    run, result = _finished(store, run_id)
    candidates = store.candidates(run_id)
    rejected = store.rejected(run_id)
    outcomes = _outcomes(_rows(result.get("initial_test")), _rows(result.get("best_test")))
    top = sorted(candidates, key=lambda c: (-(c["score"] or 0.0), c["id"]))[:5]
    summary = {
        "id": run["id"],
        "status": run["status"],
        "optimizer": run["optimizer"],
        "model": result.get("model"),
        "stop_reason": result.get("stop_reason"),
        "validation": {"initial": result.get("initial_score"), "best": result.get("best_score")},
        "test": {
            "initial": result.get("test_initial_score"),
            "initial_ci": result.get("test_initial_score_ci"),
            "best": result.get("test_best_score"),
            "best_ci": result.get("test_best_score_ci"),
            "gain": result.get("test_gain"),
        },
        "rows": {k: len(v) for k, v in outcomes.items()},
        "regressed_rows": outcomes["regressed"],
        "spend": {
            k: result.get(k)
            for k in (
                "calls",
                "task_calls",
                "reasoning_calls",
                "cached_calls",
                "cost_usd",
                "cached_input_tokens",  # the provider's prompt cache (None in a run stored before it)
                "cache_saved_usd",
                "batch_saved_usd",  # the provider's Batch API on the test scoring (None before it)
            )
        }
        | {
            "work_calls": work_calls(result),  # sent and cached alike, as the run's progress counted
            "task_work_calls": work_calls(result, "task"),
            "reasoning_work_calls": work_calls(result, "reasoning"),
        },
        "budget": (run["config"] or {}).get("budget"),
        "plan_vs_spend": plan_vs_spend(run.get("plan"), result),
        "duration_s": result.get("duration_s"),
        "candidates": len(candidates),
        "top": [
            {
                "id": c["id"],
                "score": c["score"],
                "origin": c["origin"],
                "parent": c["parent"],
                "parents": c["parents"],
            }
            for c in top
        ],
        "rejected_count": len(rejected),
        "rejected": [
            {k: r[k] for k in ("id", "round", "parents", "origin", "reason")}
            | {"minibatch_rows": len((r["evaluation"] or {}).get("rows", []))}
            for r in rejected
        ],
        "diff": prompt_diff(result["initial_prompt"], result["best_prompt"]),
        "stages": result.get("stages"),  # a pipeline's: each stage's own run (RUN.k) and scores
    }
    if as_json:
        print(dumps(summary))
        return 0
    test = summary["test"]
    gain = test["gain"] or {}
    print(f"run {run['id']}  {run['optimizer']} on {summary['model']}")
    print(f"status      {run['status']}: {summary['stop_reason']}")
    print(f"validation  {_score(summary['validation']['initial'])} → {_score(summary['validation']['best'])}")
    print(
        f"test        {_score(test['initial'], test['initial_ci'])} → {_score(test['best'], test['best_ci'])}"
    )
    if gain:
        ci = gain.get("ci") or [None, None]
        shown = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if None not in ci else "[-]"
        test_line = f"p = {gain['p_value']:.3g} ({gain['method']}): {gain['verdict']}"
        print(f"change      {gain['value']:+.3f} {shown}  {test_line}")
    rows = summary["rows"]
    print(
        f"test rows   {rows['fixed']} fixed · {rows['regressed']} regressed · {rows['unchanged']} unchanged"
    )
    spend = summary["spend"]
    budget = summary["budget"] or {}
    planned = f" of max_calls {budget['max_calls']}" if budget.get("max_calls") else ""
    total, cached = spend["work_calls"] or 0, spend["cached_calls"] or 0
    print(
        f"spend       {total} calls{planned} ({calls_split(total, cached)}; "
        f"{spend['task_work_calls']} task, {spend['reasoning_work_calls']} reasoning) · "
        f"${spend['cost_usd'] or 0:.4f} · {summary['duration_s']:.1f} s"
    )
    if spend["cached_input_tokens"]:
        print(
            f"prompt cache {spend['cached_input_tokens']} input tokens read from the provider's cache · "
            f"saved ${spend['cache_saved_usd'] or 0:.4f}"
        )
    if spend["batch_saved_usd"]:
        print(f"batch API   saved ${spend['batch_saved_usd']:.4f} on the test scoring (at the batch rate)")
    print(f"plan        {plan_line(summary['plan_vs_spend'])}")
    for k, stage in enumerate(summary["stages"] or []):
        print(
            f"stage {k}     {stage['optimizer']} (run {stage['run_id']}): validation "
            f"{_score(stage['initial_score'])} → {_score(stage['best_score'])} · {stage['calls']} calls · "
            f"stopped: {stage['stop_reason']}"
        )
    print(f"candidates  {summary['candidates']} scored on validation; the top ones:")
    for c in summary["top"]:
        sides = " + ".join(f"#{p}" for p in c["parents"])
        print(f"  #{c['id']:<4} {_score(c['score'])}  {c['origin']}" + (f" (from {sides})" if sides else ""))
    if rejected:
        print(f"rejected before validation: {len(rejected)} (on a minibatch, unusable or a duplicate)")
        for r in summary["rejected"][:SHOWN_REJECTED]:
            print(_rejected_line(r))
        if len(rejected) > SHOWN_REJECTED:
            print(f"  ... and {len(rejected) - SHOWN_REJECTED} more (--json or runs export lists them all)")
    print("best prompt against the initial one:" if summary["diff"] else "best prompt: the initial one")
    for line in summary["diff"]:
        print(f"  {line}")
    return 0


# -- export ----------------------------------------------------------------------------------------
def _export(store: Any, run_id: str, output: str | None) -> int:
    import yaml

    if not output:
        raise ConfigError("runs export needs --output DIR (the folder to write the files into)")
    run, result = _finished(store, run_id)
    folder = Path(output).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {output} is a file; name a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".promptlift-export"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"--output {output} cannot be written ({exc.strerror or exc}); name a writable folder"
        ) from None
    config = {k: v for k, v in (run["config"] or {}).items() if k not in _RECORD_ONLY}
    best = result["best_prompt"]
    if "program" in best:
        config.pop("prompt", None)
        config.update({"program": best["program"], "prompts": best["prompts"]})
    else:
        for key in ("program", "prompts", "calls_per_row"):
            config.pop(key, None)
        config["prompt"] = best
    score = _score(result.get("test_best_score"))
    header = f"# The best prompt of run {run_id} ({run['optimizer']}, test {score}).\n"
    (folder / "best.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    with (folder / "candidates.jsonl").open("w", encoding="utf-8") as out:
        for candidate in [*store.candidates(run_id), *store.rejected(run_id)]:  # each with its status
            out.write(dumps(candidate) + "\n")
    (folder / "result.json").write_text(dumps(result) + "\n")
    print(f"wrote {folder / 'best.yaml'}, {folder / 'candidates.jsonl'}, {folder / 'result.json'}")
    return 0


# What the store records beside a run's config that a config file does not take.
_RECORD_ONLY = frozenset({"optimizer_params", "pipeline", "identity", "resumed_from", "pipeline_of", "stage"})


# -- compare ---------------------------------------------------------------------------------------
def _compare(store: Any, a: str, b: str, as_json: bool) -> int:
    from promptlift.optimize.stats import compare

    _, ra = _finished(store, a)
    _, rb = _finished(store, b)
    sa, sb = _rows(ra.get("best_test")), _rows(rb.get("best_test"))
    shared = sorted(set(sa) & set(sb))
    if not shared:
        raise ConfigError(
            f"runs {a} and {b} share no test rows (different data or splits): their scores cannot be paired"
        )
    comparison = compare([sa[i] for i in shared], [sb[i] for i in shared])
    outcomes = _outcomes({i: sa[i] for i in shared}, {i: sb[i] for i in shared})
    report: dict[str, Any] = {
        "a": {
            "id": a,
            "optimizer": ra.get("optimizer"),
            "test_score": sum(sa[i] for i in shared) / len(shared),
        },
        "b": {
            "id": b,
            "optimizer": rb.get("optimizer"),
            "test_score": sum(sb[i] for i in shared) / len(shared),
        },
        "shared_rows": len(shared),
        "b_minus_a": comparison.to_dict(),
        "rows": {k: len(v) for k, v in outcomes.items()},
        "diff": prompt_diff(ra["best_prompt"], rb["best_prompt"]),
    }
    if as_json:
        print(dumps(report))
        return 0
    g = report["b_minus_a"]
    ci = g["ci"]
    print(f"A {a}  {report['a']['optimizer']}  test {report['a']['test_score']:.3f}")
    print(f"B {b}  {report['b']['optimizer']}  test {report['b']['test_score']:.3f}")
    print(
        f"B - A  {g['value']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]  p = {g['p_value']:.3g} ({g['method']}) "
        f"on {len(shared)} shared test rows: {g['verdict']}"
    )
    rows = report["rows"]
    print(f"rows   B fixes {rows['fixed']} · breaks {rows['regressed']} · {rows['unchanged']} the same")
    return 0


# -- delete ----------------------------------------------------------------------------------------
def _delete(store: Any, run_id: str, as_json: bool) -> int:
    run = store.run(run_id)  # no such run: one clear line
    if run["status"] == "running":
        raise ConfigError(f"run {run_id} is running (its process is alive); stop it before deleting it")
    removed = store.delete_run(run_id)
    if as_json:
        print(dumps({"deleted": run_id, **removed}))
    else:
        print(
            f"deleted run {run_id} ({removed['candidates']} candidates, {removed['steps']} steps)",
            file=sys.stdout,
        )
    return 0
