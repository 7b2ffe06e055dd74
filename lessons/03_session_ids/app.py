"""Lesson 03: the server remembers.

The cookie carries only a random, signed session ID; the data stays on the server, in a store.
A session middleware wraps the Bottle app: before a handler runs it reads the ``sid`` cookie and
loads that session from the store, and after the handler it saves the session back and, for a new
one, sends the cookie. An ID the server did not issue is never adopted.

Run it:  make run LESSON=03   then open http://127.0.0.1:8080/ (it restarts when you save)
Check it: make check LESSON=03
"""
import json
import secrets  # for 03.2
import threading
import time

from bottle import request, response

from course.kit.cookies import cookie_header, decode_value, encode_value, first_cookie  # 03.2 uses them
from course.kit.signing import sign_cookie, unsign_cookie  # for 03.2
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import guard, new_app, text, todo

TITLE = "The server remembers"
COOKIE_NAME = "sid"
DEV_SECRET = "lesson 03 development secret: pass your own with create_app(secret=...)"
IDLE_TIMEOUT = 30 * 60           # seconds: a session nobody used for this long is gone
SWEEP_EVERY = 60                 # seconds between sweeps of the expired records nobody reads again
MAX_COOKIE_CHARS = 4096          # a browser keeps about 4 KB per cookie; anything longer is an attack


# ---------------------------------------------------------------- the store

class MemoryStore:
    """Exercise 03.1: sessions kept in a dict in this process, with expiry.

    The Store interface (express-session's, made synchronous): ``get(sid)`` gives the stored dict
    or None, ``set(sid, data, ttl=None)`` stores it for ``ttl`` seconds (None: for ever),
    ``destroy(sid)`` removes it; the optional ``touch(sid, ttl=None)`` restarts its ttl, ``all()``,
    ``length()`` and ``clear()`` are for inspectors. ``clock`` tells the time (tests pass a fake).
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.records = {}                # sid -> (data as JSON text, expires at or None)
        self.lock = threading.Lock()     # two requests may arrive at the same moment
        self.next_sweep = clock() + SWEEP_EVERY

    # TODO(03.1): write the methods below. Keep each record as (json.dumps(data), expires_at), with
    # expires_at = self.clock() + ttl, or None when ttl is None (never expires). A record whose
    # expires_at <= self.clock() is gone: get, touch, all and length act as if it were not there
    # (and may delete it). get returns json.loads(...) of the text: a fresh copy every time.
    # Hold self.lock while you read or change self.records.

    def get(self, sid):
        """The stored dict for ``sid`` (a copy), or None: unknown, expired or destroyed."""
        raise todo("03.1")

    def set(self, sid, data, ttl=None):
        """Store ``data`` (a JSON-able dict) under ``sid`` for ``ttl`` seconds (None: no expiry)."""
        # TODO(03.1): also, when self.next_sweep has passed, drop the expired records that nobody
        # will ever read again (3,000 one-visit bots must not fill the memory), and set the next
        # sweep SWEEP_EVERY seconds on.
        raise todo("03.1")

    def touch(self, sid, ttl=None):
        """Restart the expiry of a live record without changing its data; nothing if there is none."""
        raise todo("03.1")

    def destroy(self, sid):
        """Remove the record (no error when there is none)."""
        raise todo("03.1")

    def all(self):
        """``{sid: data}`` of every live record."""
        raise todo("03.1")

    def length(self):
        """How many live records there are."""
        raise todo("03.1")

    def clear(self):
        """Remove every record."""
        raise todo("03.1")


# ---------------------------------------------------------------- the cookie

def new_session_id():
    """Exercise 03.2: a new session ID nobody can guess."""
    # TODO(03.2): 32 random bytes from the secrets module, as URL-safe text (43 characters).
    raise todo("03.2")


def cookie_value(sid, secret):
    """Exercise 03.2: the ``sid`` cookie's value, ``s:<sid>.<signature>``, percent-encoded."""
    # TODO(03.2): sign_cookie(sid, secret) gives "s:<sid>.<sig>"; encode_value(...) percent-encodes
    # it as express does (":" becomes %3A, "+" %2B, "/" %2F).
    raise todo("03.2")


def session_id_from(cookie_header, secret):
    """Exercise 03.2: the session ID in the request's ``sid`` cookie, or None if it is not ours."""
    # TODO(03.2): take the FIRST sid cookie of the header (first_cookie); refuse a missing one or
    # one longer than MAX_COOKIE_CHARS; percent-decode it (decode_value) and check its signature
    # (unsign_cookie gives the ID, or None for an unsigned, tampered or foreign value).
    raise todo("03.2")


def set_cookie_header(value):
    """The ``Set-Cookie`` for the session: every page, no page scripts, not sent cross-site.

    No Max-Age: a browser-session cookie, forgotten when the browser closes. The server forgets
    the session itself after IDLE_TIMEOUT.
    """
    return f"{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax"


def clear_cookie_header():
    """The ``Set-Cookie`` that deletes the cookie: empty, already expired, same Path."""
    return f"{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


# ---------------------------------------------------------------- the middleware

class Session(dict):
    """One visitor's data, a dict, plus its ID. Handlers find it in ``request.environ["session"]``."""

    def __init__(self, sid, data=None, is_new=True):
        super().__init__(data or {})
        self.id = sid
        self.is_new = is_new             # True: no valid cookie came in, the ID was made just now
        self.destroyed = False

    def destroy(self):
        """Ask the middleware to delete this session (store and cookie) after the handler."""
        self.clear()
        self.destroyed = True


class SessionMiddleware:
    """Wraps the app: load the session before the handler runs, save it after."""

    def __init__(self, app, secret, store):
        self.app, self.secret, self.store = app, secret, store

    def __call__(self, environ, start_response):
        try:
            session = self.load(environ)
        except OSError as exc:
            # The store cannot be reached (ConnectionError and TimeoutError are OSErrors): say so, never a 500.
            return store_unavailable(environ, start_response, exc)
        # Any other exception is a bug (or unfinished work, which guard() answers with 501), not the
        # store: it goes on up and stays a 500, with its traceback. Calling it "store unavailable"
        # would send you to look for a broken store.
        environ["session"] = session

        # Run the app, but hold its answer: the save below may still add a header, or fail.
        answer = {}

        def hold(status, headers, exc_info=None):
            answer.update(status=status, headers=headers, exc_info=exc_info)

        body = list(self.app(environ, hold))         # the handler runs here
        try:
            cookies = self.save(session)
        except OSError as exc:
            return store_unavailable(environ, start_response, exc)
        start_response(answer["status"], answer["headers"] + cookies, answer["exc_info"])
        return body

    def load(self, environ):
        """Exercise 03.3: this request's session: the stored one its cookie names, or a new one."""
        # TODO(03.3), load: read the ID with session_id_from(environ.get("HTTP_COOKIE"), self.secret).
        #   - An ID we signed: ask the store. If it holds data, return Session(sid, data, is_new=False).
        #   - Anything else (no cookie, not signed by us: do not even ask the store; or the store
        #     does not know the ID): return Session(new_session_id()), a new session with a NEW ID.
        #     Never reuse the ID the browser sent: that is session fixation.
        raise todo("03.3")

    def save(self, session):
        """Exercise 03.3: save the session after the handler; return the Set-Cookie headers to add."""
        if session.destroyed:
            return self.forget(session)
        # TODO(03.3), save:
        #   - a new session that holds nothing: store nothing, send no cookie (return []);
        #   - otherwise store dict(session) under session.id with ttl=IDLE_TIMEOUT (every save
        #     restarts the idle timeout);
        #   - a new session's browser does not know the ID yet: return
        #     [("Set-Cookie", set_cookie_header(cookie_value(session.id, self.secret)))];
        #     a loaded one already has its cookie: return [].
        raise todo("03.3")

    def forget(self, session):
        """Exercise 03.4: remove a destroyed session from the store, and clear its cookie."""
        # TODO(03.4): a session that came from the store (not is_new): destroy its record. Either
        # way return the Set-Cookie header that clears the cookie (clear_cookie_header()).
        raise todo("03.4")


def store_unavailable(environ, start_response, exc):
    """503, with a line a person understands; the cause goes to the server's log."""
    print(f"session store error: {exc!r}", file=environ["wsgi.errors"])
    start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8"),
                                               ("Retry-After", "1")])
    return [b"Session store unavailable: please try again in a moment.\n"]


# ---------------------------------------------------------------- the app

def create_app(secret=DEV_SECRET, store=None):
    """The lesson's app: routes that use ``request.environ["session"]``, wrapped in the middleware.

    ``secret`` signs the ID (a string, or a list with the newest first); ``store`` is any object
    with the Store interface (default: a new MemoryStore).
    """
    store = MemoryStore() if store is None else store
    app = new_app()

    @app.get("/")
    def index():
        session = request.environ["session"]
        return render(
            lesson_id="03", title=TITLE,
            intro="The cookie `sid` carries only a signed random ID; your data stays in the server's store.",
            routes=[Route("GET", "/visits", "count your visits in the session"),
                    Route("GET", "/session", "show the session's data as JSON"),
                    Route("POST", "/reset", "destroy the session and clear the cookie")],
            cookie_header=cookie_header(request.environ),
            decode=lambda name, value: describe_cookie(name, value, secret),
            session=dict(session) if not session.is_new else {},
            session_label="What the store holds for this session",
        )

    @app.get("/visits")
    def visits():
        session = request.environ["session"]
        session["visits"] = session.get("visits", 0) + 1
        return text(f"You have visited {session['visits']} times")

    @app.get("/session")
    def show_session():
        response.content_type = "application/json"
        return json.dumps(dict(request.environ["session"]), sort_keys=True) + "\n"

    @app.post("/reset")
    def reset():
        request.environ["session"].destroy()
        return text("Your session is gone: the store forgot it and your browser drops the cookie.")

    return guard(SessionMiddleware(app, secret, store))


def describe_cookie(name, value, secret):
    """What the inspector on ``GET /`` says about each cookie the browser sent."""
    if name != COOKIE_NAME:
        return None
    sid = session_id_from(f"{COOKIE_NAME}={value}", secret)
    return f"session ID {sid[:8]}... (signature valid)" if sid else "not signed by this server: ignored"


app = create_app()


def main(argv=None):
    lesson_main(create_app, argv, title=f"Lesson 03: {TITLE}")


if __name__ == "__main__":
    main()
