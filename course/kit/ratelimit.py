"""Counting failures, and slowing down whoever fails too often: logins and made-up session IDs.

The finished pieces of lesson 10 (the capstone):

* :class:`FailureCounter` - failures per key (``"account:alice"``, ``"client:203.0.113.7"``) in a
  sliding window, in SQLite (:mod:`course.kit.localdb`), so every worker of the app counts the same
  failures. ``retry_after(key, limit, window)`` says how long a key must wait (0: go ahead).
* :func:`device_token`, :func:`device_of` - OWASP's "device cookie" (Slow Down Online Guessing
  Attacks with Device Cookies, https://owasp.org/www-community/Slow_Down_Online_Guessing_Attacks_with_Device_Cookies):
  a browser that once logged in as a user gets a signed token for that user. A lockout of the
  *account* then stops only browsers without one: an attacker who fails on purpose cannot lock
  the victim out of the devices the victim already uses.
* :class:`InvalidIdGuard` - WSGI middleware: a session cookie whose signature does not check out
  was made up (nobody without the secret can sign an ID). Each one is logged (as a salted hash),
  counted per client and expired in the browser; a client over the limit gets 429 with
  ``Retry-After`` for every made-up cookie it sends. A cookie the server signed always passes.
* :func:`client_address` - who the client is: ``REMOTE_ADDR``, or behind a proxy we trust the
  address that proxy appended to ``X-Forwarded-For``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from typing import Callable

from course.kit.beakerkit import session_id_from_cookie
from course.kit.cookies import cookie_header, request_cookies
from course.kit.idlog import id_hash, loggable
from course.kit.localdb import LocalDB

__all__ = ["FailureCounter", "device_token", "device_of", "InvalidIdGuard", "client_address", "TOO_MANY"]

log = logging.getLogger("course.kit.ratelimit")

TOO_MANY = "Too many attempts: wait and try again"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, at REAL NOT NULL)",
           "CREATE INDEX IF NOT EXISTS failures_by_key ON failures (key, at)")
KEEP = 24 * 3600          # seconds a failure is kept at most (no window here is longer)


class FailureCounter:
    """Failures per key, in the SQLite file at ``path``; ``clock`` is the app's (a FakeClock in tests)."""

    def __init__(self, path, clock: Callable[[], float] = time.time):
        self.db = LocalDB(path, _SCHEMA)
        self.clock = clock

    def add(self, key: str) -> None:
        """Count one failure for ``key`` now (and forget failures older than a day)."""
        now = self.clock()
        self.db.run("INSERT INTO failures (key, at) VALUES (?, ?)", (key, now))
        self.db.run("DELETE FROM failures WHERE key = ? AND at < ?", (key, now - KEEP))

    def count(self, key: str, window: float) -> int:
        """Failures of ``key`` in the last ``window`` seconds."""
        [row] = self.db.rows("SELECT COUNT(*) FROM failures WHERE key = ? AND at > ?", (key, self.clock() - window))
        return row[0]

    def retry_after(self, key: str, limit: int, window: float) -> int:
        """Whole seconds ``key`` must wait before its next try: 0 while it has had fewer than ``limit``
        failures in the last ``window`` seconds; else until the oldest of them leaves the window."""
        now = self.clock()
        rows = self.db.rows("SELECT at FROM failures WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?",
                            (key, now - window, limit))
        if len(rows) < limit:
            return 0
        return max(1, math.ceil(rows[-1]["at"] + window - now))

    def clear(self, key: str) -> None:
        """Forget ``key``'s failures (an account after a successful login)."""
        self.db.run("DELETE FROM failures WHERE key = ?", (key,))


# ---------------------------------------------------------------- device cookies

def _device_mac(secret: str, username: str, nonce: str) -> str:
    message = f"device:{username.lower()}:{nonce}".encode("utf-8", "replace")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def device_token(secret: str, username: str) -> str:
    """A new device cookie value for ``username``: ``nonce.mac`` (the nonce names the device)."""
    nonce = secrets.token_urlsafe(12)
    return f"{nonce}.{_device_mac(secret, username, nonce)}"


def device_of(secret: str, username: str, value: str | None) -> str | None:
    """The device's nonce when ``value`` is a device cookie this app gave for ``username``, else None."""
    if not value or len(value) > 100 or value.count(".") != 1:
        return None
    nonce, mac = value.split(".")
    if hmac.compare_digest(_device_mac(secret, username, nonce).encode(), mac.encode("utf-8", "replace")):
        return nonce
    return None


# ---------------------------------------------------------------- who the client is

def client_address(environ: dict, trust_proxy: bool = False) -> str:
    """The client's address: ``REMOTE_ADDR``; behind a trusted proxy, the last ``X-Forwarded-For``
    value (the one our proxy appended; the ones before it are whatever the client sent)."""
    if trust_proxy:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded and len(forwarded) <= 45 and all(c in "0123456789abcdefABCDEF.:" for c in forwarded):
            return forwarded
    return environ.get("REMOTE_ADDR") or "unknown"


def address_prefix(address: str) -> str:
    """What the sessions page shows of an address: an IPv4 /24 (``203.0.113.x``), an IPv6 /48."""
    if "." in address and ":" not in address:
        return ".".join(address.split(".")[:3]) + ".x"
    if ":" in address:
        return ":".join(address.split(":")[:3]) + "::/48"
    return address[:20]


# ---------------------------------------------------------------- made-up session IDs

class InvalidIdGuard:
    """WSGI middleware: made-up session IDs are logged, counted per client, throttled and expired.

    ``InvalidIdGuard(app, failures, cookie_name, secret, salt, limit=10, window=600, client_of=...,
    secure=False)``. A request whose session cookie (``cookie_name``) is not an ID signed with
    ``secret`` counts one failure for its client, and its answer expires that cookie
    (``Max-Age=0``): an ordinary browser that holds a stale cookie (a rotated secret, another app
    on the same host) sends it once and recovers. Once a client has had ``limit`` failures in
    ``window`` seconds, a request with a refused cookie gets 429 and ``Retry-After`` (and the
    cookie expired) until the window has passed. A cookie this server signed is never throttled:
    nobody can sign an ID without the secret, and a real user at an address an attacker shares
    (a NAT, a proxy) keeps their session. Requests without the cookie (the login page) always work.
    """

    def __init__(self, app, failures: FailureCounter, cookie_name: str, secret: str, salt: str, *,
                 limit: int = 10, window: float = 600, client_of: Callable[[dict], str] = client_address,
                 secure: bool = False):
        self.app, self.failures = app, failures
        self.cookie_name, self.secret, self.salt = cookie_name, secret, salt
        self.limit, self.window, self.client_of, self.secure = limit, window, client_of, secure

    def expired_cookie(self) -> tuple[str, str]:
        """The ``Set-Cookie`` header that makes the browser forget the refused cookie."""
        return ("Set-Cookie", f"{self.cookie_name}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
                + ("; Secure" if self.secure else ""))

    def __call__(self, environ, start_response):
        value = next((v for n, v in request_cookies(environ) if n == self.cookie_name), None)
        if value is None or session_id_from_cookie(cookie_header(environ), self.cookie_name, self.secret):
            return self.app(environ, start_response)
        key = "badid:" + self.client_of(environ)
        wait = self.failures.retry_after(key, self.limit, self.window)
        if wait:
            log.warning("throttled client %s for %d s: too many invalid session IDs", loggable(key[6:]), wait)
            body = (TOO_MANY + ": your browser sent a session cookie this server did not issue;"
                    " it has been cleared (or clear it yourself)\n").encode()
            start_response("429 Too Many Requests", [("Content-Type", "text/plain; charset=utf-8"),
                                                     ("Retry-After", str(wait)), ("Cache-Control", "no-store"),
                                                     self.expired_cookie(), ("Content-Length", str(len(body)))])
            return [body]
        self.failures.add(key)
        log.warning("invalid session ID %s from client %s (%s %s)", id_hash(value, self.salt),
                    loggable(key[6:]), loggable(environ.get("REQUEST_METHOD")), loggable(environ.get("PATH_INFO")))

        def start(status, headers, exc_info=None):
            prefix = self.cookie_name + "="
            if not any(k.lower() == "set-cookie" and v.startswith(prefix) for k, v in headers):
                headers = list(headers) + [self.expired_cookie()]     # unless the app set a new one (a login)
            return start_response(status, headers, exc_info)
        return self.app(environ, start)
