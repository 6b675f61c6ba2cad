"""One self-contained HTML file for a stored run: it works offline (plotly's JavaScript is inlined
once, nothing is fetched) and holds what people look at to trust a run.

- score over scoring calls and over cost: every candidate with its interval, the running best and
  its interval band;
- the candidate lineage (parents, a merge's two), the candidates on the per-row front marked, and
  the proposals rejected before validation (on a minibatch, unusable, duplicates), each with why;
- a Pareto run's front: per row, the rows each front candidate leads on; with objectives, score
  against the second objective;
- the test rows from the initial prompt to the best one (fixed, regressed, unchanged) with the
  paired test;
- the prompt diff, per part (per prompt, for a program);
- the rows' trajectories (an agent's steps, a program's calls);
- the plan (as stored when the run started) and the budget against the spend, the spend over time;
- the call metrics: latency percentiles, errors by type, retries, cache hits, per model.

Everything comes from the run store (``RunStore.run`` and ``candidates``); no model call is made.
Text from the run (prompts, outputs, tool results) is escaped by the template engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlift.errors import ConfigError

TEMPLATE = "report.html.j2"


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:  # the `report` extra
        raise ConfigError("the HTML report needs plotly: pip install 'promptlift[report]'") from None
    return go


def _cumulative(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    total, out = 0.0, []
    for c in history:
        spend = c.get("spend") or {}
        if key == "calls":
            total += float(spend.get("calls", 0)) + float(spend.get("cached_calls", 0))
        else:
            total += float(spend.get("cost_usd", 0.0)) + float(spend.get("cached_cost_usd", 0.0))
        out.append(total)
    return out


def _running_best(history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    best: Mapping[str, Any] | None = None
    out = []
    for c in history:
        if best is None or c["score"] > best["score"]:
            best = c
        out.append(best)
    return out


def score_figure(history: Sequence[Mapping[str, Any]], axis: str) -> Any:
    """Score against scoring calls (``axis="calls"``) or cost (``"cost"``)."""
    go = _plotly()
    x = _cumulative(history, axis)
    scores = [c["score"] for c in history]
    low = [c["score"] - (c.get("score_ci") or [c["score"]] * 2)[0] for c in history]
    high = [(c.get("score_ci") or [c["score"]] * 2)[1] - c["score"] for c in history]
    best = _running_best(history)
    band_low = [(b.get("score_ci") or [b["score"]] * 2)[0] for b in best]
    band_high = [(b.get("score_ci") or [b["score"]] * 2)[1] for b in best]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=x + x[::-1], y=band_high + band_low[::-1], fill="toself", mode="none",
                   fillcolor="rgba(31,119,180,0.15)", name="best's interval", hoverinfo="skip")
    )  # fmt: skip
    fig.add_trace(go.Scatter(x=x, y=[b["score"] for b in best], mode="lines", name="running best",
                             line={"shape": "hv", "color": "#1f77b4"}))  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=x, y=scores, mode="markers", name="candidate",
            error_y={"type": "data", "symmetric": False, "array": high, "arrayminus": low, "thickness": 1},
            text=[f"#{c['id']} {c.get('origin', '')}" for c in history], hovertemplate="%{text}<br>%{y:.3f}",
            marker={"color": "#ff7f0e"},
        )
    )  # fmt: skip
    title = "scoring calls so far" if axis == "calls" else "scoring cost so far (USD)"
    fig.update_layout(xaxis_title=title, yaxis_title="validation score", height=380,
                      margin={"l": 50, "r": 20, "t": 30, "b": 50})  # fmt: skip
    return fig


def parents(candidate: Mapping[str, Any]) -> list[int]:
    """A candidate's parents: as recorded (``parents``), else its ``parent`` and both sides of a
    merge or crossover read from its origin (a run stored before parents were kept)."""
    if candidate.get("parents") is not None:
        return [int(p) for p in candidate["parents"]]
    pairs = re.findall(r"(\d+)\s*[+x]\s*(\d+)", str(candidate.get("origin", "")))
    found = [int(side) for pair in pairs for side in pair]
    own = [candidate["parent"]] if candidate.get("parent") is not None else []
    return list(dict.fromkeys(found or own))


def front(candidates: Sequence[Mapping[str, Any]]) -> set[int]:
    """Candidates best (ties included) on at least one validation row: the per-row Pareto front."""
    rows: dict[int, dict[int, float]] = {}
    for c in candidates:
        for r in (c.get("evaluation") or {}).get("rows", []):
            rows.setdefault(int(r["index"]), {})[c["id"]] = float(r["score"])
    out: set[int] = set()
    for scores in rows.values():
        top = max(scores.values())
        if top > 0:
            out |= {cid for cid, s in scores.items() if s == top}
    return out


def lineage_nodes(
    history: Sequence[Mapping[str, Any]], rejected: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One node per recorded candidate, in the order they were proposed (by the run's clock when
    recorded; a store without it: accepted candidates by id, then the rejected): ``key`` ("#3", or
    "r2" for a rejected proposal), ``x`` (its place in that order), ``y`` (its validation score; a
    rejected one sits at its first parent's, hanging off it), ``parents`` (keys) and ``text``."""
    score = {c["id"]: c["score"] for c in history}

    def when(c: Mapping[str, Any], rank: int) -> tuple[float, int, int]:
        return (float((c.get("spent") or {}).get("elapsed_s", float("inf"))), rank, int(c["id"]))

    ordered = sorted(
        [(when(c, 0), "accepted", c) for c in history] + [(when(r, 1), "rejected", r) for r in rejected],
        key=lambda item: item[0],
    )
    nodes = []
    for x, (_, status, c) in enumerate(ordered):
        sides = parents(c) if status == "accepted" else [int(p) for p in c.get("parents") or []]
        if status == "accepted":
            key, y, text = f"#{c['id']}", c["score"], f"#{c['id']} {c.get('origin', '')}"
        else:
            key, y = f"r{c['id']}", score.get(sides[0], 0.0) if sides else 0.0
            text = f"r{c['id']} rejected ({c.get('origin', '')}): {c.get('reason', '')}"
        nodes.append({"key": key, "id": c["id"], "status": status, "x": x, "y": y, "text": text,
                      "parents": [f"#{p}" for p in sides]})  # fmt: skip
    return nodes


def lineage_figure(
    history: Sequence[Mapping[str, Any]], on_front: set[int], rejected: Sequence[Mapping[str, Any]] = ()
) -> Any:
    """The candidates against their parents (both sides of a merge or crossover): accepted ones as
    dots (red on the per-row front), rejected proposals as open crosses off their parent."""
    go = _plotly()
    nodes = lineage_nodes(history, rejected)
    at = {n["key"]: n for n in nodes}
    xs: list[float | None] = []
    ys: list[float | None] = []
    for n in nodes:
        for p in n["parents"]:
            if p in at:
                xs += [at[p]["x"], n["x"], None]
                ys += [at[p]["y"], n["y"], None]
    fig = go.Figure()
    edges = go.Scatter(
        x=xs, y=ys, mode="lines", line={"color": "#aaa", "width": 1}, name="parent → child", hoverinfo="skip"
    )
    fig.add_trace(edges)
    kept = [n for n in nodes if n["status"] == "accepted"]
    dropped = [n for n in nodes if n["status"] == "rejected"]
    fig.add_trace(
        go.Scatter(
            x=[n["x"] for n in kept], y=[n["y"] for n in kept], mode="markers", name="candidate",
            marker={"size": 9, "color": ["#d62728" if n["id"] in on_front else "#7f7f7f" for n in kept]},
            text=[n["text"] + (" (on the front)" if n["id"] in on_front else "") for n in kept],
            hovertemplate="%{text}<br>%{y:.3f}",
        )
    )  # fmt: skip
    if dropped:
        fig.add_trace(
            go.Scatter(
                x=[n["x"] for n in dropped], y=[n["y"] for n in dropped], mode="markers",
                name="rejected before validation",
                marker={"size": 9, "symbol": "x-open", "color": "#9467bd", "line": {"width": 1.5}},
                text=[n["text"] for n in dropped], hovertemplate="%{text}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(xaxis_title="proposal, in order", yaxis_title="validation score", height=380,
                      margin={"l": 50, "r": 20, "t": 30, "b": 50})  # fmt: skip
    return fig


def front_figure(stored: Mapping[str, Any]) -> Any:
    """A run's Pareto front (``OptimizationResult.front``): per row, the front's candidates by the
    validation rows each leads on; with objectives, every candidate on the first two, the front
    joined by a line."""
    go = _plotly()
    members = stored.get("members") or []
    fig = go.Figure()
    if stored.get("kind") == "per_row":
        fig.add_trace(
            go.Bar(
                x=[f"#{m['id']}" for m in members], y=[m["rows_won"] for m in members], name="rows led",
                text=[f"score {m['score']:.3f}" for m in members], marker={"color": "#d62728"},
                hovertemplate="%{x}: leads on %{y} rows<br>%{text}<extra></extra>",
            )
        )  # fmt: skip
        layout = {"xaxis_title": "candidate on the front",
                  "yaxis_title": f"validation rows it leads on (of {stored.get('rows', '?')})"}  # fmt: skip
    else:
        names = list(stored.get("objectives") or ["score", "?"])
        on = sorted((m for m in members if m["on_front"]), key=lambda m: m["values"][1])
        off = [m for m in members if not m["on_front"]]
        for group, label, color in ((off, "dominated", "#7f7f7f"), (on, "on the front", "#d62728")):
            fig.add_trace(
                go.Scatter(
                    x=[m["values"][1] for m in group], y=[m["values"][0] for m in group], name=label,
                    mode="lines+markers" if group is on else "markers", marker={"size": 9, "color": color},
                    text=[f"#{m['id']}" for m in group], hovertemplate="%{text}: %{x:.4g}, %{y:.3f}",
                )
            )  # fmt: skip
        unit = {"length": "prompt length (tokens)", "cost": "cost per row", "steps": "model calls per row"}
        layout = {"xaxis_title": unit.get(names[1], names[1]) + " (lower is better)",
                  "yaxis_title": "validation score"}  # fmt: skip
    fig.update_layout(height=360, margin={"l": 50, "r": 20, "t": 30, "b": 50}, **layout)
    return fig


def spend_points(records: Sequence[Mapping[str, Any]], result: Mapping[str, Any]) -> list[dict[str, float]]:
    """The run's spend over time: a point per recorded candidate (accepted or rejected, as the run's
    ledger stood then) and the run's end; empty for a run stored before that was kept."""
    points = [dict(c["spent"]) for c in records if c.get("spent")]
    if not points:
        return []
    points.sort(key=lambda p: p["elapsed_s"])
    end = {
        "elapsed_s": max(float(result.get("duration_s") or 0.0), points[-1]["elapsed_s"]),
        "calls": float((result.get("calls") or 0) + (result.get("cached_calls") or 0)),
        "cost_usd": float(result.get("cost_usd") or 0.0),
        "tokens": float(result.get("tokens") or 0),
    }
    return [{"elapsed_s": 0.0, "calls": 0.0, "cost_usd": 0.0, "tokens": 0.0}, *points, end]


def cost_time_figure(points: Sequence[Mapping[str, float]]) -> Any:
    """Paid cost (left axis) and calls (right: sent and cached) against seconds into the run."""
    go = _plotly()
    xs = [p["elapsed_s"] for p in points]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=[p["cost_usd"] for p in points], mode="lines+markers", name="cost (USD)",
                             line={"shape": "hv", "color": "#2ca02c"}))  # fmt: skip
    fig.add_trace(go.Scatter(x=xs, y=[p["calls"] for p in points], mode="lines", name="calls", yaxis="y2",
                             line={"shape": "hv", "color": "#1f77b4", "dash": "dot"}))  # fmt: skip
    calls_axis = {"title": "calls so far", "overlaying": "y", "side": "right", "rangemode": "tozero"}
    fig.update_layout(xaxis_title="seconds into the run", height=340, yaxis2=calls_axis,
                      yaxis={"title": "cost so far (USD)", "rangemode": "tozero"},
                      margin={"l": 60, "r": 60, "t": 30, "b": 50}, legend={"x": 0.02, "y": 0.98})  # fmt: skip
    return fig


def latency_figure(metrics: Mapping[str, Any]) -> Any:
    """Latency percentiles per model (the client's metrics at the end of the run)."""
    go = _plotly()
    models = metrics.get("models") or {}
    fig = go.Figure()
    for q, color in (("p50", "#1f77b4"), ("p95", "#ff7f0e"), ("p99", "#d62728")):
        fig.add_trace(go.Bar(x=list(models), y=[m[f"latency_{q}_s"] * 1000 for m in models.values()], name=q,
                             marker={"color": color}))  # fmt: skip
    fig.update_layout(barmode="group", yaxis_title="latency (ms)", height=320,
                      margin={"l": 60, "r": 20, "t": 30, "b": 60})  # fmt: skip
    return fig


def row_changes(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each test row from the initial prompt to the best: its outputs, scores and outcome."""
    before = {int(r["index"]): r for r in (result.get("initial_test") or {}).get("rows", [])}
    out = []
    for r in (result.get("best_test") or {}).get("rows", []):
        b = before.get(int(r["index"]))
        if b is None:
            continue
        outcome = (
            "fixed" if r["score"] > b["score"] else "regressed" if r["score"] < b["score"] else "unchanged"
        )
        out.append({"index": r["index"], "before": b, "after": r, "outcome": outcome})
    return out


def steps_of(row: Mapping[str, Any]) -> list[str]:
    """A row's trajectory as lines: an agent's model and tool steps, or a program's calls."""
    lines = []
    for call in row.get("trace") or []:
        args = ", ".join(f"{k}={v!r}" for k, v in (call.get("fields") or {}).items())
        lines.append(f"{call['prompt']}({args}) -> {call.get('output', '')!r}")
    for step in (row.get("trajectory") or {}).get("steps") or []:
        if step.get("type") == "tool":
            call = step.get("call") or {}
            got = f"error: {step['error']}" if step.get("error") else step.get("result", "")
            lines.append(f"tool {call.get('name')}({call.get('arguments', '')}) -> {got}")
        else:
            calls = ", ".join(t.get("name", "?") for t in step.get("tool_calls") or [])
            lines.append(f"model: {step.get('content', '')!r}" + (f" calls {calls}" if calls else ""))
    return lines


def render(
    run: Mapping[str, Any],
    candidates: Sequence[Mapping[str, Any]],
    rejected: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The report of a stored run (``RunStore.run``), its candidates and the proposals it rejected
    (``RunStore.rejected``), as one HTML document."""
    _plotly()  # the `report` extra: one clear line before any work
    import jinja2
    from plotly.offline import get_plotlyjs

    from promptlift.cli.runs import plan_vs_spend, prompt_diff

    result = run.get("result") or {}
    if "best_prompt" not in result:
        raise ConfigError(f"run {run['id']} is {run['status']} and has no result to report yet")
    stored = {c["id"]: c for c in candidates}  # the store's records: when each was recorded, its parents
    history = []
    for h in result.get("history") or []:
        record = stored.get(h["id"]) or {}
        parents_of = h.get("parents", record.get("parents"))
        history.append({**h, "spent": record.get("spent"), "parents": parents_of})
    on_front = front(candidates)
    metrics = result.get("call_metrics")
    points = spend_points([*candidates, *rejected], result)
    figures = {
        "calls": score_figure(history, "calls"),
        "cost": score_figure(history, "cost"),
        "lineage": lineage_figure(history, on_front, rejected),
    }
    if result.get("front"):
        figures["front"] = front_figure(result["front"])
    if points:
        figures["spend"] = cost_time_figure(points)
    if metrics and metrics.get("models"):
        figures["latency"] = latency_figure(metrics)
    divs = {
        name: fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{name}",
                          config={"displaylogo": False, "responsive": True})
        for name, fig in figures.items()
    }  # fmt: skip
    changes = row_changes(result)
    counts = {k: sum(1 for c in changes if c["outcome"] == k) for k in ("fixed", "regressed", "unchanged")}
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    budget = (run.get("config") or {}).get("budget") or {}
    return env.get_template(TEMPLATE).render(
        run=run,
        result=result,
        plotly_js=get_plotlyjs(),
        divs=divs,
        changes=changes,
        counts=counts,
        diff=prompt_diff(result["initial_prompt"], result["best_prompt"]),
        steps_of=steps_of,
        on_front=sorted(on_front),
        budget=budget,
        rejected=rejected,
        plan=plan_vs_spend(run.get("plan"), result),
        metrics=metrics,
    )


def write(store: Any, run_id: str, path: str | Path) -> Path:
    """Render the run's report into ``path``; returns the path written."""
    html = render(store.run(run_id), store.candidates(run_id), store.rejected(run_id))
    out = Path(path).expanduser()
    if not str(path).strip():
        raise ConfigError("--html is empty; name the file to write, like report.html")
    if out.is_dir():
        raise ConfigError(f"--html {path} is a folder; name the file to write, like report.html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"--html {path} cannot be written ({exc.strerror or exc}); name a writable file"
        ) from None
    return out
