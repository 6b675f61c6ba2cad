"""Secret values that never print, and redaction of text that might contain one."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|ya29\.[A-Za-z0-9._\-]{8,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----)",
    re.DOTALL,
)

# Credentials inside URLs and headers: the password of ``scheme://user:password@host`` (up to the
# last ``@`` of the authority), and the value of a query parameter named like a credential (``key``,
# ``token``, ``sig``, ``code`` (Azure Functions), or ending in one after ``-``/``_``:
# ``subscription-key``, ``access-token``, ``client_secret``) or of an ``x-api-key:``-style header.
# A value ends at a character that cannot be in it, so text around it (JSON quotes, commas, escapes)
# survives.
_URL_SECRETS = re.compile(
    r"(?<=://)([^/\s:@]*:)[^/\s]+(?=@[^/\s@]+)"
    r"|(?i:([?&](?:[\w.-]*[_-])?(?:key|api[_-]?key|token|secret|password|passwd|signature|sig|auth"
    r"|code|credential)s?=))[^&#\s\"'\\<>,;)\]}]+"
    r"|(?i:((?:x-api-key|api-key|x-goog-api-key|client_secret|refresh_token)[\"']?\s*[:=]\s*[\"']?))"
    r"[^\s\"'\\<>,;)\]}&]{6,}"
)


class Secret:
    """A credential. ``str()``/``repr()`` print ``***``; ``reveal()`` gives the value.

    Every secret created is remembered (weakly enough: only its value string) so that
    ``redact`` can scrub it from any text about to be logged, stored or raised.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        _register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


_known: set[str] = set()
_known_lock = threading.Lock()


def _register(value: str) -> None:
    if len(value) >= 6:  # shorter strings would redact ordinary words
        with _known_lock:
            _known.add(value)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Replace every known secret, and anything shaped like an API key, with ``***``."""
    with _known_lock:
        values = sorted(_known.union(v for v in extra if len(v) >= 6), key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, "***")
    text = _URL_SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)
    return _KEY_PATTERNS.sub("***", text)
