"""Lesson 01: a cookie is just a header.

The server asks the browser to remember a value with a ``Set-Cookie`` response header; the
browser sends it back on every later request in a ``Cookie`` request header. That is all a
cookie is, which is why the server must never trust what comes back: the browser (or anybody
with curl) can send any value it likes.

Run it:  make run LESSON=01   then open http://127.0.0.1:8080/ (it restarts when you save)
Check it: make check LESSON=01
"""
from bottle import request, response

from course.kit.cookies import cookie_header
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import new_app, text, todo

TITLE = "A cookie is just a header"
ONE_YEAR = 365 * 24 * 60 * 60     # seconds, for Max-Age
MAX_VISITS = 999_999_999          # "a small non-negative integer": at most nine digits
THEMES = ("light", "dark")        # the only values the theme cookie may hold


def read_count(value):
    """Exercise 01.1: the visit count in a ``visits`` cookie, or 0 when it is not one.

    The value comes from the client, so anything can arrive: ``None`` (no cookie), ``""``,
    ``"abc"``, ``"-3"``, ``"1e9"``, a 400-digit number, or digits from another script such as
    ``"٣"`` (``int("٣")`` is 3, and ``"٣".isdigit()`` is True!). Only ASCII digits, at most nine
    of them, are a count.
    """
    # TODO(01.1): return int(value) when value is ASCII digits and at most MAX_VISITS; else 0.
    # (Mind a 5,000-digit cookie: int() refuses to read one.)
    raise todo("01.1")


def create_app(**options):
    """Build the lesson's app. Lesson 01 has no options."""
    app = new_app()

    @app.get("/")
    def index():
        return render(
            lesson_id="01", title=TITLE,
            intro="Each route below sets or reads a plain cookie. Watch the inspector change.",
            routes=[Route("GET", "/visits", "count your visits in the cookie `visits`"),
                    Route("GET", "/forget", "delete the `visits` cookie"),
                    Route("GET", "/theme", "show your theme (default light)"),
                    Route("GET", "/theme?set=dark", "remember the dark theme"),
                    Route("GET", "/theme?set=light", "remember the light theme")],
            cookie_header=cookie_header(request.environ),
            decode=describe_cookie,
            readable=("theme",),          # visits is HttpOnly: the page shows its length, not its value
        )

    @app.get("/visits")
    def visits():
        """Exercise 01.2: count this visit in the ``visits`` cookie."""
        # TODO(01.2): read the cookie with request.get_cookie("visits") and read_count(), add one,
        # send it back with response.set_cookie(...) so that it
        #   - goes to every page of the site (path="/"),
        #   - lasts a year (max_age=ONE_YEAR),
        #   - cannot be read by page scripts (httponly=True),
        # and answer text(f"You have visited {count} times").
        raise todo("01.2")

    @app.get("/forget")
    def forget():
        """Exercise 01.3: delete the ``visits`` cookie."""
        # TODO(01.3): delete it with response.delete_cookie(...) - with the same path it was set
        # with, or the browser keeps it - and answer with a line of text.
        raise todo("01.3")

    @app.get("/theme")
    def theme():
        """Exercise 01.4: show the theme; ``?set=dark`` or ``?set=light`` remembers one."""
        # TODO(01.4):
        #   - GET /theme answers "Your theme is <theme>", from the `theme` cookie, "light" if none;
        #   - GET /theme?set=dark (request.query) stores "dark" in the `theme` cookie (path="/",
        #     a year) and answers "Your theme is dark"; the same for light;
        #   - any other ?set= value answers status 400 with a clear message (text(..., 400)) and
        #     does not touch the cookie;
        #   - a `theme` cookie holding anything but light or dark is shown as light: never echo
        #     a value you did not check.
        raise todo("01.4")

    return app


def describe_cookie(name, value):
    """What the inspector on ``GET /`` says about each cookie the browser sent."""
    if name == "visits":
        count = read_count(value)
        return f"{count} visits" if count or value == "0" else "not a count: read as 0"
    if name == "theme":
        return value if value in THEMES else "not a theme: read as light"
    return None


app = create_app()


def main(argv=None):
    lesson_main(create_app, argv, title=f"Lesson 01: {TITLE}")


if __name__ == "__main__":
    main()
