"""Users, passwords and logging in: the finished reference of lesson 06, which lesson 07 on build on.

The pieces of a login that every web app has, on top of :mod:`course.kit.beakerkit`:

* **Passwords** (:func:`hash_password`, :func:`check_password`): ``hashlib.scrypt``, a slow,
  memory-hard key derivation function, with a random salt per password. The stored string
  names its own parameters, ``scrypt$<n>$<r>$<p>$<salt hex>$<key hex>``, so the cost can be raised
  later without breaking old hashes (:func:`needs_rehash` says which ones to redo at login).
* **Users** (:class:`UserDB`): a ``users`` table in an SQLite file, created with the demo users on
  first use (never at import): ``alice`` / ``wonderland`` is user 1, ``bob`` / ``builder`` user 2.
* **Verifying** (:func:`verify`): ``user_id`` or None, taking about as long for an unknown user as
  for a wrong password (an unknown user is checked against a dummy hash), so the answer's timing
  does not tell which usernames exist.
* **Sessions** (:func:`log_in`, :func:`log_out`, :func:`current_user_id`, :func:`login_required`):
  only the user's id goes into the session (``session["user_id"]``); logging in gives the session a
  new ID and destroys the old record (session fixation); logging out destroys the record on the
  server and clears the cookie.
* **Request bodies** (:func:`read_credentials`, :func:`read_fields`): fields from a form or a JSON
  body; a missing field is a 400 naming it, malformed JSON a 400, an oversized body a 413, never a 500.

The answers lesson 06's tests expect are constants here (:data:`LOGIN_OK` and friends).

Typical use::

    from course.kit import auth, beakerkit

    users = auth.UserDB(".sessions/users.sqlite3")

    @app.post("/login")
    def login():
        username, password = auth.read_credentials()         # 400 / 413 / 415 answered for you
        user_id = auth.verify(users, username, password)
        if user_id is None:
            return text(auth.LOGIN_FAILED, 401)
        auth.log_in(beakerkit.get_session(), user_id)         # new session ID, only the id stored
        return text(auth.LOGIN_OK)

    @app.get("/dashboard")
    @auth.login_required
    def dashboard():
        return text(f"Welcome to your dashboard, user {auth.current_user_id()}")
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
from html import escape
from pathlib import Path
from typing import Callable, Iterable

import bottle

from course.kit import beakerkit
from course.lesson.web import text

__all__ = [
    "USER_KEY", "LOGIN_OK", "LOGIN_FAILED", "NOT_LOGGED_IN", "LOGOUT_OK", "LOGOUT_FAILED",
    "STORE_UNAVAILABLE", "DEMO_USERS", "SCRYPT_N", "SCRYPT_R", "SCRYPT_P", "MAX_BODY",
    "hash_password", "check_password", "needs_rehash", "dummy_hash", "scrypt_maxmem",
    "UserDB", "verify",
    "current_user_id", "log_in", "log_out", "login_required", "STORE_ERRORS", "store_errors_as_503",
    "FormError", "read_fields", "read_credentials", "from_browser_form", "wants_html",
    "login_page", "login_form",
]

log = logging.getLogger("course.kit.auth")

# ---------------------------------------------------------------- the contract's texts

USER_KEY = "user_id"                       # the one thing a login puts in the session
LOGIN_OK = "Login successful!"
LOGIN_FAILED = "Authentication failed"     # the same words for an unknown user and a wrong password
NOT_LOGGED_IN = "Please log in to view this page."
LOGOUT_OK = "Logged out successfully"
LOGOUT_FAILED = "Failed to log out."
STORE_UNAVAILABLE = "Session store unavailable"

DEMO_USERS = (("alice", "wonderland"), ("bob", "builder"))   # user 1 and user 2
"""Created with the table. Demo passwords, in a public repository: never in production."""

# ---------------------------------------------------------------- passwords

SCRYPT_N = 2 ** 14   # CPU/memory cost: 128 * r * n bytes = 16 MiB, about 50 ms on the course machine
SCRYPT_R = 8         # block size (the usual 8)
SCRYPT_P = 1         # parallelism
SALT_BYTES = 16      # 128 random bits per password: equal passwords get different hashes
KEY_BYTES = 32       # the derived key that is stored
# Why these: a login costs one hash, so ~50 ms per attempt is unnoticeable for a person and keeps
# the tests fast, while an attacker with the users table pays 50 ms and 16 MiB per guess per user.
# OWASP's Password Storage Cheat Sheet asks for n=2**17 (128 MiB) in production; the cost is stored
# in each hash, so raising SCRYPT_N later only needs needs_rehash() at the next login.
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
    if scheme != "scrypt" or not (1 < n <= MAX_N and n & (n - 1) == 0 and 0 < r <= MAX_R
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


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's (hash it again at login)."""
    parsed = _parse(stored)
    return parsed is None or parsed[:3] != (SCRYPT_N, SCRYPT_R, SCRYPT_P) or len(parsed[3]) < SALT_BYTES


@functools.lru_cache(maxsize=None)
def dummy_hash(hasher: Callable[[str], str] = hash_password) -> str:
    """A hash of nobody's password, made once per ``hasher``: unknown users are checked against it."""
    return hasher(secrets.token_urlsafe(16))


# ---------------------------------------------------------------- users

class UserDB:
    """The ``users`` table (``id``, ``username``, ``password_hash``) in one SQLite file.

    Nothing is touched until first use: then the folder and the file are made, and the table is
    created with :data:`DEMO_USERS` (alice is user 1, bob user 2). ``hasher`` makes the stored hashes
    (lesson 06 passes its own ``hash_password``). A connection is opened per call, so one UserDB can
    serve every thread of a threaded server; several processes may share the file.
    """

    def __init__(self, path: str | Path, *, hasher: Callable[[str], str] = hash_password):
        if str(path) == ":memory:":
            raise ValueError("UserDB needs a file: each call opens its own connection")
        self.path = Path(path)
        self.hasher = hasher
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UserDB({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; BEGIN/COMMIT are written out where needed.
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            try:
                exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='users'").fetchone()
                if not exists:
                    # Hash first (slow, and it may raise), then create and fill the table in one
                    # transaction: another process sees either no table or the table with its users.
                    rows = [(number, name, self.hasher(password))
                            for number, (name, password) in enumerate(DEMO_USERS, start=1)]
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.execute("CREATE TABLE IF NOT EXISTS users ("
                                     " id INTEGER PRIMARY KEY,"
                                     " username TEXT NOT NULL UNIQUE,"
                                     " password_hash TEXT NOT NULL)")
                        conn.executemany("INSERT OR IGNORE INTO users (id, username, password_hash) "
                                         "VALUES (?, ?, ?)", rows)
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
            finally:
                conn.close()
            self._ready = True

    def find(self, username: str) -> tuple[int, str] | None:
        """``(user_id, password_hash)`` of ``username``, or None when there is no such user."""
        self._ensure()
        conn = self._connect()
        try:
            row = conn.execute("SELECT id, password_hash FROM users WHERE username = ?", (username,)).fetchone()
        finally:
            conn.close()
        return (row[0], row[1]) if row else None

    def username(self, user_id: int) -> str | None:
        """The username of ``user_id``, or None."""
        self._ensure()
        conn = self._connect()
        try:
            row = conn.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    def verify(self, username: str, password: str) -> int | None:
        """``verify(self, username, password)``: the user's id, or None (see :func:`verify`)."""
        return verify(self, username, password)

    def add(self, username: str, password: str) -> int:
        """Create a user; its id. ``sqlite3.IntegrityError`` when the username is taken."""
        self._ensure()
        stored = self.hasher(password)
        conn = self._connect()
        try:
            return conn.execute("INSERT INTO users (username, password_hash) VALUES (?, ?)",
                                (username, stored)).lastrowid
        finally:
            conn.close()

    def set_password_hash(self, user_id: int, stored: str) -> None:
        """Replace a user's stored hash (after :func:`needs_rehash`)."""
        self._ensure()
        conn = self._connect()
        try:
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (stored, user_id))
        finally:
            conn.close()


def verify(db: UserDB | str | Path, username: str, password: str) -> int | None:
    """The id of the user whose name and password these are, or None.

    An unknown user costs one scrypt, as a wrong password does (against :func:`dummy_hash`), so an
    attacker cannot tell from the time taken which usernames exist. ``db`` is a :class:`UserDB`
    or the path of its file.
    """
    if not isinstance(db, UserDB):
        db = UserDB(db)
    row = db.find(username)
    if row is None:
        check_password(password, dummy_hash(db.hasher))   # the same work, thrown away
        return None
    user_id, stored = row
    return user_id if check_password(password, stored) else None


# ---------------------------------------------------------------- the session side

STORE_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
"""What a session store raises when it is down (:class:`course.kit.beakerkit.StoreUnavailable` is a
``ConnectionError``). Lesson 08's stores add their drivers' errors."""


def current_user_id(session=None) -> int | None:
    """The logged-in user's id from the session (``session["user_id"]``), or None.

    ``session`` defaults to the current request's (:func:`course.kit.beakerkit.get_session`). Only a
    positive int counts. Store errors propagate.
    """
    session = beakerkit.get_session() if session is None else session
    user_id = session.get(USER_KEY)
    if isinstance(user_id, int) and not isinstance(user_id, bool) and user_id > 0:
        return user_id
    return None


def log_in(session, user_id: int) -> None:
    """Log ``user_id`` in: a new session ID (the old record destroyed), then only the id stored.

    A new ID at login defeats session fixation: a session ID an attacker obtained or planted before
    the login is worthless after it. Data already in the session (say, a cart) is kept, under the new
    ID. Store errors propagate; nothing is half done from the browser's view (the new cookie is
    only sent if the session is saved).
    """
    beakerkit.regenerate_session(session)
    session[USER_KEY] = int(user_id)
    session.save()


def log_out(session) -> None:
    """Log out: the session's record removed from the store and its cookie cleared.

    Store errors propagate and leave the session as it was (still logged in, cookie kept): answer
    500 :data:`LOGOUT_FAILED` then, rather than a "logged out" the server does not honour.
    """
    beakerkit.destroy_session(session)


def _store_unavailable():
    return text(STORE_UNAVAILABLE, 503)


def login_required(route: Callable) -> Callable:
    """Route decorator: the route runs only for a logged-in user, else 401 :data:`NOT_LOGGED_IN`.

    ::

        @app.get("/dashboard")
        @login_required
        def dashboard(): ...

    (It is also a Bottle plugin: ``app.get("/x", apply=[login_required])``.) A store that is down
    answers 503 :data:`STORE_UNAVAILABLE`, not a traceback.
    """

    @functools.wraps(route)
    def guarded(*args, **kwargs):
        try:
            user_id = current_user_id()
        except STORE_ERRORS as exc:
            log.warning("loading the session failed: %r", exc)
            return _store_unavailable()
        if user_id is None:
            return text(NOT_LOGGED_IN, 401)
        return route(*args, **kwargs)

    return guarded


def store_errors_as_503(callback: Callable) -> Callable:
    """Bottle plugin (``app.install(store_errors_as_503)``): a store error in a route is a 503.

    Beaker loads a session inside the route that first reads it, so a store that is down raises
    there; this turns :data:`STORE_ERRORS` into 503 :data:`STORE_UNAVAILABLE` for every route.
    """

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except STORE_ERRORS as exc:
            log.warning("the session store failed: %r", exc)
            return _store_unavailable()

    return wrapper


# ---------------------------------------------------------------- reading a form or JSON body

MAX_BODY = 16 * 1024            # bytes: a login form is a few dozen
_DRAIN = 1024 * 1024            # read (and drop) up to this much of a refused body, so the answer arrives
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class FormError(bottle.HTTPResponse):
    """A plain-text 4xx answer about the request body. Raise it from a route: Bottle sends it as it is.

    Headers the route already set on ``bottle.response`` (``Cache-Control``, cookies) are kept.
    """

    def __init__(self, status: int, message: str):
        super().__init__(message + "\n", status)
        for name, value in bottle.response.headerlist:
            if name.lower() not in ("content-type", "content-length"):
                self.add_header(name, value)
        self.content_type = "text/plain; charset=utf-8"
        self.message = message


def _drain(environ: dict, length: int) -> None:
    stream = environ.get("wsgi.input")
    left = min(length, _DRAIN)
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        left -= len(chunk)


def _content_length(request) -> int | None:
    raw = (request.environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise FormError(400, "Bad Content-Length header")
    return int(raw)


def _clean(name: str, value) -> str:
    if value is None or value == "":
        raise FormError(400, f"Missing field: {name}")
    if not isinstance(value, str):
        raise FormError(400, f"Field {name} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise FormError(400, f"Field {name} is not valid text") from None
    return value


def read_fields(names: Iterable[str], request=None) -> dict[str, str]:
    """The fields ``names`` of a form or JSON body, as a dict of non-empty strings.

    Raises :class:`FormError` (answered as it is by Bottle): 400 "Missing field: <name>" for a
    missing or empty field, 400 for a field sent twice or that is not a string, malformed JSON, or
    a JSON body that is not an object; 413 for a body over :data:`MAX_BODY` bytes; 415 for another
    content type.
    """
    request = bottle.request if request is None else request
    names = tuple(names)
    length = _content_length(request)
    if length is not None and length > MAX_BODY:
        _drain(request.environ, length)
        raise FormError(413, f"Request body too large: at most {MAX_BODY} bytes")
    ctype = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    is_json = ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))
    if not is_json and ctype not in FORM_TYPES and ctype and length:
        raise FormError(415, "Send the fields as a form (application/x-www-form-urlencoded) or as JSON "
                             "(application/json)")
    body = request.body                       # Bottle reads and keeps the body (chunked ones too)
    size = body.seek(0, 2)
    body.seek(0)
    if size > MAX_BODY:
        raise FormError(413, f"Request body too large: at most {MAX_BODY} bytes")
    if is_json:
        try:
            data = json.loads(body.read())
        except ValueError:                      # includes bytes that are not UTF-8
            raise FormError(400, "Malformed JSON body") from None
        finally:
            body.seek(0)
        if not isinstance(data, dict):
            raise FormError(400, "The JSON body must be an object, such as "
                                 '{"username": "alice", "password": "wonderland"}')
        return {name: _clean(name, data.get(name)) for name in names}
    try:
        forms = request.forms
    except (ValueError, bottle.HTTPError):      # a multipart body Bottle cannot parse
        raise FormError(400, "Malformed form body") from None
    values = {}
    for name in names:
        if len(forms.getall(name)) > 1:
            raise FormError(400, f"Field {name} was sent more than once")
        raw = forms.get(name)
        value = forms.getunicode(name)          # None when the bytes are not UTF-8
        if raw not in (None, "") and value is None:
            raise FormError(400, f"Field {name} is not valid text")
        values[name] = _clean(name, value)
    return values


def read_credentials(request=None) -> tuple[str, str]:
    """``(username, password)`` from a form or JSON body; see :func:`read_fields` for the errors."""
    fields = read_fields(("username", "password"), request)
    return fields["username"], fields["password"]


def from_browser_form(request=None) -> bool:
    """Whether the request is a browser submitting an HTML form (which should get a page or a redirect).

    A browser navigating sends ``Accept: text/html,...``; curl, ``requests`` and ``fetch`` send ``*/*``
    or ask for JSON, and get the plain-text answers.
    """
    request = bottle.request if request is None else request
    ctype = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    return ctype in FORM_TYPES and "text/html" in request.environ.get("HTTP_ACCEPT", "")


# ---------------------------------------------------------------- the login page

def login_page(*, title: str = "Log in", message: str = "", action: str = "/login",
               hidden: dict[str, str] | None = None, username: str = "") -> str:
    """A small HTML page with a working login form (``username``, ``password``) posting to ``action``.

    ``message`` is shown above the form (e.g. :data:`LOGIN_FAILED`), ``hidden`` adds hidden fields
    (lesson 07's CSRF token). Everything is escaped.
    """
    from course.lesson.page import STYLE

    extra = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                    for k, v in (hidden or {}).items())
    note = f'<p id="message"><strong>{escape(message)}</strong></p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
{note}
<form method="post" action="{escape(action)}" id="login-form">{extra}
<p><label>Username <input name="username" id="username" autocomplete="username" value="{escape(username)}" required></label></p>
<p><label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit" id="login">Log in</button></p>
</form>
<p class="muted">Demo users: <code>alice</code> / <code>wonderland</code> and <code>bob</code> / <code>builder</code>.</p>
<p><a href="/">Back to the lesson page</a></p>
</body></html>
"""


wants_html = from_browser_form
"""Another name for :func:`from_browser_form`."""
login_form = login_page
"""Another name for :func:`login_page`."""
