"""Where a call goes: one model's own endpoint, key and parameters (``ModelSpec``), and the
endpoint LiteLLM falls back to when none is given (an environment variable, else the provider's
public host), so the host allow-list can check every way an endpoint can be set.

An endpoint can be set in five places: a request's ``api_base``, a model's ``ModelSpec.api_base``,
``ClientConfig.api_base``, an ``api_base``/``base_url`` inside ``extra``, and the environment
variables LiteLLM reads when none of those is set. ``split_endpoint`` folds the ``extra`` ones into
``api_base`` at construction, so the cache key, the breakers and the allow-list all see one value;
``implicit_endpoint`` names the last.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptlift.errors import ConfigError
from promptlift.providers.credentials import GOOGLE_AUTH, SECRET_PARAMS, ModelKey, check_host
from promptlift.secrets import Secret

# What LiteLLM 1.110.2 reads, in its order, when a call names no api_base (litellm/main.py and
# litellm_core_utils/get_llm_provider_logic.py); ``litellm.api_base`` is read before all of them.
ENV_BASES: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "azure": ("AZURE_API_BASE",),
    "azure_ai": ("AZURE_AI_API_BASE",),
    "anthropic": ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"),
    "gemini": ("GEMINI_API_BASE",),
    "vertex_ai": ("VERTEXAI_API_BASE", "VERTEX_API_BASE"),
    "vertex_ai_beta": ("VERTEXAI_API_BASE", "VERTEX_API_BASE"),
    "hosted_vllm": ("HOSTED_VLLM_API_BASE",),
    "ollama": ("OLLAMA_API_BASE",),
    "ollama_chat": ("OLLAMA_API_BASE",),
    "groq": ("GROQ_API_BASE",),
    "mistral": ("MISTRAL_API_BASE",),
    "deepseek": ("DEEPSEEK_API_BASE",),
    "openrouter": ("OPENROUTER_API_BASE",),
    "together_ai": ("TOGETHER_AI_API_BASE",),
}
# The provider's own host, where LiteLLM sends a call that names no endpoint at all.
DEFAULT_BASES: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1",
    "text-completion-openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "ollama": "http://localhost:11434",
    "ollama_chat": "http://localhost:11434",
}

# ``extra`` entries that are an endpoint (folded into api_base); a secret there is refused
# (``SECRET_PARAMS``: ``extra`` is sent to every model of a chain and printed in the config's repr).
_ENDPOINT_EXTRA = ("api_base", "base_url")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_endpoint(
    api_base: str | None, extra: Mapping[str, Any], where: str
) -> tuple[str | None, dict[str, Any]]:
    """``(api_base, extra without it)``: an ``api_base`` or ``base_url`` in ``extra`` is the endpoint.

    Raises ConfigError for two different endpoints, and for a credential inside ``extra``.
    """
    for name in sorted(SECRET_PARAMS):
        if extra.get(name):  # the message must not quote the value
            raise ConfigError(
                f"{where}: extra `{name}` would be sent to every model it applies to; give the key as "
                "api_key=Secret(...) or api_key_env (per model: ModelSpec, or a mapping under `model:`)"
            )
    given = [(n, extra[n]) for n in _ENDPOINT_EXTRA if extra.get(n)]
    if api_base:
        given.insert(0, ("api_base", api_base))
    found = {str(value).rstrip("/") for _, value in given}
    if len(found) > 1:
        names = " and ".join(
            f"{'extra ' if i or not api_base else ''}`{n}`" for i, (n, _) in enumerate(given)
        )
        raise ConfigError(f"{where}: two different endpoints ({names}); keep one, as api_base")
    rest = {k: v for k, v in extra.items() if k not in _ENDPOINT_EXTRA}
    return (str(given[0][1]) if given else None), rest


@dataclass(frozen=True)
class ModelSpec:
    """One model of a chain with its own endpoint, key and provider parameters.

    ``api_key`` (a Secret) or ``api_key_env`` (the name of an environment variable, read when a call
    is made), not both; neither: the provider's usual variable (``ANTHROPIC_API_KEY``), never the
    key another model was given. ``api_base`` None: ``ClientConfig.api_base``, else LiteLLM's
    default for the route. ``extra`` goes to LiteLLM for this model only, over ``ClientConfig.extra``
    (``{"api_version": "2024-06-01"}`` for Azure); an ``api_base`` or ``base_url`` in it is the
    endpoint. The endpoint and ``extra`` are part of the cache key; the key never is.

    ``replicas``: several endpoints serving this model (``api_base`` given as a list means the
    same); each attempt goes to the least busy one that is up (``client.replicas``). ``api_base``
    is then the first replica: the name the cache key, the breakers and the key's home use.
    """

    model: str
    api_base: str | None = None
    api_key: Secret | None = None
    api_key_env: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    replicas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("a model spec needs a model name, like openai/gpt-4o-mini")
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", Secret(self.api_key))
        if self.api_key and self.api_key_env:
            raise ConfigError(f"{self.model}: give api_key or api_key_env, not both")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            raise ConfigError(  # not quoted: a key pasted here by mistake must not be printed
                f"{self.model}: api_key_env takes the name of an environment variable (like "
                "OPENAI_API_KEY), not a key"
            )
        if not isinstance(self.extra, Mapping):
            raise ConfigError(f"{self.model}: extra must be a mapping of LiteLLM parameters")
        self._fold_replicas()
        api_base, extra = split_endpoint(self.api_base, self.extra, self.model)
        object.__setattr__(self, "api_base", api_base)
        object.__setattr__(self, "extra", extra)

    def _fold_replicas(self) -> None:
        """``api_base`` as a list is ``replicas``; with replicas, ``api_base`` is the first one."""
        given: Any = self.api_base
        replicas: Any = self.replicas
        if isinstance(given, list | tuple):
            if replicas:
                raise ConfigError(f"{self.model}: give the endpoints as replicas or as api_base, not both")
            replicas, given = given, None
        if not isinstance(replicas, list | tuple) or not all(
            isinstance(r, str) and r.strip() for r in replicas
        ):
            raise ConfigError(f"{self.model}: replicas must be a list of endpoint URLs")
        endpoints = tuple(r.rstrip("/") for r in replicas)
        if len(set(endpoints)) < len(endpoints):
            raise ConfigError(f"{self.model}: an endpoint appears twice in its replicas")
        if endpoints and given is not None and str(given).rstrip("/") != endpoints[0]:
            raise ConfigError(f"{self.model}: give the endpoints as replicas or as api_base, not both")
        object.__setattr__(self, "api_base", endpoints[0] if endpoints else given)
        object.__setattr__(self, "replicas", endpoints if len(endpoints) > 1 else ())  # one: a plain api_base

    @classmethod
    def of(cls, model: str | ModelSpec) -> ModelSpec:
        return model if isinstance(model, ModelSpec) else cls(model)


def _route(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else "openai"  # a bare name is LiteLLM's openai


class Chain:
    """A chain's models with their own settings, found by name, and whose key the explicit
    ``api_key`` is: the first model's, at its provider route and endpoint."""

    def __init__(self, models: Sequence[str | ModelSpec], api_base: str | None = None):
        self.specs = tuple(ModelSpec.of(m) for m in models)
        self.api_base = api_base
        self._by_name = {spec.model: (i, spec) for i, spec in reversed(list(enumerate(self.specs)))}
        first = self.specs[0].model if self.specs else None
        self._key_home = (_route(first), self.endpoint(first)) if first else None

    def spec(self, model: str) -> ModelSpec | None:
        found = self._by_name.get(model)
        return found[1] if found else None

    def endpoint(self, model: str) -> str | None:
        """The configured endpoint: the model's own api_base, else the client's."""
        spec = self.spec(model)
        return (spec.api_base if spec else None) or self.api_base

    def own_key(self, model: str) -> tuple[ModelKey | None, bool]:
        """The model's own key, and whether the explicit ``api_key`` may be sent to it (with no
        chain, to every call: the caller names each call's model)."""
        position, spec = self._by_name.get(model, (None, None))
        own = None
        if spec is not None and (spec.api_key or spec.api_key_env):
            field = "api_key" if spec.api_key else "api_key_env"
            own = ModelKey(f"models[{position}].{field}", spec.api_key, spec.api_key_env)
        if self._key_home is None:
            return own, True
        return own, (_route(model), self.endpoint(model)) == self._key_home


def implicit_endpoint(
    provider: str,
    *,
    env: Mapping[str, str] | None = None,
    litellm_api_base: str | None = None,
    vertex_location: str | None = None,
    discover: Callable[[], str | None] | None = None,
) -> tuple[str, str] | None:
    """``(endpoint, where it comes from)`` for a call to ``provider`` that names no api_base, or None
    when it cannot be told. ``discover`` asks LiteLLM itself, for routes not in the tables here."""
    if litellm_api_base:
        return litellm_api_base, "litellm.api_base"
    env = os.environ if env is None else env
    for name in ENV_BASES.get(provider, ()):
        if env.get(name):
            return env[name], f"{name} (environment)"
    if provider in GOOGLE_AUTH:
        return vertex_endpoint(vertex_location, env), "the Vertex AI endpoint"
    if provider in DEFAULT_BASES:
        return DEFAULT_BASES[provider], f"the {provider} default endpoint"
    found = discover() if discover is not None else None
    return (found, f"the {provider} endpoint") if found else None


def check_endpoint(
    provider: str,
    api_base: str | None,
    allowed: tuple[str, ...],
    *,
    litellm_api_base: str | None = None,
    vertex_location: str | None = None,
    discover: Callable[[], str | None] | None = None,
) -> None:
    """Raise ConfigError unless the host a call will reach is ``allowed``: its ``api_base``, else
    the endpoint LiteLLM will take (``implicit_endpoint``); one that cannot be told is refused."""
    if api_base:
        check_host(api_base, allowed)
        return
    found = implicit_endpoint(
        provider, litellm_api_base=litellm_api_base, vertex_location=vertex_location, discover=discover
    )
    if found is None:
        raise ConfigError(
            f"cannot tell which host {provider}/ calls go to, and allowed_hosts is set: give the "
            "model an api_base on an allowed host"
        )
    check_host(found[0], allowed, what=found[1])


def vertex_endpoint(location: str | None, env: Mapping[str, str] | None = None) -> str:
    """The Vertex AI host LiteLLM calls for ``location`` (``VERTEXAI_LOCATION``, else us-central1)."""
    env = os.environ if env is None else env
    where = location or env.get("VERTEXAI_LOCATION") or "us-central1"
    return (
        "https://aiplatform.googleapis.com"
        if where == "global"
        else f"https://{where}-aiplatform.googleapis.com"
    )
