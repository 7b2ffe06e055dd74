"""Lesson 01: a cookie is just a header.

The server asks the browser to remember a value with a ``Set-Cookie`` response header; the
browser sends it back on every later request in a ``Cookie`` request header. That is all a
cookie is, which is why the server must never trust what comes back: the browser (or anybody
with curl) can send any value it likes.

Run it:  make run LESSON=01   then open http://127.0.0.1:8080/ (it restarts when you save)
"""
from bottle import request, response

from course.kit.cookies import cookie_header
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import new_app, text

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
    # Count the digits before int(): int() of more than 4,300 digits raises ValueError (Python's
    # guard against slow conversions), and a client chooses how many digits it sends.
    if value and value.isascii() and value.isdigit() and len(value) <= len(str(MAX_VISITS)):
        return int(value)
    return 0


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
        count = read_count(request.get_cookie("visits")) + 1
        # Path=/ : sent back to every page of the site, whichever URL set it (without a Path the
        # browser takes the URL's folder: / for /visits, but /a for /a/visits).
        # Max-Age: kept for a year; without it the cookie dies when the browser closes.
        # HttpOnly: page scripts cannot read it (document.cookie does not show it).
        response.set_cookie("visits", str(count), path="/", max_age=ONE_YEAR, httponly=True)
        return text(f"You have visited {count} times")

    @app.get("/forget")
    def forget():
        """Exercise 01.3: delete the ``visits`` cookie."""
        # A cookie is deleted by sending it again, already expired, with the same Path.
        response.delete_cookie("visits", path="/")
        return text("Forgot your visits: the next one counts as the first")

    @app.get("/theme")
    def theme():
        """Exercise 01.4: show the theme; ``?set=dark`` or ``?set=light`` remembers one."""
        wanted = request.query.get("set")
        if wanted is not None:
            if wanted not in THEMES:
                return text(f"Unknown theme {wanted!r}: choose one of {', '.join(THEMES)}. "
                            "Your theme cookie is unchanged.", 400)
            # Not HttpOnly: a page script may read the theme to style the page.
            response.set_cookie("theme", wanted, path="/", max_age=ONE_YEAR)
            return text(f"Your theme is {wanted}")
        current = request.get_cookie("theme")
        # Never echo a cookie you did not check: a forged one could carry HTML or script.
        return text(f"Your theme is {current if current in THEMES else 'light'}")

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
