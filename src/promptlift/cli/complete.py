"""``promptlift complete``: one call, printed as text or as a normalized JSON completion.

Repeated ``--model`` is a fallback chain, tried in order; a ``--model`` may be a mapping with its
own endpoint, key variable and extra (``cli.endpoints``). ``--api-base URL`` applies to every model,
``--api-base MODEL=URL`` to one; ``--allow-host`` limits where calls may go.
``--max-retries N`` allows N retries, so N+1 attempts on each model before the next is tried;
``--breaker-threshold``, ``--breaker-cooldown`` and ``--no-wait-for-probe`` set the chain's
circuit breakers (``cli.breaker``).
``--stream`` prints the answer's text as it arrives, then one summary line on stderr (model,
tokens, cost, seconds, tool calls); it is refused with ``--json``, whose one document needs the whole
answer.
Exit codes: 0 answered, 1 the call failed, 2 a usage or configuration error; a failure prints one
line naming the error type.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from promptlift.cli.endpoints import add_allow_host, add_chain_flags, allowed_hosts, chain_from_flags
from promptlift.cli.validators import non_negative_int, positive_float, positive_int, temperature
from promptlift.jsonout import dumps

if TYPE_CHECKING:
    from promptlift.client import Client
    from promptlift.types import Completion


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("complete", help="send one prompt to a model (a fallback chain with repeated --model)")
    p.add_argument("prompt", help="the user message")
    add_chain_flags(p)
    p.add_argument("--system", help="a system message")
    p.add_argument("--temperature", type=temperature)
    p.add_argument("--max-tokens", type=positive_int)
    p.add_argument("--timeout", type=positive_float, default=120.0, help="seconds per attempt")
    p.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=2,
        help="retries per model before falling back (default 2: 3 attempts)",
    )
    p.add_argument("--json", action="store_true", help="print the normalized completion as JSON")
    p.add_argument(
        "--stream",
        action="store_true",
        help="print the text as it arrives, then a summary line on stderr (not with --json)",
    )

    add_allow_host(p)
    from promptlift.cli.breaker import add_breaker_flags

    add_breaker_flags(p)
    p.set_defaults(run=run)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


def run(args: argparse.Namespace) -> int:
    from promptlift.cli.breaker import fallback_policy
    from promptlift.client import Client, ClientConfig
    from promptlift.client.retry import RetryPolicy
    from promptlift.errors import PromptliftError, UserError

    if args.stream and args.json:
        print(
            "promptlift: error: --stream prints text as it arrives; --json prints one whole answer",
            file=sys.stderr,
        )
        return 2
    try:
        models, api_base = chain_from_flags(args)
        config = ClientConfig(
            models=models,
            api_base=api_base,
            allowed_hosts=allowed_hosts(args),
            timeout=args.timeout,
            retry=RetryPolicy.with_max_retries(args.max_retries),
            fallback=fallback_policy(args),
        )
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
        with Client(config) as client:
            client.preflight()  # an unknown provider or a missing key: one line, exit 2, nothing sent
            if args.stream:
                return _stream(client, messages, args)
            completion = client.complete(messages, temperature=args.temperature, max_tokens=args.max_tokens)
    except PromptliftError as exc:
        print(f"promptlift: error: {_one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    if args.json:
        print(dumps(completion.to_dict()))
    else:
        print(completion.content)
    return 0


def _stream(client: Client, messages: list[dict[str, str]], args: argparse.Namespace) -> int:
    """Each text delta written and flushed as it comes; the summary on stderr at the end. A failure
    after some text ends its line first, so the error is a line of its own."""
    from promptlift.errors import PromptliftError
    from promptlift.types import Completion, TextDelta

    completion: Completion | None = None
    printed = False
    try:
        for event in client.stream(messages, temperature=args.temperature, max_tokens=args.max_tokens):
            if isinstance(event, TextDelta):
                sys.stdout.write(event.text)
                sys.stdout.flush()
                printed = True
            elif isinstance(event, Completion):
                completion = event
    except PromptliftError as exc:
        if printed:
            print()
        print(f"promptlift: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print()
    if completion is not None:
        print(f"promptlift: {summary(completion)}", file=sys.stderr)
    return 0


def summary(c: Completion) -> str:
    """One line on a finished call: who answered, tokens, cost, time (and tool calls, retries)."""
    u = c.usage
    tokens = f"{u.input_tokens} in / {u.output_tokens} out tokens" + ("" if u.reported else " (unreported)")
    parts = [c.model, tokens, f"${c.cost_usd:.6f}", f"{c.latency_s:.2f} s", f"finish {c.finish_reason}"]
    if c.tool_calls:
        parts.append(f"{len(c.tool_calls)} tool call(s): {', '.join(t.name for t in c.tool_calls)}")
    if c.attempts > 1:
        parts.append(f"{c.attempts} attempts")
    if c.cached:
        parts.append("cached")
    return " · ".join(parts)
