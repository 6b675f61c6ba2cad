"""Logging under the ``promptlift`` logger, with every record's text redacted of secrets."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from promptlift.secrets import redact

logger = logging.getLogger("promptlift")


class RedactingFilter(logging.Filter):
    """Formats the message once and scrubs known secrets and key-shaped strings from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


logger.addFilter(RedactingFilter())


def get_logger(name: str) -> logging.Logger:
    child = logging.getLogger(f"promptlift.{name}")
    if not any(isinstance(f, RedactingFilter) for f in child.filters):
        child.addFilter(RedactingFilter())
    return child


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (test runners and apps swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_stderr = _StderrHandler(sys.stderr)
_stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
_stderr.addFilter(RedactingFilter())

# LiteLLM's loggers, and the HTTP stack under it, whose records carry URLs, headers and bodies.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
_HTTP_LOGGERS = ("httpx", "httpcore", "openai", "aiohttp")


def configure_cli_logging(verbosity: int) -> None:
    """For the CLI only: warnings by default, -v info, -vv debug, all to stderr, redacted; stdout is
    the command's output (``--json``). Calling it again replaces what the last call set up."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    if _stderr not in logger.handlers:
        logger.addHandler(_stderr)
    logger.setLevel(level)
    for name in _HTTP_LOGGERS:
        http = logging.getLogger(name)
        http.setLevel(logging.ERROR if verbosity < 2 else logging.DEBUG)
        _adopt(http)
    litellm_logging(debug=verbosity >= 2)


def _adopt(dependency: logging.Logger) -> None:
    """Our redaction on the logger itself, so every handler of its records (ours, an app's root
    handler) sees them redacted; and our stderr handler in place of any LiteLLM put there, which
    writes DEBUG and INFO lines to stdout."""
    if not any(isinstance(f, RedactingFilter) for f in dependency.filters):
        dependency.addFilter(RedactingFilter())
    for handler in list(dependency.handlers):
        if type(handler).__module__.startswith("litellm"):
            dependency.removeHandler(handler)
    if _stderr not in dependency.handlers:
        dependency.addHandler(_stderr)


_litellm_debug = False


def litellm_logging(*, debug: bool | None = None) -> None:
    """Silence LiteLLM's own loggers: every LiteLLM failure becomes one of our errors, retried or
    reported by us, and its ERROR lines (tracebacks, "file a bug" links) say nothing more.

    ``debug=True`` (the CLI's -vv) turns them to DEBUG, and is remembered, so that the provider's
    call when it imports litellm later keeps it; ``LITELLM_LOG`` (``DEBUG``, ``INFO``...) sets their
    level otherwise. Either way their lines go through our redaction to stderr.
    """
    global _litellm_debug
    if debug is not None:
        _litellm_debug = debug
    level = logging.DEBUG if _litellm_debug else _level_named(os.environ.get("LITELLM_LOG"))
    for name in _LITELLM_LOGGERS:
        dependency = logging.getLogger(name)
        dependency.setLevel(level)
        _adopt(dependency)


@contextlib.contextmanager
def litellm_import() -> Iterator[None]:
    """Around ``import litellm``: its loggers silent while it loads. It attaches its own handler
    (DEBUG and INFO to stdout) at import and logs through it before ``litellm_logging`` can take
    over; what it says then (optional modules missing) is no help in debugging a call."""
    for name in _LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        litellm_logging()


def _level_named(name: str | None) -> int:
    level = logging.getLevelName(name.strip().upper()) if name else None
    return level if isinstance(level, int) else logging.CRITICAL


def litellm_prints_off(litellm: Any) -> None:
    """Turn off what LiteLLM prints with ``print()``, past any logging and redaction, to stdout.

    ``litellm.set_verbose = True`` prints request details (headers, bodies) on every call; it is
    honoured as DEBUG on LiteLLM's loggers instead. ``suppress_debug_info`` off prints a "Give
    Feedback" banner on every error. Cheap enough to check before every call, since either may be
    set by the user's code at any time.
    """
    if litellm.set_verbose is True or getattr(litellm._logging, "set_verbose", False) is True:
        litellm.set_verbose = False
        litellm._logging.set_verbose = False
        for name in _LITELLM_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
    litellm.suppress_debug_info = True
