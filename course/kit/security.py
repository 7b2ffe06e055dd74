"""Cookie security pieces: the finished reference of lesson 07, which later lessons may reuse.

* :class:`SecureCookieGate` - WSGI middleware: a cookie marked ``Secure`` is never sent over plain
  HTTP. Beaker emits ``Secure`` whenever it is configured, whatever the request; express-session
  instead sends no cookie at all when the request is not HTTPS. The gate does what express does, and
  asks the app (``is_https(environ)``) what counts as HTTPS, so a proxy can be trusted or not.
* :func:`derive_key` - separate keys for separate jobs (encrypting, signing) from one secret.
* :func:`session_save_error` - what :class:`course.kit.beakerkit.HardenedSessions` answers when saving
  fails: 413 with a clear line when a cookie session outgrew the cookie, else the store-down 503
  of :mod:`course.kit.storedown`.
* :class:`FakeClock` - a clock a test or a notebook moves by hand (``clock.advance(3600)``), so that
  timeouts of hours are checked in milliseconds.

(The session secret, given or from ``SESSION_SECRET``, is :func:`course.kit.beakerkit.resolve_secret`.)
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from typing import Callable

from beaker.exceptions import BeakerException

from course.kit import storedown
from course.kit.idlog import loggable

__all__ = ["SecureCookieGate", "derive_key", "session_save_error", "FakeClock", "COOKIE_TOO_LARGE"]

log = logging.getLogger("course.kit.security")

COOKIE_TOO_LARGE = ("Your session is too large to fit in a cookie (browsers keep about 4 KB per "
                    "cookie). Nothing was saved: send less, or keep the session on the server.")


# ---------------------------------------------------------------- Secure cookies only over HTTPS

def _is_secure_cookie(value: str) -> bool:
    return any(part.strip().lower() == "secure" for part in value.split(";")[1:])


SCHEME_KEY = "course.scheme"
"""Where :class:`SecureCookieGate` writes the scheme the browser used (``https`` behind a trusted
TLS proxy too), for :func:`course.kit.csrf.own_origin`."""


class SecureCookieGate:
    """Drop every ``Set-Cookie`` marked ``Secure`` from an answer to a request that is not HTTPS.

    ``SecureCookieGate(app, is_https)``: ``is_https(environ) -> bool`` is asked only when such a
    cookie is about to go out (so an app that sets no Secure cookie never asks). A dropped cookie is
    logged: "my session cookie is never set" behind a proxy is express-session's most frequent
    complaint, and the fix is always to trust the proxy (and have it send ``X-Forwarded-Proto``).
    The app must not call ``start_response`` with ``exc_info`` after the body started (Bottle never does).
    """

    def __init__(self, app, is_https: Callable[[dict], bool]):
        self.app = app
        self.is_https = is_https

    def __call__(self, environ, start_response):
        def gate(status, headers, exc_info=None):
            secure = [(n, v) for n, v in headers if n.lower() == "set-cookie" and _is_secure_cookie(v)]
            if secure and not self.is_https(environ):
                headers = [(n, v) for n, v in headers if (n, v) not in secure]
                log.warning("not sending %d Secure cookie(s) over plain HTTP (%s %s); behind a proxy, "
                            "trust it and have it send X-Forwarded-Proto: https", len(secure),
                            loggable(environ.get("REQUEST_METHOD")), loggable(environ.get("PATH_INFO")))
            return start_response(status, headers, exc_info)

        try:   # what the browser used, for csrf.own_origin: behind a trusted proxy, its https
            environ[SCHEME_KEY] = "https" if self.is_https(environ) else environ.get("wsgi.url_scheme", "http")
        except NotImplementedError:
            pass           # 07.4 not done yet: the scheme stays what the server itself spoke
        return self.app(environ, gate)


# ---------------------------------------------------------------- secrets and keys

def derive_key(secret: str, purpose: str) -> str:
    """A key for one job (``"encrypt"``, ``"validate"``) derived from the secret with HMAC-SHA256.

    One secret for two jobs would tie them together: a key used to sign must not also encrypt.
    """
    return hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- when saving the session fails

def session_save_error(exc: Exception, environ: dict) -> tuple[str, str]:
    """``HardenedSessions(..., on_save_error=session_save_error)``: 413 for a cookie session that
    outgrew its cookie (Beaker raises ``BeakerException("Cookie value is too long to store")``,
    which would otherwise be a 500), :func:`course.kit.storedown.answer` (503) for anything else.

    The answer replaces the route's, and no ``Set-Cookie`` goes out: the browser keeps the session
    it had, so nothing changed.
    """
    if isinstance(exc, BeakerException) and "too long" in str(exc):
        return "413 Content Too Large", COOKIE_TOO_LARGE
    return storedown.answer(exc)


# ---------------------------------------------------------------- a clock you can move

class FakeClock:
    """A clock for tests and notebooks: ``create_app(now=clock)``, then ``clock.advance(seconds)``.

    Calling it returns the current fake time (seconds, like ``time.time()``). It starts at the
    real time, so timestamps look normal, and moves only when told to. Thread-safe: the test server
    answers requests in other threads.
    """

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock (backwards too, with a negative number); the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
