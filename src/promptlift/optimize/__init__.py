"""The optimization layer: datasets, prompts, metrics, evaluation, optimizers, the run store.

It knows nothing about providers: every model call goes through a ``promptlift.Client``.
"""

from promptlift.optimize.agent_metrics import Steps, ToolCalled, Weighted
from promptlift.optimize.dataset import Dataset, Row, Splits, split
from promptlift.optimize.evaluation import Evaluation, Evaluator, RowResult, Spend
from promptlift.optimize.json_metrics import FieldMatch, JsonFields
from promptlift.optimize.metrics import (
    Choice,
    Contains,
    ExactMatch,
    FunctionMetric,
    LLMJudge,
    Metric,
    Normalize,
    Numeric,
    Regex,
    Score,
    TokenF1,
    metric_from_config,
)
from promptlift.optimize.optimizers import (
    OPTIMIZERS,
    Evolutionary,
    FailureModes,
    FewShot,
    MetaPrompt,
    Optimizer,
    Parameters,
    Pareto,
    register_optimizer,
)
from promptlift.optimize.pipeline import Pipeline
from promptlift.optimize.program import Calls, InvalidAnswer, Output, Program, PromptCall
from promptlift.optimize.prompt import Demo, Prompt, Turn
from promptlift.optimize.result import OptimizationResult
from promptlift.optimize.run import Budget, Candidate, Rejected, RunSettings, Search, StopRun
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
from promptlift.optimize.tools import Tool

__all__ = [
    "OPTIMIZERS",
    "Budget",
    "Calls",
    "Candidate",
    "Choice",
    "Contains",
    "Dataset",
    "Demo",
    "Evaluation",
    "Evaluator",
    "Evolutionary",
    "ExactMatch",
    "FailureModes",
    "FewShot",
    "FieldMatch",
    "FunctionMetric",
    "InvalidAnswer",
    "JsonFields",
    "LLMJudge",
    "MaxCalls",
    "MaxCost",
    "MaxRounds",
    "MaxTime",
    "MetaPrompt",
    "Metric",
    "NoImprovement",
    "Normalize",
    "Numeric",
    "OptimizationResult",
    "Optimizer",
    "Output",
    "OutputSchema",
    "Parameters",
    "Pareto",
    "Pipeline",
    "Program",
    "Prompt",
    "PromptCall",
    "Regex",
    "Rejected",
    "Row",
    "RowResult",
    "RunSettings",
    "RunStore",
    "Score",
    "Search",
    "Spend",
    "Splits",
    "Steps",
    "StopRule",
    "StopRun",
    "TargetScore",
    "TokenF1",
    "Tool",
    "ToolCalled",
    "Turn",
    "Weighted",
    "metric_from_config",
    "register_optimizer",
    "split",
]
