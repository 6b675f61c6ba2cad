"""One self-contained HTML file for a stored run: it works offline (plotly's JavaScript is inlined
once, nothing is fetched) and holds what people look at to trust a run.

- score over scoring calls and over cost: every candidate with its interval, the running best and
  its interval band;
- the candidate lineage (parents, a merge's two), the candidates on the per-row front marked;
- the test rows from the initial prompt to the best one (fixed, regressed, unchanged) with the
  paired test;
- the prompt diff, per part (per prompt, for a program);
- the rows' trajectories (an agent's steps, a program's calls);
- the spend against the budget.

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
    """A candidate's parents: its ``parent``, and both sides of a merge or crossover."""
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


def lineage_figure(history: Sequence[Mapping[str, Any]], on_front: set[int]) -> Any:
    go = _plotly()
    by_id = {c["id"]: c for c in history}
    xs: list[float | None] = []
    ys: list[float | None] = []
    for c in history:
        for p in parents(c):
            if p in by_id:
                xs += [p, c["id"], None]
                ys += [by_id[p]["score"], c["score"], None]
    fig = go.Figure()
    edges = go.Scatter(
        x=xs, y=ys, mode="lines", line={"color": "#aaa", "width": 1}, name="parent → child", hoverinfo="skip"
    )
    fig.add_trace(edges)
    fig.add_trace(
        go.Scatter(
            x=[c["id"] for c in history], y=[c["score"] for c in history], mode="markers", name="candidate",
            marker={"size": 9, "color": ["#d62728" if c["id"] in on_front else "#7f7f7f" for c in history]},
            text=[f"#{c['id']} {c.get('origin', '')}{' (on the front)' if c['id'] in on_front else ''}"
                  for c in history],
            hovertemplate="%{text}<br>%{y:.3f}",
        )
    )  # fmt: skip
    fig.update_layout(xaxis_title="candidate", yaxis_title="validation score", height=380,
                      margin={"l": 50, "r": 20, "t": 30, "b": 50})  # fmt: skip
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


def render(run: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]]) -> str:
    """The report of a stored run (``RunStore.run``) and its candidates, as one HTML document."""
    _plotly()  # the `report` extra: one clear line before any work
    import jinja2
    from plotly.offline import get_plotlyjs

    from promptlift.cli.runs import prompt_diff

    result = run.get("result") or {}
    if "best_prompt" not in result:
        raise ConfigError(f"run {run['id']} is {run['status']} and has no result to report yet")
    history = result.get("history") or []
    on_front = front(candidates)
    figures = {
        "calls": score_figure(history, "calls"),
        "cost": score_figure(history, "cost"),
        "lineage": lineage_figure(history, on_front),
    }
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
    )


def write(store: Any, run_id: str, path: str | Path) -> Path:
    """Render the run's report into ``path``; returns the path written."""
    html = render(store.run(run_id), store.candidates(run_id))
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
