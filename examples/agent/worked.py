"""Worked exchanges for the embedded base model: each question answered in the text form the local
provider reads (Thought / Action / Observation / Answer), with what the tools really return.

A base model learns the tool loop from demos, not from an instruction; ``local.yaml`` lets the
fewshot optimizer pick which of these to show. ``python worked.py`` rewrites
``local_questions.jsonl``: one question per employee (alternating the two phrasings), so a demo
never shows the answer path of a row in another split.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import directory

from promptlift.optimize.tools import Tool

HERE = Path(__file__).resolve().parent
TOOLS = {name: Tool.from_function(getattr(directory, name)) for name in ("find_employee", "team_office")}


def employee_in(question: str) -> str:
    return next(name for name in directory.EMPLOYEES if name in question)


async def worked(question: str) -> str:
    """The whole exchange that answers ``question``, as text."""
    name = employee_in(question)
    person = await TOOLS["find_employee"].run(json.dumps({"name": name}))
    team = json.loads(person.result)["team"]
    office = await TOOLS["team_office"].run(json.dumps({"team": team}))
    return "\n".join(
        [
            f"Thought: I need {name}'s team first.",
            f"Action: find_employee({json.dumps({'name': name})})",
            f"Observation: {person.shown}",
            f"Thought: {name} is in the {team} team. Now I need the {team} team's office.",
            f"Action: team_office({json.dumps({'team': team})})",
            f"Observation: {office.shown}",
            f"Answer: {office.shown}",
        ]
    )


async def rows() -> list[dict[str, str]]:
    questions = [json.loads(line) for line in (HERE / "questions.jsonl").read_text().splitlines() if line]
    by_person: dict[str, list[dict[str, str]]] = {}
    for row in questions:
        by_person.setdefault(employee_in(row["question"]), []).append(row)
    picked = [found[i % len(found)] for i, found in enumerate(by_person.values())]
    return [{**row, "worked": await worked(row["question"])} for row in picked]


def main() -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in asyncio.run(rows())]
    (HERE / "local_questions.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
