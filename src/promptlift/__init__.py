"""promptlift: find better prompts, measured.

Importing promptlift is cheap: litellm (a ~3 s import) is loaded only when the first model
call is made.
"""

from promptlift.client import Client, ClientConfig
from promptlift.client.config import Budget
from promptlift.errors import (
    BudgetExceeded,
    ConfigError,
    DatasetError,
    PromptliftError,
    ProviderError,
    TemplateError,
    UserError,
)
from promptlift.secrets import Secret
from promptlift.types import Completion, CompletionRequest, Message, ToolCall, Usage

__version__ = "0.1.0"

# The optimization layer's names, importable from here too (``from promptlift import Prompt,
# FewShot``): loaded on first use, so ``import promptlift`` stays as cheap as the client's import.
_OPTIMIZE_NAMES = frozenset(
    {
        "Dataset", "split", "Prompt", "Demo", "Turn", "Tool", "OutputSchema", "RunSettings",
        "OptimizationResult", "Optimizer", "register_optimizer", "FewShot", "MetaPrompt",
        "Evolutionary", "Pareto", "FailureModes", "Parameters", "ExactMatch", "Contains", "Regex",
        "Numeric", "TokenF1", "Choice", "LLMJudge", "FunctionMetric", "ToolCalled", "Steps",
        "Weighted", "JsonFields", "Score", "Program", "Output", "Calls", "Pipeline", "Evaluator",
        "Splits",
    }
)  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _OPTIMIZE_NAMES:
        import promptlift.optimize

        return getattr(promptlift.optimize, name)
    raise AttributeError(f"module 'promptlift' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_OPTIMIZE_NAMES])


__all__ = [
    "Budget",
    "BudgetExceeded",
    "Client",
    "ClientConfig",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "DatasetError",
    "Message",
    "PromptliftError",
    "ProviderError",
    "Secret",
    "TemplateError",
    "ToolCall",
    "Usage",
    "UserError",
    "__version__",
    *sorted(_OPTIMIZE_NAMES),  # `from promptlift import *` brings the optimize layer's names too
]
