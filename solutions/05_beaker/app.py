"""Lesson 05: Beaker, the real library, and its sharp edges.

Lessons 03 and 04 built a session middleware by hand. Beaker is the one Bottle's documentation
shows in its session recipe (warning that concurrent updates of one session can be lost):
``SessionMiddleware`` wraps the app and puts a lazy session in
``request.environ["beaker.session"]``. Its defaults fall short of what lesson 03 taught, and each
exercise closes one gap. Until an exercise is done, the app behaves as Beaker does out of the box,
so you can see the gap before you close it (``--stock`` shows Beaker as it ships, always).

Run it:  make run LESSON=05   then open http://127.0.0.1:8080/ (it restarts when you save)
Check it: make check LESSON=05
"""
import os  # os and warnings: for 05.1
import re
import warnings

from beaker.middleware import SessionMiddleware
from beaker.session import InvalidSignature, Session
from bottle import request

from course.kit import storedown
from course.kit.beakerkit import (
    DEV_SECRET,
    RAW_COOKIE_KEY,
    CountingNamespace,
    CountingStore,
    expire_cookie,
    get_session,
    session_id_from_cookie,
    stored_data,
)
from course.kit.cookies import cookie_header, first_cookie  # first_cookie: for 05.5
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import ExerciseNotDone, new_app, text

TITLE = "Beaker, the real library, and its sharp edges"


# ---------------------------------------------------------------- 05.1 a safe configuration

def session_config(secret=None):
    """Exercise 05.1: Beaker's cookie options, safe, as a ``session.``-prefixed dict.

    Beaker's defaults: cookie ``beaker.session.id`` (it tells an attacker what runs the site), no
    ``HttpOnly`` (page scripts can read it), and no secret (Beaker then adopts any ID a client
    makes up). ``secret=None`` means: read ``SESSION_SECRET`` from the environment.
    """
    if secret is None:
        secret = os.environ.get("SESSION_SECRET")
        if not secret:
            # Loud, not fatal: a laptop can run without it, production must not.
            warnings.warn("SESSION_SECRET is not set: signing session cookies with the insecure "
                          "development secret DEV_SECRET. Set SESSION_SECRET before deploying.",
                          stacklevel=2)
            secret = DEV_SECRET
    return {
        "session.key": "sid",            # no framework fingerprint
        "session.httponly": True,        # document.cookie cannot see it
        "session.samesite": "Lax",       # not sent on cross-site POSTs
        "session.secret": secret,        # the cookie carries HMAC(secret, id) + id
    }


# ---------------------------------------------------------------- 05.2 strict IDs

def sent_id(session):
    """The session ID the browser's cookie named (signature checked by Beaker), or None."""
    morsel = session.cookie.get(session.key) if hasattr(session, "cookie") else None
    value = morsel.value if morsel is not None else None
    return None if value is InvalidSignature else value


def refuse_unknown_id(session):
    """Exercise 05.2: never adopt an ID whose record is gone.

    Called right after Beaker loaded the session named by the cookie. When the store has no
    record under that ID (a restart, a destroyed or expired session, an ID the server never
    issued), Beaker sets ``session.is_new`` but carries on *under the ID the browser sent*.
    """
    if session.is_new and session.id == sent_id(session):
        # Beaker's own helper: a new random ID; the cookie goes out when the session is saved.
        session._create_id()


class StrictSession(Session):
    """Beaker's ``Session``, with exercise 05.2 plugged in (ready-made)."""

    def __init__(self, request, **options):
        super().__init__(request, **options)       # Beaker reads the cookie and loads the record
        try:
            refuse_unknown_id(self)
        except ExerciseNotDone:
            pass                                   # 05.2 not done: Beaker adopts the ID, as it ships


# ---------------------------------------------------------------- 05.3 a real destroy

def destroy_session(session):
    """Exercise 05.3: remove the session's record from the store and clear its cookie.

    Beaker's ``delete()`` leaves an empty record under the same ID; ``invalidate()`` and
    ``regenerate_id()`` leave the old record, data and all, for anybody who replays the cookie.
    """
    if not session.is_new:                         # a brand-new session has no record, no .namespace
        record = session.namespace
        record.acquire_write_lock()
        try:
            if "session" in record:
                del record["session"]              # not record.remove(): on memcached, flush_all!
        finally:
            record.release_write_lock()
    # A new, empty ID: otherwise Beaker writes the loaded data back on the way out.
    session.invalidate()
    expire_cookie(session)                         # the browser drops the cookie


# ---------------------------------------------------------------- 05.4 rolling

def roll_cookie(session):
    """Exercise 05.4: send the cookie of an existing session again, with a fresh expiry.

    Beaker sends the cookie of a server-side session only when the session is created, so a
    ``cookie_expires`` lifetime counts from the first visit, however busy the visitor is.
    Called after every route when ``rolling=True``.
    """
    # Only a session this request used (never load one just to roll it) that exists in the store
    # (a new, unsaved session gets no cookie at all, as saveUninitialized=false).
    if session.accessed() and not session.is_new:
        session.path = session.path                # setting path makes Beaker rebuild and send it


# ---------------------------------------------------------------- 05.5 a robust Cookie header

# What a Beaker cookie holds: hex (a signed ID) or base64. Python's parser reads these as they are.
PLAIN_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~:/=]{1,4096}")

def clean_cookie_header(header, key):
    """Exercise 05.5: the Cookie header to hand Beaker: its own cookie ``key`` alone, or ``""``.

    Python's cookie parser (used by Beaker and by Bottle) drops the *whole* header at the first
    piece it cannot parse (``null; sid=...`` loses the session), raises on a cookie name it refuses
    (``a(b=1``: any page of another app on this host can plant one, and every page here is a 500),
    and takes quadratic time to unquote a value full of backslashes (CVE-2024-7592). Beaker reads
    only its own cookie: give it only that, found with the course's own reader, and only when its
    value is made of the characters a Beaker cookie holds (``PLAIN_VALUE``). Of two cookies with
    the same name, the first counts (what browsers send first, and what express reads).
    """
    value = first_cookie(header, key)             # the course's reader: never http.cookies
    if value is None or not PLAIN_VALUE.fullmatch(value):
        return ""                                  # no cookie of ours: Beaker starts a new session
    return f"{key}={value}"


# ---------------------------------------------------------------- the app

def create_app(secret=None, rolling=False, store=None, stock=False, **beaker_options):
    """Build the lesson's app: Bottle inside Beaker's ``SessionMiddleware``.

    ``secret``: the signing secret (None: ``SESSION_SECRET``). ``rolling``: re-send the cookie on
    every response that used the session. ``store``: a ``CountingStore`` (default: a new one, this
    app's own). ``stock=True``: Beaker exactly as it ships, none of the exercises applied.
    ``beaker_options``: more Beaker options, e.g. ``auto=True``, ``save_accessed_time=False``,
    ``cookie_expires=60``, ``timeout=1800``.
    """
    store = store if store is not None else CountingStore()
    if stock:
        settings = {}
    else:
        try:
            settings = session_config(secret)
        except ExerciseNotDone:
            settings = {}                              # 05.1 not done: Beaker's own defaults
    options = {f"session.{name}": value for name, value in beaker_options.items()}
    config = {"session.key": "beaker.session.id",      # Beaker's defaults, spelt out
              **settings, **options,
              "session.namespace_class": CountingNamespace, "session.store": store}
    if not stock:
        config["session.session_class"] = StrictSession
    app = new_app()
    app.install(storedown.plugin)     # a route that finds the store down: 503
    if rolling and not stock:
        app.install(keep_rolling)

    app.get("/", callback=lambda: lesson_page(config, store))   # the lesson page: at the end of the file

    @app.get("/visits")
    def visits():
        session = get_session()
        session["visits"] = session.get("visits", 0) + 1
        session.save()          # Beaker writes only what you save() (or everything with auto=True)
        return text(f"You have visited {session['visits']} times")

    @app.get("/peek")
    def peek():
        return text(f"Visits so far: {get_session().get('visits', 0)}")

    @app.get("/store/stats")
    def store_stats():
        return store.stats()    # Bottle answers a dict as JSON

    @app.post("/reset")
    def reset():
        destroy_session(get_session())
        return text("Session destroyed: the store holds nothing under the old ID")

    return storedown.guard(Sessions(app, config, clean=not stock))   # a failed save: 503


def keep_rolling(callback):
    """A Bottle plugin (ready-made): after each route, roll the session cookie (exercise 05.4)."""

    def wrapper(*args, **kwargs):
        body = callback(*args, **kwargs)
        try:
            roll_cookie(get_session())
        except ExerciseNotDone:
            pass                                       # 05.4 not done: Beaker never re-sends it
        return body

    return wrapper


class Sessions(SessionMiddleware):
    """Beaker's ``SessionMiddleware``, with exercise 05.5 in front of it (ready-made)."""

    def __init__(self, app, config, clean=True):
        super().__init__(app, config)
        self.clean = clean

    def __call__(self, environ, start_response):
        raw = environ.get("HTTP_COOKIE", "")
        environ[RAW_COOKIE_KEY] = raw                  # the inspector shows what was really sent
        if self.clean and raw:
            try:
                environ["HTTP_COOKIE"] = clean_cookie_header(raw, self.options["key"])
            except ExerciseNotDone:
                pass                                   # 05.5 not done: Beaker parses it as sent
        return super().__call__(environ, start_response)


def lesson_page(config, store):
    """The lesson page, with the inspector. It never touches the session: it reads the store
    directly, uncounted."""
    session_id = session_id_from_cookie(cookie_header(request.environ), config["session.key"],
                                        config.get("session.secret"))
    return render(
        lesson_id="05", title=TITLE,
        intro=("Beaker keeps the session on the server and only an ID in the cookie. "
               f"Cookie name: {config['session.key']}. Watch what each route costs the store."),
        routes=[Route("GET", "/visits", "count your visits in the session (writes)"),
                Route("GET", "/peek", "read the count (only reads; Beaker may still write)"),
                Route("GET", "/store/stats", "what Beaker asked of the store so far"),
                Route("POST", "/reset", "destroy the session: record and cookie")],
        cookie_header=request.environ.get(RAW_COOKIE_KEY) or cookie_header(request.environ),
        decode=describe_cookie,
        session=stored_data(store, session_id),
    )


def describe_cookie(name, value):
    """What the inspector on ``GET /`` says about each cookie the browser sent."""
    if name in ("sid", "beaker.session.id"):
        if len(value) == 72:
            return f"signature {value[:8]}... + session ID {value[40:48]}..."
        return "session ID (unsigned: Beaker believes whatever is here)"
    return None


app = create_app()


def main(argv=None):
    lesson_main(create_app, argv, title=f"Lesson 05: {TITLE}",
                add_arguments=lambda parser: (
                    parser.add_argument("--rolling", action="store_true",
                                        help="re-send the session cookie on every response"),
                    parser.add_argument("--stock", action="store_true",
                                        help="Beaker exactly as it ships, no exercise applied")),
                options=lambda args: {"rolling": args.rolling, "stock": args.stock})


if __name__ == "__main__":
    main()
