"""Signed values, the reference for lesson 02 (express's ``cookie-signature`` format).

``sign("apple", "keyboard cat")`` is ``"apple." + base64(HMAC-SHA256(secret, "apple"))`` with the
``=`` padding removed. A signed cookie carries ``"s:"`` in front, so a reader can tell it from a
plain one. ``unsign`` tries every secret in a list (newest first) so that secrets can be rotated
without logging everybody out. Later lessons import these; a student's unfinished lesson 02
never breaks them.
"""
from __future__ import annotations

import base64
import hmac
from typing import Sequence

PREFIX = "s:"


def secret_list(secret: str | Sequence[str]) -> list[str]:
    """A secret or a list of secrets (newest first) as a non-empty list of strings."""
    if isinstance(secret, str):
        secrets = [secret]
    elif isinstance(secret, (list, tuple)):
        secrets = list(secret)
    else:                       # None, a number, bytes: never a secret (bytes would be a list of ints)
        secrets = []
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("secret must be a non-empty string or a non-empty list of non-empty strings")
    return secrets


def mac(value: str, secret: str) -> str:
    digest = hmac.digest(secret.encode(), value.encode(), "sha256")     # hmac.new(...).digest(), in one C call
    return base64.b64encode(digest).decode()[:-1]                       # 32 bytes: 44 characters, one "="


def sign(value: str, secret: str) -> str:
    return f"{value}.{mac(value, secret)}"


def unsign(signed: str, secrets: str | Sequence[str]) -> str | None:
    """The value if ``signed`` was signed with one of ``secrets``, else None (never an exception)."""
    if not isinstance(signed, str) or "." not in signed:
        return None
    value = signed.rpartition(".")[0]
    for secret in secret_list(secrets):
        # compare_digest takes as long for a near miss as for a wild guess: no timing hints.
        if hmac.compare_digest(sign(value, secret).encode(), signed.encode()):
            return value
    return None


def sign_cookie(value: str, secrets: str | Sequence[str]) -> str:
    """``s:<value>.<mac>`` signed with the newest secret."""
    return PREFIX + sign(value, secret_list(secrets)[0])


def unsign_cookie(cookie_value: str | None, secrets: str | Sequence[str]) -> str | None:
    """The value of an ``s:``-signed cookie, or None for an unsigned, tampered or foreign one."""
    if not cookie_value or not cookie_value.startswith(PREFIX):
        return None
    return unsign(cookie_value[len(PREFIX):], secrets)
