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
    # LiteLLM's failures all become ours, reported by us (providers/litellm.py silences its loggers
    # too); -vv or LITELLM_LOG brings its own lines back for debugging a provider.
    quiet = verbosity < 2 and "LITELLM_LOG" not in os.environ
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL if quiet else logging.DEBUG)
