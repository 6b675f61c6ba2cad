"""Where a call's credential comes from: an explicit key, the provider's usual environment
variable, or a credential-provider callback for short-lived tokens (Azure AD and the like).

Keys are held as ``Secret`` values (they print as ``***`` and are scrubbed by ``redact``). They are
read when a call is made, not when a client is built, so a key exported later is picked up.

The callback is asked for a key on the first call and again — once — after an authentication
failure; the call is then retried once with the fresh key, and a second failure is final. The
refresh is shared: concurrent calls that fail together cause one refresh, not one each.

Google Vertex AI (``vertex_ai/``) takes no API key: it signs in with a Google credential
(``VertexConfig``), and google-auth, under LiteLLM, exchanges it for an access token and renews it.
Neither ``api_key`` nor the callback applies there.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from promptlift.errors import AuthenticationFailed, ConfigError, HostNotAllowed, ProviderError
from promptlift.log import get_logger
from promptlift.secrets import Secret, redact

if TYPE_CHECKING:
    from promptlift.types import Completion

log = get_logger("providers")

# The environment variables LiteLLM's routes read, first one found wins.
ENV_KEYS: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "text-completion-openai": ("OPENAI_API_KEY",),
    "azure": ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
    "azure_ai": ("AZURE_AI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "hosted_vllm": ("HOSTED_VLLM_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
    "openrouter": ("OPENROUTER_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
}
# Where each provider's environment key belongs: host names, or a leading-dot suffix. Such a key is
# sent to those hosts, to your own machine or network (a private address), and to an endpoint that
# came from the environment too (LiteLLM's own reading, when no api_base is configured); a
# configured api_base anywhere else gets it only when the model names it (api_key, api_key_env).
# A route with no entry (hosted_vllm: always a server of your own) sends its variable anywhere.
HOME_HOSTS: Mapping[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "text-completion-openai": ("api.openai.com",),
    "azure": (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"),
    "azure_ai": (".models.ai.azure.com", ".services.ai.azure.com", ".inference.ai.azure.com"),
    "anthropic": ("api.anthropic.com",),
    "gemini": ("generativelanguage.googleapis.com",),
    "groq": ("api.groq.com",),
    "mistral": ("api.mistral.ai",),
    "together_ai": ("api.together.xyz", "api.together.ai"),
    "openrouter": ("openrouter.ai",),
    "deepseek": ("api.deepseek.com",),
}

# Routes that need no key: local engines, servers on your own network, Google's own auth.
KEYLESS = frozenset(
    {"local", "ollama", "ollama_chat", "hosted_vllm", "vertex_ai", "vertex_ai_beta", "lm_studio"}
)

# Routes that sign in with a Google credential: LiteLLM ignores an API key on them.
GOOGLE_AUTH = frozenset({"vertex_ai", "vertex_ai_beta"})

KeySource = Callable[[str], "str | Secret | Awaitable[str | Secret]"]
"""A credential provider: called with the provider name (``azure``), returns a fresh key or token."""


# The credential parameters LiteLLM 1.110.2 accepts (``CredentialLiteLLMParams`` in
# ``litellm/types/router.py``, plus the Azure token callback): they choose who pays, never what the
# model answers, so they stay out of the key. Named one by one, not by a substring such as "token":
# ``max_completion_tokens`` or ``thinking.budget_tokens`` change the answer and must key it.
# The cache key leaves them all out; ``SECRET_PARAMS``, the ones that are a secret themselves, are
# also refused in a client's or a model's ``extra`` (sent to every model, shown in reprs).
SECRET_PARAMS = frozenset(
    {
        "api_key",
        "azure_ad_token",
        "azure_ad_token_provider",
        "azure_password",
        "client_secret",
        "vertex_credentials",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_web_identity_token",
    }
)
CREDENTIAL_PARAMS = SECRET_PARAMS | {
    "azure_username",
    "client_id",
    "tenant_id",
    "aws_session_name",
    "aws_profile_name",
    "aws_role_name",
    "aws_external_id",
    "litellm_credential_name",
}
# Headers that carry a credential, inside ``extra_headers`` / ``headers`` (compared lower-case).
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie"}
)


@dataclass(frozen=True)
class ResolvedKey:
    """A key for one call, and where it came from in words an error message may carry: the
    variable or config key that supplies it (``OPENAI_API_KEY (environment)``), never its value."""

    secret: Secret | None
    source: str
    from_source: bool = False  # from the credential-provider callback: refreshed after a 401


@dataclass(frozen=True)
class ModelKey:
    """One model's own key: a Secret, or the name of an environment variable read at call time.
    ``label`` is the config key that gave it (``models[1].api_key_env``)."""

    label: str
    key: Secret | None = None
    env_name: str | None = None

    def resolve(self, env: Mapping[str, str]) -> ResolvedKey:
        if self.key:
            return ResolvedKey(self.key, self.label)
        name = self.env_name or ""
        if not env.get(name):
            raise ConfigError(f"{self.label} names {name}, which is not set: export it, or fix the name")
        return ResolvedKey(Secret(env[name]), f"{name} (environment, named by {self.label})")


class Credentials:
    """Resolves the key for one call. Thread- and task-safe.

    ``api_key``: one explicit key for every call. ``source``: a callback for short-lived tokens,
    sync or async. ``env``: where to look for environment variables (``os.environ`` by default).
    """

    def __init__(
        self,
        api_key: Secret | str | None = None,
        *,
        source: KeySource | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.api_key = Secret(api_key) if isinstance(api_key, str) else api_key
        self.source = source
        self._env = env
        self._fresh: dict[str, Secret] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}  # per event loop: a lock binds to one

    def can_refresh(self, provider: str) -> bool:
        return self.source is not None and provider not in GOOGLE_AUTH

    async def key_for(self, provider: str, *, api_base: str | None = None) -> Secret | None:
        """The key to send, or None to send none (a keyless route, Google's auth, a custom endpoint).

        Raises ConfigError, naming the variable to set, when a hosted provider has no key at all.
        """
        return (await self.resolve(provider, api_base=api_base)).secret

    async def resolve(
        self,
        provider: str,
        *,
        api_base: str | None = None,
        own: ModelKey | None = None,
        shared: bool = True,
    ) -> ResolvedKey:
        """The key for one call and where it came from. ``own``: the model's own key (a ModelSpec's),
        which wins; ``shared`` False: the explicit ``api_key`` belongs to another model's provider or
        endpoint and is not sent here (the callback, which is asked per provider, still is)."""
        if provider in GOOGLE_AUTH:
            return ResolvedKey(None, "a Google credential signs in instead")
        env = os.environ if self._env is None else self._env
        if own is not None and (own.key or own.env_name):
            return own.resolve(env)
        if self.api_key and shared:
            return ResolvedKey(self.api_key, "the explicit api_key")
        if self.source is not None:
            key = self._fresh.get(provider) or await self.refresh(provider, stale=None)
            return ResolvedKey(key, "the credential provider", from_source=True)
        for name in ENV_KEYS.get(provider, ()):
            if env.get(name):
                stranger = _stranger(provider, api_base)
                if stranger:  # a configured endpoint this provider's key does not belong to
                    return ResolvedKey(
                        None,
                        f"{name} belongs to {' / '.join(HOME_HOSTS[provider])}, not to {stranger}, and is "
                        f"not sent there",
                    )
                return ResolvedKey(Secret(env[name]), f"{name} (environment)")
        if provider in KEYLESS or provider not in ENV_KEYS:
            return ResolvedKey(None, "this route takes none")
        if api_base and _is_private(api_base):
            # an OpenAI-compatible server of your own, which likely takes no key
            return ResolvedKey(None, "the server is on a private address")
        names = " or ".join(ENV_KEYS[provider])
        raise ConfigError(f"no API key for {provider}: set {names}, or pass api_key explicitly")

    async def refresh(self, provider: str, *, stale: Secret | None) -> Secret:
        """Ask the callback for a new key; calls that saw the same stale key share one refresh."""
        if self.source is None:
            raise ConfigError("no credential provider to refresh the key with")
        lock = self._locks.setdefault((provider, id(asyncio.get_running_loop())), asyncio.Lock())
        async with lock:
            current = self._fresh.get(provider)
            if current is not None and current != stale:
                return current  # another call refreshed it while this one waited
            value = self.source(provider)
            if inspect.isawaitable(value):
                value = await value
            key = value if isinstance(value, Secret) else Secret(str(value))
            if not key:
                raise ConfigError(f"the credential provider returned an empty key for {provider}")
            self._fresh[provider] = key
            return key


@dataclass(frozen=True)
class VertexConfig:
    """Google Vertex AI, for the ``vertex_ai/`` routes: the project, the region and who signs in.

    ``credentials``: a service-account key file's JSON text, as a Secret; its private key is
    registered for redaction on its own too. None: Google's application default credentials
    (``GOOGLE_APPLICATION_CREDENTIALS`` naming a key file, ``gcloud auth application-default
    login``, or the metadata server). ``project`` None: the credential's ``project_id``, else
    ``VERTEXAI_PROJECT``. ``location`` None: ``VERTEXAI_LOCATION``, else ``us-central1``.

    The access token is LiteLLM's to obtain and renew: it keeps one per credential for the life of
    the process, so a token revoked server-side is not replaced by trying again (a 401 is final).
    """

    project: str | None = None
    location: str | None = None
    credentials: Secret | None = None

    def __post_init__(self) -> None:
        if self.credentials is None:
            return
        try:
            info = json.loads(self.credentials.reveal())
        except ValueError:
            info = None
        if not isinstance(info, dict):  # the message must not quote the text: it holds the key
            raise ConfigError(
                "Vertex credentials must be a service-account key file's JSON text; for a file, "
                "set GOOGLE_APPLICATION_CREDENTIALS to its path and leave credentials unset"
            )
        private_key = info.get("private_key")
        if isinstance(private_key, str) and private_key:
            Secret(private_key)  # registered, so ``redact`` scrubs the key on its own
            Secret(json.dumps(private_key)[1:-1])  # and as it appears inside JSON text

    def endpoint(self) -> dict[str, str]:
        """The project and region that are set, as LiteLLM names them: where calls go, and so part
        of a cache key (the credential never is)."""
        params = {"vertex_project": self.project, "vertex_location": self.location}
        return {k: v for k, v in params.items() if v}

    def litellm_params(self) -> dict[str, str]:
        """What LiteLLM takes: ``vertex_project``, ``vertex_location``, ``vertex_credentials``."""
        if self.credentials:
            return {**self.endpoint(), "vertex_credentials": self.credentials.reveal()}
        return self.endpoint()


def require_google_auth() -> None:
    """Raise ConfigError unless google-auth (which LiteLLM signs in to Vertex with) is installed."""
    try:
        importlib.import_module("google.auth.transport.requests")
    except ImportError:
        raise ConfigError(
            "the vertex_ai/ routes need google-auth: pip install 'promptlift[vertex]'"
        ) from None


def _is_private(api_base: str) -> bool:
    """A host on this machine or a private network: loopback, RFC 1918 / ULA addresses, link-local,
    ``localhost`` and ``.local`` names."""
    host = (urlsplit(api_base).hostname or "").lower()
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: where it resolves is not ours to trust
    return address.is_private or address.is_loopback or address.is_link_local


def _stranger(provider: str, api_base: str | None) -> str:
    """The host of a configured ``api_base`` that ``provider``'s environment key must not go to
    (not its home, not private), or ""."""
    homes = HOME_HOSTS.get(provider)
    if not api_base or homes is None or _is_private(api_base):
        return ""
    host = (urlsplit(api_base).hostname or "").lower()
    return "" if host_listed(host, None, homes) else host


def endpoint_problem(api_base: str) -> str | None:
    """What makes ``api_base`` unusable as an endpoint (not an http(s) URL with a host), or None.

    The answer never quotes the value: a key pasted into the wrong setting must not be printed.
    """
    if any(c.isspace() for c in api_base.strip()):
        return "it contains spaces"
    value = api_base.strip()
    if "://" not in value:
        return "it does not start with http:// or https://"
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        return "its scheme is not http or https"  # not quoted: it may be the start of a key
    try:
        parts.port  # noqa: B018 - parsing it is the check: ``http://host:abc`` raises here
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if not parts.hostname:
        return "it has no host"
    return None


def check_url(api_base: str) -> None:
    """Raise ConfigError unless ``api_base`` is an http(s) URL with a host (LiteLLM would send the
    request anyway and report the failure as a 500, which is retried)."""
    problem = endpoint_problem(api_base)
    if problem is not None:
        raise ConfigError(
            f"api_base is not an http(s) URL: {problem}; give the server's address, "
            "e.g. http://localhost:8000/v1 or https://api.example.com/v1"
        )


def host_listed(host: str, port: int | None, entries: tuple[str, ...]) -> bool:
    """Whether ``host`` (lower-case) is one of ``entries``: a host name, a leading-dot suffix
    (``.openai.azure.com`` matches every subdomain and the bare domain) or ``host:port``."""
    with_port = f"{host}:{port}" if port else host
    for entry in (e.lower() for e in entries):
        if entry.startswith("."):
            if host.endswith(entry) or host == entry[1:]:
                return True
        elif entry in (host, with_port):
            return True
    return False


def check_host(api_base: str, allowed: tuple[str, ...] | None, *, what: str = "api_base") -> None:
    """Raise ConfigError unless ``api_base`` is an http(s) URL whose host is allowed (and it holds
    no password).

    ``allowed`` None allows any host. Entries are host names (``api.openai.com``), a leading-dot
    suffix (``.openai.azure.com`` matches every subdomain) or ``host:port``. ``what`` names where
    the endpoint was set, for the message (``OPENAI_API_BASE (environment)``).
    """
    check_url(api_base)
    parts = urlsplit(api_base)
    if parts.password is not None:  # LiteLLM's HTTP client refuses it beside the key, as a retried 500
        raise ConfigError(
            f"api_base {redact(api_base)} carries a password in the URL, which cannot be sent beside the "
            f"API key; give the credential as api_key (or the provider's environment variable) instead"
        )
    if allowed is None:
        return
    host = (parts.hostname or "").lower()
    if host_listed(host, parts.port, allowed):
        return
    raise HostNotAllowed(
        f"{what} host {host!r} is not in the allowed hosts ({', '.join(allowed) or 'none'}); "
        f"add it to allowed_hosts if prompts and keys may go there",
        host,
    )


def naming_key(exc: AuthenticationFailed, key: ResolvedKey) -> AuthenticationFailed:
    """The same error, saying where the refused key came from (never the key itself)."""
    where = (
        f"the key sent came from {key.source}: check it, or give this model its own"
        if key.secret
        else f"no key was sent, as {key.source}: give this model a key (api_key_env naming the "
        "variable that holds it, or api_key)"
    )
    found = type(exc)(
        f"{exc.message} ({where})",
        provider=exc.provider,
        model=exc.model,
        status=exc.status,
        retry_after=exc.retry_after,
    )
    found.attempts, found.requests = exc.attempts, exc.requests
    return found


async def send_with_refresh(
    credentials: Credentials,
    provider: str,
    key: ResolvedKey,
    send: Callable[[ResolvedKey], Awaitable[Completion]],
    *,
    model: str,
) -> Completion:
    """``send(key)``; after a 401 on a key from the credential provider, once more with a fresh key
    (the call then counts two requests). A refused key's error says where the key came from."""
    completion, sent = await open_with_refresh(credentials, provider, key, send, model=model)
    return completion if sent == 1 else completion.replace(attempts=sent)


_T = TypeVar("_T")


async def open_with_refresh(
    credentials: Credentials,
    provider: str,
    key: ResolvedKey,
    send: Callable[[ResolvedKey], Awaitable[_T]],
    *,
    model: str,
) -> tuple[_T, int]:
    """``send_with_refresh`` for any answer (an opened stream, too): the answer and the number of
    requests it took (2 after a refresh)."""
    refused: AuthenticationFailed | None = None
    try:
        return await send(key), 1
    except AuthenticationFailed as exc:
        if provider in GOOGLE_AUTH:
            raise  # no key: the message already names the Google credential
        refused = exc
    if not (key.from_source and credentials.can_refresh(provider)):
        raise naming_key(refused, key)  # outside the except block: nothing in __context__
    log.info("authentication failed on %s: refreshing the credential and trying once more", model)
    fresh = await credentials.refresh(provider, stale=key.secret)
    key = ResolvedKey(fresh, "the credential provider (refreshed once)", from_source=True)
    try:
        answer = await send(key)
    except AuthenticationFailed as exc:
        exc.requests = exc.attempts = 2  # the refused request and this one
        refused = exc
    except ProviderError as exc:
        exc.requests = exc.attempts = 2
        raise
    else:
        return answer, 2
    raise naming_key(refused, key)  # outside the except block: nothing in __context__
