"""``promptlift models``: the embedded models, and ``models compare``: one prompt across models.

    promptlift models compare CONFIG --model local/gemma-3-270m --model openai/small \\
        --api-base openai/small=http://127.0.0.1:8000/v1 --price openai/small=0.15,0.6 --target 0.8

``--api-base MODEL=URL`` is one model's endpoint (split at the first ``=``, so a URL may carry a
query); ``--price MODEL=IN,OUT`` is USD per million input and output tokens, for models the price
map lacks. Either naming a model that is not compared is an error: it would silently do nothing,
and the model would be sent to its public endpoint. ``--run RUN_ID`` compares the best prompt of a
finished run instead of the config's; ``--allow-host`` limits where calls may go.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from promptlift.cli.validators import fraction, price_pair
from promptlift.jsonout import dumps


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "models", help="list the embedded models; `models compare` scores a prompt across models"
    )
    p.set_defaults(run=run)
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    c = msub.add_parser("compare", help="score a config's prompt with each model: score, $/1k rows, latency")
    c.add_argument("config", help="the run's YAML config (prompt, dataset, metric)")
    c.add_argument(
        "--model", action="append", default=[], help="a candidate model (repeat); default: the config's"
    )
    c.add_argument(
        "--api-base", action="append", default=[], metavar="MODEL=URL", help="endpoint of one model"
    )
    c.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="MODEL=IN,OUT",
        help="USD per 1M input and output tokens; cache and reasoning tokens at these rates "
        "(for their own rates, a mapping in the config's prices:)",
    )
    c.add_argument("--target", type=fraction, help="report the cheapest model scoring at least this (0 to 1)")
    c.add_argument("--rows", default="test", choices=("test", "validation", "all"), help="rows to score")
    c.add_argument(
        "--run",
        dest="run_id",
        metavar="RUN_ID",
        help="compare the best prompt of this run (in the config's store)",
    )
    c.add_argument("--json", action="store_true")
    from promptlift.cli.endpoints import add_allow_host

    add_allow_host(c)
    c.set_defaults(run=run_compare)


def run(args: argparse.Namespace) -> int:
    from promptlift.providers.local import LOCAL_MODELS

    for name, spec in LOCAL_MODELS.items():
        print(f"local/{name}\tcontext {spec.context_window} tokens\tcost 0\t{spec.description}")
    return 0


def _pairs(items: list[str], what: str, models: list[str]) -> dict[str, str]:
    """``MODEL=VALUE`` flags by model; every model named must be one of ``models``."""
    from promptlift.cli.endpoints import check_models, model_and_value
    from promptlift.errors import ConfigError

    out = {}
    for item in items:
        model, value = model_and_value(item, what)
        if model is None:
            raise ConfigError(
                f"{what} takes MODEL=VALUE (the endpoint of one model), got the URL {item!r} alone"
            )
        check_models([model], models, what)
        out[model] = value
    return out


def run_compare(args: argparse.Namespace) -> int:
    from promptlift.cli.endpoints import allowed_hosts
    from promptlift.client.config import ModelPrice
    from promptlift.errors import ConfigError
    from promptlift.optimize.config import load_config
    from promptlift.optimize.models import ModelCandidate, compare_models
    from promptlift.optimize.program import from_dict as optimizable_from_dict
    from promptlift.providers.credentials import check_host

    config = load_config(args.config)
    models = args.model or list(config.models)
    hosts = allowed_hosts(args, config.allowed_hosts)
    config = replace(config, allowed_hosts=hosts)
    bases = _pairs(args.api_base, "--api-base", models)
    for model, url in bases.items():  # before any model is scored: none of its calls is wasted
        check_host(url, hosts, what=f"the --api-base of {model}")
    prices: dict[str, ModelPrice] = {}
    for model, value in _pairs(args.price, "--price", models).items():
        try:
            prices[model] = ModelPrice(*price_pair(value))
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"--price {model}=IN,OUT {exc}") from None
    candidates = [ModelCandidate(m, bases.get(m), prices.get(m)) for m in models]
    prompt = None
    if args.run_id:
        from promptlift.optimize.store import RunStore

        if config.store is None:
            raise ConfigError("--run needs a config with a `store:`")
        store = RunStore(config.store)
        try:
            result = store.run(args.run_id)["result"] or {}
        finally:
            store.close()
        if "best_prompt" not in result:
            raise ConfigError(f"run {args.run_id!r} has no result yet")
        prompt = optimizable_from_dict(result["best_prompt"], base_dir=config.path.parent)
    report = compare_models(config, candidates, target=args.target, prompt=prompt, rows=args.rows)
    print(dumps(report.to_dict()) if args.json else report.render())
    return 0
