"""Remember-me tokens kept the safe way: a selector to find the row, a validator stored only hashed.

A remember-me cookie is a password the browser keeps for a month. The split-token design
(Paragon Initiative, https://paragonie.com/blog/2015/04/secure-authentication-php-with-long-term-persistence)
makes a stolen copy of the table worthless and the lookup safe:

* the cookie is ``selector.validator``; the table keeps the selector in clear (to find the row)
  and only ``SHA-256(validator)`` (a table dump gives no working cookie; the validator is random,
  so a fast hash is enough), compared in constant time;
* every use replaces the token (a new selector and validator, the old row marked used), and the
  tokens that replace one another form a *series*;
* a used token that comes back is a copy: somebody else holds the same cookie. The whole series
  is revoked (and the app ends the user's sessions): theft detected, as in Barry Jaspan's
  "Improved Persistent Login Cookie Best Practice".

This module is the table (:class:`RememberStore`) and :func:`digest`; lesson 10's exercise 10.5
writes the issuing and the checking on top of it.
"""
from __future__ import annotations

import hashlib
import time
from typing import Callable

from course.kit.localdb import LocalDB

__all__ = ["RememberStore", "digest", "split", "LIFETIME", "SERIES_LIFETIME"]

LIFETIME = 30 * 24 * 3600     # seconds a remember-me token lasts
SERIES_LIFETIME = 30 * 24 * 3600   # seconds a series lasts from its first login, however often it is used
_SCHEMA = ("CREATE TABLE IF NOT EXISTS remember_tokens (selector TEXT PRIMARY KEY, validator_hash TEXT NOT NULL,"
           " user_id INTEGER NOT NULL, series TEXT NOT NULL, expires REAL NOT NULL, used_at REAL)",
           "CREATE INDEX IF NOT EXISTS remember_by_user ON remember_tokens (user_id)")


def digest(validator: str) -> str:
    """What the table keeps of a validator: its SHA-256, in hex."""
    return hashlib.sha256(validator.encode("utf-8", "replace")).hexdigest()


def split(token: str | None) -> tuple[str, str] | None:
    """``(selector, validator)`` of a cookie value, or None when it is not shaped like a token."""
    if not token or len(token) > 200 or token.count(".") != 1:
        return None
    selector, validator = token.split(".")
    if not (8 <= len(selector) <= 64 and 16 <= len(validator) <= 128):
        return None
    if not all(c.isalnum() or c in "-_" for c in selector + validator):
        return None
    return selector, validator


class RememberStore:
    """The remember-me table in the SQLite file at ``path``; ``clock`` is the app's."""

    def __init__(self, path, clock: Callable[[], float] = time.time, lifetime: float = LIFETIME,
                 series_lifetime: float = SERIES_LIFETIME):
        self.db = LocalDB(path, _SCHEMA)
        self.clock, self.lifetime, self.series_lifetime = clock, lifetime, series_lifetime

    def add(self, selector: str, validator_hash: str, user_id: int, series: str) -> None:
        """Store a new token (its validator already hashed), valid for ``lifetime`` seconds, and never
        past ``series_lifetime`` after its series began: rotation on use does not make a stolen
        token good for ever (the series' first row, kept used, says when it began)."""
        expires = self.clock() + self.lifetime
        [first] = self.db.rows("SELECT MIN(expires) FROM remember_tokens WHERE series = ?", (series,))
        if first[0] is not None:
            expires = min(expires, first[0] - self.lifetime + self.series_lifetime)
        self.db.run("INSERT INTO remember_tokens (selector, validator_hash, user_id, series, expires)"
                    " VALUES (?, ?, ?, ?, ?)", (selector, validator_hash, user_id, series, expires))

    def find(self, selector: str) -> dict | None:
        """The token's row (``validator_hash``, ``user_id``, ``series``, ``used_at``), if not expired."""
        rows = self.db.rows("SELECT * FROM remember_tokens WHERE selector = ? AND expires > ?",
                            (selector, self.clock()))
        return dict(rows[0]) if rows else None

    def mark_used(self, selector: str) -> bool:
        """Mark a token used now; False when another request marked it first (a race, or a copy)."""
        return self.db.run("UPDATE remember_tokens SET used_at = ? WHERE selector = ? AND used_at IS NULL",
                           (self.clock(), selector)) == 1

    def revoke_series(self, series: str) -> int:
        """Delete every token of a series (theft); how many."""
        return self.db.run("DELETE FROM remember_tokens WHERE series = ?", (series,))

    def revoke_user(self, user_id: int) -> int:
        """Delete every token of a user (log out everywhere, a new password); how many."""
        return self.db.run("DELETE FROM remember_tokens WHERE user_id = ?", (user_id,))

    def all_rows(self) -> list[dict]:
        """Every row, for the lesson page and the tests (what a stolen table would show)."""
        return [dict(row) for row in self.db.rows("SELECT * FROM remember_tokens")]
