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
from course.lesson.web import ExerciseNotDone, new_app, text, todo

TITLE = "Beaker, the real library, and its sharp edges"


# ---------------------------------------------------------------- 05.1 a safe configuration

def session_config(secret=None):
    """Exercise 05.1: Beaker's cookie options, safe, as a ``session.``-prefixed dict.

    Beaker's defaults: cookie ``beaker.session.id`` (it tells an attacker what runs the site), no
    ``HttpOnly`` (page scripts can read it), and no secret (Beaker then adopts any ID a client
    makes up). ``secret=None`` means: read ``SESSION_SECRET`` from the environment.
    """
    # TODO(05.1): return a dict of Beaker options, each key starting with "session.":
    #   - the cookie is named "sid"                      ("session.key")
    #   - page scripts cannot read it                    ("session.httponly")
    #   - it is SameSite=Lax                             ("session.samesite")
    #   - it is signed with `secret`                     ("session.secret"); when secret is None,
    #     read os.environ["SESSION_SECRET"]; when that is missing or empty too, warn loudly
    #     (warnings.warn(...) with a message naming SESSION_SECRET) and use DEV_SECRET.
    # Until this is done, create_app() falls back to Beaker's own defaults: look at its cookie.
    raise todo("05.1")


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
    # TODO(05.2): when the store had no record (session.is_new) although the browser named this
    # very ID (session.id == sent_id(session)), give the session a fresh ID with
    # session._create_id() (Beaker's own helper: a new random ID, sent when the session is saved).
    # Leave every other session alone. Until this is done, Beaker adopts the ID.
    raise todo("05.2")


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
    # TODO(05.3):
    #   - delete the record: Beaker keeps it in session.namespace (one per session) under the key
    #     "session"; take session.namespace.acquire_write_lock() / release_write_lock() around it.
    #     A brand-new session (session.is_new) has no record and no .namespace: skip it then.
    #     Never session.namespace.remove(): on memcached that empties the whole server.
    #   - give the session a new, empty ID (session.invalidate()), or Beaker writes the data it
    #     loaded back under the old ID when the response goes out;
    #   - clear the browser's cookie: expire_cookie(session) (from course.kit.beakerkit).
    # Let store errors propagate: the app then answers 503 and the session is left as it was.
    raise todo("05.3")


# ---------------------------------------------------------------- 05.4 rolling

def roll_cookie(session):
    """Exercise 05.4: send the cookie of an existing session again, with a fresh expiry.

    Beaker sends the cookie of a server-side session only when the session is created, so a
    ``cookie_expires`` lifetime counts from the first visit, however busy the visitor is.
    Called after every route when ``rolling=True``.
    """
    # TODO(05.4): re-send the cookie only for a session that
    #   - this request used: session.accessed() (never load a session just to roll it), and
    #   - exists in the store: not session.is_new (a new, unsaved session gets no cookie at all);
    # Beaker has no call for it, but setting session.path (even to itself) makes it rebuild the
    # cookie with a fresh expiry and send it.
    raise todo("05.4")


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
    # TODO(05.5): which cookie does Beaker need, and which reader in course.kit.cookies finds it
    # without ever calling http.cookies? Hand Beaker a header holding that one cookie, and only
    # when its value is one PLAIN_VALUE allows (what would Python's parser do with the others?);
    # otherwise no header at all. Until this is done, Beaker parses the header as the browser sent it.
    raise todo("05.5")


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
