"""``promptlift complete``: one call, printed as text or as a normalized JSON completion."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("complete", help="send one prompt to a model (a fallback chain with repeated --model)")
    p.add_argument("prompt", help="the user message")
    p.add_argument("--model", action="append", default=[], help="model; repeat for a fallback chain")
    p.add_argument("--api-base", help="endpoint for every model given")
    p.add_argument("--system", help="a system message")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per attempt")
    p.add_argument("--json", action="store_true", help="print the normalized completion as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptlift.client import Client, ClientConfig

    config = ClientConfig(models=tuple(args.model), api_base=args.api_base, timeout=args.timeout)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}
    ]
    with Client(config) as client:
        completion = client.complete(messages, temperature=args.temperature, max_tokens=args.max_tokens)
    if args.json:
        print(json.dumps(completion.to_dict()))
    else:
        print(completion.content)
    return 0
