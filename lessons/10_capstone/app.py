"""Lesson 10, the capstone: a notes app whose sessions pass the OWASP checklist, item by item.

Everything the course built, in one app: a login with a new session ID and no login CSRF (10.1),
idle, absolute and renewal timeouts (10.2), a login rate limit per account and per client that
cannot lock a victim out of their own devices (10.3), logging out for real, everywhere, and
on a new password (10.4), remember-me done right (10.5), a life-cycle log where session IDs
appear only as salted hashes (10.6), and text that never turns into markup on a page (10.7).
The rest is ready-made and comes from course/kit: the session store of ``--store URL``, lesson 09's
locks, the ``__Host-`` cookie, CSRF tokens, no-store, the registry of each user's sessions, and
the watch on made-up session IDs.

Until an exercise is written, the app does what an app without it does (``BEFORE`` below): it
runs, with that hole open. The notebook attacks those holes.

Run it:  make run LESSON=10        then open http://127.0.0.1:8080/ and log in as alice / wonderland
         (--store redis://127.0.0.1:6379/0 for Redis; --production behind HTTPS)
Check it: make check LESSON=10
"""
import functools
import hmac  # for 10.5
import json
import logging
import secrets
import sys
import time
from html import escape

from bottle import request, response

from course.kit import auth, csrf, locks, ratelimit, remember, security, storedown, stores_beaker
from course.kit.beakerkit import (
    RAW_COOKIE_KEY,
    HardenedSessions,
    destroy_session,
    expire_cookie,
    get_session,
    regenerate_session,
    resolve_secret,
    session_config,
    session_id_from_cookie,
)
from course.kit.cookies import request_cookies
from course.kit.forms import request_header
from course.kit.idlog import id_hash, loggable  # loggable for 10.6
from course.kit.localdb import LocalDB
from course.kit.ratelimit import FailureCounter, InvalidIdGuard
from course.kit.registry import SessionRegistry
from course.kit.remember import RememberStore
from course.lesson.page import Route, render, render_login
from course.lesson.server import lesson_main
from course.lesson.web import ExerciseNotDone, guard, new_app, see_other, text, todo

TITLE = "The capstone: sessions that pass the OWASP checklist"
DEFAULT_STORE = "sqlite:///.sessions/10_capstone-sessions.db"   # the sessions (any --store URL)
DEFAULT_DB = ".sessions/10_capstone-users.sqlite3"                # users, notes, the sessions' registry
IDLE_TIMEOUT = 15 * 60           # seconds without a request before a session is over
ABSOLUTE_TIMEOUT = 8 * 3600      # seconds after login, however busy
RENEW_EVERY = 10 * 60            # seconds between two IDs of one session (the renewal timeout)
LOGIN_LIMITS = {"per_account": 5, "per_client": 20, "window": 15 * 60}   # failures per window (seconds)
RACE_GRACE = 10                  # seconds: a used remember-me token back this soon is two tabs, not a thief
MAX_NOTE, MAX_NOTES = 2000, 200  # characters per note, notes per user
LOG = logging.getLogger("course.capstone")   # the sessions' life cycle


# ---------------------------------------------------------------- 10.1 the login

def login_request_ok(environ, secret):
    """Exercise 10.1: whether this ``POST /login`` may log anybody in (no login CSRF).

    A page of another origin must not be able to log the browser in as the attacker. A login
    brings the token of ``GET /login``'s form (``csrf.sent_token()``); a JSON client may bring a
    same-origin ``Origin`` instead (no page of another origin can send that).
    """
    # TODO(10.1): refuse a login a page of another origin sent (login CSRF):
    #   - csrf.is_cross_site(environ) is True: refuse (return False);
    #   - the request brought a token (csrf.sent_token() is not None): it is good only if
    #     csrf.login_token_ok(secret, sent, environ) says so;
    #   - no token: accept only a JSON body (CONTENT_TYPE application/json, maybe with a parameter
    #     such as "; charset=utf-8") whose Origin header
    #     (request_header("Origin", environ)) is this server's own, csrf.own_origin(environ).
    raise todo("10.1")


def start_session(session, user_id, now):
    """Exercise 10.1: log ``user_id`` in on ``session``: a new ID, a new CSRF token, the clocks started."""
    # TODO(10.1): log the user in on a NEW session ID: auth.log_in(session, user_id) (lesson 06)
    #   destroys the old record and gives the data a new ID. Then a new CSRF token
    #   (secrets.token_urlsafe(32)) in session["csrf_token"], the three clocks
    #   session["login_at"], session["seen_at"], session["renewed_at"] set to now, and save.
    raise todo("10.1")


# ---------------------------------------------------------------- 10.2 timeouts

def session_state(session, now, idle, absolute, renew):
    """Exercise 10.2: ``"absolute"`` or ``"idle"`` when the session is over, ``"renew"`` when its ID
    is due for a new one, else None (``login_at``, ``seen_at``, ``renewed_at``: the app's clock)."""
    # TODO(10.2): read session["login_at"], ["seen_at"], ["renewed_at"] (numbers from the app's clock;
    #   a session missing any of them, or holding anything but an int or a float there - a bool is
    #   no time - is over: "absolute"). Then, in this order:
    #   more than `absolute` seconds since login -> "absolute"; more than `idle` since the last
    #   request -> "idle"; more than `renew` since the ID was last changed -> "renew"; else None.
    raise todo("10.2")


# ---------------------------------------------------------------- 10.3 login rate limit

def login_wait(failures, username, client, device, limits):
    """Exercise 10.3: seconds this login attempt must wait (0: go ahead).

    Two limits: failures from this client (any account), and failures on this account (from any
    client) - except on a device that logged in as this user before (``device``, its nonce, or
    None), which counts only its own failures: neither limit a stranger can drive (the account's,
    or the address it may share with the owner) locks the owner out of it.
    """
    # TODO(10.3): the seconds to wait, from failures.retry_after(key, limit, limits["window"]):
    #   - on a known device (device is not None): only its own failures, key "device:" + device with
    #     limits["per_account"] - nobody else can lock the owner out of the browsers they already use;
    #   - else the larger of two waits: key "client:" + client with limits["per_client"] (one client
    #     guessing many accounts) and key "account:" + username[:64].lower() with limits["per_account"]
    #     (many clients, one account).
    raise todo("10.3")


# ---------------------------------------------------------------- 10.4 ending sessions

def end_session(session, registry):
    """Exercise 10.4: log this session out for good: out of the registry, its record and cookie gone."""
    # TODO(10.4): end this session on the server, not only in the browser: take its handle
    #   (session.get("handle")) out of the registry (registry.end) and destroy_session(session)
    #   (the record gone from the store, the cookie cleared).
    raise todo("10.4")


def end_sessions(registry, tokens, user_id, keep=None):
    """Exercise 10.4: end every session of ``user_id`` but ``keep`` (a handle; None: all of them),
    and every remember-me token of the user; how many sessions ended."""
    # TODO(10.4): end the user's other sessions: registry.end_all(user_id, keep) ends every session of
    #   user_id except the handle `keep` (keep=None: every one). Revoke the user's remember-me tokens
    #   too (tokens.revoke_user), or a copied cookie would log straight back in. Return how many ended.
    raise todo("10.4")


# ---------------------------------------------------------------- 10.5 remember me

def issue_remember(tokens, user_id, series=None):
    """Exercise 10.5: a new remember-me token ``selector.validator``; the table keeps its hash only."""
    # TODO(10.5): a random selector (secrets.token_urlsafe(12)) and validator (secrets.token_urlsafe(32));
    #   store tokens.add(selector, remember.digest(validator), user_id, series) - the validator only as
    #   its hash - with series = the given one or a new random one; return "selector.validator".
    raise todo("10.5")


def redeem_remember(tokens, token, now):
    """Exercise 10.5: ``(user_id, new_token, "ok")`` for a good token, used up and replaced;
    ``(user_id, None, "theft")`` for a used one replayed (its series revoked);
    ``(None, None, "race")`` for one used seconds ago; ``(None, None, "unknown")`` otherwise."""
    # TODO(10.5): remember.split(token) gives (selector, validator) or None; tokens.find(selector) the row.
    #   - no row, or its validator_hash is not remember.digest(validator) (hmac.compare_digest):
    #     return None, None, "unknown";
    #   - not used yet and tokens.mark_used(selector) is True: return the user_id, a NEW token of the
    #     same series (issue_remember(tokens, user_id, row["series"])) and "ok";
    #   - used more than RACE_GRACE seconds ago: a copy came back. tokens.revoke_series(...) and
    #     return row["user_id"], None, "theft";
    #   - otherwise (used seconds ago: two tabs at once): return None, None, "race".
    raise todo("10.5")


# ---------------------------------------------------------------- 10.6 the life-cycle log

def log_event(event, session_id, salt, **details):
    """Exercise 10.6: one line of the sessions' life cycle; the session ID only as a salted hash."""
    # TODO(10.6): LOG.info one line: "session", the event, the ID as id_hash(session_id, salt) - never
    #   the ID itself - and the details as key=value pairs (sorted, so lines read alike), each value
    #   through loggable(value) (a newline in a value must not start a forged line).
    raise todo("10.6")


# ---------------------------------------------------------------- 10.7 text in a page

def html_text(value):
    """Exercise 10.7: ``value`` (anything a user sent) as text in an HTML page, never as markup."""
    # TODO(10.7): return the value as text for an HTML page: html.escape(str(value), quote=True) turns
    #   <, >, &, " and ' into entities, so a note or a search term can never become a <script>.
    raise todo("10.7")


# ---------------------------------------------------------------- what the app does before an exercise is done

def start_as_before(session, user_id, now):
    session["user_id"] = user_id                          # the ID from before the login stays
    session.setdefault("csrf_token", secrets.token_urlsafe(32))
    session["login_at"] = session["seen_at"] = session["renewed_at"] = now
    session.save()


BEFORE = {   # the holes an app without the exercise has, and the notebook attacks
    "login_request_ok": lambda environ, secret: True,                   # any page may post a login
    "start_session": start_as_before,                                   # session fixation
    "session_state": lambda *args: None,                                # a session lives for ever
    "login_wait": lambda *args: 0,                                      # guess as fast as you like
    "end_session": lambda session, registry: expire_cookie(session),   # the browser forgets; the server does not
    "end_sessions": lambda *args, **kwargs: 0,                          # other sessions live on
    "issue_remember": lambda *args: None,                               # no remember-me
    "redeem_remember": lambda *args: (None, None, "off"),
    "log_event": lambda *args, **kwargs: None,                          # nothing logged
    "html_text": str,                                                   # markup is markup
}


def attempt(exercise, *args, **kwargs):
    """Run an exercise's function; until it is written, do what ``BEFORE`` says an app without it does."""
    try:
        return exercise(*args, **kwargs)
    except ExerciseNotDone:
        return BEFORE[exercise.__name__](*args, **kwargs)


# ---------------------------------------------------------------- the app

def create_app(store_url=DEFAULT_STORE, secret=None, db_path=DEFAULT_DB, production=False, trust_proxy=False,
               idle_timeout=IDLE_TIMEOUT, absolute_timeout=ABSOLUTE_TIMEOUT, renew_every=RENEW_EVERY,
               login_limits=None, bad_id_limit=10, remember_for=remember.SERIES_LIFETIME, now=time.time):
    """Build the capstone. ``store_url``: where sessions live (any lesson 08 URL); ``db_path``: the
    SQLite file of users, notes, the sessions' registry, failed logins and remember-me tokens;
    ``production``: ``__Host-`` cookies, HTTPS only, a real secret; ``trust_proxy``: believe
    ``X-Forwarded-Proto`` and ``X-Forwarded-For``; timeouts in seconds (``remember_for``: how long a
    remember-me series lasts from its first login, however often it is used); ``now``: the clock."""
    secret = resolve_secret(secret, production=production)
    options = stores_beaker.beaker_options(store_url)        # a bad URL fails here, at start-up
    prefix = "__Host-" if production else ""
    names = {"session": prefix + "sid", "remember": prefix + "remember", "device": prefix + "device",
             "login_csrf": prefix + csrf.LOGIN_COOKIE}
    config = session_config(secret=secret, key=names["session"], secure=production, cookie_path="/",
                            timeout=max(60, int(idle_timeout)), **stores_beaker.hardened(options))
    here = Here(names=names, secret=secret, salt=security.derive_key(secret, "session-log"), clock=now,
                production=production, trust_proxy=trust_proxy, users=auth.UserDB(db_path),
                notes=Notes(db_path), registry=SessionRegistry(db_path),
                tokens=RememberStore(db_path, now, series_lifetime=remember_for),
                failures=FailureCounter(db_path, now), limits={**LOGIN_LIMITS, **(login_limits or {})},
                timeouts=(idle_timeout, absolute_timeout, renew_every), config=config,
                store=stores_beaker.describe(options))
    app = new_app()
    app.install(storedown.plugin)                            # a store that is down: 503, never a traceback
    app.config["capstone"] = here
    for method, path, route in ROUTES:
        app.route(path, method, route)
    sessions = HardenedSessions(app, config, on_save_error=security.session_save_error)
    one_at_a_time = locks.locked(sessions, locks.locks_for(store_url, options), names["session"], secret)
    watched = InvalidIdGuard(one_at_a_time, here.failures, names["session"], secret, here.salt,
                             limit=bad_id_limit, client_of=here.client, secure=production)
    return guard(security.SecureCookieGate(private(watched, production, names["login_csrf"]), here.is_https))


class Here:
    """Ready-made: what the routes of one app need (``create_app`` makes it; ``here()`` finds it)."""

    def __init__(self, **settings):
        self.__dict__.update(settings)

    def is_https(self, environ):
        forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
        return environ.get("wsgi.url_scheme") == "https" or (self.trust_proxy and forwarded == "https")

    def client(self, environ):
        return ratelimit.client_address(environ, self.trust_proxy)

    def log(self, event, session_id, **details):
        attempt(log_event, event, session_id, self.salt, **details)

    def cookie(self, kind):
        return next((v for n, v in request_cookies(request.environ) if n == self.names[kind]), None)

    def set_cookie(self, kind, value, max_age):
        response.set_cookie(self.names[kind], value, path="/", max_age=max_age, httponly=True,
                            samesite="Lax", secure=self.production)

    def forget_cookie(self, kind):
        self.set_cookie(kind, "", 0)


def here():
    return request.app.config["capstone"]


def private(app, production, login_cookie):
    """Ready-made WSGI: no answer may be cached (``no-store``); in production, HTTPS only (HSTS);
    the login form's cookie is ``login_cookie`` (``__Host-login_csrf`` in production)."""
    def wrapped(environ, start_response):
        environ[csrf.LOGIN_COOKIE_KEY] = login_cookie
        def start(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "cache-control"] + [("Cache-Control", "no-store")]
            if production:
                headers.append(("Strict-Transport-Security", "max-age=31536000"))
            return start_response(status, headers, exc_info)
        return app(environ, start)
    return wrapped


class Notes:
    """Ready-made: each user's notes, in the SQLite file of the users."""

    def __init__(self, path):
        self.db = LocalDB(path, ("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY,"
                                 " user_id INTEGER NOT NULL, text TEXT NOT NULL)",))

    def of(self, user_id):
        return [dict(r) for r in self.db.rows("SELECT id, text FROM notes WHERE user_id = ? ORDER BY id", (user_id,))]

    def add(self, user_id, note):
        return self.db.run("INSERT INTO notes (user_id, text) SELECT ?, ? WHERE (SELECT COUNT(*) FROM notes"
                           " WHERE user_id = ?) < ?", (user_id, note, user_id, MAX_NOTES)) == 1

    def delete(self, user_id, note_id):
        return self.db.run("DELETE FROM notes WHERE id = ? AND user_id = ?", (note_id, user_id)) == 1


# ---------------------------------------------------------------- who is logged in (ready-made)

def agent_of(environ):
    """What a session is bound to: a hash of the browser's User-Agent (the IP may change on the way)."""
    return id_hash(environ.get("HTTP_USER_AGENT", ""), "user-agent")


def log_in_as(session, user_id, how, keep=False):
    """A new logged-in session for ``user_id`` (10.1), bound to this browser and in the registry."""
    h = here()
    if session.get("handle"):
        h.registry.end(session["handle"])        # a session logged in before is over: it gets a new one
    attempt(start_session, session, user_id, h.clock())
    agent = request.environ.get("HTTP_USER_AGENT", "unknown browser")[:60]
    client = f"{agent} from {ratelimit.address_prefix(h.client(request.environ))}"
    session["agent"] = agent_of(request.environ)
    session["handle"] = h.registry.add(user_id, id_hash(session.id, h.salt), client, h.clock())
    if keep:
        token = attempt(issue_remember, h.tokens, user_id)
        if token:
            keep_me(session, token)
    session.save()
    h.log("created", session.id, user=user_id, how=how)


def keep_me(session, token):
    """The browser keeps ``token`` (remember-me); the session and the registry know its series, so
    that revoking the session revokes the token too."""
    h = here()
    row = h.tokens.find(token.split(".")[0])
    if row is None:                               # revoked while it was issued (a new password)
        return
    session["series"] = row["series"]
    h.registry.set_series(session["handle"], row["series"])
    h.set_cookie("remember", token, remember.LIFETIME)


def undo_login(session, why):
    """A login that lost a race (the password changed, the token was revoked meanwhile): everything
    it made goes - the session, its registry entry, its remember-me series, the cookies."""
    h = here()
    h.log("ended-" + why, session.id, user=auth.current_user_id(session))
    if session.get("series"):
        h.tokens.revoke_series(session["series"])
    h.forget_cookie("remember")
    h.registry.end(session.get("handle"))
    destroy_session(session)


def renew_id(session, why):
    """A new ID for this session, data kept (the kit destroys the old record); the registry follows."""
    h, old = here(), id_hash(session.id, here().salt)
    regenerate_session(session)
    session["renewed_at"] = h.clock()
    h.registry.seen(session["handle"], h.clock(), id_hash(session.id, h.salt))
    h.log("renewed", session.id, previous=old, why=why)


def remembered_user(session):
    """Log in from the remember-me cookie (10.5), if there is a good one; the user's id or None."""
    h, token = here(), here().cookie("remember")
    if not token:
        return None
    user_id, new_token, verdict = attempt(redeem_remember, h.tokens, token, h.clock())
    if verdict == "theft":
        h.log("remember-me-theft", session.id, user=user_id)
        attempt(end_sessions, h.registry, h.tokens, user_id)     # whoever holds a copy is out too
    if new_token is None:
        h.forget_cookie("remember")
        return None
    log_in_as(session, user_id, "remember-me")
    keep_me(session, new_token)
    if h.tokens.find(remember.split(token)[0]) is None:      # revoked while we logged in: the series too
        undo_login(session, "revoked")
        return None
    return user_id


def logged_in_user():
    """The user this request is logged in as, or None. Every check of a live session is here."""
    h, session = here(), get_session()
    user_id = auth.current_user_id(session)
    if user_id is not None:
        if not h.registry.is_live(session.get("handle"), user_id):
            problem = "revoked"                   # ended from another device, or by a new password
        elif session.get("agent") != agent_of(request.environ):
            problem = "client-changed"            # the same ID from another browser: a stolen cookie?
        else:
            problem = attempt(session_state, session, h.clock(), *h.timeouts)
        if problem == "renew":
            renew_id(session, "renewal timeout")
        elif problem:
            h.log(f"ended-{problem}", session.id, user=user_id)
            attempt(end_session, session, h.registry)
            user_id = None
    if user_id is None:
        user_id = remembered_user(session)
    if user_id is not None:
        session["seen_at"] = h.clock()
        h.registry.seen(session["handle"], h.clock())
        session.save()
    return user_id


def logged_in(route):
    """Ready-made: the route runs for a logged-in user (its first argument), else 401."""
    @functools.wraps(route)
    def guarded(*args, **kwargs):
        user_id = logged_in_user()
        if user_id is None:
            return text(auth.NOT_LOGGED_IN, 401)
        return route(user_id, *args, **kwargs)
    return guarded


def changes_state(route):
    """Ready-made: as ``logged_in``, and the request must bring the session's CSRF token (else 403)."""
    @logged_in
    @functools.wraps(route)
    def checked(user_id, *args, **kwargs):
        expected, sent = get_session().get("csrf_token"), csrf.sent_token()
        if not (expected and sent and hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace"))):
            return text("CSRF token missing or invalid: reload the page and try again", 403)
        return route(user_id, *args, **kwargs)
    return checked


def wants_json():
    return "application/json" in request.environ.get("HTTP_ACCEPT", "")


def clear_site_data():
    response.set_header("Clear-Site-Data", '"cache", "storage"')   # not "cookies": the device cookie stays


# ---------------------------------------------------------------- the routes (ready-made)

def index():
    h = here()
    return render(
        lesson_id="10", title=TITLE, intro=f"Sessions live in {h.store}. Log in as alice / wonderland.",
        routes=[Route("GET", "/login", "the login page (its form carries the login CSRF token)"),
                Route("GET", "/notes", "your notes (add, delete, search with ?q=)"),
                Route("GET", "/sessions", "your sessions: device, address, last use; revoke any"),
                Route("GET", "/dashboard", "only for logged-in users"),
                Route("GET", "/csrf", "this session's CSRF token, as JSON"),
                Route("POST", "/notes", "add a note (needs the CSRF token)", ("text", "csrf_token")),
                Route("POST", "/password", "change your password: your other sessions end",
                      ("current", "new", "csrf_token")),
                Route("POST", "/logout", "log out this session", ("csrf_token",)),
                Route("POST", "/logout-everywhere", "log out every session, this one too", ("csrf_token",))],
        cookie_header=request.environ.get(RAW_COOKIE_KEY, ""), inspector=not h.production,
        decode=lambda name, value: describe_cookie(name, value, h))


def describe_cookie(name, value, h):
    if name != h.names["session"]:
        return None
    session_id = session_id_from_cookie(f"{name}={value}", name, h.secret)
    return "a session ID (not shown: no page shows any of it)" if session_id else "not an ID this server signed"


def login_page():
    token = csrf.login_form_token(here().secret)
    return render_login(title="Lesson 10: log in", hidden={csrf.TOKEN_FIELD: token}, remember=True)


def login():
    h = here()
    fields = auth.read_fields(("username", "password"), optional=("remember", csrf.TOKEN_FIELD))
    if not attempt(login_request_ok, request.environ, h.secret):
        return text("Login form expired or from another site: reload the login page and try again", 403)
    username, client = fields["username"], h.client(request.environ)
    device = ratelimit.device_of(h.secret, username, h.cookie("device"))
    wait = attempt(login_wait, h.failures, username, client, device, h.limits)
    if wait:
        response.set_header("Retry-After", str(wait))
        h.log("login-throttled", None, client=client, wait=wait)
        return text(ratelimit.TOO_MANY, 429)
    checked = h.users.find(username)                  # the password hash this login is checked against
    user_id = auth.verify(h.users, username, fields["password"])
    if user_id is None:
        count_failure(username, client, device)
        return text(auth.LOGIN_FAILED, 401)
    h.failures.clear("account:" + username[:64].lower())
    log_in_as(get_session(), user_id, "password", keep=fields["remember"] in ("1", "on", "true"))
    if h.users.find(username) != checked:             # the password changed meanwhile: this login is void
        undo_login(get_session(), "password-changed")
        return text(auth.LOGIN_FAILED, 401)
    if device is None:
        h.set_cookie("device", ratelimit.device_token(h.secret, username), 365 * 24 * 3600)
    if auth.from_browser_form():
        return see_other("/notes")
    return text(auth.LOGIN_OK)


def count_failure(username, client, device):
    """One wrong password (at the login or at ``POST /password``), for every limit of 10.3."""
    h = here()
    for key in ("client:" + client, "account:" + username[:64].lower()) + (("device:" + device,) if device else ()):
        h.failures.add(key)


@logged_in
def dashboard(user_id):
    return text(f"Welcome to your dashboard, user {user_id}")


@logged_in
def csrf_json(user_id):
    response.content_type = "application/json"
    return json.dumps({"csrf_token": get_session()["csrf_token"]})


@logged_in
def notes_page(user_id):
    notes, token = here().notes.of(user_id), get_session()["csrf_token"]
    query = request.query.getunicode("q") or ""
    shown = [n for n in notes if query.lower() in n["text"].lower()]
    if wants_json():
        response.content_type = "application/json"
        return json.dumps(shown)
    items = "".join(f'<li>{attempt(html_text, n["text"])} <form method="post" action="/notes/{n["id"]}/delete">'
                    f'<input type="hidden" name="csrf_token" value="{token}"><button>delete</button></form></li>'
                    for n in shown)
    found = f"<p>Notes matching <strong>{attempt(html_text, query)}</strong>:</p>" if query else ""
    return NOTES_PAGE.format(user=user_id, found=found, items=items or "<li>(none)</li>", token=token)


@changes_state
def add_note(user_id):
    note = auth.read_fields(("text",))["text"]
    if len(note) > MAX_NOTE:
        return text(f"A note holds at most {MAX_NOTE} characters", 400)
    if not here().notes.add(user_id, note):
        return text(f"You have {MAX_NOTES} notes already: delete some first", 400)
    return see_other("/notes") if auth.from_browser_form() else text("Note added", 201)


@changes_state
def delete_note(user_id, note_id):
    number = int(note_id) if note_id.isascii() and note_id.isdigit() and len(note_id) <= 18 else None
    if number is None or not here().notes.delete(user_id, number):
        return text("No such note of yours", 404)
    return see_other("/notes") if auth.from_browser_form() else text("Note deleted")


@logged_in
def sessions_page(user_id):
    mine = get_session()["handle"]
    listed = [{"id": s["handle"], "current": s["handle"] == mine, "last_seen": s["last_seen"],
               "client": s["client"]} for s in here().registry.of_user(user_id)]
    if wants_json():
        response.content_type = "application/json"
        return json.dumps(listed)
    rows = "".join(f'<tr><td>{escape(s["client"])}{" (this one)" if s["current"] else ""}</td>'
                   f'<td>{time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s["last_seen"]))} UTC</td>'
                   f'<td><form method="post" action="/sessions/{s["id"]}/revoke"><input type="hidden" '
                   f'name="csrf_token" value="{get_session()["csrf_token"]}"><button>revoke</button></form></td></tr>'
                   for s in listed)
    return SESSIONS_PAGE.format(user=user_id, rows=rows)


@changes_state
def revoke(user_id, handle):
    h, session = here(), get_session()
    series = h.registry.series_of(handle, user_id)       # its remember-me token goes with it
    if not h.registry.end(handle, user_id):
        return text("No such session of yours", 404)
    if series:
        h.tokens.revoke_series(series)
    h.log("revoked", session.id if handle == session["handle"] else None, user=user_id, handle=handle[:8])
    if handle == session["handle"]:
        h.forget_cookie("remember")
        attempt(end_session, session, h.registry)
        clear_site_data()
    return text("Session revoked")


@changes_state
def change_password(user_id):
    h, session = here(), get_session()
    fields = auth.read_fields(("current", "new"))
    if not 8 <= len(fields["new"]) <= 200:
        return text("The new password needs 8 to 200 characters", 400)
    username, client = h.users.username(user_id), h.client(request.environ)
    device = ratelimit.device_of(h.secret, username, h.cookie("device"))
    wait = attempt(login_wait, h.failures, username, client, device, h.limits)
    if wait:                                       # the current password is guessed here as at the login
        response.set_header("Retry-After", str(wait))
        return text(ratelimit.TOO_MANY, 429)
    checked = h.users.find(username)
    if auth.verify(h.users, username, fields["current"]) != user_id:
        count_failure(username, client, device)
        return wrong_current_password(session, user_id)
    if not h.users.change_password(user_id, checked[1], fields["new"]):
        return text("The password was changed meanwhile, from another session: log in again", 409)
    ended = attempt(end_sessions, h.registry, h.tokens, user_id, session["handle"])
    renew_id(session, "password changed")          # a change of privilege: a new ID here too
    h.log("password-changed", session.id, user=user_id, ended=ended)
    return text(f"Password changed; {ended} other sessions ended")


def wrong_current_password(session, user_id):
    """403; after ``per_account`` wrong tries in one session, that session ends: whoever guesses the
    password through a session they rode or stole loses it."""
    h, key = here(), "password:" + session["handle"]
    h.failures.add(key)
    if h.failures.count(key, h.limits["window"]) < h.limits["per_account"]:
        return text("The current password is wrong", 403)
    h.log("ended-password-guessing", session.id, user=user_id)
    attempt(end_session, session, h.registry)
    return text("The current password was wrong too often: this session has ended; log in again", 401)


@changes_state
def logout(user_id):
    h, session = here(), get_session()
    h.log("logged-out", session.id, user=user_id)
    if session.get("series"):
        h.tokens.revoke_series(session["series"])   # this browser's remember-me token goes too
    h.forget_cookie("remember")
    attempt(end_session, session, h.registry)
    clear_site_data()
    return text(auth.LOGOUT_OK)


@changes_state
def logout_everywhere(user_id):
    h, session = here(), get_session()
    ended = attempt(end_sessions, h.registry, h.tokens, user_id)
    h.log("logged-out-everywhere", session.id, user=user_id, ended=ended)
    h.forget_cookie("remember")
    attempt(end_session, session, h.registry)
    clear_site_data()
    return text(f"Logged out everywhere: {ended} sessions ended")


ROUTES = [("GET", "/", index), ("GET", "/login", login_page), ("POST", "/login", login),
          ("GET", "/dashboard", dashboard), ("GET", "/csrf", csrf_json),
          ("GET", "/notes", notes_page), ("POST", "/notes", add_note), ("POST", "/notes/<note_id>/delete", delete_note),
          ("GET", "/sessions", sessions_page), ("POST", "/sessions/<handle>/revoke", revoke),
          ("POST", "/password", change_password), ("POST", "/logout", logout),
          ("POST", "/logout-everywhere", logout_everywhere)]

NOTES_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your notes</title></head>
<body><h1>Your notes, user {user}</h1>
<form method="get" action="/notes"><input name="q" placeholder="search"><button>search</button></form>
{found}<ul id="notes">{items}</ul>
<form method="post" action="/notes"><input type="hidden" name="csrf_token" value="{token}">
  <textarea name="text" rows="3" cols="50"></textarea><br><button>Add a note</button></form>
<p><a href="/sessions">your sessions</a> · <a href="/">the lesson page</a></p></body></html>
"""

SESSIONS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your sessions</title></head>
<body><h1>Your sessions, user {user}</h1>
<table><tr><th>device and address</th><th>last used</th><th></th></tr>{rows}</table>
<p><a href="/notes">your notes</a> · <a href="/">the lesson page</a></p></body></html>
"""

app = create_app()


def main(argv=None):
    def add_arguments(parser):
        parser.add_argument("--store", metavar="URL", default=DEFAULT_STORE,
                            help=f"where the sessions live (default {DEFAULT_STORE})")
        parser.add_argument("--production", action="store_true",
                            help="__Host- cookies, over HTTPS only (needs SESSION_SECRET)")
        parser.add_argument("--trust-proxy", action="store_true", help="believe X-Forwarded-Proto and -For")

    try:
        lesson_main(create_app, argv, title=f"Lesson 10: {TITLE}", add_arguments=add_arguments,
                    options=lambda args: {"store_url": args.store, "production": args.production,
                                          "trust_proxy": args.trust_proxy})
    except ValueError as exc:                     # a bad store URL, or production without a secret
        raise SystemExit(f"Cannot start: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
