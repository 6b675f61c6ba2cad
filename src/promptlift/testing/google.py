"""Google for tests: throwaway service accounts, and the Google side of ``LoopbackServer``.

    from promptlift.testing.google import service_account, token_claims

    with LoopbackServer() as srv:
        account = service_account(srv.token_uri, project="my-project")   # a fresh RSA key
        config = ClientConfig(models=("vertex_ai/gemini-2.0-flash",), api_base=srv.url,
                              vertex=VertexConfig(credentials=Secret(json.dumps(account))))
        ...
        token_request = next(r for r in srv.requests if r.protocol == "oauth")
        token_claims(token_request)["iss"] == account["client_email"]
        srv.issued_tokens   # the access tokens the server handed out, in order

google-auth signs a JWT with the account's private key and POSTs it to ``token_uri`` (the
JWT-bearer grant, RFC 7523); the server answers with an access token, which the client then sends
as ``Authorization: Bearer <token>``. The server does not check the signature (it does not know
the key); ``verify_signature`` lets a test check it.

The server's answers are shaped here: the token endpoint's (``token_response``, ``token_error``)
and Gemini's generateContent bodies, the same for AI Studio and Vertex AI (``generate_content_body``,
``generate_content_error``).

Needs ``cryptography`` (installed with the ``vertex`` extra, through google-auth).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl

from promptlift.testing.replies import ErrorKind, Reply, parsed_calls

__all__ = [
    "JWT_BEARER_GRANT",
    "access_token",
    "generate_content_body",
    "generate_content_error",
    "service_account",
    "token_claims",
    "token_error",
    "token_form",
    "token_response",
    "verify_signature",
]

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def service_account(
    token_uri: str, *, project: str = "loopback-project", email: str | None = None
) -> dict[str, str]:
    """A service-account key file's content, with a new 2048-bit RSA key, whose tokens come from
    ``token_uri``. Each call makes a new key: LiteLLM caches tokens per credential, so tests that
    need their own token exchange need their own account.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key_id = secrets.token_hex(20)
    email = email or f"loopback-{key_id[:8]}@{project}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": str(int(key_id[:15], 16)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",  # another universe skips the token exchange (self-signed JWT)
    }


def access_token() -> str:
    """A new opaque access token, shaped like Google's (``ya29.`` prefix)."""
    return f"ya29.loopback-{secrets.token_urlsafe(24)}"


def token_form(body: bytes) -> dict[str, str]:
    """The form fields of a token request (``grant_type``, ``assertion``)."""
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def token_claims(request: Any) -> dict[str, Any]:
    """The claims of the JWT a token request (a ``RecordedRequest``) presented: iss, scope, aud..."""
    assertion = token_form(request.body).get("assertion", "")
    parts = assertion.split(".")
    if len(parts) != 3:
        return {}
    claims = json.loads(_b64decode(parts[1]))
    return claims if isinstance(claims, dict) else {}


def verify_signature(request: Any, account: dict[str, str]) -> bool:
    """Whether the token request's JWT is signed (RS256) by ``account``'s private key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    header, payload, signature = [*token_form(request.body).get("assertion", "").split("."), "", ""][:3]
    key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
    public = key.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or not signature:
        return False
    try:
        public.verify(
            _b64decode(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


# -- the server's side -----------------------------------------------------------------------------


def token_response(body: bytes) -> tuple[int, dict[str, Any]]:
    """The token endpoint's (status, JSON) answer to a token request's form ``body``: a new access
    token for a JWT-bearer grant, else 400 ``unsupported_grant_type``. The signature is not checked.
    """
    form = token_form(body)
    if form.get("grant_type") != JWT_BEARER_GRANT or not form.get("assertion"):
        return 400, {"error": "unsupported_grant_type", "error_description": "expected a JWT-bearer grant"}
    return 200, {"access_token": access_token(), "expires_in": 3600, "token_type": "Bearer"}


def token_error(status: int, message: str) -> dict[str, Any]:
    """An error reply as the token endpoint sends it: an OAuth error (RFC 6749 §5.2).

    A 429 or a 5xx is the endpoint's own trouble, ``temporarily_unavailable``: google-auth retries
    it (three tries in all, about 1 s and then 2 s apart) before it gives up. Any other status is the
    credential refused, ``invalid_grant`` (Google's answer to a bad signature or a deleted key),
    which google-auth does not retry.
    """
    code = "temporarily_unavailable" if status == 429 or status >= 500 else "invalid_grant"
    return {"error": code, "error_description": message}


_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}  # a call ends in STOP
_STATUS: dict[ErrorKind, str] = {  # google.rpc.Code names
    "rate_limit": "RESOURCE_EXHAUSTED",
    "server": "INTERNAL",
    "auth": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "bad_request": "INVALID_ARGUMENT",
    "context_length": "INVALID_ARGUMENT",
    "content_policy": "CONTENT_FILTERED",
}


def generate_content_body(
    reply: Reply, *, model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0
) -> dict[str, Any]:
    """A generateContent response carrying ``reply``: its text, then one ``functionCall`` part per
    tool call (Gemini's calls carry no id). An empty text beside calls sends no text part.
    """
    parts: list[dict[str, Any]] = []
    if reply.content or not reply.tool_calls:
        parts.append({"text": reply.content})
    parts += [{"functionCall": {"name": n, "args": a}} for _, n, a in parsed_calls(reply)]
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _FINISH.get(reply.finish_reason, reply.finish_reason.upper()),
            }
        ],
        "usageMetadata": {
            "promptTokenCount": input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": input_tokens + output_tokens,
            # implicit caching: the part of the prompt read from the cache (promptTokenCount has it)
            **({"cachedContentTokenCount": cached_tokens} if cached_tokens else {}),
        },
        "modelVersion": model,
    }


def generate_content_error(kind: ErrorKind, status: int, message: str) -> dict[str, Any]:
    """An error reply in Google's shape (``google.rpc.Status``), with Gemini's own "too long" text."""
    if kind == "context_length":
        message = "The input token count (40000) exceeds the maximum number of tokens allowed (32768)."
    return {"error": {"code": status, "message": message, "status": _STATUS[kind]}}


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
