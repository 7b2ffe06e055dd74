"""Reading a ``Cookie`` header the way browsers write it, tolerant of junk.

Python's ``http.cookies.SimpleCookie`` (used by Bottle and Beaker) gives up on the *whole* header
when one piece is odd: ``SimpleCookie("null; sid=abc")`` is empty, so one stray token written by
some script logs the user out. Browsers and express's ``cookie`` package skip the bad piece and
keep the rest; so does this.
"""
from __future__ import annotations

from urllib.parse import quote, unquote


def parse_cookie_header(header: str | None) -> list[tuple[str, str]]:
    """Every ``name=value`` pair in order, duplicates kept; pieces without ``=`` are skipped.

    >>> parse_cookie_header('null; sid=abc; theme="dark"; sid=second')
    [('sid', 'abc'), ('theme', 'dark'), ('sid', 'second')]
    """
    pairs = []
    for piece in (header or "").split(";"):
        name, eq, value = piece.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
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
    """The request's raw ``Cookie`` header, or "" — never an exception.

    Read it from the WSGI environ: Bottle's ``request.get_header("Cookie")`` raises (a 500) when
    the header holds bytes that are not UTF-8, and a client may send any bytes it likes. WSGI
    hands headers over as latin-1; undo that and decode as UTF-8, replacing what is not.
    """
    raw = environ.get("HTTP_COOKIE", "")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")
