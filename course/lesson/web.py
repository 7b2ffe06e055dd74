"""What every lesson app is built from: a fresh Bottle app that answers 501 for unfinished work.

A lesson's starter must run as it is. Where an exercise is not done, its code says
``raise todo("03.2")``; the request then gets HTTP 501 and one line naming the exercise, the file
and the function to edit, instead of a crash or a traceback.
"""
from __future__ import annotations

import functools
from html import escape

import bottle

from course.kit.cookies import request_cookies
from course.lesson import manifest
from course.lesson.page import STYLE


class ExerciseNotDone(NotImplementedError):
    """An exercise's code is still the starter's placeholder."""

    def __init__(self, exercise_id: str):
        self.exercise_id = exercise_id
        try:
            ex = manifest.exercise(exercise_id)
            where = f"edit {ex.app_path}, {ex.function}"
        except LookupError:
            where = "see the lesson's README"
        super().__init__(
            f"Exercise {exercise_id} is not done yet: {where}. "
            f"Stuck? make hint EXERCISE={exercise_id}"
        )


def todo(exercise_id: str) -> ExerciseNotDone:
    """The placeholder of an unfinished exercise: ``raise todo("01.1")``."""
    return ExerciseNotDone(exercise_id)


def not_done_body(exc: ExerciseNotDone, accept: str | None) -> tuple[bytes, str]:
    """The 501's body and type: one plain line for curl and tests, a small page for a browser."""
    if "text/html" not in (accept or ""):
        return (str(exc) + "\n").encode(), "text/plain; charset=utf-8"
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Exercise "
            f"{escape(exc.exercise_id)} is not done yet</title><style>{STYLE}</style></head><body>"
            f"<h1>Not done yet: exercise {escape(exc.exercise_id)}</h1><p>{escape(str(exc))}</p>"
            "<p class=\"muted\">HTTP 501: this part of the lesson is yours to write. "
            "Save your change and reload the page: <code>make run</code> restarts the server on every save."
            "</p></body></html>\n")
    return page.encode(), "text/html; charset=utf-8"


def not_done_response(exc: ExerciseNotDone) -> bottle.HTTPResponse:
    body, content_type = not_done_body(exc, bottle.request.get_header("Accept"))
    return bottle.HTTPResponse(body, status=501, headers={"Content-Type": content_type})


def answer_501_for_unfinished_exercises(callback):
    """Bottle plugin: a route that raises ``todo(...)`` answers 501 with the exercise's line."""

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except ExerciseNotDone as exc:
            return not_done_response(exc)

    return wrapper


def read_cookies_with_the_kit(callback):
    """Bottle plugin: ``request.cookies`` and ``request.get_cookie`` read the course's cookie reader.

    Bottle parses cookies with Python's ``http.cookies``, which raises on a cookie name it dislikes
    (``a(b=1``: a 500 on every page), drops the whole header at one bad piece, and takes quadratic
    time on a quoted value full of backslashes (CVE-2024-7592). Bottle caches its parse in the
    environ under ``bottle.request.cookies``; putting the kit's parse there first means a lesson
    keeps writing ``request.get_cookie("visits")`` as the seed does. As in Bottle, of two cookies
    with one name ``get_cookie`` returns the last; ``request.cookies.getall(name)`` has them all.
    """

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        environ = bottle.request.environ
        cookies = bottle.FormsDict()
        for name, value in request_cookies(environ):
            cookies.append(name, value)
        environ["bottle.request.cookies"] = cookies
        return callback(*args, **kwargs)

    return wrapper


def new_app() -> bottle.Bottle:
    """A new Bottle app of the lesson's own (never Bottle's global default app)."""
    app = bottle.Bottle()
    app.install(answer_501_for_unfinished_exercises)
    app.install(read_cookies_with_the_kit)
    return app


def guard(wsgi_app):
    """WSGI wrapper: ``todo(...)`` raised in middleware (outside any route) also becomes a 501."""

    def guarded(environ, start_response):
        try:
            return wsgi_app(environ, start_response)
        except ExerciseNotDone as exc:
            body, content_type = not_done_body(exc, environ.get("HTTP_ACCEPT"))
            start_response("501 Not Implemented", [("Content-Type", content_type),
                                                   ("Content-Length", str(len(body)))])
            return [body]

    return guarded


def see_other(path: str) -> str:
    """Send a browser on to ``path`` (303 See Other) with a relative ``Location``: ``return see_other("/")``.

    Not ``bottle.redirect``: it makes ``Location`` absolute from ``request.url``, which Bottle builds
    from ``X-Forwarded-Host``, a header any client can send: ``X-Forwarded-Host: evil.example`` on a
    login would send the browser to evil.example (an open redirect). A relative ``Location``
    (RFC 9110, section 10.2.2) takes nothing from the request. Cookies set on ``bottle.response``
    are kept, as with :func:`text`.
    """
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        raise ValueError(f"see_other takes a path on this site, such as '/dashboard', not {path!r}")
    bottle.response.status = 303
    bottle.response.set_header("Location", path)
    return ""


def text(body: str, status: int = 200) -> str:
    """Answer plain text (what most lesson routes return, so curl and tests read it easily).

    It sets status and type on Bottle's ``response`` and returns the body, so cookies the route
    set on ``response`` are kept. (Returning a ``bottle.HTTPResponse`` instead would replace
    the response, and silently drop those cookies.)
    """
    bottle.response.status = status
    bottle.response.content_type = "text/plain; charset=utf-8"
    return body if body.endswith("\n") else body + "\n"
