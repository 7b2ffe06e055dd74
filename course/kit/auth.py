"""Logging in and out on a Beaker session: the finished reference of lesson 06, which lesson 07 on build on.

* :func:`log_in` - a new session ID (the old record destroyed: session fixation), then only the
  user's id stored (``session["user_id"]``);
* :func:`log_out` - the session's record destroyed on the server and its cookie cleared;
* :func:`current_user_id`, :func:`login_required` - who is logged in; a route only for them (401).

The texts of lesson 06's contract are constants here (:data:`LOGIN_OK` and friends). The other
parts of a login have a module each, and are reachable from here too, as the lessons use them:
passwords (:mod:`course.kit.passwords`: ``auth.hash_password``, ``auth.check_password``,
``auth.dummy_hash``), the users table (:mod:`course.kit.users`: ``auth.UserDB``, ``auth.verify``)
and request bodies (:mod:`course.kit.forms`: ``auth.read_credentials``, ``auth.from_browser_form``).
A store that is down is answered by :mod:`course.kit.storedown` (``app.install(storedown.plugin)``).
The HTML login form is the lesson runtime's (:func:`course.lesson.page.render_login`).

Typical use::

    from course.kit import auth, beakerkit, storedown

    users = auth.UserDB(".sessions/users.sqlite3")
    app.install(storedown.plugin)                            # a store that is down: 503

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
from typing import Callable

import bottle

from course.kit import beakerkit

# The rest of a login, one module each; lessons reach them as auth.<name>.
from course.kit.forms import FormError, from_browser_form, read_credentials, read_fields
from course.kit.passwords import check_password, dummy_hash, hash_password, scrypt_maxmem
from course.kit.users import DEMO_USERS, UserDB, verify

__all__ = [
    "USER_KEY", "LOGIN_OK", "LOGIN_FAILED", "NOT_LOGGED_IN", "LOGOUT_OK", "LOGOUT_FAILED",
    "current_user_id", "log_in", "log_out", "login_required",
    # from course.kit.passwords, course.kit.users and course.kit.forms
    "hash_password", "check_password", "dummy_hash", "scrypt_maxmem", "DEMO_USERS", "UserDB", "verify",
    "FormError", "read_fields", "read_credentials", "from_browser_form",
]

# ---------------------------------------------------------------- the contract's texts

USER_KEY = "user_id"                       # the one thing a login puts in the session
LOGIN_OK = "Login successful!"
LOGIN_FAILED = "Authentication failed"     # the same words for an unknown user and a wrong password
NOT_LOGGED_IN = "Please log in to view this page."
LOGOUT_OK = "Logged out successfully"
LOGOUT_FAILED = "Failed to log out."


# ---------------------------------------------------------------- the session side

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


def login_required(route: Callable) -> Callable:
    """Route decorator: the route runs only for a logged-in user, else 401 :data:`NOT_LOGGED_IN`.

    ::

        @app.get("/dashboard")
        @login_required
        def dashboard(): ...

    (It is also a Bottle plugin: ``app.get("/x", apply=[login_required])``.) A store that is down
    raises here, as in any route: ``app.install(storedown.plugin)`` answers it with the 503.
    """

    @functools.wraps(route)
    def guarded(*args, **kwargs):
        if current_user_id() is None:
            bottle.response.status = 401
            bottle.response.content_type = "text/plain; charset=utf-8"
            return NOT_LOGGED_IN + "\n"
        return route(*args, **kwargs)

    return guarded
