"""The optimizers, one module each, by the name a config uses.

A user's optimizer is an ``Optimizer`` subclass: ``register_optimizer(MyOptimizer)`` makes its
``name`` usable like a built-in one, and a config may name it as ``module:Class`` (a module beside
the config is found without setting PYTHONPATH). ``promptlift.testing.conformance`` tells whether it
keeps the contract.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from pathlib import Path
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


def register_optimizer(cls: type[Optimizer], *, replace: bool = False) -> type[Optimizer]:
    """Make ``cls`` available by its ``name`` (in configs and ``build_optimizer``); usable as a
    class decorator. A built-in's or another class's name is refused unless ``replace``."""
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise ConfigError(f"register_optimizer: {cls!r} is not an Optimizer subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(
            f"register_optimizer: {cls.__name__} needs a class attribute `name` (an identifier)"
        )
    if OPTIMIZERS.get(name, cls) is not cls and not replace:
        raise ConfigError(
            f"register_optimizer: the name {name!r} is taken by {OPTIMIZERS[name].__name__}; "
            "choose another name, or pass replace=True"
        )
    OPTIMIZERS[name] = cls
    return cls


def optimizer_class(
    name: str, *, base_dir: str | Path | None = None, at: At | None = None
) -> type[Optimizer]:
    """The class a config's ``optimizer.name`` means: a registered name, or ``module:Class``."""
    at = at or At("", "optimizer")
    if ":" in name:
        from promptlift.optimize.metrics import load_callable

        try:
            found: Any = load_callable(name, base_dir=base_dir, what="optimizer")
        except ConfigError as exc:
            raise at.error(f"`{(at / 'name').path}`: {exc}") from None
        if not (isinstance(found, type) and issubclass(found, Optimizer)):
            raise at.error(f"`{(at / 'name').path}`: {name!r} is not an Optimizer subclass")
        if not isinstance(getattr(found, "name", None), str):
            raise at.error(f"`{(at / 'name').path}`: {name!r} needs a class attribute `name` (a string)")
        return found
    cls = OPTIMIZERS.get(name)
    if cls is None:
        (at / "name").fail(
            f"one of {', '.join(sorted(OPTIMIZERS))}, or module:Class", name, suggest(name, OPTIMIZERS)
        )
    return cls


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
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
    else:  # a user's optimizer with its own __init__: its keyword parameters
        hints = typing.get_type_hints(cls.__init__)
        signature = inspect.signature(cls.__init__)
        known = [
            n
            for n, p in signature.parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    refuse_unknown(params, [*known, "preset"], at, what="param")
    for key, value in params.items():
        if key != "preset" and key in hints:
            of_type(hints[key])(value, at / key)


def build_optimizer(
    name: str,
    params: Mapping[str, Any],
    *,
    answer_field: str | None = None,
    at: At | None = None,
    base_dir: str | Path | None = None,
) -> Optimizer:
    """The optimizer ``name`` (registered, or ``module:Class`` found from ``base_dir``) with
    ``params`` (a preset expanded), checked by name and type; ``at`` says where in a config the
    optimizer was given, for the error message."""
    at = at or At("", "optimizer")
    cls = optimizer_class(name, base_dir=base_dir, at=at)
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
    except Exception as exc:  # a user's optimizer failed in its constructor: one line, not its traceback
        raise at.error(f"optimizer {name!r} failed to start ({type(exc).__name__}: {exc})") from None


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
    "optimizer_class",
    "register_optimizer",
    "resolve_params",
]
