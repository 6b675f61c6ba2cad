"""Parameter tuning: the same prompt, better generation settings, by Bayesian search.

Optuna's TPE sampler searches temperature, top_p and max_tokens (and, through ``extra``, any
other generation parameter a request carries: ``seed``, ``stop``) for a fixed prompt; each
trial's settings go into ``Prompt.params`` and are scored on the validation split. The first trial
is the prompt's own settings, so the search starts from what the user had.

A sampled trial (temperature above 0) also gets the run's seed, so it replays and caches like the
rest of the run; a provider that ignores seeds makes such scores noisy, which the validation
split (not a single row) is there to smooth.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from promptlift.errors import ConfigError
from promptlift.optimize.optimizers.base import Optimizer
from promptlift.optimize.program import Optimizable, Program, members
from promptlift.optimize.prompt import Prompt
from promptlift.optimize.run import Candidate, Search

TUNABLE_EXTRA = ("seed", "stop")  # what else a CompletionRequest carries that changes the output


def max_tokens_choices(current: int | None) -> list[int]:
    """Around the prompt's own limit: half, the same, double (256 when it sets none)."""
    base = int(current or 256)
    return sorted({max(1, base // 2), base, base * 2})


@dataclass
class Parameters(Optimizer):
    """``temperature`` and ``top_p`` are [low, high] ranges; ``max_tokens`` a list of choices
    (default: around the prompt's own); ``extra`` maps another parameter to its choices."""

    trials: int = 12
    temperature: list[float] = field(default_factory=lambda: [0.0, 1.0])
    top_p: list[float] = field(default_factory=lambda: [0.5, 1.0])
    max_tokens: list[int] | None = None
    extra: dict[str, list[Any]] = field(default_factory=dict)
    name: ClassVar[str] = "parameters"

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError("parameters: `trials` must be at least 1")
        for key in ("temperature", "top_p"):
            span = getattr(self, key)
            if len(span) != 2 or not 0 <= span[0] <= span[1]:
                raise ConfigError(f"parameters: `{key}` must be [low, high] with 0 <= low <= high")
        unknown = set(self.extra) - set(TUNABLE_EXTRA)
        if unknown:
            raise ConfigError(
                f"parameters: cannot tune {sorted(unknown)[0]!r}; tunable besides temperature, top_p "
                f"and max_tokens: {', '.join(TUNABLE_EXTRA)}"
            )
        if any(not choices for choices in self.extra.values()):
            raise ConfigError("parameters: every `extra` parameter needs at least one choice")

    def params(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "temperature": list(self.temperature),
            "top_p": list(self.top_p),
            "max_tokens": self.max_tokens,
            "extra": {k: list(v) for k, v in self.extra.items()},
        }

    def first_trial(self, params: Mapping[str, Any], tokens: Sequence[int]) -> dict[str, Any]:
        """The prompt's own settings as trial values, clipped into the search space."""

        def clip(value: Any, span: Sequence[float], default: float) -> float:
            v = float(default if value is None else value)
            return min(max(v, span[0]), span[1])

        current = params.get("max_tokens")
        nearest = min(tokens, key=lambda t: abs(t - int(current or tokens[0])))
        first = {
            "temperature": clip(params.get("temperature"), self.temperature, 0.0),
            "top_p": clip(params.get("top_p"), self.top_p, 1.0),
            "max_tokens": nearest,
        }
        for key, choices in self.extra.items():
            first[key] = params[key] if params.get(key) in choices else choices[0]
        return first

    async def search(self, ctx: Search, start: Candidate) -> None:
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        own = dict(first_member(start.prompt).params)  # a program's prompts all get the chosen params
        tokens = self.max_tokens or max_tokens_choices(own.get("max_tokens"))
        sampler = optuna.samplers.TPESampler(seed=ctx.settings.seed, n_startup_trials=4)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        first = self.first_trial(own, tokens)
        study.enqueue_trial(
            {**first, **{k: self.extra[k].index(v) for k, v in first.items() if k in self.extra}}
        )
        for _ in range(self.trials):
            trial = study.ask()
            chosen: dict[str, Any] = {
                "temperature": round(trial.suggest_float("temperature", *self.temperature), 2),
                "top_p": round(trial.suggest_float("top_p", *self.top_p), 2),
                "max_tokens": trial.suggest_categorical("max_tokens", list(tokens)),
            }
            for key, choices in self.extra.items():
                chosen[key] = choices[trial.suggest_categorical(key, list(range(len(choices))))]
            if chosen["temperature"] > 0 and "seed" not in chosen and own.get("seed") is None:
                chosen["seed"] = ctx.settings.seed
            prompt = with_params(start.prompt, chosen)
            candidate = await ctx.evaluate(prompt, parent=start.id, origin=f"parameters trial {trial.number}")
            study.tell(trial, candidate.score)
            ctx.next_round()


def first_member(subject: Optimizable) -> Prompt:
    return next(iter(members(subject).values()))


def with_params(subject: Optimizable, chosen: dict[str, Any]) -> Optimizable:
    """Each of the subject's prompts with ``chosen`` over its own params."""
    if isinstance(subject, Program):
        return dataclasses.replace(
            subject, prompts={n: p.replace(params={**p.params, **chosen}) for n, p in subject.prompts.items()}
        )
    return subject.replace(params={**subject.params, **chosen})
