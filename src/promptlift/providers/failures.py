"""What every provider agrees on about failures: the error type of an HTTP status, the words that
mark a content-filter refusal or a prompt too long, and how a failed connection is described.

Both providers (``litellm.py`` and ``native.py``) translate through these, so the same failure
on the wire is the same ``promptlift.errors`` type whichever of them sent the request.
"""

from __future__ import annotations

import socket

from promptlift import errors
from promptlift.secrets import redact

# Recognised in the error code or body as well as the message: an OpenAI-style 400 with code
# ``content_policy_violation`` comes back from LiteLLM as a plain BadRequestError (FACTS.md).
CONTENT_FILTER_MARKERS = (
    "content_policy_violation",
    "content_filter",
    "responsibleaipolicy",
    "content filtering policy",
    "safety system",
)
# A prompt longer than the model's window, as OpenAI, vLLM, llama.cpp and Anthropic word it.
CONTEXT_WINDOW_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "exceeds the available context size",
)

BY_STATUS: dict[int, type[errors.ProviderError]] = {
    400: errors.BadRequest,
    401: errors.AuthenticationFailed,
    403: errors.PermissionDenied,
    404: errors.ModelNotFound,
    408: errors.Timeout,
    413: errors.ContextWindowExceeded,
    422: errors.BadRequest,
    429: errors.RateLimited,
}


def kind_by_status(status: int | None) -> type[errors.ProviderError]:
    """The error type of an HTTP status (None: no answer at all, as for a 5xx)."""
    if status is None or status >= 500:
        return errors.ProviderUnavailable
    return BY_STATUS.get(status, errors.BadRequest if 400 <= status < 500 else errors.ProviderUnavailable)


def connection_message(cause: BaseException, endpoint: str) -> str:
    """What went wrong with the connection, in words that name the fix."""
    endpoint = redact(endpoint)
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused at {endpoint}: is the server running, and is api_base right?"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host of {endpoint} ({cause.strerror}): is api_base right?"
    detail = str(cause).strip().split("\n", 1)[0][:200]
    return f"the connection to {endpoint} failed ({type(cause).__name__}: {redact(detail)})"
