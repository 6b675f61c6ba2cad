"""docs/configuration.md against the config loader and the CLI, both ways: every key the loader
takes and every flag a command takes is documented, and no documented key or flag is unknown."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from promptlift.cli import build_parser
from promptlift.optimize import config as loader
from promptlift.optimize.metrics import METRICS
from promptlift.optimize.optimizers import OPTIMIZERS
from promptlift.optimize.prompt import PARAMS

DOC = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")


def documented() -> dict[str, set[str]]:
    """Each ``## `section` `` heading's table keys (the first column's code spans)."""
    out: dict[str, set[str]] = {}
    for section in re.split(r"^## ", DOC, flags=re.M)[1:]:
        title = re.match(r"`(.+?)`|CLI: `(.+?)`", section)
        assert title, section[:60]
        name = title.group(1) or f"CLI {title.group(2)}"
        out[name] = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
    return out


def loader_keys() -> dict[str, set[str]]:
    """What the loader takes, section by section (the names the page uses)."""
    keys: dict[str, set[str]] = {
        "(top level)": set(loader.TOP_KEYS),
        "model": set(loader.MODEL_KEYS),
        "prompt": set(loader.PROMPT.keys),
        "prompt.params": set(PARAMS.keys),
        "prompt.demos[]": set(loader.DEMO.keys),
        "prompt.turns[]": set(loader.TURN.keys),
        "prompt.tools[]": set(loader.TOOL.keys),
        "dataset": set(loader.DATASET.keys),
        "dataset.split": set(loader.SPLIT.keys),
        "optimizer": set(loader.OPTIMIZER.keys),
        "budget": set(loader.BUDGET.keys),
        "acceptance": set(loader.ACCEPTANCE.keys),
        "retry": set(loader.RETRY_KEYS),
        "rate_limits[]": set(loader.RATE_KEYS),
        "prices.MODEL": set(loader.PRICE.keys),
        "fallback": set(loader.FALLBACK.keys),
        "tracing": set(loader.TRACING.keys),
        "provider_batch": set(loader.PROVIDER_BATCH.keys),
    }
    for name, schema in METRICS.items():
        keys[f"metric: {name}"] = set(schema.keys)
    for name, cls in OPTIMIZERS.items():
        keys[f"optimizer: {name}"] = {f.name for f in dataclasses.fields(cls) if f.init}
    return keys


def cli_flags() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    flags = {o for a in sub._actions for o in a.option_strings if o.startswith("--")} - {
                        "--help"
                    }
                    if flags:
                        out[f"CLI promptlift {prefix}{name}"] = flags
                    walk(sub, f"{prefix}{name} ")

    walk(build_parser(), "")
    return out


@pytest.mark.parametrize("source", ["loader", "cli"])
def test_the_reference_documents_every_key_and_flag_and_nothing_else(source: str) -> None:
    want = loader_keys() if source == "loader" else cli_flags()
    have = documented()
    for section, keys in want.items():
        assert section in have, f"docs/configuration.md has no section `{section}`"
        missing, unknown = keys - have[section], have[section] - keys
        assert not missing, f"`{section}`: undocumented {sorted(missing)}"
        assert not unknown, f"`{section}`: documented but unknown to promptlift {sorted(unknown)}"
    names = set(want)
    others = {s for s in have if (s.startswith("CLI ") == (source == "cli"))} - names
    assert not others, f"sections for nothing promptlift has: {sorted(others)}"
