"""Webhook signatures and bearer tokens, compared in constant time.

The signature is `sha256=<hex HMAC-SHA256 of the raw body>` (what CI sends today), checked on the
exact bytes received, before anything parses them.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-GH-Webhook-Signature"
PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` with `secret`."""
    if not header or not secret:
        return False
    given = header.strip()
    # hex digits may come in either case; the "sha256=" prefix may not be missing
    if given[: len(PREFIX)].lower() != PREFIX:
        return False
    expected = sign(secret, body).encode()
    return hmac.compare_digest(expected, (PREFIX + given[len(PREFIX) :].lower()).encode("utf-8", "replace"))


def bearer_ok(token: str, authorization: str | None) -> bool:
    """Whether an `Authorization: Bearer <token>` header carries `token`."""
    if not authorization or not token:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.encode(), given.strip().encode("utf-8", "replace"))


def body_digest(body: bytes) -> str:
    """What identifies a delivery: the same body delivered twice is one deploy."""
    return hashlib.sha256(body).hexdigest()
