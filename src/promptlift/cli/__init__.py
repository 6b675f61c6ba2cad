"""The ``promptlift`` command. ``main(argv) -> int``; one module per command group.

Each command module has ``register(subparsers)`` and keeps its imports light at module level, so
``promptlift --help`` never imports litellm (a 3 s import).
Exit codes: 0 ok, 1 a model call or run failed, 2 usage or configuration error, 130 interrupted,
141 stdout closed early (``| head``): quietly, as a tool killed by SIGPIPE, so ``set -o pipefail``
sees what it sees from ``cat``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from promptlift import __version__
from promptlift.errors import PromptliftError, UserError

COMMAND_MODULES = ("complete", "batch", "optimize", "runs", "report", "status", "models", "cache")


def build_parser() -> argparse.ArgumentParser:
    from promptlift.cli.validators import OneLineParser

    parser = OneLineParser(
        prog="promptlift",
        description="Find better prompts: evaluate candidates, propose better ones, measure them.",
    )
    parser.add_argument("--version", action="version", version=f"promptlift {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"promptlift.cli.{name}").register(sub)
    return parser


STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a tool the closed pipe ended


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader (head, less) went away: no traceback, nothing more to say
        return _stdout_closed()


def _stdout_closed() -> int:
    """Point stdout at /dev/null, so the interpreter's last flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stdout without a file (captured in a test)
        pass
    return STDOUT_CLOSED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from promptlift.log import configure_cli_logging

    configure_cli_logging(args.verbose)
    try:
        return int(args.run(args))
    except UserError as exc:
        print(f"promptlift: error: {exc}", file=sys.stderr)
        return 2
    except PromptliftError as exc:
        print(f"promptlift: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("promptlift: interrupted", file=sys.stderr)
        return 130


def entrypoint() -> None:
    code = main()
    try:
        sys.stdout.flush()  # what is still buffered goes now, while a closed pipe can be handled
    except BrokenPipeError:
        code = _stdout_closed()
    sys.exit(code)
