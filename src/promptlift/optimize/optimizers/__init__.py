"""The optimizers, one module each, by the name a config uses."""

from __future__ import annotations

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


def build_optimizer(name: str, params: Mapping[str, Any], *, answer_field: str | None = None) -> Optimizer:
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; available: {', '.join(sorted(OPTIMIZERS))}")
    kwargs = resolve_params(name, params)
    if cls is FewShot:
        kwargs.setdefault("answer_field", answer_field)
        if not kwargs["answer_field"]:
            raise ConfigError("fewshot needs `answer_field` in its params (or a metric with `field:`)")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"optimizer {name!r}: bad params ({exc})") from None


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
