"""The flags that say where calls go, shared by the commands that make them.

    --model NAME | --model '{model: azure/dep, api_base: URL, api_key_env: AZ_KEY, extra: {...}}'
    --api-base URL          every model's endpoint
    --api-base MODEL=URL    one model's endpoint (split at the first ``=``: a URL may hold more)
    --allow-host HOST       the only hosts calls may go to (repeat; ``.example.com`` for subdomains)

A ``--model`` mapping takes the keys of a config's ``model:`` mapping; a key itself is never a
flag (it would show in ``ps`` and shell history): name its environment variable with api_key_env.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from promptlift.errors import ConfigError

if TYPE_CHECKING:  # the parser is built on every start: it must not import the client
    from promptlift.client.config import ModelSpec

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def add_allow_host(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="the only hosts calls may go to (repeat; .example.com allows its subdomains); "
        "over the config's allowed_hosts",
    )


def add_chain_flags(parser: argparse.ArgumentParser) -> None:
    """``--model`` (repeat: a fallback chain; a name or a mapping) and ``--api-base [MODEL=]URL``."""
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="model, or a mapping '{model: M, api_base: URL, api_key_env: VAR, extra: {...}}'; "
        "repeat for a fallback chain",
    )
    parser.add_argument(
        "--api-base",
        action="append",
        default=[],
        metavar="[MODEL=]URL",
        help="endpoint of every model, or of one (MODEL=URL; repeat)",
    )


def chain_from_flags(args: argparse.Namespace) -> tuple[tuple[str | ModelSpec, ...], str | None]:
    """``(the chain, each model with its own endpoint, the endpoint of every other model)``."""
    return with_api_bases([model_value(m) for m in args.model], args.api_base)


def allowed_hosts(
    args: argparse.Namespace, configured: tuple[str, ...] | None = None
) -> tuple[str, ...] | None:
    """The flag's hosts, else the config's (None: any host)."""
    given = tuple(h.strip() for h in getattr(args, "allow_host", None) or () if h.strip())
    return given or configured


def model_value(text: str) -> str | ModelSpec:
    """``--model``: a name, or a YAML mapping like a config's ``model:`` entry."""
    if not text.lstrip().startswith("{"):
        return text
    import yaml

    from promptlift.optimize.config import model_spec

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(
            "--model takes a name or a mapping like '{model: openai/x, api_base: URL, api_key_env: MY_KEY}'"
        )
    return model_spec(value, "--model")


def model_and_value(item: str, flag: str) -> tuple[str | None, str]:
    """``MODEL=VALUE`` split at the first ``=`` (a URL's query may hold more); a URL alone: None, URL."""
    if _URL.match(item):
        return None, item
    model, sep, value = item.partition("=")
    if not sep:  # not quoted: a key pasted into the wrong flag must not be printed
        from promptlift.providers.credentials import endpoint_problem

        problem = endpoint_problem(item) or "it is not a URL"
        raise ConfigError(
            f"{flag} is not an http(s) URL ({problem}): give URL or MODEL=URL, e.g. http://localhost:8000/v1"
        )
    if not model.strip() or not value.strip():
        raise ConfigError(f"{flag} takes MODEL=VALUE, got {item!r}")
    return model.strip(), value.strip()


def check_models(given: Sequence[str], known: Sequence[str], flag: str) -> None:
    """A flag naming a model that is not in the run would silently do nothing: refuse it."""
    for model in given:
        if model not in known:
            raise ConfigError(
                f"{flag} names {model!r}, which is not a model of this run ({', '.join(known)}); "
                "fix the name, or add the model"
            )


def with_api_bases(
    models: Sequence[str | ModelSpec], items: Sequence[str]
) -> tuple[tuple[str | ModelSpec, ...], str | None]:
    """``(models with their own endpoints, the endpoint of every other model)`` from ``--api-base``."""
    from promptlift.client.config import ModelSpec

    chain = list(models)
    names = [m.model if isinstance(m, ModelSpec) else m for m in chain]
    every: str | None = None
    for item in items:
        model, url = model_and_value(item, "--api-base")
        if model is None:
            if every is not None and every != url:
                raise ConfigError("--api-base URL (for every model) is given twice; give it once")
            every = url
            continue
        check_models([model], names, "--api-base")
        i = names.index(model)
        current = chain[i]
        chain[i] = replace(current, api_base=url) if isinstance(current, ModelSpec) else ModelSpec(model, url)
    return tuple(chain), every
