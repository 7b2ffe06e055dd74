"""Reading a form or JSON request body: fields as strings, every bad body a 4xx, never a 500.

``read_fields(names)`` / ``read_credentials()`` take the fields from a form
(``application/x-www-form-urlencoded``, ``multipart/form-data``) or a JSON object. A missing field
is a 400 naming it, malformed JSON a 400, an oversized body a 413, another content type a 415:
each raised as a :class:`FormError`, which Bottle sends as it is. :func:`from_browser_form` tells
a browser's form post (which should get a page or a redirect) from a script's request.
"""
from __future__ import annotations

import json
from typing import Iterable

import bottle

__all__ = ["MAX_BODY", "FORM_TYPES", "FormError", "read_fields", "read_credentials", "from_browser_form"]

MAX_BODY = 16 * 1024            # bytes: a login form is a few dozen
_DRAIN = 1024 * 1024            # read (and drop) up to this much of a refused body, so the answer arrives
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class FormError(bottle.HTTPResponse):
    """A plain-text 4xx answer about the request body. Raise it from a route: Bottle sends it as it is.

    Headers the route already set on ``bottle.response`` (``Cache-Control``, cookies) are kept.
    """

    def __init__(self, status: int, message: str):
        super().__init__(message + "\n", status)
        for name, value in bottle.response.headerlist:
            if name.lower() not in ("content-type", "content-length"):
                self.add_header(name, value)
        self.content_type = "text/plain; charset=utf-8"
        self.message = message


def _drain(environ: dict, length: int) -> None:
    stream = environ.get("wsgi.input")
    left = min(length, _DRAIN)
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        left -= len(chunk)


def _content_length(request) -> int | None:
    raw = (request.environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise FormError(400, "Bad Content-Length header")
    return int(raw)


def _clean(name: str, value) -> str:
    if value is None or value == "":
        raise FormError(400, f"Missing field: {name}")
    if not isinstance(value, str):
        raise FormError(400, f"Field {name} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise FormError(400, f"Field {name} is not valid text") from None
    return value


def read_fields(names: Iterable[str], request=None) -> dict[str, str]:
    """The fields ``names`` of a form or JSON body, as a dict of non-empty strings.

    Raises :class:`FormError` (answered as it is by Bottle): 400 "Missing field: <name>" for a
    missing or empty field, 400 for a field sent twice or that is not a string, malformed JSON, or
    a JSON body that is not an object; 413 for a body over :data:`MAX_BODY` bytes; 415 for another
    content type.
    """
    request = bottle.request if request is None else request
    names = tuple(names)
    length = _content_length(request)
    if length is not None and length > MAX_BODY:
        _drain(request.environ, length)
        raise FormError(413, f"Request body too large: at most {MAX_BODY} bytes")
    ctype = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    is_json = ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))
    if not is_json and ctype not in FORM_TYPES and ctype and length:
        raise FormError(415, "Send the fields as a form (application/x-www-form-urlencoded) or as JSON "
                             "(application/json)")
    body = request.body                       # Bottle reads and keeps the body (chunked ones too)
    size = body.seek(0, 2)
    body.seek(0)
    if size > MAX_BODY:
        raise FormError(413, f"Request body too large: at most {MAX_BODY} bytes")
    if is_json:
        try:
            data = json.loads(body.read())
        except ValueError:                      # includes bytes that are not UTF-8
            raise FormError(400, "Malformed JSON body") from None
        finally:
            body.seek(0)
        if not isinstance(data, dict):
            raise FormError(400, "The JSON body must be an object, such as "
                                 '{"username": "alice", "password": "wonderland"}')
        return {name: _clean(name, data.get(name)) for name in names}
    try:
        forms = request.forms
    except (ValueError, bottle.HTTPError):      # a multipart body Bottle cannot parse
        raise FormError(400, "Malformed form body") from None
    values = {}
    for name in names:
        if len(forms.getall(name)) > 1:
            raise FormError(400, f"Field {name} was sent more than once")
        raw = forms.get(name)
        value = forms.getunicode(name)          # None when the bytes are not UTF-8
        if raw not in (None, "") and value is None:
            raise FormError(400, f"Field {name} is not valid text")
        values[name] = _clean(name, value)
    return values


def read_credentials(request=None) -> tuple[str, str]:
    """``(username, password)`` from a form or JSON body; see :func:`read_fields` for the errors."""
    fields = read_fields(("username", "password"), request)
    return fields["username"], fields["password"]


def from_browser_form(request=None) -> bool:
    """Whether the request is a browser submitting an HTML form (which should get a page or a redirect).

    A browser navigating sends ``Accept: text/html,...``; curl, ``requests`` and ``fetch`` send ``*/*``
    or ask for JSON, and get the plain-text answers.
    """
    request = bottle.request if request is None else request
    ctype = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    return ctype in FORM_TYPES and "text/html" in request.environ.get("HTTP_ACCEPT", "")
