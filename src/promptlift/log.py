"""Logging under the ``promptlift`` logger, with every record's text redacted of secrets."""

from __future__ import annotations

import logging
import os

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


def configure_cli_logging(verbosity: int) -> None:
    """For the CLI only: warnings by default, -v info, -vv debug; third-party loggers quiet."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.ERROR if verbosity < 2 else logging.DEBUG)
    litellm_logging(debug=verbosity >= 2)


_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
_litellm_debug = False


def litellm_logging(*, debug: bool | None = None) -> None:
    """Silence LiteLLM's own loggers: every LiteLLM failure becomes one of our errors, retried or
    reported by us, and its ERROR lines (tracebacks, "file a bug" links) bypass our redaction.

    ``debug=True`` (the CLI's -vv) turns them to DEBUG, and is remembered, so that the provider's
    call when it imports litellm later keeps it; with ``LITELLM_LOG`` set they are left as LiteLLM
    set them.
    """
    global _litellm_debug
    if debug is not None:
        _litellm_debug = debug
    if not _litellm_debug and "LITELLM_LOG" in os.environ:
        return
    for name in _LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if _litellm_debug else logging.CRITICAL)
