"""Asking the reasoning model for a new instruction: reflect, mutate, combine, fix.

Shared by the evolutionary, pareto and failure-mode optimizers. Each request has two shapes:

- a chat model gets a plain request, with the rows and the metric's feedback when there are some;
- a base model (the embedded one) cannot follow a request, so it gets a completion scaffold — a
  few worked "Original: ... / Rewritten: ..." pairs that it continues with one line (FACTS.md:
  usable at temperature 0.8). It never sees rows or feedback: a 270M model does not read them.

Every function returns cleaned text, possibly empty; the caller decides what an empty or
duplicate proposal means.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptlift.errors import ConfigError, TemplateError
from promptlift.optimize.evaluation import Evaluation
from promptlift.optimize.optimizers.metaprompt import (
    SCAFFOLD,
    clean_instruction,
    instruction_parts,
    program_text,
    shown_input,
    steps_text,
    tools_text,
)
from promptlift.optimize.program import Optimizable, Program, component_name, member_of, members
from promptlift.optimize.prompt import Prompt, placeholders
from promptlift.optimize.run import Search

REFLECT = """You improve one part of a prompt for a language model.

The {part} currently reads:
{text}

Each input is given to the model as:
{user}{tools}

Here is how the prompt did on a few inputs (score 1 is right, 0 is wrong):
{examples}

Think about what the wrong answers have in common and what the right ones did well, then write
an improved {part} that keeps what works and fixes what does not. Keep the answer format the
metric expects.{extra} Reply with the new {part} only."""

MUTATE = """Rewrite this instruction for a language model so that it asks for exactly the same
answer in the same format, but {direction}.

Instruction:
{text}

Reply with the rewritten instruction only."""

DIRECTIONS = (
    "shorter and more direct",
    "more explicit about the exact answer format",
    "with one concrete rule for hard cases",
    "worded completely differently",
    "addressed to a careful expert",
)

COMBINE = """Two instructions for the same task:

A: {a}

B: {b}

Write one instruction that combines the strengths of both. Reply with the instruction only."""

COMBINE_SCAFFOLD = """Two instructions for the same task, combined into one.

A: Say if the review is good or bad.
B: Answer with one word only.
Combined: Say if the review is good or bad, answering with one word only.

A: Translate the sentence into French.
B: Keep names unchanged and use a formal tone.
Combined: Translate the sentence into French in a formal tone, keeping names unchanged.

A: {a}
B: {b}
Combined:"""

FIX = """An instruction for a language model fails in one recurring way.

Instruction:
{text}

Failure mode:
{mode}

Write the instruction again with one targeted change that fixes this failure mode and keeps
everything else. Reply with the instruction only."""

FIX_SCAFFOLD = """Instructions for a language model, each rewritten to fix one problem.

Original: Say if this is good or bad.
Problem: answers with a full sentence
Rewritten: Say if this is good or bad. Answer with exactly one word: good or bad.

Original: Give the capital.
Problem: adds an explanation after the name
Rewritten: Answer with only the name of the capital city, nothing else.

Original: {text}
Problem: {mode}
Rewritten:"""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def is_base(ctx: Search) -> bool:
    return ctx.client.is_base_model(ctx.settings.reasoner)


def example_lines(
    ctx: Search, subject: Optimizable, evaluation: Evaluation, limit: int = 6, part: str | None = None
) -> str:
    """Inputs (rendered with the prompt's template; a program's row fields, with its calls of the
    prompt ``part`` belongs to), outputs, scores and the metric's feedback."""
    by_index = {r.index: r for r in [*ctx.train, *ctx.validation]}
    member = part.partition(".")[0] if part and isinstance(subject, Program) else None
    lines = []
    for result in evaluation.rows[:limit]:
        row = by_index.get(result.index)
        feedback = f"\n  Feedback: {result.reason}" if result.reason else ""
        lines.append(
            f"- Input: {shown_input(subject, row.fields if row else None)}{steps_text(result, member)}\n"
            f"  Output: {result.output!r}  Score: {result.score:g}{feedback}"
        )
    return "\n".join(lines) or "(no rows)"


async def _scaffolded(ctx: Search, scaffold: str, **values: str) -> str:
    text = scaffold.format(**{k: _one_line(v) for k, v in values.items()})
    return clean_instruction(await ctx.reason(text, max_tokens=80, stop=("\n",)))


# Why a proposal's text was not tried (``part_ok`` refused it), as a rejected proposal records it.
UNUSABLE = "the reply was empty, unchanged, or broke the template's placeholders"

# What an optimizer's `parts` may name: "tools" is every tool's description, "turns" every templated turn.
PART_NAMES = ("system", "user", "turns", "tools")


def part_name(part: str) -> str:
    """How a reflection request names a component (``Prompt.components``; a program's as
    ``NAME.PART``)."""
    member, sep, own = part.partition(".")
    if sep:
        return f"{part_name(own)} of the prompt {member!r}"
    if part.startswith("tool:"):
        return f"description of the tool {part.removeprefix('tool:')!r}"
    return {"system": "instruction", "user": "input template"}.get(part, "conversation turn")


def _expand_one(prompt: Prompt, parts: Sequence[str]) -> list[str]:
    have = prompt.components()
    out: list[str] = []
    for part in parts:
        if part == "tools":
            out += [name for name in have if name.startswith("tool:")]
        elif part == "turns":
            out += [name for name in have if name.startswith("turn:")]
        elif part in have:
            out.append(part)
    return out


def check_parts(optimizer: str, parts: Sequence[str]) -> None:
    """An optimizer's ``parts`` setting: some of ``PART_NAMES``, each alone (every prompt's) or as
    ``NAME.PART`` (that one prompt of a program); anything else is a ``ConfigError``."""
    wrong = [p for p in parts if not isinstance(p, str) or p.rpartition(".")[2] not in PART_NAMES]
    wrong += [p for p in parts if isinstance(p, str) and p.startswith(".")]
    if not parts or wrong:
        raise ConfigError(
            f"{optimizer}: `parts` must list some of {', '.join(PART_NAMES)} (or NAME.PART for one "
            f"prompt of a program, like answer.system), got {list(parts)!r}"
        )


def expand_parts(subject: Optimizable, parts: Sequence[str]) -> list[str]:
    """Component names for an optimizer's ``parts`` setting: "tools" stands for each tool's
    description, "turns" for each templated turn; a part the prompt lacks is dropped. For a program,
    the parts of each of its prompts in turn (``NAME.system``, ...); ``NAME.PART`` is that part of
    the prompt ``NAME`` only (a name the program lacks, or one given for a lone prompt, is a
    ``ConfigError``)."""
    named = members(subject)
    for part in parts:
        member = part.rpartition(".")[0]
        if member and member not in named:
            has = f"the program has {', '.join(named)}" if isinstance(subject, Program) else "one prompt"
            raise ConfigError(f"`parts` names {part!r}, but no prompt is named {member!r} ({has}); fix it")
    out = [
        component_name(name, part)
        for name, prompt in named.items()
        for part in _expand_one(
            prompt, [p.rpartition(".")[2] for p in parts if p.rpartition(".")[0] in ("", name)]
        )
    ]
    return list(dict.fromkeys(out)) or instruction_parts(subject)


async def reflect(ctx: Search, subject: Optimizable, part: str, evaluation: Evaluation) -> str:
    """A new text for the component ``part`` ("system", "user", "turn:N", "tool:NAME"; a program's
    "NAME.system", ...) written after reading ``evaluation``'s rows (with their trajectories, for an
    agent; with the calls of that prompt, for a program)."""
    prompt, own = member_of(subject, part)
    current = prompt.components()[own]
    if is_base(ctx):
        return await _scaffolded(ctx, SCAFFOLD, instruction=current or "(no instruction)")
    extra = ""
    if own == "user" or own.startswith("turn:"):
        slots = ", ".join("{" + p + "}" for p in placeholders(current))
        if slots:
            extra = f" Keep the placeholders {slots} exactly as written: they are filled with each input."
    elif own.startswith("tool:"):
        extra = " The model reads it to decide when to call the tool and with what arguments."
    member = part.partition(".")[0] if isinstance(subject, Program) else None
    text = REFLECT.format(
        part=part_name(own),
        text=current or "(empty)",
        user=prompt.user,
        tools=tools_text(prompt) + program_text(subject, member),
        examples=example_lines(ctx, subject, evaluation, part=part),
        extra=extra,
    )
    reply = await ctx.reason(text, max_tokens=400)
    return reply.strip() if own == "user" or own.startswith("turn:") else clean_instruction(reply)


def part_ok(subject: Optimizable, part: str, fields: Sequence[str], text: str) -> bool:
    """A proposed text for ``part`` is usable: non-empty, new, and keeping the placeholders a
    template needs (an instruction may name dataset fields — a program's prompt, the fields its
    templates are given; a tool description is plain text)."""
    prompt, own = member_of(subject, part)
    if isinstance(subject, Program):
        fields = prompt.fields()
    current = prompt.components().get(own)
    if not text or text == current:
        return False
    if own == "system":
        return system_ok(prompt, fields, text)
    if own == "user" or own.startswith("turn:"):
        return keeps_slots(current or "", text)
    return True


async def mutate(ctx: Search, text: str) -> str:
    """A rewrite of ``text`` in a direction drawn from the run's random generator."""
    direction = ctx.rng.choice(DIRECTIONS)
    if is_base(ctx):
        return await _scaffolded(ctx, SCAFFOLD, instruction=text or "(no instruction)")
    return clean_instruction(await ctx.reason(MUTATE.format(direction=direction, text=text), max_tokens=300))


async def combine(ctx: Search, a: str, b: str) -> str:
    """One instruction that combines two (crossover)."""
    if is_base(ctx):
        return await _scaffolded(ctx, COMBINE_SCAFFOLD, a=a, b=b)
    return clean_instruction(await ctx.reason(COMBINE.format(a=a, b=b), max_tokens=300))


async def fix(ctx: Search, text: str, mode: str) -> str:
    """The instruction with one change aimed at one failure mode."""
    if is_base(ctx):
        return await _scaffolded(ctx, FIX_SCAFFOLD, text=text or "(no instruction)", mode=mode)
    return clean_instruction(await ctx.reason(FIX.format(text=text, mode=mode), max_tokens=300))


def keeps_slots(before: str, after: str) -> bool:
    """True when ``after`` uses exactly the placeholders of ``before`` (and parses)."""
    try:
        return sorted(set(placeholders(after))) == sorted(set(placeholders(before)))
    except TemplateError:  # malformed braces in a model's reply
        return False


def system_ok(prompt: Prompt, fields: Sequence[str], text: str) -> bool:
    """A proposed instruction is usable: non-empty, new, and naming only dataset fields."""
    if not text or text == prompt.system:
        return False
    try:
        return set(placeholders(text)) <= set(fields)
    except TemplateError:  # malformed braces in a model's reply
        return False
