"""The optimization layer: datasets, prompts, metrics, evaluation, optimizers, the run store.

It knows nothing about providers: every model call goes through a ``promptlift.Client``.
"""

from promptlift.optimize.dataset import Dataset, Row, Splits, split
from promptlift.optimize.evaluation import Evaluation, Evaluator, RowResult, Spend
from promptlift.optimize.metrics import Metric, Score, metric_from_config
from promptlift.optimize.optimizers import OPTIMIZERS, FewShot, MetaPrompt, Optimizer, register_optimizer
from promptlift.optimize.prompt import Demo, Prompt
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Budget, Candidate, RunSettings, Search, StopRun
from promptlift.optimize.stop import (
    MaxCalls,
    MaxCost,
    MaxRounds,
    MaxTime,
    NoImprovement,
    StopRule,
    TargetScore,
)
from promptlift.optimize.store import RunStore
from promptlift.optimize.structured import OutputSchema

__all__ = [
    "OPTIMIZERS",
    "Budget",
    "Candidate",
    "Dataset",
    "Demo",
    "Evaluation",
    "Evaluator",
    "FewShot",
    "MaxCalls",
    "MaxCost",
    "MaxRounds",
    "MaxTime",
    "MetaPrompt",
    "Metric",
    "NoImprovement",
    "OptimizationResult",
    "Optimizer",
    "OutputSchema",
    "Prompt",
    "Row",
    "RowResult",
    "RunSettings",
    "RunStore",
    "Score",
    "Search",
    "Spend",
    "Splits",
    "StopRule",
    "StopRun",
    "TargetScore",
    "metric_from_config",
    "register_optimizer",
    "split",
]
