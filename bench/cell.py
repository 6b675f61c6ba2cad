"""One cell of the optimizer table: one system on one dataset with one seed, and what it records.

Every system gets the same splits, the same task model (the embedded ``local/gemma-3-270m``), the
same reasoning model, and the same budget of optimization calls. Scoring the starting and the
optimized program on the test split is outside the budget for everyone, and counted apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.data import Task
from promptlift.optimize import Splits


@dataclass
class Cell:
    system: str
    dataset: str
    seed: int
    budget: int
    test_start: float = float("nan")
    test_best: float = float("nan")
    task_calls: int = 0  # task-model calls spent optimizing (test scoring excluded)
    reasoning_calls: int = 0
    test_calls: int = 0
    wall_s: float = 0.0
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Setup:
    """What a system runner is handed."""

    task: Task
    splits: Splits
    budget: int
    seed: int
    task_model: str = "local/gemma-3-270m"
    reasoning_model: str = "local/gemma-3-270m"


Runner = Callable[[Setup], Cell]


def pin_model_threads(threads: int) -> None:
    """Load the embedded model with ``threads`` llama.cpp threads, for every system alike.

    promptlift's engine uses the cores idle when it loads; a core that gets busy later (another
    slice of the grid) would then slow a call from ~0.4 s to 8-11 s (llama.cpp's threads spin-wait;
    measured here, 1 vs 2 threads, 2 shared cores). One thread keeps the calls fast and the
    comparison fair.
    """
    from promptlift.providers import local

    spec = local.spec_for(local.DEFAULT_LOCAL_MODEL)
    with local._engines_lock:
        if spec.name not in local._engines:
            local._engines[spec.name] = local.LocalEngine(spec, n_threads=threads)
