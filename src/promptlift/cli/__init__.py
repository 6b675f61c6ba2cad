"""The ``promptlift`` command. ``main(argv) -> int``; one module per command group.

Each command module has ``register(subparsers)`` and keeps its imports light at module level, so
``promptlift --help`` never imports litellm (a 3 s import).
Exit codes: 0 ok, 1 a model call or run failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from promptlift import __version__
from promptlift.errors import PromptliftError, UserError

COMMAND_MODULES = ("complete", "batch", "optimize", "runs", "report", "models", "cache")


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


def main(argv: Sequence[str] | None = None) -> int:
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
    sys.exit(main())
