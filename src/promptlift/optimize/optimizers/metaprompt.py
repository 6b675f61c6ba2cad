"""Meta-prompt: a reasoning model reads the best prompt's failures and rewrites its instruction.

Round after round: score the current best on a minibatch of training rows, show the reasoning
model the instruction with the rows it got wrong (input, output, expected, the metric's reason),
collect a few rewritten instructions, score each on validation, carry the best forward.

A chat model is asked for the instruction directly. A base model (the embedded one) cannot follow
that request, so it gets a completion scaffold of "Original: ... / Rewritten: ..." pairs that it
continues with one rewrite (FACTS.md: usable at temperature 0.8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from promptlift.errors import ConfigError
from promptlift.optimize.evaluation import Evaluation, RowResult
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.program import Optimizable, Program, component_name, member_of, members
from promptlift.optimize.prompt import Prompt, fill
from promptlift.optimize.run import Candidate, Search

CHAT_TEMPLATE = """You improve the instructions of a prompt for a language model.

Current instruction:
{instruction}

Each input is given to the model as:
{user}{tools}

Rows it got wrong:
{failures}

Write one improved instruction that would fix these mistakes without breaking the rows it gets
right. Keep the answer format the metric expects. Reply with the instruction only."""

SCAFFOLD = """Instructions for a language model, each rewritten to be clearer and more specific.

Original: Say if this is good or bad.
Rewritten: Read the text and answer with exactly one word: good if the writer is pleased, bad if not.

Original: Summarize the article.
Rewritten: Write one sentence that states the main fact of the article, without opinions.

Original: Give the capital.
Rewritten: Answer with only the name of the capital city of the country, nothing else.

Original: {instruction}
Rewritten:"""


def tools_text(prompt: Prompt) -> str:
    """The tools an agent prompt offers and the JSON schema a structured prompt's answers follow,
    as a reflecting model is shown them ("" for a plain prompt)."""
    out = ""
    if prompt.tools:
        listed = "\n".join(f"- {t.name}: {t.description}" for t in prompt.tools)
        out = f"\n\nThe model may call these tools (name: description):\n{listed}"
    if prompt.output_schema is not None:
        out += f"\n\nThe model answers with JSON for this schema:\n{prompt.output_schema.describe()}"
    return out


def steps_text(result: RowResult, member: str | None = None) -> str:
    """An agent row's steps (the tools it called, with what, and what came back), or a program
    row's calls (of prompt ``member`` only, when given: the ones a rewrite of it changes), as
    indented lines under the row a reflecting model reads; "" for a single-call row."""
    if result.trace:
        calls = [c for c in result.trace if member is None or c.prompt == member] or list(result.trace)
        return "\n  Calls:" + "".join(f"\n    {c.line()}" for c in calls)
    if result.trajectory is None:
        return ""
    return "\n  Steps:" + "".join(f"\n    {line}" for line in result.trajectory.summary().splitlines())


def shown_input(subject: Optimizable, fields: Mapping[str, Any] | None) -> str:
    """A row as the reflecting model sees its input: the prompt's template filled with it, or
    for a program (which fills its prompts itself) the row's fields."""
    if fields is None:
        return "?"
    if isinstance(subject, Program):
        return ", ".join(f"{k}={str(v)[:200]!r}" for k, v in fields.items())
    return repr(fill(subject.user, fields))


def _failure_lines(
    subject: Optimizable, ctx: Search, evaluation: Evaluation, limit: int, member: str | None = None
) -> str:
    rows = {r.index: r for r in ctx.train}
    lines = []
    for result in evaluation.failures[:limit]:
        row = rows.get(result.index)
        lines.append(
            f"- Input: {shown_input(subject, row.fields if row else None)}{steps_text(result, member)}\n"
            f"  Output: {result.output!r}\n  Problem: {result.reason or 'wrong'}"
        )
    return "\n".join(lines) or "(none on this sample)"


def clean_instruction(text: str) -> str:
    """The first paragraph of a reply, without quotes or a leading label."""
    text = text.strip().split("\n\n")[0].strip()
    for label in ("Rewritten:", "Instruction:", "Improved instruction:"):
        if text.lower().startswith(label.lower()):
            text = text[len(label) :].strip()
    return text.strip('"').strip()


@dataclass
class MetaPrompt(Optimizer):
    rounds: int = 5
    candidates_per_round: int = 3
    minibatch: int = 8
    show_failures: int = 4
    name: ClassVar[str] = "metaprompt"

    def __post_init__(self) -> None:
        if min(self.rounds, self.candidates_per_round) < 1:
            raise ConfigError("metaprompt: `rounds` and `candidates_per_round` must be at least 1")

    def params(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "candidates_per_round": self.candidates_per_round,
            "minibatch": self.minibatch,
            "show_failures": self.show_failures,
        }

    async def propose(self, ctx: Search, best: Candidate, part: str) -> str:
        """A new text for the instruction ``part`` (a program's prompts take turns by round)."""
        prompt, _ = member_of(best.prompt, part)
        instruction = prompt.system or "(no instruction)"
        if ctx.client.is_base_model(ctx.settings.reasoner):
            reply = await ctx.reason(
                SCAFFOLD.format(instruction=" ".join(instruction.split())), max_tokens=80, stop=("\n",)
            )
        else:
            sample = ctx.rng.sample(list(ctx.train), min(self.minibatch, len(ctx.train)))
            evaluation = await ctx.score(best.prompt, sample)
            member = part.partition(".")[0] if isinstance(best.prompt, Program) else None
            text = CHAT_TEMPLATE.format(
                instruction=instruction,
                user=prompt.user,
                tools=tools_text(prompt) + program_text(best.prompt, member),
                failures=_failure_lines(best.prompt, ctx, evaluation, self.show_failures, member),
            )
            reply = await ctx.reason(text, max_tokens=400)
        return clean_instruction(reply)

    async def search(self, ctx: Search, start: Candidate) -> None:
        parts = instruction_parts(start.prompt)
        for round_ in range(self.rounds):
            best = ctx.best
            part = parts[round_ % len(parts)]
            seen = {c.prompt.components().get(part) for c in ctx.history}
            for _ in range(self.candidates_per_round):
                instruction = await self.propose(ctx, best, part)
                origin = "rewrite" if part == "system" else f"rewrite {part}"
                if not instruction or instruction in seen:
                    why = "the reply was empty"
                    if instruction:
                        why = "a duplicate of an instruction already tried"
                    proposed = best.prompt.with_component(part, instruction) if instruction else best.prompt
                    ctx.reject(proposed, parents=[best.id], origin=origin, reason=why)
                    continue
                seen.add(instruction)
                await ctx.evaluate(
                    best.prompt.with_component(part, instruction), parent=best.id, origin=origin
                )
            ctx.next_round()


def instruction_parts(subject: Optimizable) -> list[str]:
    """The instruction of each prompt: ``["system"]``, or a program's ``["NAME.system", ...]``."""
    return [component_name(name, "system") for name in members(subject)]


def program_text(subject: Optimizable, member: str | None) -> str:
    """For a program: which step of it the prompt being rewritten is ("" for a lone prompt)."""
    if not isinstance(subject, Program) or member is None:
        return ""
    names = ", ".join(subject.prompts)
    return (
        f"\n\nThis prompt ({member!r}) is one step of a program that calls the prompts {names} in its own "
        f"code; the calls each row made are listed under it, and the score is the program's final output's."
    )
