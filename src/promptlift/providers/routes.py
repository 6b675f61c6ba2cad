"""Whether a model name routes anywhere, told before any call and without importing LiteLLM.

A name is ``provider/model`` (``openai/gpt-4o-mini``), ``local/NAME`` for the embedded models, or
a bare name LiteLLM knows from its model map (``gpt-4o-mini``). The providers are every one LiteLLM's
bundled ``provider_endpoints_support_backup.json`` lists (its per-endpoint flags are not complete
enough to trust: hosted_vllm and openrouter show no chat endpoint), read as a file like the price map
(``pricing``), so a plan (``--dry-run``) stays fast.
LiteLLM remains the judge at call time; this catches the typo before a run starts and pays for
the calls in front of it.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

from promptlift import pricing
from promptlift.errors import LocalModelError
from promptlift.providers import local as local_models

SUPPORT_FILE = "provider_endpoints_support_backup.json"
# Routes LiteLLM serves that its support file may not list (text-completion-openai is openai's).
_ALWAYS = frozenset({local_models.PROVIDER, "openai", "text-completion-openai", "azure", "anthropic"})
_SUGGESTED = "openai/, azure/, anthropic/, gemini/, vertex_ai/, hosted_vllm/ or local/gemma-3-270m"

_routes: frozenset[str] | None = None
_lock = threading.Lock()


def _known_routes() -> frozenset[str]:
    """LiteLLM's providers; empty when the file cannot be read (then no route is refused here:
    LiteLLM decides at call time)."""
    global _routes
    if _routes is None:
        with _lock:
            if _routes is None:
                found: set[str] = set()
                spec = importlib.util.find_spec("litellm")
                for folder in (spec.submodule_search_locations or []) if spec else []:
                    path = Path(folder) / SUPPORT_FILE
                    if path.is_file():
                        table = json.loads(path.read_text(encoding="utf-8")).get("providers", {})
                        found = set(table)
                        break
                _routes = frozenset(found | _ALWAYS) if found else frozenset()
    return _routes


def route_problem(model: str) -> str | None:
    """Why ``model`` cannot be called (one line, naming the fix), or None when it looks routable."""
    route, slash, name = model.partition("/")
    if route == local_models.PROVIDER and slash:
        try:
            local_models.spec_for(name)
        except LocalModelError as exc:
            return str(exc)
        return None
    known = _known_routes()
    if not known:
        return None
    if not slash:
        if pricing.map_field(model, "litellm_provider") is not None:
            return None  # a bare name LiteLLM knows (gpt-4o-mini → openai)
        return (
            f"model {model!r} names no provider and is not one LiteLLM knows: write it as "
            f"provider/name, e.g. openai/{model} or hosted_vllm/{model} ({_SUGGESTED})"
        )
    if route not in known:
        return (
            f"model {model!r}: {route!r} is not a provider LiteLLM knows; use one of "
            f"{_SUGGESTED} (every provider: https://docs.litellm.ai/docs/providers)"
        )
    if not name:
        return f"model {model!r} names a provider but no model: write {route}/MODEL_NAME"
    return None
