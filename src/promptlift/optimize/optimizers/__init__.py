"""The optimizers, one module each, by the name a config uses."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from promptlift.errors import ConfigError
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.optimizers.evolutionary import Evolutionary
from promptlift.optimize.optimizers.failure_modes import FailureModes
from promptlift.optimize.optimizers.fewshot import FewShot
from promptlift.optimize.optimizers.metaprompt import MetaPrompt
from promptlift.optimize.optimizers.parameters import Parameters
from promptlift.optimize.optimizers.pareto import Pareto
from promptlift.optimize.optimizers.presets import PRESETS
from promptlift.optimize.schema import At, of_type, refuse_unknown, suggest

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "fewshot": FewShot,
    "metaprompt": MetaPrompt,
    "evolutionary": Evolutionary,
    "pareto": Pareto,
    "failure_modes": FailureModes,
    "parameters": Parameters,
}


def resolve_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with its ``preset`` (light, medium, heavy) expanded; explicit params win."""
    kwargs = dict(params)
    preset = kwargs.pop("preset", None)
    if preset is None:
        return kwargs
    presets = PRESETS.get(name, {})
    if preset not in presets:
        raise ConfigError(
            f"optimizer {name!r}: unknown preset {preset!r}; available: {', '.join(presets) or 'none'}"
        )
    return {**presets[preset], **kwargs}


def check_params(cls: type[Optimizer], params: Mapping[str, Any], at: At) -> None:
    """Each param by name and type, from the optimizer's own fields (its constructor)."""
    hints = typing.get_type_hints(cls)
    known: list[str] = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    refuse_unknown(params, [*known, "preset"], at, what="param")
    for key, value in params.items():
        if key != "preset":
            of_type(hints[key])(value, at / key)


def build_optimizer(
    name: str,
    params: Mapping[str, Any],
    *,
    answer_field: str | None = None,
    at: At | None = None,
) -> Optimizer:
    """The optimizer ``name`` with ``params`` (a preset expanded), checked by name and type; ``at``
    says where in a config the optimizer was given, for the error message."""
    at = at or At("", "optimizer")
    cls = OPTIMIZERS.get(name)
    if cls is None:
        (at / "name").fail(f"one of {', '.join(sorted(OPTIMIZERS))}", name, suggest(name, OPTIMIZERS))
    if not isinstance(params, Mapping):
        (at / "params").fail("a mapping", params)
    check_params(cls, params, at / "params")
    try:
        kwargs = resolve_params(name, params)
    except ConfigError as exc:
        raise at.error(str(exc)) from None
    if cls is FewShot:
        kwargs.setdefault("answer_field", answer_field)
        if not kwargs["answer_field"]:
            raise at.error("fewshot needs `answer_field` in its params (or a metric with `field:`)")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise at.error(str(exc)) from None
    except TypeError as exc:  # a required field the params do not give
        raise at.error(f"optimizer {name!r}: bad params ({exc})") from None


__all__ = [
    "OPTIMIZERS",
    "PRESETS",
    "Evolutionary",
    "FailureModes",
    "FewShot",
    "MetaPrompt",
    "Optimizer",
    "Parameters",
    "Pareto",
    "build_optimizer",
    "resolve_params",
]
