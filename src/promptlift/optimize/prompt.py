"""Prompts: chat-message templates with ``{field}`` slots, few-shot demos, model parameters, and
for agents the tools the model may call and the turns of a multi-turn conversation.

The conversation a prompt makes for a row is: the system text, the demos (user/assistant pairs),
the prompt's ``turns`` (templated messages, and ``history`` slots filled with the conversation a
row carries), then the ``user`` template (left out when empty, for a conversation that ends in
the row's own history). A prompt with tools is run as an agent (``promptlift.optimize.agent``).
A prompt with an ``output_schema`` asks for JSON (``response_format``), and each answer is checked
against the schema before it is scored (``promptlift.optimize.structured``).

``{{`` and ``}}`` are literal braces. A placeholder is a bare field name: no attribute access,
indexing or format spec, so a template can never reach into Python objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promptlift.errors import ConfigError, TemplateError
from promptlift.optimize.agent import DEFAULT_MAX_STEPS
from promptlift.optimize.schema import At, Schema, choice, flag, mapping, number, texts, whole
from promptlift.optimize.structured import OutputSchema
from promptlift.optimize.tools import Tool
from promptlift.types import Message, messages_from

# What a CompletionRequest carries that a prompt may set: anything else would fail at the first call.
PARAMS = Schema(
    {
        "temperature": number(0.0, 2.0),
        "max_tokens": whole(1),
        "top_p": number(0.0, 1.0, above=True),
        "stop": texts,
        "seed": whole(None),
        "response_format": mapping,
        "tool_choice": lambda value, at: _tool_choice(value, at),
        "parallel_tool_calls": flag,
        "frequency_penalty": number(-2.0, 2.0),
        "presence_penalty": number(-2.0, 2.0),
        "reasoning_effort": choice("minimal", "low", "medium", "high"),
        "logprobs": flag,
        "top_logprobs": whole(0),
        "n": whole(1),  # samples per call, each scored (the row's score is their mean)
    },
    example="{temperature: 0, max_tokens: 16}",
)


def _tool_choice(value: Any, at: At) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, Mapping) and isinstance((value.get("function") or {}).get("name"), str):
        return value
    at.fail('"auto", "none", "required" or {type: function, function: {name: ...}}', value)


def check_params(params: Any, at: At | None = None) -> dict[str, Any]:
    """The prompt's generation parameters, checked by name (with a suggestion) and by value."""
    return PARAMS(params, at or At("", "prompt.params"))


_formatter = string.Formatter()


def placeholders(template: str, where: str = "template") -> list[str]:
    """The field names in ``template``, in order; a clear error for malformed braces."""
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"{where}: malformed braces ({exc}); write literal braces as {{{{ and }}}}"
        ) from None
    names: list[str] = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(
                f"{where}: placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a plain field name; use {{field}}, "
                f"and {{{{ }}}} for literal braces"
            )
        names.append(name)
    return names


def fill(template: str, values: Mapping[str, Any]) -> str:
    return template.format_map({k: "" if v is None else v for k, v in values.items()})


@dataclass(frozen=True)
class Demo:
    """A worked example shown before the input: the row's fields and the answer to show."""

    fields: Mapping[str, Any]
    answer: str


@dataclass(frozen=True)
class Turn:
    """One message of a multi-turn prompt: a ``role`` and a ``content`` template; or, with
    ``history`` set, a slot where the row's conversation so far (the field it names: a list of
    OpenAI-style messages) is placed."""

    role: str = "user"
    content: str = ""
    history: str = ""

    def __post_init__(self) -> None:
        if self.history:
            if not self.history.isidentifier():
                raise TemplateError(f"history slot {self.history!r}: name a dataset field")
        elif self.role not in ("system", "user", "assistant"):
            raise TemplateError(f"a prompt turn's role is system, user or assistant, got {self.role!r}")

    def to_dict(self) -> dict[str, str]:
        return {"history": self.history} if self.history else {"role": self.role, "content": self.content}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        if data.get("history"):
            return cls(history=str(data["history"]))
        return cls(str(data.get("role", "user")), str(data.get("content") or ""))


def history_messages(value: Any, name: str) -> tuple[Message, ...]:
    """A row's conversation (a list of message dicts, or a JSON string of one) as messages."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, list | tuple):
        raise TemplateError(
            f"the history field {name!r} holds {type(value).__name__}, not a list of messages "
            f'like [{{"role": "user", "content": "..."}}]'
        )
    try:
        return messages_from(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise TemplateError(f"the history field {name!r}: {exc}") from None


@dataclass(frozen=True)
class Prompt:
    """``system`` and ``user`` are templates; demos become prior user/assistant turns; ``turns``
    come between the demos and ``user``. ``tools`` make the prompt an agent, run for at most
    ``max_steps`` model calls per row. ``output_schema`` (``OutputSchema.of`` a JSON-schema mapping
    or a pydantic model class) is sent as the ``response_format`` of every call, and an answer
    that does not validate scores 0."""

    user: str
    system: str = ""
    demos: tuple[Demo, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # temperature, max_tokens, ...
    turns: tuple[Turn, ...] = ()
    tools: tuple[Tool, ...] = ()
    max_steps: int = DEFAULT_MAX_STEPS
    output_schema: OutputSchema | None = None

    def __post_init__(self) -> None:
        check_params(self.params)  # checked, not converted: the params are part of the prompt's key
        if self.output_schema is not None:
            object.__setattr__(self, "output_schema", OutputSchema.of(self.output_schema))
            if "response_format" in self.params:
                raise ConfigError(
                    "the prompt has an output_schema and a response_format param: the schema is sent "
                    "as the response_format; drop the param"
                )
        object.__setattr__(
            self, "turns", tuple(t if isinstance(t, Turn) else Turn.from_dict(t) for t in self.turns)
        )
        object.__setattr__(self, "tools", tuple(self.tools))
        if self.tools and int(self.params.get("n") or 1) > 1:
            raise ConfigError(
                "an agent (a prompt with tools) samples one answer per call: drop the `n` param, "
                "or score a prompt without tools"
            )
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise TemplateError(f"two tools share a name: {', '.join(sorted(names))}; give each its own")
        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise TemplateError(f"max_steps must be a whole number of at least 1, got {self.max_steps!r}")
        if not self.user and not any(t.history for t in self.turns):
            raise TemplateError(
                "the prompt has no user template and no history slot: the model would see no input"
            )

    @property
    def is_agent(self) -> bool:
        return bool(self.tools)

    @property
    def calls_per_row(self) -> int:
        """Model calls one row may take at most: one, or the step limit for an agent."""
        return self.max_steps if self.tools else 1

    @property
    def samples(self) -> int:
        """Answers each task call brings (the ``n`` param; an agent's is always 1), each scored."""
        return max(1, int(self.params.get("n") or 1))

    def request_params(self) -> dict[str, Any]:
        """The parameters every task call of this prompt is sent with: temperature 0 unless set,
        the prompt's params, and its schema as the ``response_format``."""
        params = {"temperature": 0.0, **dict(self.params)}
        if self.output_schema is not None:
            params["response_format"] = self.output_schema.response_format()
        return params

    def fields(self) -> list[str]:
        seen = placeholders(self.system, "prompt.system")
        for i, turn in enumerate(self.turns):
            seen += [turn.history] if turn.history else placeholders(turn.content, f"prompt.turns[{i}]")
        seen += placeholders(self.user, "prompt.user")
        return list(dict.fromkeys(seen))

    def components(self) -> dict[str, str]:
        """The prompt's optimizable texts by name: ``system``, ``user``, ``turn:N`` (templated
        turns) and ``tool:NAME`` (each tool's description)."""
        out = {"system": self.system, "user": self.user}
        out.update({f"turn:{i}": t.content for i, t in enumerate(self.turns) if not t.history})
        out.update({f"tool:{t.name}": t.description for t in self.tools})
        return out

    def with_component(self, name: str, text: str) -> Prompt:
        """The prompt with one component (``components()``'s name) replaced."""
        kind, _, rest = name.partition(":")
        if name in ("system", "user"):
            return self.replace(**{name: text})
        if (
            kind == "turn"
            and rest.isdigit()
            and int(rest) < len(self.turns)
            and not self.turns[int(rest)].history
        ):
            turns = list(self.turns)
            turns[int(rest)] = dataclasses.replace(turns[int(rest)], content=text)
            return self.replace(turns=tuple(turns))
        if kind == "tool" and any(t.name == rest for t in self.tools):
            return self.replace(
                tools=tuple(t.with_description(text) if t.name == rest else t for t in self.tools)
            )
        raise KeyError(f"the prompt has no component {name!r} (it has: {', '.join(self.components())})")

    def check(self, available: Iterable[str]) -> None:
        """Raise before any call if a placeholder names a field the dataset does not have."""
        have = set(available)
        for name in self.fields():
            if name not in have:
                raise TemplateError(
                    f"the prompt uses {{{name}}} but the dataset has no field {name!r} "
                    f"(fields: {', '.join(sorted(have))}); rename the placeholder or add the field"
                )

    @property
    def row_before_instruction(self) -> bool:
        """The system text takes a row field: every row's prompt then starts differently, and no
        provider's prompt cache can reuse any of it."""
        return bool(placeholders(self.system, "prompt.system"))

    def shared_messages(self) -> tuple[Message, ...]:
        """The leading messages of ``messages()`` that are the same for every row: the system text
        and the demos, then the turns without a field; none when the system text takes a field."""
        if self.row_before_instruction:
            return ()
        out = self._opening({})
        for i, turn in enumerate(self.turns):
            if turn.history or placeholders(turn.content, f"prompt.turns[{i}]"):
                break
            out.append(Message(turn.role, fill(turn.content, {})))  # type: ignore[arg-type]
        return tuple(out)

    def _opening(self, row: Mapping[str, Any]) -> list[Message]:
        """The system text filled for ``row``, then the demos as user/assistant turns."""
        out: list[Message] = []
        system = fill(self.system, row).strip()
        if system:
            out.append(Message("system", system))
        for demo in self.demos:
            out.append(Message("user", fill(self.user, demo.fields)))
            out.append(Message("assistant", demo.answer))
        return out

    def messages(self, row: Mapping[str, Any]) -> tuple[Message, ...]:
        out = self._opening(row)
        for turn in self.turns:
            if turn.history:
                out.extend(history_messages(row.get(turn.history), turn.history))
            else:
                out.append(Message(turn.role, fill(turn.content, row)))  # type: ignore[arg-type]
        if self.user:
            out.append(Message("user", fill(self.user, row)))
        return tuple(out)

    def replace(self, **changes: Any) -> Prompt:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; a single-call prompt keeps its old four keys (and so its key), an agent,
        multi-turn or structured prompt adds the rest."""
        out: dict[str, Any] = {
            "system": self.system,
            "user": self.user,
            "demos": [{"fields": dict(d.fields), "answer": d.answer} for d in self.demos],
            "params": dict(self.params),
        }
        if self.turns:
            out["turns"] = [t.to_dict() for t in self.turns]
        if self.tools:
            out["tools"] = [t.to_dict() for t in self.tools]
            out["max_steps"] = self.max_steps
        if self.output_schema is not None:
            out["output_schema"] = self.output_schema.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Any = None) -> Prompt:
        """``to_dict``'s shape back; tools' functions are imported by reference (from ``base_dir``
        first, the config's folder)."""
        return cls(
            user=str(data.get("user") or ""),
            system=str(data.get("system") or ""),
            demos=tuple(Demo(dict(d["fields"]), str(d["answer"])) for d in data.get("demos") or ()),
            params=dict(data.get("params") or {}),
            turns=tuple(Turn.from_dict(t) for t in data.get("turns") or ()),
            tools=tuple(Tool.from_dict(t, base_dir=base_dir) for t in data.get("tools") or ()),
            max_steps=int(data.get("max_steps") or DEFAULT_MAX_STEPS),
            output_schema=OutputSchema.from_dict(schema) if (schema := data.get("output_schema")) else None,
        )

    def key(self) -> str:
        """A stable identity: equal prompts have equal keys (used to memoize evaluations)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """A readable rendering for terminals and reports."""
        lines = []
        if self.system:
            lines.append(f"[system] {self.system}")
        for d in self.demos:
            lines.append(f"[demo] {fill(self.user, d.fields)!r} -> {d.answer!r}")
        for t in self.turns:
            lines.append(f"[history: {{{t.history}}}]" if t.history else f"[{t.role}] {t.content}")
        if self.user:
            lines.append(f"[user] {self.user}")
        for tool in self.tools:
            lines.append(f"[tool {tool.name}] {tool.description}")
        if self.output_schema is not None:
            lines.append(f"[output schema {self.output_schema.name}] {self.output_schema.describe(200)}")
        if self.params:
            lines.append(f"[params] {json.dumps(dict(self.params), sort_keys=True)}")
        return "\n".join(lines)
