"""A user's optimizer, as a config names it (``optimizer: {name: "hint:Hint"}``): it tries the
instruction with each of its hints appended, one candidate per round."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from promptlift.optimize import Optimizer
from promptlift.optimize.run import Candidate, Search


@dataclass
class Hint(Optimizer):
    hints: list[str] = field(default_factory=lambda: ["Count the letters of the word."])
    name: ClassVar[str] = "hint"

    def params(self) -> dict[str, object]:
        return {"hints": list(self.hints)}

    async def search(self, ctx: Search, start: Candidate) -> None:
        for hint in self.hints:
            ctx.next_round()
            system = f"{start.prompt.system or ''} {hint}".strip()
            await ctx.evaluate(start.prompt.replace(system=system), parent=start.id, origin=f"hint: {hint}")
