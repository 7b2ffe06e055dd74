"""Lesson 06: who is this? Login and logout, as every web app does them, on Beaker.

A session remembers a browser; a login ties that session to a person. The password never goes
into the session, nor does the user's record: the server checks the password against a salted,
slow hash in the users table, then stores just the user's id in the session, under a brand-new
session ID. Logging out destroys the session on the server, not just the cookie in the browser.

Sessions come from course/kit/beakerkit.py (lesson 05's hardened Beaker); the users table and the
form reader from course/kit/auth.py; the login page from course/lesson/page.py.

Run it:  make run LESSON=06   then open http://127.0.0.1:8080/ (it restarts when you save)
Check it: make check LESSON=06
"""
import functools
import hashlib  # hashlib, hmac and secrets: for 06.1
import hmac
import logging
import secrets

from bottle import request, response

from course import ROOT
from course.kit import auth, beakerkit, csrf, storedown
from course.lesson.page import Route, render, render_login
from course.lesson.server import lesson_main
from course.lesson.web import new_app, see_other, text, todo

TITLE = "Who is this? Login and logout"
USER_KEY = "user_id"              # the only thing a login puts in the session
DEFAULT_DB = ROOT / ".sessions" / "06_login_logout-users.sqlite3"   # made on the first login

# scrypt's cost: 128 * r * n bytes of memory (16 MiB) and about 50 ms per hash here. Slow on
# purpose: an attacker who steals the users table pays this for every guess, for every user.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
SALT_BYTES = 16                   # 128 random bits, new for every password


def scrypt_maxmem(n, r, p):
    """The ``maxmem`` for ``hashlib.scrypt`` at this cost: the 128 * r * (n + p + 2) bytes OpenSSL
    needs, plus 1 MiB, and never over 1 GiB (a stored hash asking for more is refused, not run).
    A fixed limit breaks when the cost is raised (64 MiB refuses n=2**17), and Python's default
    (32 MiB) already refuses n=2**15 with r=8: hashing then raises ValueError."""
    return min(128 * r * (n + p + 2) + 2 ** 20, 2 ** 30)

log = logging.getLogger(__name__)


def hash_password(password):
    """Exercise 06.1: ``"scrypt$<n>$<r>$<p>$<salt hex>$<key hex>"`` for ``password``.

    A fresh random salt every time, so two users with the same password get different hashes and
    one precomputed table cannot crack them all. The cost goes into the string, so it can be
    raised later without breaking the hashes already stored.
    """
    # TODO(06.1): salt = secrets.token_bytes(SALT_BYTES); derive a 32-byte key with
    # hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
    # maxmem=scrypt_maxmem(SCRYPT_N, SCRYPT_R, SCRYPT_P), dklen=32) and return the string above,
    # salt and key in hex (bytes.hex()).
    raise todo("06.1")


def check_password(password, stored):
    """Exercise 06.1: does ``password`` match ``stored`` (made by ``hash_password``)? Never raises."""
    # TODO(06.1): split ``stored`` on "$" into scheme, n, r, p, salt and key; derive the key again
    # from ``password`` with the salt and the n, r, p READ FROM ``stored`` (not the constants:
    # older hashes may have another cost), and maxmem=scrypt_maxmem(n, r, p) for that cost;
    # compare with hmac.compare_digest. Anything malformed (no "$", not hex, not "scrypt", a cost
    # too large) is simply False: catch the ValueError, never raise.
    raise todo("06.1")


def dummy_hash():
    """A hash of nobody's password (made once): an unknown user is checked against it."""
    return auth.dummy_hash(hash_password)


def verify(users, username, password):
    """Exercise 06.2: the id of the user with this name and password, or None.

    ``users.find(username)`` gives ``(user_id, stored_hash)``, or None for an unknown user.
    """
    # TODO(06.2): look the user up; for an unknown user, still check the password against
    # dummy_hash() (and throw the answer away) before returning None, so that an unknown user
    # takes as long as a wrong password; else return user_id when check_password(...) agrees.
    raise todo("06.2")


def current_user_id(session=None):
    """The logged-in user's id from the session, or None (only a positive int counts)."""
    session = beakerkit.get_session() if session is None else session
    user_id = session.get(USER_KEY)
    if isinstance(user_id, int) and not isinstance(user_id, bool) and user_id > 0:
        return user_id
    return None


def login_required(route):
    """Exercise 06.3: a decorator that runs ``route`` only for a logged-in user."""

    @functools.wraps(route)
    def guarded(*args, **kwargs):
        # TODO(06.3): when current_user_id() is None, answer
        # text("Please log in to view this page.", 401); else return route(*args, **kwargs).
        # Ask the session (the server), never just the cookie: a cookie may be forged or belong
        # to a session that was destroyed.
        raise todo("06.3")

    return guarded


def create_app(secret=None, db_path=None, store=None):
    """Build the lesson's app.

    ``secret`` signs the session cookie (None: ``SESSION_SECRET``, or a development fallback with a
    warning); ``db_path`` is the users' SQLite file (made on first use); ``store`` is the session
    store (a ``beakerkit.CountingStore``; tests pass one that fails).
    """
    users = auth.UserDB(DEFAULT_DB if db_path is None else db_path, hasher=hash_password)
    store = beakerkit.CountingStore() if store is None else store
    config = beakerkit.session_config(secret=secret, store=store)
    app = new_app()
    app.install(storedown.plugin)     # a store that is down: 503, never a traceback
    # The ready-made routes are at the end of the file; the two below are exercises 06.4 and 06.5.
    app.get("/", callback=lambda: lesson_page(config, store))
    app.get("/visits", callback=visits)
    app.get("/login", callback=lambda: login_page(config["session.secret"]))
    app.get("/dashboard", callback=dashboard)

    @app.post("/login")
    @csrf.protect_login(lambda: config["session.secret"])   # no login CSRF (ready-made: see the README)
    def login():
        """Exercise 06.4: log a user in."""
        # TODO(06.4):
        #   - username, password = auth.read_credentials()  (form or JSON; it answers 400 for a
        #     missing field, 400 for bad JSON, 413 for a huge body by itself);
        #   - user_id = verify(users, username, password); None: answer
        #     text("Authentication failed", 401) - the same for an unknown user and a wrong password
        #     (a browser, auth.from_browser_form(), may get
        #     text_page(render_login(title=..., message="Authentication failed"), 401) instead);
        #   - session = beakerkit.get_session(); beakerkit.regenerate_session(session): a NEW session
        #     ID, the old record destroyed (Beaker's own regenerate_id() leaves it loadable);
        #   - store ONLY the id: session[USER_KEY] = user_id, then session.save();
        #   - a browser (auth.from_browser_form()) goes on with return see_other("/dashboard"); anybody
        #     else gets text("Login successful!").
        raise todo("06.4")

    @app.post("/logout")
    @csrf.refuse_cross_site                                  # a page of another site cannot log you out
    def logout():
        """Exercise 06.5: log the user out, for good."""
        # TODO(06.5): beakerkit.destroy_session(beakerkit.get_session()) removes the record from
        # the store and clears the cookie (Beaker's delete() and invalidate() leave a record
        # behind). If it raises (the store is down), answer text("Failed to log out.", 500) and
        # change nothing else: never clear the cookie while the record lives on, never say
        # "logged out" when you are not. Otherwise answer text("Logged out successfully").
        raise todo("06.5")

    return beakerkit.HardenedSessions(app, config)


# ---------------------------------------------------------------- the ready-made routes and helpers

def visits():
    """Count visits in the session, logged in or not (an anonymous session)."""
    session = beakerkit.get_session()
    count = session.get("visits", 0)
    session["visits"] = (count if isinstance(count, int) else 0) + 1
    session.save()
    return text(f"You have visited {session['visits']} times")


def login_page(secret):
    """The login form, for a browser (it posts to /login), with its pre-session CSRF token."""
    return render_login(title="Lesson 06: log in", hidden={csrf.TOKEN_FIELD: csrf.login_form_token(secret)})


@login_required
def dashboard():
    return text(f"Welcome to your dashboard, user {current_user_id()}")


def lesson_page(config, store):
    """The lesson page, with the inspector: what the browser sent, what the store holds."""
    return render(
        lesson_id="06", title=TITLE,
        intro="Log in as alice / wonderland (user 1) or bob / builder (user 2). Visit /visits first "
              "to get an anonymous session, then log in and watch its ID change in the inspector.",
        routes=[Route("GET", "/visits", "count your visits: an anonymous session"),
                Route("GET", "/login", "the login page"),
                Route("POST", "/login", "log in", ("username=alice", "password")),
                Route("GET", "/dashboard", "only for a logged-in user"),
                Route("POST", "/logout", "log out: the session is destroyed on the server")],
        cookie_header=request.environ.get(beakerkit.RAW_COOKIE_KEY, ""),
        decode=lambda name, value: describe_cookie(name, value, config, store),
        session=stored_session(config, store) or {},
    )


def text_page(html, status):
    """Answer an HTML page with a status (for a browser)."""
    response.status = status
    response.content_type = "text/html; charset=utf-8"
    return html


def stored_session(config, store):
    """What the store holds for the browser's session cookie (for the inspector), or None."""
    session_id = beakerkit.session_id_from_cookie(request.environ.get("HTTP_COOKIE", ""),
                                                  config["session.key"], config["session.secret"])
    return beakerkit.stored_data(store, session_id)


def describe_cookie(name, value, config, store):
    """What the inspector on ``GET /`` says about each cookie the browser sent."""
    if name != config["session.key"]:
        return None
    session_id = beakerkit.session_id_from_cookie(f"{name}={value}", name, config["session.secret"])
    if session_id is None:
        return "not signed by this server: ignored (a new session would start)"
    if not store.holds(session_id):
        return f"session {session_id[:8]}...: no record in the store (destroyed or expired): ignored"
    user_id = (beakerkit.stored_data(store, session_id) or {}).get(USER_KEY)
    return f"session {session_id[:8]}...: " + (f"logged in as user {user_id}" if user_id else "anonymous")


app = create_app()


def main(argv=None):
    lesson_main(create_app, argv, title=f"Lesson 06: {TITLE}",
                add_arguments=lambda parser: parser.add_argument(
                    "--db", help=f"the users' SQLite file (default {DEFAULT_DB})"),
                options=lambda args: {"db_path": args.db})


if __name__ == "__main__":
    main()
