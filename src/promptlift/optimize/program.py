"""Programs: the user's own code over several named prompts, optimized jointly.

A program is a Python callable, sync or async, ``program(row, lm)``: ``row`` is the dataset row
(a mapping of its fields) and ``lm`` a handle holding the named prompts (``lm.prompts``) that sends
model calls through promptlift's client — ``await lm.acall("answer", question=..., facts=...)`` in
an async program, ``lm.call(...)`` in a sync one — so every call is budgeted, cached, retried and
recorded. It returns the output to score (text; a mapping or list is scored as its JSON), or an
``Output`` carrying feedback text for the reflecting model too. Code written with another framework
fits by sending its model calls through ``lm``.

Every prompt's parts are components named ``NAME.PART`` (``answer.system``, ``plan.tool:search``),
so the optimizers that rewrite components choose among the prompts; demos are chosen per prompt
from the program's own calls on rows that scored well (``trace_demos``). The calls a program makes
on a row are its trace (``PromptCall``s), kept with the row's result and read by reflection.

A program makes ``calls_per_row`` model calls a row at most: declared (then held: one more is a
``UserError``), or measured on one probe row when a run starts (``measured``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import hashlib
import inspect
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptlift.errors import ConfigError, PromptliftError, TemplateError, UserError
from promptlift.optimize.agent import Trajectory
from promptlift.optimize.prompt import Demo, Prompt
from promptlift.optimize.structured import extract_json

SEPARATOR = "."  # between a prompt's name and its part: "answer.system"


@dataclass(frozen=True)
class Output:
    """What a program may return instead of bare text: the output to score and ``feedback`` (why it
    went as it did, in the program's words), which the reflecting model reads beside the metric's."""

    text: Any
    feedback: str = ""


@dataclass(frozen=True)
class PromptCall:
    """One call a program made through ``lm``: the prompt's name, the fields it filled, the answer,
    and the model calls it took (more than one for a prompt with tools)."""

    prompt: str
    fields: Mapping[str, Any]
    output: str
    model_calls: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "fields": dict(self.fields),
            "output": self.output,
            "model_calls": self.model_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptCall:
        return cls(
            str(data["prompt"]), dict(data.get("fields") or {}), str(data.get("output", "")),
            int(data.get("model_calls", 1)),
        )  # fmt: skip

    def line(self, width: int = 200) -> str:
        """``name(field='...', ...) -> 'answer'``, cut to ``width`` characters a value."""

        def cut(value: Any) -> str:
            text = " ".join(str(value).split())
            return repr(text if len(text) <= width else text[: width - 3] + "...")

        args = ", ".join(f"{k}={cut(v)}" for k, v in self.fields.items())
        return f"{self.prompt}({args}) -> {cut(self.output)}"


# Answers one prompt's call: the evaluator's single-call or agent path, with its ledger.
Answer = Callable[[Prompt, Mapping[str, Any]], Awaitable[Trajectory]]


def _name_ok(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier()


@dataclass(frozen=True)
class Program:
    """Named prompts and the callable that uses them. ``ref`` names the callable as
    ``module:function`` (how a config names it; part of the program's key), ``calls_per_row`` the
    model calls it makes a row at most (None: measured on a probe row when a run starts)."""

    prompts: Mapping[str, Prompt]
    fn: Callable[..., Any] = field(compare=False)
    ref: str = ""
    calls_per_row_declared: int | None = None
    measured_calls: int | None = field(default=None, compare=False)  # a probe row's count: not held

    def __post_init__(self) -> None:
        if not isinstance(self.prompts, Mapping) or not self.prompts:
            raise ConfigError("a program needs at least one named prompt: prompts={'name': Prompt(...)}")
        for name, prompt in self.prompts.items():
            if not _name_ok(name):
                raise ConfigError(f"program prompt name {name!r}: use a plain name like `answer` or `plan`")
            if not isinstance(prompt, Prompt):
                raise ConfigError(f"program prompt {name!r} is a {type(prompt).__name__}, not a Prompt")
        if not callable(self.fn):
            raise ConfigError(f"a program's function must be callable, got {type(self.fn).__name__}")
        check_signature(self.fn, self.ref or getattr(self.fn, "__name__", "program"))
        object.__setattr__(self, "prompts", dict(self.prompts))
        if not self.ref:
            object.__setattr__(self, "ref", f"{self.fn.__module__}:{self.fn.__qualname__}")
        declared = self.calls_per_row_declared
        if declared is not None and not (
            isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1
        ):
            raise ConfigError(
                f"a program's calls_per_row must be a whole number of at least 1, got {declared!r}"
            )

    # -- what every optimizable thing has (``Prompt`` has the same) ---------------------------------
    is_agent = False
    samples = 1

    @property
    def calls_per_row(self) -> int:
        """Model calls a row may take: declared, or (until a probe measured it) one per prompt, or
        each prompt's step limit for one with tools."""
        if self.calls_per_row_declared is not None:
            return self.calls_per_row_declared
        if self.measured_calls is not None:
            return self.measured_calls
        return sum(p.calls_per_row for p in self.prompts.values())

    def measured(self, calls: int) -> Program:
        """This program with ``calls`` (a probe row's count) as its calls per row: what the budget
        plans with, not a limit (a declared ``calls_per_row`` is one)."""
        return dataclasses.replace(self, measured_calls=max(1, calls))

    def fields(self) -> list[str]:
        """Dataset fields the templates read: none directly; the program fills them."""
        return []

    def check(self, available: Sequence[str]) -> None:
        """Nothing to check against the dataset: the program reads the row itself."""

    def components(self) -> dict[str, str]:
        """Every prompt's components (``Prompt.components``) as ``NAME.PART``."""
        return {
            f"{name}{SEPARATOR}{part}": text
            for name, prompt in self.prompts.items()
            for part, text in prompt.components().items()
        }

    def with_component(self, name: str, text: str) -> Program:
        member, part = split_component(name)
        if member not in self.prompts:
            raise KeyError(f"the program has no prompt {member!r} (it has: {', '.join(self.prompts)})")
        return self.with_prompt(member, self.prompts[member].with_component(part, text))

    def with_prompt(self, name: str, prompt: Prompt) -> Program:
        return dataclasses.replace(self, prompts={**self.prompts, name: prompt})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "program": self.ref,
            "prompts": {name: prompt.to_dict() for name, prompt in self.prompts.items()},
        }
        if self.calls_per_row_declared is not None:
            out["calls_per_row"] = self.calls_per_row_declared
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Any = None) -> Program:
        """``to_dict``'s shape back, the callable imported by its ``module:function``."""
        ref = str(data["program"])
        prompts = {
            str(n): Prompt.from_dict(p, base_dir=base_dir) for n, p in (data.get("prompts") or {}).items()
        }
        declared = data.get("calls_per_row")
        return cls(prompts, load_program(ref, base_dir=base_dir), ref, int(declared) if declared else None)

    def key(self) -> str:
        """Equal programs (the same callable, the same prompts) have equal keys. The calls per row
        is left out: a probe's measurement does not make another program."""
        blob = json.dumps(
            {"program": self.ref, "prompts": {n: p.key() for n, p in self.prompts.items()}}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def source_digest(self) -> str:
        """A digest of the program's source code ("" when Python cannot find it)."""
        try:
            source = inspect.getsource(inspect.getmodule(self.fn) or self.fn)
        except (OSError, TypeError):
            return ""
        return hashlib.sha256(source.encode()).hexdigest()[:20]

    def describe(self) -> str:
        parts = [f"[program] {self.ref}"]
        for name, prompt in self.prompts.items():
            parts.append(f"-- prompt {name} --\n{prompt.describe()}")
        return "\n".join(parts)


Optimizable = Prompt | Program


def from_dict(data: Mapping[str, Any], *, base_dir: Any = None) -> Optimizable:
    """A stored prompt or program (``to_dict``'s shape) back."""
    if "program" in data:
        return Program.from_dict(data, base_dir=base_dir)
    return Prompt.from_dict(data, base_dir=base_dir)


def split_component(name: str) -> tuple[str, str]:
    """``answer.system`` → (``answer``, ``system``)."""
    member, sep, part = name.partition(SEPARATOR)
    if not sep:
        raise KeyError(f"a program's component is named PROMPT{SEPARATOR}PART, got {name!r}")
    return member, part


def members(subject: Optimizable) -> dict[str, Prompt]:
    """The prompts of a program by name; a lone prompt is the one member named ""."""
    return dict(subject.prompts) if isinstance(subject, Program) else {"": subject}


def component_name(member: str, part: str) -> str:
    """A member's part as the subject names it: ``part`` for a lone prompt, ``member.part`` else."""
    return f"{member}{SEPARATOR}{part}" if member else part


def member_of(subject: Optimizable, component: str) -> tuple[Prompt, str]:
    """The prompt a component belongs to and the component's name within it."""
    if isinstance(subject, Program):
        member, part = split_component(component)
        return subject.prompts[member], part
    return subject, component


def with_member(subject: Optimizable, member: str, prompt: Prompt) -> Optimizable:
    return subject.with_prompt(member, prompt) if isinstance(subject, Program) else prompt


# -- running a program on one row -------------------------------------------------------------------
class Calls:
    """The handle a program gets: ``prompts`` to read, ``acall``/``call`` to send one prompt's call."""

    def __init__(
        self,
        prompts: Mapping[str, Prompt],
        answer: Answer,
        loop: asyncio.AbstractEventLoop,
        limit: int | None,
    ):
        self.prompts: Mapping[str, Prompt] = dict(prompts)
        self._answer, self._loop, self._limit = answer, loop, limit
        self.trace: list[PromptCall] = []
        self._model_calls = 0
        self._stopped = False  # the row's evaluation was cancelled: no new call is sent
        self._pending: set[concurrent.futures.Future[str]] = set()

    async def acall(self, name: str, /, **fields: Any) -> str:
        """Fill prompt ``name`` with ``fields`` and return the model's answer (an agent's final one)."""
        prompt = self.prompts.get(name)
        if prompt is None:
            raise UserError(
                f"the program called the prompt {name!r}, which it was not given "
                f"(prompts: {', '.join(self.prompts)}); add it under `prompts:` or fix the name"
            )
        missing = [f for f in prompt.fields() if f not in fields]
        if missing:
            raise TemplateError(
                f"the program called {name!r} without {', '.join(missing)}, which its templates use; "
                f"pass them: lm.call({name!r}, {', '.join(f'{m}=...' for m in missing)})"
            )
        if self._limit is not None and self._model_calls + prompt.calls_per_row > self._limit:
            raise UserError(
                f"the program made more model calls on one row than its calls_per_row ({self._limit}), "
                f"which the budget counts on; raise `calls_per_row`"
            )
        self._model_calls += prompt.calls_per_row
        trajectory = await self._answer(prompt, fields)
        self.trace.append(PromptCall(name, dict(fields), trajectory.output, trajectory.model_calls))
        return trajectory.output

    async def acall_json(self, name: str, /, **fields: Any) -> Any:
        """``acall``, with the answer read as JSON and checked against prompt ``name``'s
        ``output_schema`` when it has one (found in a fence or among prose, as the evaluator finds
        it). An answer that is not valid raises ``InvalidAnswer`` (a ``ValueError``): uncaught, the
        row scores 0 with the reason; caught, the program may ask again or fall back."""
        return self._parsed(name, await self.acall(name, **fields))

    def call_json(self, name: str, /, **fields: Any) -> Any:
        """``acall_json`` from a sync program."""
        return self._parsed(name, self.call(name, **fields))

    def _parsed(self, name: str, text: str) -> Any:
        schema = self.prompts[name].output_schema
        parsed = schema.parse(text) if schema is not None else extract_json(text)
        if not parsed.ok:
            against = f" for its output schema {schema.name!r}" if schema is not None else ""
            raise InvalidAnswer(f"prompt {name!r} answered no valid JSON{against}: {parsed.error}")
        return parsed.value

    def call(self, name: str, /, **fields: Any) -> str:
        """``acall`` from a sync program (which runs on a worker thread, not the event loop)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise UserError("an async program must `await lm.acall(...)`; lm.call is for a sync program")
        if self._stopped:
            raise concurrent.futures.CancelledError("the evaluation was cancelled")
        future = asyncio.run_coroutine_threadsafe(self.acall(name, **fields), self._loop)
        self._pending.add(future)
        try:
            while True:  # woken now and then: a loop that stopped or closed never answers
                try:
                    return future.result(timeout=0.2)
                except concurrent.futures.TimeoutError:
                    if self._stopped or self._loop.is_closed():
                        future.cancel()
                        raise concurrent.futures.CancelledError("the evaluation was cancelled") from None
        finally:
            self._pending.discard(future)

    def stop(self) -> None:
        """The row's evaluation was cancelled: the call in flight is cancelled, and any later one
        raises in the program's thread at once (so the thread ends, and nothing more is sent)."""
        self._stopped = True
        for future in list(self._pending):
            future.cancel()


# Sync programs run on threads of their own: each waits on its model calls, and on the loop's default
# executor a few of them would hold every thread the loop's DNS lookups and tools need.
_PROGRAM_THREADS = 64
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                _PROGRAM_THREADS, thread_name_prefix="promptlift-program"
            )
        return _pool


@dataclass(frozen=True)
class ProgramRun:
    output: str
    feedback: str
    trace: tuple[PromptCall, ...]


def as_text(value: Any) -> str:
    """A program's output as the text a metric scores: a mapping or list as JSON, a number as
    written. Anything else (bytes, a generator, an object) is refused: its ``str()`` would score 0
    on every row with no word why."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    raise ProgramError(
        f"the program returned {type(value).__name__}; return the output as text, a number, or a mapping "
        f"or list (scored as JSON)"
    )


async def run_program(program: Program, row: Mapping[str, Any], answer: Answer) -> ProgramRun:
    """Run the program on one row; promptlift's own errors pass through (a budget refusal, a bad
    request), anything else the program raised is a ``ProgramError`` for this row."""
    lm = Calls(program.prompts, answer, asyncio.get_running_loop(), program.calls_per_row_declared)
    fn = program.fn
    try:
        if inspect.iscoroutinefunction(fn):
            result = await fn(dict(row), lm)
        else:
            call = functools.partial(contextvars.copy_context().run, fn, dict(row), lm)
            try:
                result = await asyncio.get_running_loop().run_in_executor(_threads(), call)
            except asyncio.CancelledError:
                lm.stop()  # the thread cannot be cancelled, but its next wait ends
                raise
            if inspect.isawaitable(result):
                result = await result
    except (PromptliftError, asyncio.CancelledError):
        raise  # promptlift's own (a budget refusal, a bad request, a misused handle) pass through
    except SystemExit as exc:  # sys.exit in the program ends its row, never the run
        message = f"SystemExit: the program called sys.exit({exc.code!r})"
        raise ProgramError(message, tuple(lm.trace)) from None
    except Exception as exc:
        raise ProgramError(f"{type(exc).__name__}: {exc}", tuple(lm.trace)) from exc
    feedback = ""
    if isinstance(result, Output):
        result, feedback = result.text, str(result.feedback or "")
    try:
        text = as_text(result)
    except ProgramError as exc:
        raise ProgramError(str(exc), tuple(lm.trace)) from None
    return ProgramRun(text, feedback, tuple(lm.trace))


class InvalidAnswer(ValueError):
    """``lm.call_json``: the answer is no JSON, or breaks the prompt's output schema."""


class ProgramError(Exception):
    """The user's program raised on a row: the row scores 0 with this message (like a metric bug)."""

    def __init__(self, message: str, trace: tuple[PromptCall, ...] = ()):
        super().__init__(message)
        self.trace = trace


def trace_demos(
    rows: Sequence[tuple[float, Sequence[PromptCall]]], prompt: str, *, threshold: float = 1.0
) -> list[Demo]:
    """Demos for ``prompt`` from the calls a program made on rows that scored at least
    ``threshold``: each call's fields and answer, in row order, each distinct call once."""
    out: dict[str, Demo] = {}
    for score, trace in rows:
        if score < threshold:
            continue
        for call in trace:
            if call.prompt == prompt and call.output.strip():
                key = json.dumps([call.fields, call.output], sort_keys=True, default=str)
                out.setdefault(key, Demo(dict(call.fields), call.output))
    return list(out.values())


def load_program(ref: str, *, base_dir: Any = None) -> Callable[..., Any]:
    """``module:function`` → the program's callable (a module beside the config found first)."""
    from promptlift.optimize.metrics import load_callable

    fn = load_callable(ref, base_dir=base_dir, what="program")
    check_signature(fn, ref)
    return fn


def check_signature(fn: Callable[..., Any], name: str) -> None:
    """A program takes the row and the handle: ``def program(row, lm)``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: trust it
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        short = name.partition(":")[2] or name
        raise ConfigError(
            f"program {name!r}: write it as `def {short}(row, lm)` (it gets the row and the handle)"
        )
