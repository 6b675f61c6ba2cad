"""The optimizers, one module each, by the name a config uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptlift.errors import ConfigError
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.optimizers.fewshot import FewShot
from promptlift.optimize.optimizers.metaprompt import MetaPrompt

OPTIMIZERS: dict[str, type[Optimizer]] = {"fewshot": FewShot, "metaprompt": MetaPrompt}


def build_optimizer(name: str, params: Mapping[str, Any], *, answer_field: str | None = None) -> Optimizer:
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; available: {', '.join(sorted(OPTIMIZERS))}")
    kwargs = dict(params)
    if cls is FewShot:
        kwargs.setdefault("answer_field", answer_field)
        if not kwargs["answer_field"]:
            raise ConfigError("fewshot needs `answer_field` in its params (or a metric with `field:`)")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"optimizer {name!r}: bad params ({exc})") from None


__all__ = ["OPTIMIZERS", "FewShot", "MetaPrompt", "Optimizer", "build_optimizer"]
