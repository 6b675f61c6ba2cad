"""Metrics: ``metric(row, output) -> Score``. Built-ins, callables, and an LLM judge.

A metric scores one row. It may return a float or a ``Score`` (value and a reason the
optimizers can read). Values are expected in [0, 1]; higher is better. A metric that makes model
calls (the LLM judge) also has ``async ascore(row, output)``, which the evaluator awaits, so judge
calls run side by side under the client's concurrency limit instead of blocking the batch, and
says how many calls it makes per row (``calls_per_row``), which budgets and plans count.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import string
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from promptlift.errors import ConfigError
from promptlift.optimize.prompt import placeholders
from promptlift.optimize.schema import (
    At,
    Check,
    Schema,
    choice,
    flag,
    mapping,
    mappings,
    number,
    optional,
    suggest,
    text,
    texts,
    whole,
)

if TYPE_CHECKING:
    from promptlift.client import Client
    from promptlift.optimize.agent import Trajectory
    from promptlift.optimize.dataset import Row
    from promptlift.types import Completion


@dataclass(frozen=True)
class Score:
    value: float
    reason: str = ""
    # the calls the metric made to score this row (an LLM judge's): counted in the row's spend
    calls: tuple[Completion, ...] = field(default=(), repr=False)


@runtime_checkable
class Metric(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self, row: Row, output: str) -> Score: ...


_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class Normalize:
    """How outputs and targets are compared: case, surrounding/inner whitespace, punctuation."""

    case: bool = True
    whitespace: bool = True
    punctuation: bool = False

    def __call__(self, text: str) -> str:
        if self.case:
            text = text.lower()
        if self.punctuation:
            text = text.translate(_PUNCT)
        if self.whitespace:
            text = " ".join(text.split())
        return text


def _target(row: Row, field: str) -> str:
    value = row.get(field)
    if value is None:
        raise ConfigError(
            f"the metric reads field {field!r}, which row {row.index + 1} does not have "
            f"(its fields: {', '.join(row.fields)}){suggest(field, row.fields)}"
        )
    return str(value)


@dataclass(frozen=True)
class ExactMatch:
    field: str
    normalize: Normalize = Normalize()
    name: str = "exact_match"

    def __call__(self, row: Row, output: str) -> Score:
        want = _target(row, self.field)
        ok = self.normalize(output) == self.normalize(want)
        return Score(1.0 if ok else 0.0, "" if ok else f"expected {want!r}, got {output[:200]!r}")


@dataclass(frozen=True)
class Contains:
    field: str
    normalize: Normalize = Normalize()
    name: str = "contains"

    def __call__(self, row: Row, output: str) -> Score:
        want = _target(row, self.field)
        ok = self.normalize(want) in self.normalize(output)
        return Score(1.0 if ok else 0.0, "" if ok else f"output does not contain {want!r}")


@dataclass(frozen=True)
class Regex:
    """The output matches ``pattern`` (a fixed regex), or the regex in the row's ``field``."""

    pattern: str | None = None
    field: str | None = None
    name: str = "regex"

    def __call__(self, row: Row, output: str) -> Score:
        pattern = self.pattern if self.pattern is not None else _target(row, self.field or "")
        ok = re.search(pattern, output) is not None
        return Score(1.0 if ok else 0.0, "" if ok else f"output does not match /{pattern}/")


_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Numeric:
    """The last number in the output equals the target within an absolute or relative tolerance."""

    field: str
    abs_tol: float = 1e-6
    rel_tol: float = 0.0
    name: str = "numeric"

    def __call__(self, row: Row, output: str) -> Score:
        want = float(_target(row, self.field).replace(",", ""))
        found = _NUMBER.findall(output)
        if not found:
            return Score(0.0, f"no number in the output; expected {want:g}")
        got = float(found[-1].replace(",", ""))
        ok = math.isclose(got, want, abs_tol=self.abs_tol, rel_tol=self.rel_tol)
        return Score(1.0 if ok else 0.0, "" if ok else f"expected {want:g}, got {got:g}")


@dataclass(frozen=True)
class TokenF1:
    field: str
    normalize: Normalize = Normalize(punctuation=True)
    name: str = "f1"

    def __call__(self, row: Row, output: str) -> Score:
        want = self.normalize(_target(row, self.field)).split()
        got = self.normalize(output).split()
        common = sum((Counter(want) & Counter(got)).values())
        if not want or not got or not common:
            return Score(0.0, f"no token in common with {' '.join(want)!r}")
        precision, recall = common / len(got), common / len(want)
        return Score(2 * precision * recall / (precision + recall))


@dataclass(frozen=True)
class Choice:
    """The first valid label found in the output is the answer; it must equal the row's label."""

    field: str
    labels: tuple[str, ...]
    name: str = "choice"

    def __call__(self, row: Row, output: str) -> Score:
        want = _target(row, self.field).lower()
        text = output.lower()
        hits = [
            (m.start(), label)
            for label in self.labels
            for m in re.finditer(rf"\b{re.escape(label.lower())}\b", text)
        ]
        if not hits:
            return Score(0.0, f"no valid label ({', '.join(self.labels)}) in the output; expected {want!r}")
        got = min(hits)[1].lower()
        return Score(
            1.0 if got == want else 0.0, "" if got == want else f"expected {want!r}, answered {got!r}"
        )


def _takes_three(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a third positional argument (the trajectory)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: called the two-argument way
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


@dataclass(frozen=True)
class FunctionMetric:
    """Any callable ``(row_fields, output) -> float | Score``; one that takes a third argument,
    ``(row_fields, output, trajectory)``, is given the row's trajectory too."""

    fn: Callable[..., float | Score]
    name: str = "python"

    @property
    def reads_trajectory(self) -> bool:
        return _takes_three(self.fn)

    def __call__(self, row: Row, output: str, trajectory: Trajectory | None = None) -> Score:
        extra = (trajectory,) if self.reads_trajectory else ()
        result = self.fn(row.fields, output, *extra)
        if isinstance(result, Score):
            return result
        return Score(float(result))


MATCHES = ("exact", "numeric", "set", "contains")  # json_fields' ways to compare a field


JUDGE_MAX_TOKENS = 64  # a score and one sentence of reasons
_JUDGE = (
    "You grade an answer against a rubric. Reply with a score from 0 to 10 on the first line, "
    "then one sentence of reasons.\n\nRubric: {rubric}\n\nInput: {input}\nExpected: {expected}\n"
    "Answer: {output}\n\nScore (0-10):"
)


@dataclass(frozen=True)
class LLMJudge:
    """A model grades each output against a rubric, through the same client (its budget applies)."""

    client: Client
    rubric: str
    model: str | None = None
    input_field: str | None = None
    expected_field: str | None = None
    name: str = "llm_judge"
    calls_per_row: ClassVar[int] = 1  # one judge call per scored output, counted in budgets and plans

    def _prompt(self, row: Row, output: str) -> str:
        return _JUDGE.format(
            rubric=self.rubric,
            input=row.get(self.input_field, "") if self.input_field else "",
            expected=row.get(self.expected_field, "") if self.expected_field else "",
            output=output,
        )

    def _params(self) -> dict[str, Any]:
        return {"model": self.model or self.client.model, "temperature": 0, "max_tokens": JUDGE_MAX_TOKENS}

    def __call__(self, row: Row, output: str) -> Score:
        return _graded(self.client.complete(self._prompt(row, output), **self._params()))

    async def ascore(self, row: Row, output: str) -> Score:
        return _graded(await self.client.acomplete(self._prompt(row, output), **self._params()))


def _graded(reply: Completion) -> Score:
    """The judge's reply as a score: its first number, out of 10."""
    match = re.search(r"\d+(?:\.\d+)?", reply.content)
    if not match:
        return Score(0.0, f"the judge gave no score: {reply.content[:120]!r}", (reply,))
    return Score(min(10.0, float(match.group())) / 10.0, reply.content.strip()[:300], (reply,))


_NORMALIZE: dict[str, Check] = {"ignore_case": flag, "ignore_whitespace": flag, "ignore_punctuation": flag}
_FIELD = {"type": text, "field": text}
_OPTIONAL_FIELD = {"type": text, "field": optional(text)}
# One schema per metric type: a key another type uses (or a typo) is refused, never ignored.
METRICS: dict[str, Schema] = {
    "exact_match": Schema({**_FIELD, **_NORMALIZE}, required=("field",)),
    "contains": Schema({**_FIELD, **_NORMALIZE}, required=("field",)),
    "regex": Schema({**_OPTIONAL_FIELD, "pattern": optional(text)}),
    "numeric": Schema({**_FIELD, "abs_tol": number(0.0), "rel_tol": number(0.0)}, required=("field",)),
    "f1": Schema(_FIELD, required=("field",)),
    "choice": Schema({**_FIELD, "labels": optional(texts)}, required=("field",)),
    "llm_judge": Schema(
        {**_OPTIONAL_FIELD, "rubric": text, "model": optional(text), "input_field": optional(text)},
        required=("rubric",),
    ),
    # `field` names the answer (what fewshot shows in its demos); the function reads what it likes
    "python": Schema({**_OPTIONAL_FIELD, "function": text}, required=("function",)),
    "json_fields": Schema(
        {**_OPTIONAL_FIELD, "fields": lambda v, at: _json_fields(v, at)}, required=("fields",)
    ),
    # an agent's trajectory: the right tool with the right arguments ({field} templates), few steps
    "tool_called": Schema(
        {**_OPTIONAL_FIELD, "tool": text, "arguments": optional(mapping), **_NORMALIZE}, required=("tool",)
    ),
    "steps": Schema({**_OPTIONAL_FIELD, "max": whole(1)}, required=("max",)),
    # a weighted mean of other metrics; each part is a metric's mapping with an optional `weight:`
    "weighted": Schema({**_OPTIONAL_FIELD, "parts": mappings}, required=("parts",)),
}
_FIELD_MATCH = Schema(
    {
        "expected": text,
        "match": choice(*MATCHES),
        "abs_tol": number(0.0),
        "rel_tol": number(0.0),
        "weight": number(0.0),
    },
    example="{expected: price, match: numeric, abs_tol: 0.01, weight: 2}",
)


def _json_fields(value: Any, at: At) -> dict[str, dict[str, Any]]:
    """``fields: {label: label, price: {expected: price, match: numeric, abs_tol: 0.01}}``: each
    answer path with the dataset field it is checked against (the path itself when not given)."""
    if not isinstance(value, Mapping) or not value:
        at.fail(f"a mapping of answer fields, like {{label: {_FIELD_MATCH.example}}}", value)
    out = {}
    for path, spec in value.items():
        if isinstance(spec, str):
            spec = {"expected": spec}
        checked = _FIELD_MATCH(spec, at / path)
        checked.setdefault("expected", str(path))
        out[str(path)] = checked
    if sum(f.get("weight", 1.0) for f in out.values()) <= 0:
        raise at.error(f"`{at.path}`: the weights are all 0; give at least one field a weight above 0")
    return out


def _check_regex(checked: Mapping[str, Any], at: At) -> None:
    if not checked.get("pattern") and not checked.get("field"):
        raise at.error("metric 'regex' needs `pattern:` or `field:` (a field holding the regex)")
    if checked.get("pattern"):
        try:
            re.compile(checked["pattern"])
        except re.error as exc:  # found at load, not after every row's call was paid for
            raise at.error(
                f"`{(at / 'pattern').path}` is not a valid regular expression ({exc}); fix the pattern "
                f"(quote it in single quotes in YAML so backslashes stay as written)"
            ) from None


def check_metric(spec: Any, at: At | None = None, *, base_dir: str | Path | None = None) -> dict[str, Any]:
    """The metric's config checked against its type's schema, with ``python: "module:function"``
    read as ``{type: python, function: ...}``; a python metric's function is imported here (from
    ``base_dir`` first: the config's folder), so a missing module is found before any call."""
    at = at or At("", "metric")
    if not isinstance(spec, Mapping):
        at.fail("a mapping like {type: exact_match, field: label}", spec)
    spec = dict(spec)
    if "python" in spec and "type" not in spec:
        spec = {"type": "python", "function": spec.pop("python"), **spec}
    kind = spec.get("type")
    if kind is None:
        raise at.error(f"`{(at / 'type').path}` is missing; use one of {', '.join(METRICS)}")
    if kind not in METRICS:
        (at / "type").fail(f"one of {', '.join(METRICS)}", kind, suggest(str(kind), METRICS))
    checked = METRICS[kind](spec, at)
    if kind == "regex":
        _check_regex(checked, at)
    if kind == "choice" and checked.get("labels") == []:
        (at / "labels").fail("a non-empty list of labels", [])
    if kind == "python":
        load_callable(checked["function"], base_dir=base_dir)
    for key, value in (checked.get("arguments") or {}).items():  # tool_called's templates
        if isinstance(value, str):
            placeholders(value, str(at / "arguments" / key))
    if kind == "weighted":
        if not checked["parts"]:
            (at / "parts").fail("a non-empty list of metrics, each with an optional `weight:`", [])
        checked["parts"] = [
            _weighted_part(part, at / "parts" / i, base_dir) for i, part in enumerate(checked["parts"])
        ]
        if sum(p["weight"] for p in checked["parts"]) <= 0:
            raise at.error(f"`{(at / 'parts').path}`: the weights must sum above 0")
        if not checked.get("field"):  # the answer field fewshot shows: the first part's that names one
            checked["field"] = next((p["field"] for p in checked["parts"] if p.get("field")), None)
    return checked


def _weighted_part(part: Mapping[str, Any], at: At, base_dir: str | Path | None) -> dict[str, Any]:
    """A weighted metric's part, checked: the part's own metric config plus its ``weight`` (1 by
    default), in the shape it was written in, so checking it again changes nothing."""
    part = dict(part)
    weight = number(0.0)(part.pop("weight", 1.0), at / "weight")
    return {**check_metric(part, at, base_dir=base_dir), "weight": weight}


def metric_fields(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The dataset fields a (checked) metric reads, as (key, field) pairs: a weighted metric's
    parts' too, the ``{field}`` slots of a tool_called metric's arguments, and the expected field
    of each of a json_fields metric's fields."""
    parts = spec.get("parts") or ()
    fields = [
        (k, str(spec[k]))
        for k in ("field", "input_field")
        # a weighted metric's `field` copied from a part is reported under the part's key, as written
        if spec.get(k) and not (k == "field" and any(p.get("field") == spec[k] for p in parts))
    ]
    for key, value in (spec.get("arguments") or {}).items():
        if isinstance(value, str):
            fields += [(f"arguments.{key}", name) for name in placeholders(value)]
    for path, check in (spec.get("fields") or {}).items():
        fields.append((f"fields.{path}.expected", str(check["expected"])))
    for i, part in enumerate(parts):
        fields += [(f"parts.{i}.{key}", name) for key, name in metric_fields(part)]
    return fields


def _labels(spec: Mapping[str, Any], values: Sequence[str]) -> tuple[str, ...]:
    labels = spec.get("labels") or sorted(set(values))
    return tuple(str(x) for x in labels)


def metric_from_config(
    spec: Mapping[str, Any],
    *,
    field_values: Sequence[str] = (),
    client: Client | None = None,
    base_dir: str | Path | None = None,
) -> Metric:
    """Build a metric from its config mapping (``{type: exact_match, field: label}``)."""
    spec = check_metric(spec, base_dir=base_dir)
    kind, field = spec["type"], spec.get("field")
    norm = Normalize(
        case=spec.get("ignore_case", True),
        whitespace=spec.get("ignore_whitespace", True),
        punctuation=spec.get("ignore_punctuation", False),
    )
    if kind == "exact_match":
        return ExactMatch(str(field), norm)
    if kind == "contains":
        return Contains(str(field), norm)
    if kind == "regex":
        return Regex(spec.get("pattern"), field)
    if kind == "numeric":
        return Numeric(str(field), spec.get("abs_tol", 1e-6), spec.get("rel_tol", 0.0))
    if kind == "f1":
        return TokenF1(str(field))
    if kind == "choice":
        return Choice(str(field), _labels(spec, field_values))
    if kind == "json_fields":
        from promptlift.optimize.json_metrics import FieldMatch, JsonFields  # it imports this module

        return JsonFields({path: FieldMatch(**check) for path, check in spec["fields"].items()}, field)
    if kind == "llm_judge":
        if client is None:
            raise ConfigError("metric 'llm_judge' runs through the run's client: pass `client=`")
        return LLMJudge(client, spec["rubric"], spec.get("model"), spec.get("input_field"), field)
    if kind in ("tool_called", "steps", "weighted"):
        return _agent_metric(spec, field_values=field_values, client=client, base_dir=base_dir)
    return FunctionMetric(load_callable(spec["function"], base_dir=base_dir))


def _agent_metric(
    spec: Mapping[str, Any],
    *,
    field_values: Sequence[str],
    client: Client | None,
    base_dir: str | Path | None,
) -> Metric:
    # agent_metrics builds on this module (Score, Normalize), so it is imported when needed
    from promptlift.optimize.agent_metrics import Steps, ToolCalled, Weighted

    kind = spec["type"]
    if kind == "tool_called":
        norm = Normalize(case=spec.get("ignore_case", True), whitespace=spec.get("ignore_whitespace", True))
        return ToolCalled(spec["tool"], spec.get("arguments"), norm)
    if kind == "steps":
        return Steps(spec["max"])
    parts = []
    for part in spec["parts"]:
        part = dict(part)
        weight = part.pop("weight")
        parts.append(
            (metric_from_config(part, field_values=field_values, client=client, base_dir=base_dir), weight)
        )
    return Weighted(tuple(parts))


def load_callable(
    target: str, *, base_dir: str | Path | None = None, what: str = "python metric"
) -> Callable[..., Any]:
    """``package.module:function`` → the function, with a clear error when it is not there. A module
    in ``base_dir`` (the config's folder) is found without setting PYTHONPATH."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{what} {target!r}: write it as 'module:function'")
    try:
        module = _import(module_name, base_dir)
    except ImportError as exc:
        raise ConfigError(f"{what} {target!r}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:  # the user's module failed while importing: say so in one line
        raise ConfigError(
            f"{what} {target!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc})"
        ) from None
    except SystemExit as exc:  # sys.exit() at import (a script's main guard forgotten) ends nothing here
        raise ConfigError(
            f"{what} {target!r}: importing {module_name!r} called sys.exit({exc.code!r}); move that "
            "into an `if __name__ == '__main__':` block"
        ) from None
    fn: Any = module
    for name in attr.split("."):  # a nested name (Class.method) resolves too
        fn = getattr(fn, name, None)
    if fn is None:
        raise ConfigError(f"{what} {target!r}: {module_name} has no function {attr!r}")
    if not callable(fn):
        raise ConfigError(f"{what} {target!r}: {module_name}.{attr} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def _import(name: str, base_dir: str | Path | None) -> Any:
    if base_dir is None:
        return importlib.import_module(name)
    folder = str(Path(base_dir).resolve())
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)
