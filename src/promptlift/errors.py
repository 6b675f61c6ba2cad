"""Every exception promptlift raises, in one module.

The tree is shallow on purpose: catch ``PromptliftError`` for everything, ``UserError`` for
mistakes the caller can fix before running again, ``ProviderError`` for what went wrong at
call time.

    PromptliftError
    ├── UserError                      the input is wrong; fix it and run again
    │   ├── ConfigError                a malformed config, an unknown model, a missing key
    │   │   ├── HostNotAllowed         a call for a host not in allowed_hosts (nothing sent)
    │   │   └── LocalModelError        embedded model: runtime missing, weights corrupt, unknown name
    │   ├── DatasetError               empty file, ragged row, missing field
    │   ├── TemplateError              placeholder not in the dataset, bad braces
    │   └── ClientClosed               a Client (or its cache) used after close()
    ├── BudgetExceeded                 the call was not sent: it would cross a limit
    ├── SharedStateUnavailable         the Redis holding shared state is unreachable
    ├── NotSent                        a batch item never sent: the batch was stopped first
    └── ProviderError                  a call failed (provider, model, status, retry_after)
        ├── RateLimited                429                                      retryable
        ├── Timeout                    408 or no answer in time                 retryable
        ├── ConnectionFailed           refused, reset or dropped                retryable
        ├── ProviderUnavailable        5xx                                      retryable
        ├── BatchExpired               a Batch API job ended before this line   retryable
        ├── AuthenticationFailed       401
        ├── PermissionDenied           403
        ├── ModelNotFound              404, or a model the provider does not know
        └── BadRequest                 400 that no retry can fix
            ├── ContextWindowExceeded  the prompt does not fit the model
            └── ContentFiltered        refused by the provider's content policy

Messages never contain credentials: the provider layer redacts them before raising.
"""

from __future__ import annotations

from typing import Any


class PromptliftError(Exception):
    """Base class of every promptlift error."""


class UserError(PromptliftError):
    """The input is wrong: the message names the problem and the fix."""


class ConfigError(UserError):
    """A malformed config, an unknown model, a missing credential, a disallowed host."""


class HostNotAllowed(ConfigError):
    """A request for a host that is not in ``allowed_hosts``: refused before anything is sent."""

    def __init__(self, message: str, host: str = ""):
        super().__init__(message)
        self.host = host


class DatasetError(UserError):
    """A dataset that cannot be used as given."""


class TemplateError(UserError):
    """A prompt template that does not fit its dataset or has malformed braces."""


class LocalModelError(ConfigError):
    """The embedded model cannot run: runtime not installed, weights corrupt, unknown model."""


class ClientClosed(UserError):
    """A ``Client`` (or the response cache it held) was used after ``close()``: make a new client."""


class BudgetExceeded(PromptliftError):
    """A call was not sent because it could cross a cost, token or call limit."""

    def __init__(self, message: str, *, limit: str = "", spent: float = 0.0, cap: float = 0.0):
        super().__init__(message)
        self.limit = limit
        self.spent = spent
        self.cap = cap


class SharedStateUnavailable(PromptliftError):
    """The Redis server holding shared state (a shared rate limit) cannot be reached.

    Raised before a call is sent, when sending it could break a limit other processes share (the
    default, fail closed); never for the response cache, which degrades to memory instead.
    """


class NotSent(PromptliftError):
    """A batch item that was never sent: the batch was stopped before its turn (``abatch(stop=...)``)."""


class ProviderError(PromptliftError):
    """A model call failed. ``retryable`` says whether the same call may succeed later.

    ``attempts`` is how many requests were sent for this call on this model (set by the retry
    wrapper; 1 when nothing retried it). ``requests`` is how many the provider itself sent for the
    one attempt that raised this (2 when it retried a 401 with a refreshed credential); set only by
    the provider, so an error object raised again (a test double's) is never counted twice.
    """

    retryable: bool = False
    attempts: int = 1
    requests: int = 1

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = self.model if self.model.startswith(self.provider + "/") else f"{self.provider}/{self.model}"
        where = where.strip("/")
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{type(self).__name__}{status}{' from ' + where if where else ''}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:  # keep keyword fields across pickling (multiprocessing, copy)
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[ProviderError], message: str, state: dict[str, object]) -> ProviderError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class RateLimited(ProviderError):
    retryable = True


class Timeout(ProviderError):
    retryable = True


class ConnectionFailed(ProviderError):
    retryable = True


class ProviderUnavailable(ProviderError):
    retryable = True


class BatchExpired(ProviderError):
    """A line of a provider Batch API job that the provider did not answer before the job's
    completion window closed (24 h): never run, not billed. Sending it again (a new job, or a live
    call) may succeed."""

    retryable = True


class AuthenticationFailed(ProviderError):
    pass


class PermissionDenied(ProviderError):
    pass


class ModelNotFound(ProviderError):
    pass


class BadRequest(ProviderError):
    pass


class ContextWindowExceeded(BadRequest):
    pass


class ContentFiltered(BadRequest):
    pass
