"""Small helpers the lesson tests share: reading raw ``Set-Cookie`` lines.

``requests`` folds a response's ``Set-Cookie`` headers into one comma-joined string, and commas
also appear inside ``Expires=`` dates, so tests read the raw lines from urllib3 instead.
"""
from __future__ import annotations


def set_cookie_lines(resp, name: str | None = None) -> list[str]:
    """The raw ``Set-Cookie`` lines of a ``requests`` response (of one cookie name, if given)."""
    headers = resp.raw.headers
    lines = headers.getlist("Set-Cookie") if hasattr(headers, "getlist") else []
    return [line for line in lines if name is None or line.split("=", 1)[0].strip() == name]


def cookie_attributes(line: str) -> dict[str, str]:
    """``{"path": "/", "secure": "", ...}``: a Set-Cookie line's attributes, names lower-cased."""
    found = {}
    for part in line.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        found[key.strip().lower()] = value.strip()
    return found
