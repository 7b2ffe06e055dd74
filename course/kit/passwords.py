"""Password hashing: ``hashlib.scrypt`` with a random salt per password (lesson 06's reference).

scrypt is a slow, memory-hard key derivation function: checking one guess costs an attacker who
stole the users table as much time and memory as it costs the server at login. The stored string
names its own parameters, ``scrypt$<n>$<r>$<p>$<salt hex>$<key hex>``, so the cost can be raised
later without breaking old hashes (:func:`check_password` reads them from the string).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from typing import Callable

__all__ = ["SCRYPT_N", "SCRYPT_R", "SCRYPT_P", "hash_password", "check_password", "dummy_hash", "dummy_like",
           "scrypt_maxmem"]

SCRYPT_N = 2 ** 14   # CPU/memory cost: 128 * r * n bytes = 16 MiB, about 50 ms on the course machine
SCRYPT_R = 8         # block size (the usual 8)
SCRYPT_P = 1         # parallelism
SALT_BYTES = 16      # 128 random bits per password: equal passwords get different hashes
KEY_BYTES = 32       # the derived key that is stored
# Why these: a login costs one hash, so ~50 ms per attempt is unnoticeable for a person and keeps
# the tests fast, while an attacker with the users table pays 50 ms and 16 MiB per guess per user.
# OWASP's Password Storage Cheat Sheet asks for n=2**17 (128 MiB) in production; the cost is stored
# in each hash, so SCRYPT_N can be raised later without breaking the hashes already stored.
MAX_N, MAX_R, MAX_P = 2 ** 20, 32, 16   # refuse absurd parameters read from a (tampered) table


def scrypt_maxmem(n: int, r: int, p: int) -> int:
    """The ``maxmem`` to give ``hashlib.scrypt`` for this cost: what OpenSSL needs, plus 1 MiB.

    OpenSSL refuses (``ValueError: memory limit exceeded``) when ``128 * r * (n + p + 2)`` bytes
    exceed ``maxmem``, and Python's default limit (32 MiB) already refuses n=2**15 with r=8. A fixed
    limit breaks the day the cost is raised: 64 MiB refuses OWASP's n=2**17, and a check that
    catches the ValueError then answers False for the right password. Never over 1 GiB: a stored
    hash that asks for more is refused rather than run.
    """
    return min(128 * r * (n + p + 2) + 2 ** 20, 2 ** 30)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                  salt: bytes | None = None) -> str:
    """``scrypt$<n>$<r>$<p>$<salt hex>$<key hex>`` for ``password``, with a fresh random salt.

    >>> stored = hash_password("wonderland")
    >>> stored.startswith("scrypt$16384$8$1$"), check_password("wonderland", stored)
    (True, True)
    """
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                         maxmem=scrypt_maxmem(n, r, p), dklen=KEY_BYTES)
    return f"scrypt${n}${r}${p}${salt.hex()}${key.hex()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        n, r, p = int(n), int(r), int(p)
        salt, key = bytes.fromhex(salt), bytes.fromhex(key)
    except (AttributeError, ValueError):
        return None
    if scheme != "scrypt" or not (1 < n <= MAX_N and n.bit_count() == 1 and 0 < r <= MAX_R
                                  and 0 < p <= MAX_P and salt and key):
        return None
    return n, r, p, salt, key


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (from :func:`hash_password`); False for a malformed one.

    The key is derived again with the salt and cost read from ``stored`` and compared with
    ``hmac.compare_digest``, which takes as long for a near miss as for a wild guess.
    """
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    try:
        candidate = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                                   maxmem=scrypt_maxmem(n, r, p), dklen=len(key))
    except (UnicodeError, ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, key)


@functools.lru_cache(maxsize=None)
def dummy_hash(hasher: Callable[[str], str] = hash_password) -> str:
    """A hash of nobody's password, made once per ``hasher``: unknown users are checked against it."""
    return hasher(secrets.token_urlsafe(16))


def dummy_like(stored: str) -> str | None:
    """A hash of nobody's password at the cost ``stored`` names (made once per cost), or None when
    ``stored`` is not a hash of :func:`hash_password`'s.

    An unknown user is checked against it, so a login for a name that does not exist costs what a
    wrong password for one that does costs, whatever cost the table's hashes were made at.
    """
    parsed = _parse(stored)
    return None if parsed is None else _dummy_at(*parsed[:3])


@functools.lru_cache(maxsize=16)
def _dummy_at(n: int, r: int, p: int) -> str:
    return hash_password(secrets.token_urlsafe(16), n=n, r=r, p=p)
