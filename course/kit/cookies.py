"""Reading a ``Cookie`` header the way browsers write it: total over any bytes, in linear time.

This is the one cookie reader of the course: every lesson, Beaker's middleware included, reads
cookies through it, and nothing here ever hands a name or a value to ``http.cookies``.

Why not Python's ``http.cookies.SimpleCookie`` (which Bottle and Beaker use)?

* It gives up on the *whole* header when one piece is odd: ``SimpleCookie("null; sid=abc")`` is
  empty, so one stray token written by some script logs the user out.
* A cookie *name* it refuses (``a(b=1``) makes it raise, and Bottle's ``request.cookies`` with it:
  any page on another port of the same host can plant such a cookie and turn every page into a 500.
* Unquoting a quoted value full of backslashes takes quadratic time on the Python this course runs
  on (CVE-2024-7592, fixed in 3.11.10 / 3.12.6): one 60 KB cookie costs seconds of CPU.

Browsers and express's ``cookie`` package skip the bad piece and keep the rest; so does this, with
one pass over the header.
"""
from __future__ import annotations

from urllib.parse import quote, unquote

RAW_COOKIE_KEY = "course.raw_cookie_header"
"""Where a middleware that rewrites ``HTTP_COOKIE`` for a library (``beakerkit.HardenedSessions``
hands Beaker only its own cookie) keeps the header exactly as the browser sent it."""


def parse_cookie_header(header: str | None) -> list[tuple[str, str]]:
    """Every ``name=value`` pair in order, duplicates kept; pieces without ``=`` are skipped.

    Any string is accepted (NUL, backslashes, quotes, 10,000 cookies): pieces are split at ``;``,
    stripped of spaces and tabs, and one pair of surrounding double quotes is removed from a value,
    as express's ``cookie`` package does. Nothing is unescaped.

    >>> parse_cookie_header('null; sid=abc; theme="dark"; sid=second')
    [('sid', 'abc'), ('theme', 'dark'), ('sid', 'second')]
    """
    pairs = []
    for piece in (header or "").split(";"):
        if "=" not in piece:
            continue                     # a bare token or an empty piece (";;;;"): skipped, and cheaply
        name, _, value = piece.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        pairs.append((name, value))
    return pairs


def first_cookie(header: str | None, name: str) -> str | None:
    """The first value sent under ``name`` (express's rule for duplicates), or None."""
    for key, value in parse_cookie_header(header):
        if key == name:
            return value
    return None


def encode_value(value: str) -> str:
    """Percent-encode a cookie value as JavaScript's ``encodeURIComponent`` does (express does this)."""
    return quote(value, safe="!'()*-._~")


def decode_value(value: str) -> str:
    """Undo ``encode_value``; a stray ``%`` is kept as it is."""
    if value.startswith("s%3A") and "%" not in value[4:]:
        return "s:" + value[4:]          # the signed session cookie: its only escape (unquote is slow)
    return unquote(value)


def cookie_header(environ: dict) -> str:
    """The request's ``Cookie`` header as the browser sent it, or "" — never an exception.

    Read it from the WSGI environ: Bottle's ``request.get_header("Cookie")`` raises (a 500) when
    the header holds bytes that are not UTF-8, and a client may send any bytes it likes. WSGI
    hands headers over as latin-1; undo that and decode as UTF-8, replacing what is not.
    """
    raw = environ.get(RAW_COOKIE_KEY)
    if raw is None:
        raw = environ.get("HTTP_COOKIE", "")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def request_cookies(environ: dict) -> list[tuple[str, str]]:
    """The request's cookies as ``(name, value)`` pairs, in the order they were sent."""
    return parse_cookie_header(cookie_header(environ))
