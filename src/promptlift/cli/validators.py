"""Argument types shared by every command: each refuses a value that would mean nothing (``--max-tokens
0``, ``--timeout -1``, ``--temperature nan``) with a message naming what the flag takes, so argparse
reports it as one line with exit code 2 before anything runs."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def whole(minimum: int) -> Callable[[str], int]:
    """A whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {minimum}, got {text!r}")
        return value

    parse.__name__ = f"whole number of at least {minimum}"
    return parse


def number(low: float, high: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite number from ``low`` (more than ``low`` with ``above``) to ``high``."""
    if high is not None:
        must = f"a number from {low:g} to {high:g}"
    else:
        must = f"a number above {low:g}" if above else f"a number of at least {low:g}"

    def parse(text: str) -> float:
        value = _number(text)
        if value < low or (above and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {must}, got {text!r}")
        return value

    parse.__name__ = must
    return parse


positive_int = whole(1)
non_negative_int = whole(0)
positive_float = number(0.0, above=True)
non_negative_float = number(0.0)
temperature = number(0.0, 2.0)
fraction = number(0.0, 1.0)
significance = number(0.0, 0.5, above=True)  # a test's alpha: (0, 0.5]


def price_pair(text: str) -> tuple[float, float]:
    """``IN,OUT`` (or one number for both): USD per million tokens, never negative."""
    parts = text.split(",")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"takes IN,OUT USD per 1M tokens, got {text!r}")
    try:
        values = [non_negative_float(p.strip()) for p in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"takes IN,OUT: two numbers of at least 0 (USD per 1M tokens), got {text!r}"
        ) from None
    return values[0], values[-1]


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr (what is wrong and where to read more), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
