"""``promptlift models``: the embedded models and what they need."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("models", help="list the embedded local models")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptlift.providers.local import LOCAL_MODELS

    for name, spec in LOCAL_MODELS.items():
        print(f"local/{name}\tcontext {spec.context_window} tokens\tcost 0\t{spec.description}")
    return 0
