"""The circuit-breaker flags ``batch`` and ``complete`` share, the CLI's side of the YAML
``fallback:`` section and of ``FallbackPolicy``: ``--breaker-threshold N`` consecutive failed calls
pause a model for ``--breaker-cooldown S`` seconds (``--breaker-threshold 0``: no breaker), and
``--no-wait-for-probe`` makes a call that finds every model of its chain paused fail at once
instead of waiting for the breaker's probe."""

from __future__ import annotations

import argparse

from promptlift.cli.validators import non_negative_float, non_negative_int
from promptlift.client.fallback import FallbackPolicy

_DEFAULT = FallbackPolicy()


def add_breaker_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--breaker-threshold",
        type=non_negative_int,
        default=_DEFAULT.failure_threshold,
        metavar="N",
        help="consecutive failed calls that pause a model "
        f"(default {_DEFAULT.failure_threshold}; 0: never pause)",
    )
    parser.add_argument(
        "--breaker-cooldown",
        type=non_negative_float,
        default=_DEFAULT.cooldown,
        metavar="SECONDS",
        help=f"how long a paused model is skipped before one probe call (default {_DEFAULT.cooldown:g})",
    )
    parser.add_argument(
        "--no-wait-for-probe",
        dest="wait_for_probe",
        action="store_false",
        help="when every model is paused, fail the call at once instead of waiting for the probe",
    )


def fallback_policy(args: argparse.Namespace) -> FallbackPolicy:
    return FallbackPolicy(
        failure_threshold=args.breaker_threshold,
        cooldown=args.breaker_cooldown,
        wait_for_probe=args.wait_for_probe,
    )
