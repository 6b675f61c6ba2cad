"""Google service-account credentials for tests: a throwaway key and the OAuth exchange it makes.

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

Needs ``cryptography`` (installed with the ``vertex`` extra, through google-auth).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["JWT_BEARER_GRANT", "access_token", "service_account", "token_claims", "verify_signature"]

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


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
