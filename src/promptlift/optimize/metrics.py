"""Metrics: ``metric(row, output) -> Score``. Built-ins, callables, and an LLM judge.

A metric scores one row. It may return a float or a ``Score`` (value and a reason the
optimizers can read). Values are expected in [0, 1]; higher is better. A metric that makes model
calls (the LLM judge) also has ``async ascore(row, output)``, which the evaluator awaits, so judge
calls run side by side under the client's concurrency limit instead of blocking the batch, and
says how many calls it makes per row (``calls_per_row``), which budgets and plans count.
"""

from __future__ import annotations

import importlib
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from promptlift.errors import ConfigError

if TYPE_CHECKING:
    from promptlift.client import Client
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
        raise ConfigError(f"the metric reads field {field!r}, which row {row.index} does not have")
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


@dataclass(frozen=True)
class FunctionMetric:
    """Any callable ``(row_fields, output) -> float | Score``."""

    fn: Callable[[Mapping[str, Any], str], float | Score]
    name: str = "python"

    def __call__(self, row: Row, output: str) -> Score:
        result = self.fn(row.fields, output)
        if isinstance(result, Score):
            return result
        return Score(float(result))


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


def _labels(spec: Mapping[str, Any], values: Sequence[str]) -> tuple[str, ...]:
    labels = spec.get("labels") or sorted(set(values))
    return tuple(str(x) for x in labels)


def metric_from_config(
    spec: Mapping[str, Any], *, field_values: Sequence[str] = (), client: Client | None = None
) -> Metric:
    """Build a metric from its config mapping (``{type: exact_match, field: label}``)."""
    kind = spec.get("type")
    field = spec.get("field")
    norm = Normalize(
        case=bool(spec.get("ignore_case", True)),
        whitespace=bool(spec.get("ignore_whitespace", True)),
        punctuation=bool(spec.get("ignore_punctuation", False)),
    )
    needs_field = {"exact_match", "contains", "numeric", "f1", "choice"}
    if kind in needs_field and not field:
        raise ConfigError(f"metric {kind!r} needs `field:` naming the dataset field with the expected answer")
    if kind == "exact_match":
        return ExactMatch(str(field), norm)
    if kind == "contains":
        return Contains(str(field), norm)
    if kind == "regex":
        if not spec.get("pattern") and not field:
            raise ConfigError("metric 'regex' needs `pattern:` or `field:` (a field holding the regex)")
        return Regex(spec.get("pattern"), field)
    if kind == "numeric":
        return Numeric(str(field), float(spec.get("abs_tol", 1e-6)), float(spec.get("rel_tol", 0.0)))
    if kind == "f1":
        return TokenF1(str(field))
    if kind == "choice":
        return Choice(str(field), _labels(spec, field_values))
    if kind == "llm_judge":
        if client is None or not spec.get("rubric"):
            raise ConfigError("metric 'llm_judge' needs `rubric:` (and runs through the run's client)")
        return LLMJudge(client, str(spec["rubric"]), spec.get("model"), spec.get("input_field"), field)
    if kind == "python":
        return FunctionMetric(load_callable(str(spec.get("function") or spec.get("path") or "")))
    raise ConfigError(
        f"unknown metric type {kind!r}; use exact_match, contains, regex, numeric, f1, choice, "
        f"llm_judge or python"
    )


def load_callable(target: str) -> Callable[..., Any]:
    """``package.module:function`` → the function, with a clear error when it is not there."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"python metric {target!r}: write it as 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"python metric {target!r}: cannot import {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"python metric {target!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]
