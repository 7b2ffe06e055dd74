"""Lesson 03: the server remembers.

The cookie carries only a random, signed session ID; the data stays on the server, in a store.
A session middleware wraps the Bottle app: before a handler runs it reads the ``sid`` cookie and
loads that session from the store, and after the handler it saves the session back and, for a new
one, sends the cookie. An ID the server did not issue is never adopted.

Run it:  make run LESSON=03   then open http://127.0.0.1:8080/ (it restarts when you save)
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
from course.lesson.web import guard, new_app, text

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

    def _live(self, sid):
        """The record of ``sid`` unless it has expired (an expired one is deleted now)."""
        record = self.records.get(sid)
        if record is not None and record[1] is not None and record[1] <= self.clock():
            del self.records[sid]
            return None
        return record

    def get(self, sid):
        with self.lock:
            record = self._live(sid)
        # JSON text in, a fresh dict out: a handler changing its copy changes nothing here.
        return None if record is None else json.loads(record[0])

    def set(self, sid, data, ttl=None):
        expires = None if ttl is None else self.clock() + ttl
        with self.lock:
            now = self.clock()
            if now >= self.next_sweep:   # now and then, drop what expired and nobody reads again
                self.records = {s: r for s, r in self.records.items() if r[1] is None or r[1] > now}
                self.next_sweep = now + SWEEP_EVERY
            self.records[sid] = (json.dumps(data), expires)

    def touch(self, sid, ttl=None):
        with self.lock:
            record = self._live(sid)
            if record is not None:
                self.records[sid] = (record[0], None if ttl is None else self.clock() + ttl)

    def destroy(self, sid):
        with self.lock:
            self.records.pop(sid, None)

    def all(self):
        with self.lock:
            live = {sid: self._live(sid) for sid in list(self.records)}
        return {sid: json.loads(record[0]) for sid, record in live.items() if record is not None}

    def length(self):
        return len(self.all())

    def clear(self):
        with self.lock:
            self.records.clear()


# ---------------------------------------------------------------- the cookie

def new_session_id():
    """Exercise 03.2: a new session ID nobody can guess."""
    return secrets.token_urlsafe(32)     # 32 bytes from the OS's CSPRNG: 43 characters, 256 bits


def cookie_value(sid, secret):
    """Exercise 03.2: the ``sid`` cookie's value, ``s:<sid>.<signature>``, percent-encoded."""
    return encode_value(sign_cookie(sid, secret))


def session_id_from(cookie_header, secret):
    """Exercise 03.2: the session ID in the request's ``sid`` cookie, or None if it is not ours."""
    value = first_cookie(cookie_header, COOKIE_NAME)     # the first one, if the name comes twice
    if value is None or len(value) > MAX_COOKIE_CHARS:
        return None
    return unsign_cookie(decode_value(value), secret)    # None: unsigned, tampered, wrong secret


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
        sid = session_id_from(environ.get("HTTP_COOKIE"), self.secret)
        if sid is not None:                          # we signed it: worth asking the store
            data = self.store.get(sid)
            if data is not None:
                return Session(sid, data, is_new=False)
        # No cookie, a cookie we did not sign, or an ID the store does not know (expired,
        # destroyed, never issued): a new session with a NEW ID. Adopting the ID the browser
        # sent would let an attacker choose a victim's session ID (session fixation).
        return Session(new_session_id())

    def save(self, session):
        """Exercise 03.3: save the session after the handler; return the Set-Cookie headers to add."""
        if session.destroyed:
            return self.forget(session)
        if session.is_new and not session:
            return []                                # a visitor who stored nothing: no record, no cookie
        # Every save restarts the idle timeout, so a session in use never expires.
        self.store.set(session.id, dict(session), ttl=IDLE_TIMEOUT)
        if session.is_new:                           # the browser does not know this ID yet
            return [("Set-Cookie", set_cookie_header(cookie_value(session.id, self.secret)))]
        return []                                    # it already has the cookie

    def forget(self, session):
        """Exercise 03.4: remove a destroyed session from the store, and clear its cookie."""
        if not session.is_new:
            self.store.destroy(session.id)
        return [("Set-Cookie", clear_cookie_header())]


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
