"""Lesson 04: resave, saveUninitialized, rolling and maxAge — express-session's options, measured.

Lesson 03's middleware made four choices without asking: it saved every session it loaded, never
stored a visitor who wrote nothing, sent the cookie once, and gave it no expiry. express-session
turns each choice into an option. Here you build them into the middleware and watch a counting
store (``GET /store/stats``) and the ``Set-Cookie`` headers show what each one costs.

Run it:  make run LESSON=04 OPTIONS="resave=true rolling=true max_age=60"
Check it: make check LESSON=04
"""
import json
import time  # for 04.2
from email.utils import formatdate  # for 04.2

from bottle import request, response

from course.kit.cookies import cookie_header
from course.kit.sessions import SessionMiddleware as Lesson03Middleware
from course.kit.sessions import cookie_value, set_cookie_header
from course.kit.stores import CountingStore, MemoryStore, can  # can: for 04.4
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import guard, new_app, text, todo

TITLE = "resave, saveUninitialized, rolling"
DEV_SECRET = "lesson 04 development secret: pass your own with create_app(secret=...)"


class SessionMiddleware(Lesson03Middleware):
    """Lesson 03's middleware (course/kit/sessions.py: the cookie, load(), the 503s) with the options.

    ``self.save_uninitialized``, ``self.resave``, ``self.rolling`` and ``self.max_age`` (seconds,
    or None) are set from create_app's options. ``session.is_new`` says that no valid cookie came
    in; ``session.modified`` that the handler changed the data.
    """

    def save(self, session):
        """After the handler: write, touch or destroy the record; return the Set-Cookie headers."""
        if session.destroyed:
            return super().save(session)             # lesson 03: destroy it, clear the cookie
        if session.is_new:
            if not self.save_new(session):           # 04.1
                return []                            # nothing stored, no cookie
            self.store.set(session.id, dict(session), ttl=self.max_age)
            return [("Set-Cookie", self.cookie_header(session))]
        # A session the store gave us. A change is always written back; an unchanged one is
        # written, touched or left alone, as write_back() says.
        action = "set" if session.modified else self.write_back(session)   # 04.4
        if action == "set":
            self.store.set(session.id, dict(session), ttl=self.max_age)
        elif action == "touch":
            self.store.touch(session.id, ttl=self.max_age)
        if self.send_cookie(session):                # 04.3
            return [("Set-Cookie", self.cookie_header(session))]
        return []

    def cookie_header(self, session):
        """Lesson 03's cookie (``Path=/; HttpOnly; SameSite=Lax``), plus its lifetime if max_age."""
        header = set_cookie_header(cookie_value(session.id, self.secrets))
        if self.max_age is not None:
            header += self.expiry_attributes()       # 04.2
        return header

    def save_new(self, session):
        """Exercise 04.1 (saveUninitialized): store a new session, and send its cookie?"""
        # TODO(04.1): is this new session worth a record (and a cookie)? Return True or False.
        # Two facts decide: the option self.save_uninitialized, and whether the handler changed
        # the session (session.modified). Work out all four cases first, from the README's
        # "save_uninitialized" paragraph and the *new, reads* / *new, writes* columns of its
        # table: which visitors does express store? Then write the four cases as one expression.
        raise todo("04.1")

    def expiry_attributes(self):
        """Exercise 04.2 (maxAge): the cookie attributes that make it live ``self.max_age`` seconds."""
        # TODO(04.2): the attributes (a string, each one starting with "; ") that make a browser
        # keep the cookie for self.max_age seconds. Which two attributes say how long a cookie
        # lives, and why send both (RFC 6265, section 4.1.2; the README's "max_age")? One counts
        # from now, the other names a moment: the imports at the top of this file write that
        # moment as HTTP wants it. Mind the unit: express's maxAge counts milliseconds.
        raise todo("04.2")

    def send_cookie(self, session):
        """Exercise 04.3 (rolling): send a loaded session's cookie again?"""
        # TODO(04.3): the browser already holds this cookie. Is it worth sending again? Return
        # True or False. A cookie sent again changes nothing in the browser but its expiry. Three
        # facts may matter: self.rolling, whether the cookie has an expiry at all (self.max_age),
        # and whether the handler changed the session (session.modified). Read the README's
        # *returning, reads* and *returning, writes* columns: in which rows does express send
        # Set-Cookie, and which of the three facts explains each one?
        raise todo("04.3")

    def write_back(self, session):
        """Exercise 04.4 (resave): what to do with an unchanged loaded session: "set", "touch" or None."""
        # TODO(04.4): a loaded session the handler did not change. Return "set" (write it all
        # again), "touch" (only restart its expiry in the store) or None (leave it alone). Which
        # option asks for the costly answer, and what does it buy? When the costly answer is not
        # asked for, what is the cheapest one that still keeps the session alive, and which
        # stores can give it (can(self.store, "touch") tells)? The README's "resave" paragraph
        # and the counters at /store/stats let you check your reasoning.
        raise todo("04.4")


def create_app(resave=False, save_uninitialized=False, rolling=False, max_age=None,
               secret=DEV_SECRET, store=None):
    """The lesson's app; the options are express-session's (``max_age`` in seconds).

    ``store`` is any Store (default: a new MemoryStore); the app wraps it in a CountingStore,
    whose counters ``GET /store/stats`` shows.
    """
    store = CountingStore(MemoryStore() if store is None else store)
    app = new_app()

    @app.get("/")
    def index():
        return render(
            lesson_id="04", title=TITLE,
            intro=(f"Options: resave={resave}, save_uninitialized={save_uninitialized}, "
                   f"rolling={rolling}, max_age={max_age}. This page only reads the session, to show it "
                   "below (reading changes nothing); watch `/store/stats` and your browser's Set-Cookie "
                   "headers while you try the routes."),
            routes=[Route("GET", "/peek", "read the session (changes nothing)"),
                    Route("GET", "/visits", "count your visits (changes the session)"),
                    Route("GET", "/store/stats", "what the store was asked so far")],
            cookie_header=cookie_header(request.environ),
            session=_stored(request.environ["session"]),
            session_label="What the store holds for this session (as loaded for this request)",
        )

    @app.get("/peek")
    def peek():
        response.content_type = "application/json"
        return json.dumps(dict(request.environ["session"]), sort_keys=True) + "\n"

    @app.get("/visits")
    def visits():
        session = request.environ["session"]
        session["visits"] = session.get("visits", 0) + 1
        return text(f"You have visited {session['visits']} times")

    with_sessions = guard(SessionMiddleware(
        app, secret, store, resave=resave, save_uninitialized=save_uninitialized,
        rolling=rolling, max_age=max_age))

    # /store/stats is served beside the session middleware, not through it: reading the
    # counters must not change them (with save_uninitialized=True it would store a session).
    stats = new_app()

    @stats.get("/store/stats")
    def store_stats():
        return store.stats()                         # Bottle sends a dict as JSON

    def dispatch(environ, start_response):
        target = stats if environ.get("PATH_INFO") == "/store/stats" else with_sessions
        return target(environ, start_response)

    return dispatch


app = create_app()


def _stored(session):
    """The session's data as the store gave it (a new session has no record yet: {})."""
    return {} if session.is_new else dict(session)


def add_arguments(parser):
    parser.add_argument("--resave", action="store_true", help="write back unchanged sessions")
    parser.add_argument("--save-uninitialized", action="store_true", help="store and cookie every new visitor")
    parser.add_argument("--rolling", action="store_true", help="send the cookie on every response")
    parser.add_argument("--max-age", type=int, default=None, help="cookie and store lifetime in seconds")


def main(argv=None):
    lesson_main(create_app, argv, title=f"Lesson 04: {TITLE}", add_arguments=add_arguments,
                options=lambda a: dict(resave=a.resave, save_uninitialized=a.save_uninitialized,
                                       rolling=a.rolling, max_age=a.max_age))


if __name__ == "__main__":
    main()
