"""Lesson 07: cookie security - attributes, proxies, timeouts, CSRF.

Lesson 06's login works on your laptop. This lesson makes it fit for the internet:

- pages that carry a session are never cached, and logging out wipes the browser's copy (07.1);
- in production the session cookie is ``__Host-sid; Secure; HttpOnly; SameSite=Lax; Path=/`` (07.2);
- a session dies after ``idle_timeout`` seconds without a request, and ``absolute_timeout`` seconds
  after login however busy it is (07.3);
- the production cookie only ever travels over HTTPS - behind a proxy too, when we are told to trust it (07.4);
- a form that changes something carries a CSRF token bound to the session (07.5);
- and, for comparison, the whole session can live in an encrypted cookie (07.6): no store at all,
  but a 4 KB limit and no way to revoke it.

Run it:  make run LESSON=07   then open http://127.0.0.1:8080/ (it restarts when you save)
         (--production --trust-proxy --cookie-sessions to try the other settings)
Check it: make check LESSON=07   (do the exercises in order: each builds on the last)
"""
import functools
import hmac  # hmac and secrets: for 07.5
import math
import secrets
import time
from html import escape

from bottle import request, response

from course import ROOT
from course.kit import auth, csrf, security, storedown
from course.kit.beakerkit import (
    RAW_COOKIE_KEY,
    CountingStore,
    HardenedSessions,
    destroy_session,
    get_session,
    resolve_secret,
    session_config,
    session_id_from_cookie,
    stored_data,
)
from course.lesson.page import Route, render, render_login
from course.lesson.server import lesson_main
from course.lesson.web import guard, new_app, see_other, text, todo

TITLE = "Cookie security: attributes, proxies, timeouts, CSRF"
DEFAULT_DB = ROOT / ".sessions" / "07_cookie_security-users.sqlite3"   # made on the first login
MAX_DISPLAY_NAME = 100   # characters
MAX_BIO = 5000           # characters: fits a server-side session, not a cookie
MAX_PROFILE_BODY = 64 * 1024   # bytes: a display name and a bio, in UTF-8, with room to spare


# ---------------------------------------------------------------- 07.1 private pages

def security_headers(logging_out=False):
    """Exercise 07.1: the headers of a page that reads or sets the session.

    ``{"Cache-Control": "no-store"}``: no browser cache, proxy or CDN may keep a copy (it would
    show one user's page, or Set-Cookie, to the next). When ``logging_out``, also
    ``Clear-Site-Data``, which tells the browser to drop this site's cookies, storage and cache.
    """
    # TODO(07.1): return a dict of header names and values:
    #   - always "Cache-Control": "no-store";
    #   - when logging_out, also "Clear-Site-Data" with the quoted kinds of data to clear, at least
    #     "cookies" (the quotes are part of the value: '"cache", "cookies", "storage"').
    raise todo("07.1")


def private(route):
    """Ready-made: put ``security_headers()`` on every answer of ``route`` (a session page)."""
    @functools.wraps(route)
    def wrapper(*args, **kwargs):
        response.headers.update(security_headers())
        return route(*args, **kwargs)
    return wrapper


# ---------------------------------------------------------------- 07.2 production cookie

def cookie_settings(production):
    """Exercise 07.2: the session cookie's name and attributes, as ``session_config`` takes them.

    Development uses a plain ``sid``: this app, like express-session, never sends a ``Secure``
    cookie over plain HTTP (Chrome and Firefox would keep one on http://localhost; Safari, a LAN
    address or a made-up dev host name would drop it). Production uses the ``__Host-`` prefix:
    the browser then accepts the cookie
    only with ``Secure``, ``Path=/`` and no ``Domain``, so no sibling subdomain can set or shadow it.
    """
    if not production:
        return {"key": "sid", "secure": False, "httponly": True, "samesite": "Lax", "cookie_path": "/"}
    # TODO(07.2): the production settings: the same keys, with the cookie named "__Host-sid" and
    # secure=True. Keep httponly, samesite "Lax" and cookie_path "/"; never add a cookie_domain
    # (a __Host- cookie with a Domain is refused by the browser).
    raise todo("07.2")


# ---------------------------------------------------------------- 07.3 timeouts

def session_expired(session, now, idle_timeout, absolute_timeout):
    """Exercise 07.3: why a logged-in session is over - ``"idle"``, ``"absolute"`` - or None.

    ``session["login_at"]`` is when the user logged in, ``session["seen_at"]`` the last request
    that used the session (both from the app's clock, in seconds). Idle: more than
    ``idle_timeout`` seconds since ``seen_at``. Absolute: more than ``absolute_timeout`` seconds
    since ``login_at``, however busy the session was. A session without the timestamps is over.
    """
    # TODO(07.3): read login_at and seen_at with session.get(...); when either is missing (not an
    # int or float) return "absolute". Then return "absolute" when more than absolute_timeout
    # seconds passed since login_at, "idle" when more than idle_timeout seconds passed since
    # seen_at, else None. Exactly at a limit is not over yet (use >, not >=).
    raise todo("07.3")


# ---------------------------------------------------------------- 07.4 behind a proxy

def request_is_https(environ, trust_proxy):
    """Exercise 07.4: did this request arrive over HTTPS?

    Directly: the server itself speaks TLS (``environ["wsgi.url_scheme"] == "https"``). Behind a
    reverse proxy the app sees plain HTTP from the proxy, which says what the browser used in
    ``X-Forwarded-Proto``. Any client can send that header, so it counts only when
    ``trust_proxy`` says a proxy we trust sets it - and then only its first value, as express
    does with ``proxy: true`` (``https, http`` is HTTPS; ``http, https`` is not). That is safe only
    when the proxy overwrites the header; behind proxies that append to it, count from the right
    (one value per proxy you run), as Werkzeug's ProxyFix does.
    """
    # TODO(07.4):
    #   - environ.get("wsgi.url_scheme") == "https": True (the server itself spoke TLS);
    #   - otherwise, without trust_proxy: False, whatever the headers say;
    #   - with trust_proxy: the header X-Forwarded-Proto is environ.get("HTTP_X_FORWARDED_PROTO", "");
    #     take its FIRST comma-separated value, strip spaces, lower-case it, compare with "https".
    raise todo("07.4")


# ---------------------------------------------------------------- 07.5 CSRF tokens

def csrf_token(session):
    """Exercise 07.5: this session's CSRF token, made (and saved) on first use.

    The token is a secret the page carries and the session remembers: a forged form posted from
    another site cannot know it, although the browser sends the session cookie along.
    """
    # TODO(07.5): return session["csrf_token"] when the session has one; otherwise make one with
    # secrets.token_urlsafe(32), store it in session["csrf_token"], session.save(), and return it.
    raise todo("07.5")


def csrf_token_ok(session, sent):
    """Exercise 07.5: whether ``sent`` (from the form, or None) is this session's token."""
    # TODO(07.5): expected = session.get("csrf_token"). When there is none, or sent is None or
    # empty, return False (compare_digest("", "") is True!). Otherwise compare the two with
    # hmac.compare_digest - never == - on bytes: .encode("utf-8") both (on a str that is not
    # ASCII, compare_digest raises, and the request would be a 500).
    raise todo("07.5")


# ---------------------------------------------------------------- 07.6 sessions in a cookie

def cookie_session_settings(secret):
    """Exercise 07.6: Beaker options that keep the whole session in an encrypted cookie.

    ``type="cookie"`` stores the session data in the cookie itself; ``validate_key`` signs it (no
    tampering) and ``encrypt_key`` encrypts it with AES (no reading: with ``validate_key`` alone
    anyone can base64-decode the data). Derive the two keys from the secret, one per job.
    """
    # TODO(07.6): return {"type": "cookie", "encrypt_key": ..., "validate_key": ...} with two
    # different keys made by security.derive_key(secret, purpose), one purpose per key.
    raise todo("07.6")


# ---------------------------------------------------------------- the app

def create_app(production=False, trust_proxy=False, idle_timeout=1800, absolute_timeout=28800,
               secret=None, session_type="memory", db_path=DEFAULT_DB, now=time.time, store=None):
    """Build the lesson's app.

    ``production``: the ``__Host-`` cookie, sent over HTTPS only (and a real secret required).
    ``trust_proxy``: believe ``X-Forwarded-Proto`` (only behind a proxy that sets it).
    ``idle_timeout``, ``absolute_timeout``: seconds. ``session_type``: ``"memory"`` (a store on the
    server) or ``"cookie"`` (07.6). ``now``: the clock (tests pass a ``FakeClock``).
    """
    secret = resolve_secret(secret, production=production)
    options = cookie_settings(production)
    if session_type == "cookie":
        options.update(cookie_session_settings(secret))
    elif session_type == "memory":
        store = store if store is not None else CountingStore()
        options["store"] = store
    else:
        raise ValueError(f"session_type must be 'memory' or 'cookie', not {session_type!r}")
    # Beaker's own idle timeout (real time, whole seconds) as a second line of defence.
    config = session_config(secret=secret, timeout=max(1, math.ceil(idle_timeout)), **options)

    app = new_app()
    app.install(storedown.plugin)  # a store that is down: 503, never a traceback
    # What the routes below need to know, in Bottle's place for an app's settings (see setting()).
    app.config.update("lesson", users=auth.UserDB(db_path), clock=now, idle_timeout=idle_timeout, secret=secret,
                      production=production,
                      absolute_timeout=absolute_timeout, session_config=config, store=store,
                      mode=(f"Mode: {'production' if production else 'development'}, "
                            f"{'trusting' if trust_proxy else 'not trusting'} X-Forwarded-Proto, "
                            f"{session_type} sessions, idle timeout {idle_timeout:g} s, "
                            f"absolute timeout {absolute_timeout:g} s."))
    app.get("/", callback=index)
    app.get("/login", callback=login_page)
    app.post("/login", callback=login)
    app.get("/dashboard", callback=dashboard)
    app.get("/profile", callback=profile_form)
    app.post("/profile", callback=profile_update)
    app.post("/logout", callback=logout)

    sessions = HardenedSessions(app, config, on_save_error=security.session_save_error)
    # Outermost: a Secure cookie never leaves over plain HTTP (request_is_https decides).
    return guard(security.SecureCookieGate(sessions, lambda environ: request_is_https(environ, trust_proxy)))


# ---------------------------------------------------------------- the routes (ready-made)

def setting(name):
    """This app's setting ``name``, which ``create_app`` put in ``app.config`` (``request.app`` here)."""
    return request.app.config["lesson." + name]


def logged_in(route):
    """Like ``auth.login_required`` (401 unless logged in), with the timeouts of 07.3."""
    @functools.wraps(route)
    def guarded(*args, **kwargs):
        session, now = get_session(), setting("clock")()
        user_id = auth.current_user_id(session)
        if user_id is not None and session_expired(session, now, setting("idle_timeout"),
                                                   setting("absolute_timeout")):
            destroy_session(session)  # gone from the store: no clock trick brings it back
            user_id = None
        if user_id is None:
            return text(auth.NOT_LOGGED_IN, 401)
        session["seen_at"] = now      # activity: the idle timeout starts again
        session.save()
        return route(*args, **kwargs)
    return guarded


def index():
    """The lesson page. It shows session data, so no cache may keep it either; it says so itself,
    not through ``@private``, so that it opens before 07.1 is done."""
    response.set_header("Cache-Control", "no-store")
    return render(
        lesson_id="07", title=TITLE, intro=setting("mode") + " Log in as alice / wonderland.",
        routes=[Route("POST", "/login", "log in (alice / wonderland, bob / builder)",
                      ("username=alice", "password")),
                Route("GET", "/login", "the login page"),
                Route("GET", "/dashboard", "only for logged-in users"),
                Route("GET", "/profile", "a form protected by a CSRF token"),
                Route("POST", "/logout", "log out: destroy the session, clear the site's data")],
        cookie_header=request.environ.get(RAW_COOKIE_KEY, ""),
        decode=lambda name, value: describe_cookie(name, value, setting("session_config")),
        session=None if setting("production") else inspect_session(setting("session_config"), setting("store")),
        inspector=not setting("production"),   # production shows nobody what their browser sent
    )


@private
def login_page():
    token = csrf.login_form_token(setting("secret"))    # no login CSRF: a pre-session token
    return render_login(title="Lesson 07: log in", hidden={csrf.TOKEN_FIELD: token})


@private
@csrf.protect_login(lambda: setting("secret"))
def login():
    username, password = auth.read_credentials()   # a missing field: 400 naming it
    user_id = auth.verify(setting("users"), username, password)
    if user_id is None:
        return text(auth.LOGIN_FAILED, 401)
    session = get_session()
    session.pop("csrf_token", None)    # a new session gets a new CSRF token...
    auth.log_in(session, user_id)      # ...and a new ID (lesson 06)
    session["login_at"] = session["seen_at"] = setting("clock")()   # the two clocks of 07.3 start
    session.save()
    if auth.from_browser_form():       # a browser goes on to the page (POST, redirect, GET)
        # Not bottle.redirect(): it builds Location from X-Forwarded-Host (see the README).
        return see_other("/dashboard")
    return text(auth.LOGIN_OK)


@private
@logged_in
def dashboard():
    return text(f"Welcome to your dashboard, user {auth.current_user_id()}")


@private
@logged_in
def profile_form():
    session = get_session()
    name = session.get("display_name", "")
    return PROFILE_FORM.format(user=auth.current_user_id(), token=escape(csrf_token(session)),
                               name=escape(name), shown=escape(name) or "(none yet)",
                               bio=escape(session.get("bio", "")))


@private
@logged_in
def profile_update():
    session = get_session()
    # The kit reads the body: a bad Content-Length, bytes that are not UTF-8, a field sent twice,
    # nested JSON or an oversized body are a 4xx naming the problem, never a 500.
    fields = auth.read_fields((), optional=("display_name", "bio"), max_body=MAX_PROFILE_BODY)
    if not csrf_token_ok(session, csrf.sent_token()):           # X-CSRF-Token, or the form's field
        return text("CSRF token missing or invalid", 403)   # before anything changes
    name = (fields["display_name"] or "").strip()
    bio = fields["bio"] or ""
    if not name or len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        return text(f"display_name: 1 to {MAX_DISPLAY_NAME} printable characters, please", 400)
    if len(bio) > MAX_BIO:
        return text(f"bio: at most {MAX_BIO} characters, please", 400)
    session["display_name"], session["bio"] = name, bio
    session.save()     # too big for a cookie session? Then a 413 (security.session_save_error)
    return text(f"Profile saved. Your display name is now {name}")


@private
@csrf.refuse_cross_site               # a page of another site cannot log you out
def logout():
    try:
        auth.log_out(get_session())    # the record destroyed, the cookie cleared (lesson 06)
    except storedown.store_errors():        # the store is down: say so, do not pretend
        return text(auth.LOGOUT_FAILED, 500)
    response.headers.update(security_headers(logging_out=True))
    return text(auth.LOGOUT_OK)


PROFILE_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your profile</title></head>
<body><h1>Your profile, user {user}</h1>
<p>Display name: <strong id="display-name">{shown}</strong></p>
<form method="post" action="/profile">
  <input type="hidden" name="csrf_token" value="{token}">
  <label>Display name <input name="display_name" value="{name}" maxlength="100"></label><br>
  <label>Bio <textarea name="bio" rows="4" cols="50">{bio}</textarea></label><br>
  <button type="submit">Save</button>
</form>
<p><a href="/">back to the lesson page</a></p></body></html>
"""


def describe_cookie(name, value, config):
    """What the inspector on ``GET /`` says about the session cookie."""
    if name != config["session.key"]:
        return None
    if config["session.type"] == "cookie":
        return f"the whole session, encrypted and signed ({len(value)} characters): you cannot read it"
    session_id = session_id_from_cookie(f"{name}={value}", name, config["session.secret"])
    return f"session ID {session_id[:8]}..." if session_id else "bad signature: ignored"


def inspect_session(config, store):
    """The session data to show on the lesson page."""
    if config["session.type"] == "cookie":
        return dict(get_session()) if get_session().get("user_id") else {}
    session_id = session_id_from_cookie(request.environ.get("HTTP_COOKIE"), config["session.key"],
                                        config["session.secret"])
    return stored_data(store, session_id) or {}


app = create_app()


def main(argv=None):
    try:
        lesson_main(create_app, argv, title=f"Lesson 07: {TITLE}", add_arguments=add_arguments, options=options)
    except (ValueError, NotImplementedError) as exc:   # a bad setting, or an exercise not done yet
        raise SystemExit(f"Cannot start: {exc}") from None


def add_arguments(parser):
    parser.add_argument("--production", action="store_true",
                        help="__Host-sid, Secure: sent over HTTPS only (needs SESSION_SECRET)")
    parser.add_argument("--trust-proxy", action="store_true", help="believe X-Forwarded-Proto")
    parser.add_argument("--cookie-sessions", action="store_true", help="keep the session in an encrypted cookie")
    parser.add_argument("--idle-timeout", type=float, default=1800, help="seconds (default 1800)")
    parser.add_argument("--absolute-timeout", type=float, default=28800, help="seconds (default 28800)")


def options(args):
    return {"production": args.production, "trust_proxy": args.trust_proxy,
            "session_type": "cookie" if args.cookie_sessions else "memory",
            "idle_timeout": args.idle_timeout, "absolute_timeout": args.absolute_timeout}


if __name__ == "__main__":
    main()
