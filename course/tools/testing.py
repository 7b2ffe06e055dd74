"""Small helpers the tests share: reading raw ``Set-Cookie`` lines, calling a WSGI app in-process.

``requests`` folds a response's ``Set-Cookie`` headers into one comma-joined string, and commas
also appear inside ``Expires=`` dates, so tests read the raw lines from urllib3 instead.
"""
from __future__ import annotations

import hmac
import secrets


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


def compare_digest_calls(monkeypatch, module=None) -> list:
    """Record every ``hmac.compare_digest`` call (``secrets.compare_digest`` and a module's own
    ``from hmac import compare_digest`` too) for the rest of the test: the calls' argument pairs.

    An exercise that compares secrets with ``==`` leaks, by its timing, how much of a guess is
    right; a test asserts the list is not empty.
    """
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(secrets, "compare_digest", spy)
    if module is not None and hasattr(module, "compare_digest"):
        monkeypatch.setattr(module, "compare_digest", spy)
    return calls


def wsgi_request(app, path: str = "/", method: str = "GET", headers: dict | None = None,
                 body: bytes = b"", scheme: str = "http") -> tuple[str, list[tuple[str, str]], bytes]:
    """Call a WSGI app in this process: ``(status line, headers, body)``. For the kit's unit tests,
    which need milliseconds, not a server (the lesson tests talk HTTP to a real one)."""
    import io
    from wsgiref.util import setup_testing_defaults

    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "wsgi.url_scheme": scheme,
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)) if body else ""}
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer.update(status=status, headers=list(response_headers))
        return lambda data: answer.setdefault("written", []).append(data)

    result = app(environ, start_response)
    try:
        chunks = answer.pop("written", []) + list(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return answer["status"], answer["headers"], b"".join(chunks)


def expired(line: str) -> bool:
    """Whether a ``Set-Cookie`` line tells the browser to drop the cookie now (``Max-Age=0`` or a past
    ``Expires``, in either of the date forms servers write: ``01 Dec 2025`` or Beaker's ``01-Dec-2025``)."""
    import time
    from email.utils import mktime_tz, parsedate_tz

    attributes = cookie_attributes(line)
    if attributes.get("max-age", "").strip() in ("0", "-1"):
        return True
    when = parsedate_tz(attributes.get("expires", "").replace("-", " "))
    return when is not None and mktime_tz(when) <= time.time()
