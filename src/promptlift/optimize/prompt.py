"""Prompts: chat-message templates with ``{field}`` slots, few-shot demos and model parameters.

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

from promptlift.errors import TemplateError
from promptlift.optimize.schema import At, Schema, mapping, mappings, number, texts, whole
from promptlift.types import Message

# What a CompletionRequest carries that a prompt may set: anything else would fail at the first call.
PARAMS = Schema(
    {
        "temperature": number(0.0, 2.0),
        "max_tokens": whole(1),
        "top_p": number(0.0, 1.0, above=True),
        "stop": texts,
        "seed": whole(None),
        "response_format": mapping,
        "tools": mappings,
    },
    example="{temperature: 0, max_tokens: 16}",
)


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
class Prompt:
    """``system`` and ``user`` are templates; demos become prior user/assistant turns."""

    user: str
    system: str = ""
    demos: tuple[Demo, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # temperature, max_tokens, ...

    def __post_init__(self) -> None:
        check_params(self.params)  # checked, not converted: the params are part of the prompt's key

    def fields(self) -> list[str]:
        seen = placeholders(self.system, "prompt.system") + placeholders(self.user, "prompt.user")
        return list(dict.fromkeys(seen))

    def check(self, available: Iterable[str]) -> None:
        """Raise before any call if a placeholder names a field the dataset does not have."""
        have = set(available)
        for name in self.fields():
            if name not in have:
                raise TemplateError(
                    f"the prompt uses {{{name}}} but the dataset has no field {name!r} "
                    f"(fields: {', '.join(sorted(have))}); rename the placeholder or add the field"
                )

    def messages(self, row: Mapping[str, Any]) -> tuple[Message, ...]:
        out: list[Message] = []
        system = fill(self.system, row).strip()
        if system:
            out.append(Message("system", system))
        for demo in self.demos:
            out.append(Message("user", fill(self.user, demo.fields)))
            out.append(Message("assistant", demo.answer))
        out.append(Message("user", fill(self.user, row)))
        return tuple(out)

    def replace(self, **changes: Any) -> Prompt:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "user": self.user,
            "demos": [{"fields": dict(d.fields), "answer": d.answer} for d in self.demos],
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prompt:
        return cls(
            user=str(data["user"]),
            system=str(data.get("system") or ""),
            demos=tuple(Demo(dict(d["fields"]), str(d["answer"])) for d in data.get("demos") or ()),
            params=dict(data.get("params") or {}),
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
        lines.append(f"[user] {self.user}")
        if self.params:
            lines.append(f"[params] {json.dumps(dict(self.params), sort_keys=True)}")
        return "\n".join(lines)
