"""Named sizes for every optimizer: ``light`` to try an idea, ``medium`` (about the defaults) for a
real run, ``heavy`` when quality matters more than calls. ``promptlift optimize --dry-run`` shows
what each one would cost on a config. In a config: ``optimizer: {name: pareto, params: {preset:
light}}``; explicit params override the preset's."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "fewshot": {
        "light": {"trials": 8, "max_demos": 3},
        "medium": {"trials": 20, "max_demos": 4},
        "heavy": {"trials": 50, "max_demos": 6},
    },
    "metaprompt": {
        "light": {"rounds": 2, "candidates_per_round": 2},
        "medium": {"rounds": 5, "candidates_per_round": 3},
        "heavy": {"rounds": 10, "candidates_per_round": 4},
    },
    "evolutionary": {
        "light": {"population": 4, "generations": 2, "elites": 1},
        "medium": {"population": 6, "generations": 4, "elites": 2},
        "heavy": {"population": 10, "generations": 8, "elites": 3},
    },
    "pareto": {
        "light": {"max_metric_calls": 150, "minibatch": 3},
        "medium": {"max_metric_calls": 400, "minibatch": 3},
        "heavy": {"max_metric_calls": 1200, "minibatch": 4},
    },
    "failure_modes": {
        "light": {"rounds": 1, "sample": 8, "max_modes": 2},
        "medium": {"rounds": 3, "sample": 16, "max_modes": 3},
        "heavy": {"rounds": 6, "sample": 32, "max_modes": 4},
    },
    "parameters": {
        "light": {"trials": 6},
        "medium": {"trials": 12},
        "heavy": {"trials": 30},
    },
}
