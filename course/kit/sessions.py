"""The session middleware, the reference for lessons 03 and 04 (express-session's rules, in WSGI).

    app = SessionMiddleware(bottle_app, secret="...", store=MemoryStore(),
                            resave=False, save_uninitialized=False, rolling=False, max_age=None)

Before the app runs, the middleware reads the ``sid`` cookie (``s:<id>.<sig>``, percent-encoded as
express writes it), checks the signature, and loads the session from the store; a handler finds it
in ``request.environ["session"]``, a dict with ``.id``, ``.is_new``, ``.modified`` and
``.destroy()``. After the app has run, it saves, touches or destroys the record and adds the
``Set-Cookie`` header, by the rules of express-session 1.19 (its index.js,
https://github.com/expressjs/session):

* a cookie that is missing, unsigned, tampered, over 4 KB, or names an ID the store does not hold
  (never issued, expired, destroyed) gets a **new** session with a new ID; an ID the server did not
  issue is never adopted (session fixation), and a bad signature costs no store lookup;
* a new session is stored, and its cookie sent, when ``save_uninitialized`` or it was modified;
* a loaded session is written back when ``resave`` or it was modified; otherwise it is touched
  (when the store can), which restarts its ``max_age`` in the store;
* a loaded session's cookie is sent again when ``rolling``, or when it is persistent (``max_age``)
  and was modified;
* a store that raises answers 503 (:mod:`course.kit.storedown`'s answer); nothing half-done is kept.

Unlike express, the response is held until the store has answered (the app's output is buffered),
so a failed save can still become a 503, and a redirect never races its own save.
"""
from __future__ import annotations

import json
import logging
import secrets
from email.utils import formatdate
from time import time
from typing import Sequence

from course.kit import storedown
from course.kit.cookies import decode_value, encode_value, first_cookie
from course.kit.signing import secret_list, sign_cookie, unsign_cookie
from course.kit.stores import MemoryStore, can

COOKIE_NAME = "sid"
MAX_COOKIE_CHARS = 4096          # browsers keep at most about 4 KB per cookie; more is an attack

log = logging.getLogger("course.kit.sessions")


def new_session_id() -> str:
    """32 random bytes from the OS's CSPRNG, URL-safe base64: 43 characters, 256 bits."""
    return secrets.token_urlsafe(32)


def cookie_value(sid: str, secret: str | Sequence[str]) -> str:
    """``s:<sid>.<sig>`` signed with the newest secret, percent-encoded as express does."""
    return encode_value(sign_cookie(sid, secret))


def session_id_from(cookie_header: str | None, secret: str | Sequence[str],
                    name: str = COOKIE_NAME) -> str | None:
    """The session ID the request's cookie carries, if we signed it; None for anything else.

    The first ``name`` cookie counts (express's rule for duplicates); an oversized value is
    refused before any HMAC is computed.
    """
    value = first_cookie(cookie_header, name)
    if value is None or len(value) > MAX_COOKIE_CHARS:
        return None
    return unsign_cookie(decode_value(value), secret)


def set_cookie_header(value: str, max_age: int | None = None, name: str = COOKIE_NAME) -> str:
    """The ``Set-Cookie`` value: every page (Path=/), no scripts (HttpOnly), not cross-site (Lax).

    Without ``max_age`` it is a browser-session cookie (gone when the browser closes); with it,
    ``Max-Age`` and ``Expires`` (for old browsers) say how many seconds to keep it.
    """
    header = f"{name}={value}; Path=/; HttpOnly; SameSite=Lax"
    if max_age is not None:
        header += f"; Max-Age={int(max_age)}; Expires={formatdate(time() + max_age, usegmt=True)}"
    return header


def clear_cookie_header(name: str = COOKIE_NAME) -> str:
    """A ``Set-Cookie`` that makes the browser drop the cookie (same Path and attributes)."""
    return f"{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode


def fingerprint(data: dict) -> str:
    """What "modified" compares: the data as canonical JSON (express hashes JSON.stringify)."""
    return _canonical(data) if data else "{}"


class Session(dict):
    """One visitor's data (a dict), plus what the middleware needs to know about it."""

    def __init__(self, sid: str, data: dict | None = None, is_new: bool = True):
        super().__init__(data or ())
        self.id = sid
        self.is_new = is_new              # True: no valid cookie came in; the ID was made just now
        self.destroyed = False
        self.loaded = fingerprint(self)   # the data as it came from the store ({} when new)

    @property
    def modified(self) -> bool:
        return fingerprint(self) != self.loaded

    def destroy(self) -> None:
        """Log out: the middleware removes the record and clears the cookie after the handler."""
        self.clear()
        self.destroyed = True


def run_buffered(app, environ):
    """Run a WSGI app to the end; return its ``(status, headers, body chunks, exc_info)``."""
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=list(headers), exc_info=exc_info)
        return lambda data: answer.setdefault("written", []).append(data)

    result = app(environ, start_response)
    try:
        chunks = answer.pop("written", []) + list(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return answer["status"], answer["headers"], chunks, answer.get("exc_info")


class SessionMiddleware:
    """WSGI middleware: load the session before the app, save it after (module docstring)."""

    def __init__(self, app, secret: str | Sequence[str], store=None, *, resave: bool = False,
                 save_uninitialized: bool = False, rolling: bool = False, max_age: int | None = None,
                 name: str = COOKIE_NAME):
        self.app = app
        self.secrets = secret_list(secret)
        self.store = MemoryStore() if store is None else store
        self.resave, self.save_uninitialized, self.rolling = resave, save_uninitialized, rolling
        self.max_age = max_age
        self.name = name

    def __call__(self, environ, start_response):
        try:
            session = self.load(environ)
        except Exception as exc:
            if not storedown.is_store_down(exc):    # a bug, or an unfinished exercise (todo, the 501):
                raise                               # a 500 with its traceback, never "store unavailable"
            return self.store_down(start_response, exc)
        environ["session"] = session
        status, headers, body, exc_info = run_buffered(self.app, environ)   # the handler runs here
        try:
            headers += self.save(session)
        except Exception as exc:
            if not storedown.is_store_down(exc):
                raise
            return self.store_down(start_response, exc)
        start_response(status, headers, exc_info)
        return body

    @staticmethod
    def store_down(start_response, exc: Exception):
        """A store that is down (:func:`course.kit.storedown.is_store_down`) is the 503; the cause goes to the log."""
        log.warning("the session store failed: %s: %s", type(exc).__name__, exc)
        return storedown.respond(start_response)

    def load(self, environ) -> Session:
        """The stored session the cookie names, or a new one with a new ID (never the sent ID)."""
        sid = session_id_from(environ.get("HTTP_COOKIE"), self.secrets, self.name)
        if sid is not None:                          # signed by us: worth a store lookup
            data = self.store.get(sid)
            if data is not None:
                return Session(sid, data, is_new=False)
        return Session(new_session_id())

    def save(self, session: Session) -> list[tuple[str, str]]:
        """Write, touch or destroy the record; the ``Set-Cookie`` headers to add."""
        if session.destroyed:
            if not session.is_new:
                self.store.destroy(session.id)
            return [("Set-Cookie", clear_cookie_header(self.name))]
        if session.is_new:
            if not (self.save_uninitialized or session.modified):
                return []                            # nothing worth keeping: no record, no cookie
            self.store.set(session.id, dict(session), ttl=self.max_age)
            return [("Set-Cookie", self.cookie(session))]
        if self.resave or session.modified:
            self.store.set(session.id, dict(session), ttl=self.max_age)
        elif can(self.store, "touch"):
            self.store.touch(session.id, ttl=self.max_age)
        if self.rolling or (self.max_age is not None and session.modified):
            return [("Set-Cookie", self.cookie(session))]
        return []

    def cookie(self, session: Session) -> str:
        return set_cookie_header(cookie_value(session.id, self.secrets), self.max_age, self.name)
