"""Beaker, hardened: the finished reference of lesson 05, which lessons 06, 07 and 08 build on.

Beaker's ``SessionMiddleware`` is the real session library of this course, and its defaults fall
short of what lesson 03 taught (lesson 05's tests and notebook measure each gap). This module closes them:

* :func:`session_config` - a ``session.``-prefixed config dict with safe defaults: cookie ``sid``
  (no framework fingerprint), ``HttpOnly``, ``SameSite=Lax``, a signing secret from
  ``SESSION_SECRET`` (a loud :class:`InsecureSecretWarning` and a clearly named development
  fallback when it is missing), JSON instead of pickle, and - for ``type="memory"`` - a store of
  this app's own (:class:`CountingStore`), never Beaker's process-wide memory dict.
* :class:`HardenedSessions` - WSGI middleware around Beaker: a ``Cookie`` header with a stray bare
  token (``null; sid=...``) keeps the session (duplicates: the first wins, as browsers and express
  do); an ID whose record is gone is never adopted (:class:`StrictSession`); ``rolling=True``
  re-sends the cookie on every response that used an existing session; a session destroyed in the
  request is never written back; a store that fails while saving answers 503, not a traceback.
* :func:`get_session`, :func:`destroy_session` (the record removed from the store and the cookie
  cleared), :func:`regenerate_session` (a new ID for the same data, the old record destroyed).
* :class:`CountingNamespace` - Beaker's backend for a :class:`course.kit.stores.CountingStore`
  (the course's one counting store, re-exported here): sessions in memory, one store per app, that
  counts what Beaker asks of it (``stats()``: gets, sets, touches, destroys, sessions) and can be
  told to fail (``store.fail()``, ``with store.failing("destroy"):``) to test what an app does
  when its store is down; :func:`stored_data` decodes what it holds for one session.

A store that is down is answered from :mod:`course.kit.storedown` (503, ``storedown.MESSAGE``):
:class:`HardenedSessions` does it when saving fails, ``app.install(storedown.plugin)`` when a
route finds the store down while loading.

Typical use (lesson 06 on)::

    from course.kit.beakerkit import HardenedSessions, session_config, get_session

    def create_app(secret=None, store=None):
        app = new_app()
        config = session_config(secret=secret, store=store)   # store=None: a CountingStore of its own
        ...
        return HardenedSessions(app, config)

    # in a route
    session = get_session()
    session["user_id"] = 1
    session.save()            # Beaker writes only what you save() (or everything with auto=True)
"""
from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import pickle
import re
import warnings
import zlib
from hashlib import sha1

import bottle

from course.kit.beaker_import import import_beaker

import_beaker()         # before Beaker's session modules: it leaves out pymongo and redis-py until they are used

from beaker.container import NamespaceManager
from beaker.middleware import SessionMiddleware
from beaker.session import CookieSession, InvalidSignature, Session, SessionObject, _session_id
from beaker.synchronization import null_synchronizer

from course.kit import storedown
from course.kit.cookies import RAW_COOKIE_KEY, first_cookie, parse_cookie_header
from course.kit.stores import CountingStore, MemoryStore

__all__ = [
    "DEV_SECRET", "InsecureSecretWarning", "resolve_secret", "session_config",
    "CountingStore", "CountingNamespace", "stored_data",
    "clean_cookie_header", "StrictSession", "HardenedSessions", "RAW_COOKIE_KEY",
    "get_session", "destroy_session", "regenerate_session", "expire_cookie",
    "session_id_from_cookie", "real_session", "CorruptSession",
]

log = logging.getLogger("course.kit.beakerkit")

DEV_SECRET = "insecure-development-secret--set-SESSION_SECRET-in-production"
"""The signing secret used when ``SESSION_SECRET`` is not set: fine on your laptop, never in
production (anybody who reads this file can sign session IDs for your app)."""


class InsecureSecretWarning(UserWarning):
    """The session secret is missing (the development fallback is in use) or too short."""


# ---------------------------------------------------------------- configuration

def resolve_secret(secret: str | None, *, production: bool = False, stacklevel: int = 2) -> str:
    """The session secret: ``secret``, else ``SESSION_SECRET``, else the development fallback.

    The fallback comes with a loud :class:`InsecureSecretWarning`. With ``production=True`` there is
    no fallback: a missing secret (or the published development one) is a ``ValueError`` at
    start-up, because a published secret lets anybody sign a session ID (or forge a cookie session).
    """
    secret = secret or os.environ.get("SESSION_SECRET") or None
    if secret is not None and secret != DEV_SECRET:
        return secret
    if production:
        raise ValueError("production=True needs a real session secret: set SESSION_SECRET to a long "
                         "random value (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    warnings.warn(
        "SESSION_SECRET is not set: session cookies are signed with a development secret that "
        "anybody can read in course/kit/beakerkit.py. Set SESSION_SECRET to a long random value "
        "(python -c 'import secrets; print(secrets.token_urlsafe(32))') before deploying.",
        InsecureSecretWarning, stacklevel=stacklevel + 1)
    return DEV_SECRET


def session_config(*, type: str = "memory", secret: str | None = None, key: str = "sid",  # noqa: A002
                   httponly: bool = True, samesite: str | None = "Lax", secure: bool = False,
                   timeout: int | None = None, **extra) -> dict:
    """Beaker options as a ``session.``-prefixed dict, with the course's safe defaults.

    Options passed this way are coerced and checked by Beaker (``"true"`` becomes ``True``, an int
    ``cookie_expires`` becomes a timedelta); plain keyword arguments to ``SessionMiddleware`` are not.

    - ``secret=None`` reads ``SESSION_SECRET`` from the environment. When it is missing, this warns
      loudly (:class:`InsecureSecretWarning`) and signs with :data:`DEV_SECRET`. Without a secret
      Beaker would adopt any session ID a client makes up.
    - ``key='sid'``: Beaker's default ``beaker.session.id`` tells an attacker what runs the site.
    - ``httponly=True`` (Beaker's default is False), ``samesite='Lax'``, ``secure=False`` (True
      behind HTTPS; lesson 07).
    - ``timeout``: seconds of inactivity after which the server forgets the session (None: never).
    - ``type='memory'``: sessions in a :class:`CountingStore` of this config's own (pass
      ``store=CountingStore()`` to keep a handle on it; it is also ``config['session.store']``).
      Beaker's own ``memory`` type keeps every app's sessions in one process-wide dict.
    - ``extra``: any other Beaker option, given without the prefix (``data_dir=...``, ``url=...``,
      ``cookie_expires=3600``, ``auto=True``); ``data_serializer`` defaults to ``'json'`` (Beaker's
      default, pickle, runs code when loading a record that an attacker managed to write).
    """
    if secret is None:
        secret = resolve_secret(None, stacklevel=3)
    if not isinstance(secret, str) or not secret:
        raise ValueError("secret must be a non-empty string")
    if len(secret) < 16 and secret != DEV_SECRET:
        warnings.warn(f"the session secret is only {len(secret)} characters long: use 32 or more random "
                      "characters", InsecureSecretWarning, stacklevel=2)
    config = {
        "session.type": type,
        "session.key": key,
        "session.secret": secret,
        "session.httponly": httponly,
        "session.samesite": samesite,
        "session.secure": secure,
        "session.timeout": timeout,
        "session.data_serializer": "json",
    }
    if type == "memory":
        store = extra.pop("store", None)
        if store is None:
            store = CountingStore()
        config["session.namespace_class"] = CountingNamespace
        config["session.store"] = store
    for name, value in extra.items():
        config[name if name.startswith("session.") else "session." + name] = value
    return config


# ---------------------------------------------------------------- a counting, per-app store

class CountingNamespace(NamespaceManager):
    """Beaker's view of one session's record in a :class:`CountingStore` (Beaker makes one per request).

    Beaker's own ``memory`` type keeps sessions in a dict on the class, shared by every app in the
    process (two test servers would share sessions); a :class:`CountingStore` belongs to one app,
    counts what Beaker asks of it and can be told to fail (``store.fail()``, ``with store.failing():``).

    Beaker asks a namespace (a session ID) for keys (``"session"``) whose values are bytes (the
    serialized, base64'd data, as bytes or str); a CountingStore keeps JSON-able dicts by session
    ID. So a record is ``{key: ["bytes" or "str", the value as text]}``, and Beaker's reads,
    writes and deletes are the store's ``get``,
    ``set`` and ``destroy`` (counted as ``gets``, ``sets``, ``destroys``). Beaker creates it as
    ``namespace_class(session_id, data_dir=..., digest_filenames=False, **namespace_args)``; the store
    arrives as the ``store`` option (``session_config`` sets both).
    """

    def __init__(self, namespace, store: CountingStore | None = None, **_ignored):
        super().__init__(namespace)
        if store is None:
            raise ValueError("CountingNamespace needs the session option store=CountingStore()")
        self.store = store

    def get_creation_lock(self, key):
        return null_synchronizer()

    def _record(self) -> dict:
        return self.store.peek(self.namespace) or {}      # (uncounted: the counted call follows)

    def __getitem__(self, key):
        record = self.store.get(self.namespace) or {}
        if key not in record:
            raise KeyError(key)                            # Beaker's "no such record"
        kind, value = record[key]
        return value.encode("latin-1") if kind == "bytes" else value

    def __contains__(self, key):
        self.store.check("get")                            # a store that is down cannot answer
        return key in self._record()

    def has_key(self, key):
        return key in self

    def __setitem__(self, key, value):
        if isinstance(value, bytes):
            packed = ["bytes", value.decode("latin-1")]      # latin-1: every byte is one character
        elif isinstance(value, str):
            packed = ["str", value]
        else:
            raise TypeError(f"Beaker writes bytes or str into a session record, not {type(value).__name__}")
        self.store.set(self.namespace, {**self._record(), key: packed}, ttl=self._ttl)

    _ttl = None     # None: the CountingStore's own TTL

    def set_value(self, key, value, expiretime=None):
        self._ttl = expiretime          # Beaker passes its session timeout, when one is set
        self[key] = value

    def __delitem__(self, key):
        record = self._record()
        record.pop(key, None)
        if record:
            self.store.set(self.namespace, record)
        else:
            self.store.destroy(self.namespace)

    def do_remove(self):
        self.store.destroy(self.namespace)

    def keys(self):
        self.store.check("get")
        return list(self._record())


def stored_data(store: CountingStore, session_id: str | None):
    """The session data a :class:`CountingStore` holds under ``session_id``, decoded; None if nothing.

    Not counted and never failing (it is for the lesson page's inspector and for tests). Records
    are ``base64(serializer.dumps(data))`` as Beaker writes them, JSON or pickle. Pickle is read
    only from a store kept in this process's memory (what only this process's Beaker wrote): never
    unpickle what another process could have written.
    """
    record = store.peek(session_id) if session_id else None
    packed = (record or {}).get("session")
    if packed is None:
        return None
    raw = packed[1]
    try:
        data = base64.b64decode(raw)
    except (ValueError, TypeError):
        return {"(stored)": "not a Beaker record"}
    loaders = [lambda d: json.loads(zlib.decompress(d).decode("utf-8"))]
    if isinstance(store.store, MemoryStore):
        loaders.append(pickle.loads)
    for loads in loaders:
        try:
            return loads(data)
        except Exception:
            continue
    return {"(stored)": f"{len(raw)} bytes, encrypted or not readable"}


# ---------------------------------------------------------------- a robust Cookie header

# What a Beaker cookie holds: hex (a signed ID) or base64 (an encrypted cookie session). Python's
# cookie parser reads these unquoted, in one pass, and never has to unescape anything.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~:/=]{1,4096}")


def clean_cookie_header(header: str | None, key: str = "sid") -> str:
    """The ``Cookie`` header to hand Beaker: its own cookie and nothing else, or ``""``.

    Beaker parses the header with ``http.cookies``, which drops the *whole* header at one odd piece
    (``null; sid=...`` loses the session), raises on a name it refuses (``a(b=1``: a 500 on every
    page), and unquotes a quoted value in quadratic time on this Python (CVE-2024-7592). Beaker
    reads only its own cookie, so it gets only that: the first ``key`` cookie (browsers send the
    most specific first; express reads the first), read by :mod:`course.kit.cookies`, and only when
    its value is made of the characters a Beaker cookie holds. Any other value is no session of
    ours: Beaker starts a new one.

    >>> clean_cookie_header('null; a(b=1; sid=abc; theme="dark"; sid=second')
    'sid=abc'
    """
    value = first_cookie(header, key)
    if value is None or not _PLAIN_VALUE.fullmatch(value):
        return ""
    return f"{key}={value}"


# ---------------------------------------------------------------- sessions

def session_id_from_cookie(header: str | None, key: str = "sid", secret: str | None = None) -> str | None:
    """The session ID in a ``Cookie`` header when its Beaker signature is valid, else None.

    Beaker signs an ID as ``hex(HMAC-SHA1(secret, id)) + id`` (40 + 32 characters), with no
    ``s:`` prefix. Without a secret the value is the ID itself. The first ``key`` cookie counts.
    """
    value = None
    for name, candidate in parse_cookie_header(header):
        if name == key:
            value = candidate
            break
    if not value:
        return None
    if secret is None:
        return value
    signature, session_id = value[:40], value[40:]
    expected = hmac.new(secret.encode("utf-8"), session_id.encode("utf-8"), sha1).hexdigest()
    if session_id and hmac.compare_digest(signature.encode(), expected.encode()):
        return session_id
    return None


class CorruptSession(ValueError):
    """A stored record that cannot be decoded (Beaker then starts a new session and warns)."""


class StrictSession(Session):
    """Beaker's ``Session``, except that an ID whose record is gone is never adopted.

    Beaker loads the ID named by a validly signed cookie, and when the store has nothing under it
    (a restart, an expired or destroyed record) it carries on with a new, empty session *under that
    same ID* - and without a secret it does so for any ID a client makes up: session fixation. Here
    such a session gets a fresh ID instead (sent to the browser when the session is saved).
    """

    _destroyed = False

    def __init__(self, request, **options):
        super().__init__(request, **options)
        if self.is_new and self.id is not None and self.id == self._id_from_cookie():
            self._create_id()               # new ID, is_new stays True; the cookie goes out on save()

    def load(self):
        # Beaker's invalidate_corrupt treats *any* error while loading as a corrupt record: a store
        # that is down for a second would silently log everybody out. Only a record that cannot be
        # decoded is corrupt here; a store error propagates (the app answers 503).
        try:
            super().load()
        except CorruptSession:
            raise
        except Exception:
            self.invalidate_corrupt = False
            raise

    def save(self, accessed_only=False):
        result = super().save(accessed_only)
        if not accessed_only:
            # Saved whole: Beaker's write-back at the end of a request that did not mark the proxy
            # dirty (save(accessed_only=True): the data as it was loaded) must not undo this save.
            # Without this, regenerate_session() or auth.log_in() on Beaker's own Session object of
            # a loaded session lost what they saved.
            self.accessed_dict = dict(self.items())
        return result

    def _decrypt_data(self, session_data):
        try:
            return super()._decrypt_data(session_data)
        except Exception as exc:
            raise CorruptSession(f"the stored session {self.id} cannot be decoded: {exc}") from exc

    def _id_from_cookie(self):
        cookie = getattr(self, "cookie", None)
        morsel = cookie.get(self.key) if cookie is not None else None
        value = morsel.value if morsel is not None else None
        return None if value is InvalidSignature else value


def real_session(session) -> Session:
    """The Beaker ``Session`` behind ``environ['beaker.session']`` (a lazy proxy), loading it if needed."""
    if isinstance(session, SessionObject):
        return session._session()
    return session


def get_session(environ: dict | None = None):
    """The Beaker session of the current request (``bottle.request.environ['beaker.session']``).

    It is Beaker's lazy proxy: nothing is loaded from the store until you read or write it.
    """
    environ = bottle.request.environ if environ is None else environ
    try:
        return environ["beaker.session"]
    except KeyError:
        raise RuntimeError("no Beaker session in this request: wrap the app in HardenedSessions "
                           "(or beaker.middleware.SessionMiddleware)") from None


def expire_cookie(session) -> None:
    """Send the session's cookie back already expired, so the browser drops it.

    Beaker's ``delete()`` does this too, but then writes an empty record under the same ID.
    """
    real_session(session)._delete_cookie()


def _delete_record(real: Session) -> None:
    """Remove ``real``'s record from the store (``regenerate_id()`` leaves it). Store errors propagate."""
    if real.is_new or not hasattr(real, "namespace"):
        return                               # a brand-new session has no record (and no .namespace)
    namespace = real.namespace
    namespace.acquire_write_lock()
    try:
        if "session" in namespace:
            del namespace["session"]         # NOT namespace.remove(): on memcached that is flush_all
    finally:
        namespace.release_write_lock()


def _not_dirty(session) -> None:
    if isinstance(session, SessionObject):
        session.__dict__["_dirty"] = False   # a save() earlier in the request no longer applies


def destroy_session(session) -> None:
    """End the session for good: its record is removed from the store and its cookie cleared.

    Afterwards, replaying the old cookie gives a new, empty session, and the store holds nothing
    under the old ID. Nothing more is saved for this session in this request (as express, where
    ``req.session`` is gone after ``destroy()``); to start a new one, call
    :func:`regenerate_session` or write to it after a new request.

    Beaker has no such call: ``delete()`` leaves an empty record under the same ID (and replaying
    the cookie re-adopts it), ``invalidate()`` and ``regenerate_id()`` leave the old record, data
    and all, loadable. Store errors are raised, not swallowed, so the caller can answer 500/503;
    the session is then left as it was.

    With ``type='cookie'`` the data lives in the browser: the cookie is cleared, but a copy kept by
    the client stays valid until it expires (no cookie session can be revoked).
    """
    real = real_session(session)
    if isinstance(real, CookieSession):
        expire_cookie(real)                  # (needs the ID, so before clear())
        real.clear()
        real.is_new = True                   # Beaker would otherwise re-issue the cookie on the way out
    else:
        _delete_record(real)
        real.clear()
        real.accessed_dict = {}
        real._create_id()                    # a new, empty, unsaved session for the rest of the request
        expire_cookie(real)
    real._destroyed = True
    _not_dirty(session)


def regenerate_session(session) -> None:
    """A new ID for the same data (do it at login): the old record destroyed, the new cookie sent.

    Beaker's ``regenerate_id()`` keeps the old record loadable, so a stolen or planted pre-login
    cookie would still work. Here the old record is removed first (store errors propagate, and the
    session is left as it was), then Beaker gives the session a new ID and the data is saved under
    it when the response goes out.
    """
    real = real_session(session)
    if isinstance(real, CookieSession):
        real["_id"] = _session_id()    # CookieSession.regenerate_id() is broken in Beaker 1.14
        real._destroyed = False
        session.save()
        return
    _delete_record(real)
    real._destroyed = False
    real.regenerate_id()                     # new ID, data kept, Set-Cookie with the new ID
    if isinstance(session, SessionObject):
        session.save()                       # saved whole under the new ID when the response goes out
    else:
        real.save()


# ---------------------------------------------------------------- the middleware

class HardenedSessions(SessionMiddleware):
    """Beaker's ``SessionMiddleware`` with its gaps closed (lesson 05).

    ``HardenedSessions(app, config, rolling=False)``, ``config`` as :func:`session_config` makes it.

    - **A robust Cookie header**: before Beaker sees it, the header is rewritten by
      :func:`clean_cookie_header`: Beaker sees only its own cookie, read by the course's cookie
      reader (a stray ``null`` or a name ``http.cookies`` refuses no longer drops the session or
      crashes the page; duplicates: the first wins). The header as sent is kept in
      ``environ['course.raw_cookie_header']``.
    - **Strict IDs**: sessions are :class:`StrictSession` (an ID whose record is gone gets a fresh ID).
    - **Rolling**: with ``rolling=True`` the cookie is re-sent (with a fresh expiry, if
      ``cookie_expires`` sets one) on every response that used an existing session.
    - **Destroy means destroyed**: a session passed to :func:`destroy_session` is not written back.
    - **Store errors on save**: Beaker saves in ``start_response``, where an exception becomes a
      broken response. Here the app runs first and the session is saved after; if that fails the
      answer is :func:`course.kit.storedown.answer`'s 503 (``on_save_error(exc, environ)`` may return
      another ``(status, message)``), with no ``Set-Cookie``; an answer that is already a 5xx is kept
      as it is. Errors while *loading* happen inside your route: handle them there (or
      ``app.install(storedown.plugin)``).

    The response body is collected before it is sent (fine for these lessons; no streaming).
    """

    def __init__(self, wrap_app, config=None, *, rolling: bool = False, on_save_error=None, **kwargs):
        super().__init__(wrap_app, config, **kwargs)
        if self.options.get("type") != "cookie":
            self.options.setdefault("session_class", StrictSession)
        self.rolling = rolling
        self.on_save_error = on_save_error

    def __call__(self, environ, start_response):
        raw = environ.get("HTTP_COOKIE")
        environ.setdefault(RAW_COOKIE_KEY, raw or "")
        if raw is not None:
            environ["HTTP_COOKIE"] = clean_cookie_header(raw, self.options.get("key", "beaker.session.id"))
        session = SessionObject(environ, **self.options)
        environ[self.environ_key] = session
        environ["beaker.get_session"] = self._get_session

        started: dict = {}
        written: list[bytes] = []

        def capture(status, headers, exc_info=None):
            started.update(status=status, headers=list(headers), exc_info=exc_info)
            return written.append

        result = self.wrap_app(environ, capture)
        try:
            body = written + list(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers, exc_info = started["status"], started["headers"], started.get("exc_info")
        if session.accessed():
            try:
                cookie = self._finish(session)
            except Exception as exc:  # the store failed while saving
                log.exception("saving the session failed")
                if status[:1] == "5":          # the app already answered with an error: keep it
                    start_response(status, [(k, v) for k, v in headers if k.lower() != "set-cookie"], exc_info)
                    return body
                status, message = (self.on_save_error or _store_down)(exc, environ)
                return storedown.respond(start_response, status, message)
            if cookie:
                headers.append(("Set-Cookie", cookie))
        start_response(status, headers, exc_info)
        return body

    def _finish(self, session: SessionObject) -> str | None:
        """Save the session as Beaker would (unless destroyed); the Set-Cookie value to send, if any."""
        real = session._session()
        if not getattr(real, "_destroyed", False):
            if self.rolling and not real.is_new and not isinstance(real, CookieSession):
                real._update_cookie_out()    # re-send the cookie of an existing session
            session.persist()
        sent = session.__dict__["_headers"]
        return sent.get("cookie_out") if sent.get("set_cookie") else None


def _store_down(exc, environ):
    return storedown.answer(exc)
