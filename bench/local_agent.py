"""Can the embedded base model drive a tool loop in plain text? The agent example, on local/gemma-3-270m.

    uv run --all-extras python -m bench.local_agent            # 20 questions x 0, 2, 4 demos
    uv run --all-extras python -m bench.local_agent --rows 6   # a quick look

The questions and tools are examples/agent's (``find_employee`` then ``team_office``). The model
sees the tools as text and calls one with an ``Action: name({...})`` line, which the local provider
reads back as a tool call (``promptlift.providers.react``); the loop is promptlift's own
(``run_agent``, through a ``Client`` with no cache, temperature 0, at most 5 model calls a row).

Demos are whole worked exchanges written out as text (Thought / Action / Observation / Answer),
with the observations the real tools return (examples/agent/worked.py). They are about employees
whose questions are left out of the measured rows, so a demo never holds a measured row's answer
path.

Per number of demos: rows with a well-formed Action (a known tool, JSON-object arguments), rows
that called ``find_employee`` with the question's name, rows that also called ``team_office`` with
that employee's team, rows answered correctly (the answer contains the city, the example's metric),
and how many of those correct rows never called a tool (a guess); mean model calls per row; seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import save

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "agent"
DEMO_COUNTS = (0, 2, 4)
# --descriptions: the 2-demo prompt again with tool descriptions rewritten by hand to name the order
# of the two lookups (what a reflective optimizer would aim for): do descriptions change anything?
REWRITTEN = {
    "find_employee": "Step 1: look up an employee by full name. It gives the employee's team.",
    "team_office": "Step 2: the office city of a team (a team name such as Payments, never a person's "
    "name). Call it with the team find_employee gave.",
}
SYSTEM = "Answer questions about the company directory. Look the answer up with the tools."
USER = "Question: {question}"


def _example() -> tuple[Any, Any]:
    """The example's ``directory`` (tools, data) and ``worked`` (demo exchanges) modules."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import directory
        import worked
    finally:
        sys.path.remove(str(EXAMPLE))
    return directory, worked


def _rows() -> list[dict[str, str]]:
    lines = (EXAMPLE / "questions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def score(trajectory: Any, row: dict[str, str], name: str, team: str) -> dict[str, Any]:
    calls = [step.call for step in trajectory.tool_calls]

    def args(call: Any) -> Any:
        try:
            return call.parsed_arguments()
        except json.JSONDecodeError:
            return None

    offered = ("find_employee", "team_office")
    well_formed = any(c.name in offered and isinstance(args(c), dict) for c in calls)
    right_first = any(
        c.name == "find_employee" and str((args(c) or {}).get("name", "")).strip().lower() == name.lower()
        for c in calls
        if isinstance(args(c), dict)
    )
    right_second = any(
        c.name == "team_office" and str((args(c) or {}).get("team", "")).strip().lower() == team.lower()
        for c in calls
        if isinstance(args(c), dict)
    )
    correct = row["city"].lower() in trajectory.output.lower()
    return {
        "question": row["question"],
        "well_formed_action": well_formed,
        "right_find_employee": right_first,
        "right_team_office": right_first and right_second,
        "correct": correct,
        "correct_without_tools": correct and not calls,
        "model_calls": trajectory.model_calls,
        "stopped": trajectory.stopped,
        "calls": [f"{c.name}({c.arguments})" for c in calls],
        "output": trajectory.output,
    }


COUNTED = (
    "well_formed_action",
    "right_find_employee",
    "right_team_office",
    "correct",
    "correct_without_tools",
)


def summarize(scored: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """One demo count's totals over its rows (the rows kept too, for reading what the model did)."""
    return {
        **{key: sum(r[key] for r in scored) for key in COUNTED},
        "mean_model_calls": statistics.fmean(r["model_calls"] for r in scored),
        "seconds": seconds,
        "rows": scored,
    }


def line(summary: dict[str, Any]) -> str:
    return (
        f"well-formed {summary['well_formed_action']}/{len(summary['rows'])}  "
        f"find_employee right {summary['right_find_employee']}  both hops {summary['right_team_office']}  "
        f"correct {summary['correct']} ({summary['correct_without_tools']} without a tool)  "
        f"mean steps {summary['mean_model_calls']:.2f}  {summary['seconds']:.0f} s"
    )


async def measure(
    client: Any, prompt: Any, measured: list[dict[str, str]], max_steps: int
) -> tuple[list[dict[str, Any]], float]:
    """Each measured row's loop under ``prompt``, scored; and the seconds it took."""
    from promptlift.optimize.agent import run_agent

    directory, worked = _example()
    started = time.perf_counter()
    scored = []
    for row in measured:
        name = worked.employee_in(row["question"])
        trajectory = await run_agent(
            client, prompt.messages(row), prompt.tools, max_steps=max_steps, **prompt.params
        )
        scored.append(score(trajectory, row, name, directory.EMPLOYEES[name][1]))
    return scored, time.perf_counter() - started


async def run(n_rows: int, max_steps: int, descriptions: bool = False) -> dict[str, Any]:
    from promptlift import Client
    from promptlift.optimize.prompt import Demo, Prompt
    from promptlift.optimize.tools import Tool

    directory, worked = _example()
    tools = {name: Tool.from_function(getattr(directory, name)) for name in ("find_employee", "team_office")}
    names = list(directory.EMPLOYEES)
    rows = _rows()
    demo_people = names[-max(DEMO_COUNTS) :]  # their questions are never measured
    demo_rows = [next(r for r in rows if worked.employee_in(r["question"]) == p) for p in demo_people]
    demos = [Demo({"question": r["question"]}, await worked.worked(r["question"])) for r in demo_rows]
    measured = [r for r in rows if worked.employee_in(r["question"]) not in demo_people][:n_rows]

    out: dict[str, Any] = {
        "rows": len(measured),
        "max_steps": max_steps,
        "model": "local/gemma-3-270m",
        "by_demos": {},
    }
    with Client() as client:  # no cache: every call reaches the model
        client.complete("warm up", max_tokens=1)  # loads litellm and the model once
        prompts = {}
        for count in DEMO_COUNTS:
            prompt = Prompt(
                user=USER,
                system=SYSTEM,
                demos=tuple(demos[:count]),
                tools=tuple(tools.values()),
                max_steps=max_steps,
                params={"temperature": 0, "max_tokens": 96},
            )
            prompts[count] = prompt
            scored, seconds = await measure(client, prompt, measured, max_steps)
            out["by_demos"][str(count)] = summarize(scored, seconds)
            print(f"{count} demos: {line(out['by_demos'][str(count)])}", flush=True)
        if descriptions:
            rewritten = tuple(t.with_description(REWRITTEN[t.name]) for t in tools.values())
            prompt = prompts[2].replace(tools=rewritten)
            scored, seconds = await measure(client, prompt, measured, max_steps)
            out["rewritten_descriptions_2_demos"] = summarize(scored, seconds)
            print(
                f"2 demos, rewritten descriptions: {line(out['rewritten_descriptions_2_demos'])}", flush=True
            )
    return out


async def _quietly(work: Any) -> Any:
    """``work``, then the tasks LiteLLM left on this loop (its logging worker) cancelled, as the
    client does on its own loop, so the run ends without "Task was destroyed" noise."""
    try:
        return await work
    finally:
        current = asyncio.current_task()
        leftover = [t for t in asyncio.all_tasks() if t is not current]
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_agent")
    parser.add_argument("--rows", type=int, default=20, help="questions measured (of 32 not in demos)")
    parser.add_argument("--max-steps", type=int, default=5)
    parser.add_argument(
        "--descriptions", action="store_true", help="also: 2 demos, rewritten tool descriptions"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(_quietly(run(args.rows, args.max_steps, args.descriptions)))
    path = save("local_agent", result)
    print(f"written {path} at {time.strftime('%H:%M')}")


if __name__ == "__main__":
    main()
