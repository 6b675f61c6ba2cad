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
]
