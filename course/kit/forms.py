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

__all__ = ["MAX_BODY", "FORM_TYPES", "FormError", "read_fields", "read_credentials", "optional_field",
           "request_header", "from_browser_form"]

MAX_BODY = 16 * 1024            # bytes: a login form is a few dozen
_DRAIN = 1024 * 1024            # read (and drop) up to this much of a refused body, so the answer arrives
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_DRAINED = "course.kit.forms.drained"   # set once a refused body has been read and dropped


class FormError(bottle.HTTPResponse):
    """A plain-text 4xx answer about the request body. Raise it from a route: Bottle sends it as it is.

    Headers the route already set on ``bottle.response`` (``Cache-Control``, cookies) are kept.
    """

    def __init__(self, status: int, message: str):
        super().__init__(message + "\n", status)
        for name, value in bottle.response.headerlist:
            if name.lower() != "content-length":      # the route's Content-Type is replaced just below
                self.add_header(name, value)
        self.content_type = "text/plain; charset=utf-8"
        self.message = message


def _drain(environ: dict, length: int) -> None:
    """Read (and drop) a refused body, once per request: a second reader would wait for bytes
    the client already sent (and the client waits for the answer)."""
    if environ.get(_DRAINED):
        return
    environ[_DRAINED] = True
    stream = environ.get("wsgi.input")
    left = min(length, _DRAIN)
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        left -= len(chunk)


def _content_length(request) -> int | None:
    raw = request.environ.get("CONTENT_LENGTH")
    if not raw:
        return None
    raw = raw.strip()                   # only blanks: Bottle's int() would raise (a 500), so a 400 below
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:   # int() refuses 4,301 digits: a 500
        raise FormError(400, "Bad Content-Length header")
    return int(raw)


def _clean(name: str, value: str | None, required: bool = True) -> str:
    """A field's value (a string, or None when it was not sent: both readers check that) as clean text."""
    if required and (value is None or value == ""):
        raise FormError(400, f"Missing field: {name}")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise FormError(400, f"Field {name} is not valid text") from None
    return value


def _json_object(raw: bytes) -> dict[str, str]:
    """A JSON body as a flat object of strings, or a 400: nothing nested, no key sent twice."""
    def pairs_once(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise FormError(400, f"Field {key} was sent more than once")
            seen[key] = value
        return seen

    try:
        data = json.loads(raw, object_pairs_hook=pairs_once)
    except (ValueError, RecursionError):        # bad JSON, bytes that are not UTF-8, deep nesting
        raise FormError(400, "Malformed JSON body") from None
    if not isinstance(data, dict):
        raise FormError(400, "The JSON body must be an object, such as "
                             '{"username": "alice", "password": "wonderland"}')
    for key, value in data.items():
        if not isinstance(value, str):
            raise FormError(400, f"Field {key} must be a string")
    return data


def read_fields(names: Iterable[str], request=None, *, optional: Iterable[str] = (),
                max_body: int = MAX_BODY) -> dict[str, str]:
    """The fields ``names`` (required) and ``optional`` of a form or JSON body, as strings.

    Every required field is a non-empty string; an optional one is a string, or None when it was
    not sent. Raises :class:`FormError` (answered as it is by Bottle): 400 "Missing field: <name>"
    for a missing or empty required field; 400 for a field sent twice, a value that is not a string
    (JSON must be a flat object of strings) or not UTF-8, malformed or too deeply nested JSON, or a
    ``Content-Length`` that is not a plain decimal number; 413 for a body over ``max_body`` bytes;
    415 for another content type.
    """
    request = bottle.request if request is None else request
    names, optional = tuple(names), tuple(optional)
    length = _content_length(request)
    if length is not None and length > max_body:
        _drain(request.environ, length)
        raise FormError(413, f"Request body too large: at most {max_body} bytes")
    ctype = _content_type(request)
    is_json = ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))
    if not is_json and ctype not in FORM_TYPES and ctype and length:
        raise FormError(415, "Send the fields as a form (application/x-www-form-urlencoded) or as JSON "
                             "(application/json)")
    body = request.body                       # Bottle reads and keeps the body (chunked ones too)
    size = body.seek(0, 2)
    body.seek(0)
    if size > max_body:
        raise FormError(413, f"Request body too large: at most {max_body} bytes")
    if is_json:                               # (request.body seeks back to 0 for the next reader)
        data = _json_object(body.read()) if size else {}
        found = {name: data.get(name) for name in names + optional}
    else:
        found = _form_fields(request, names + optional)
    values = {name: _clean(name, found[name]) for name in names}
    for name in optional:
        values[name] = None if found[name] is None else _clean(name, found[name], required=False)
    return values


def _content_type(request) -> str:
    """The media type of the body, lowercase, without its parameters ("" when none is sent)."""
    return request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()


def _form_fields(request, names: tuple[str, ...]) -> dict[str, str | None]:
    try:
        forms = request.forms
    except (ValueError, bottle.HTTPError):      # a multipart body Bottle cannot parse
        raise FormError(400, "Malformed form body") from None
    found = {}
    for name in names:
        if len(forms.getall(name)) > 1:
            raise FormError(400, f"Field {name} was sent more than once")
        raw = forms.get(name)
        value = forms.getunicode(name)          # None when the bytes are not UTF-8
        if raw is not None and value is None:
            raise FormError(400, f"Field {name} is not valid text")
        found[name] = value
    return found


def optional_field(name: str, request=None) -> str | None:
    """One field of a form or JSON body, or None when it was not sent (errors as :func:`read_fields`)."""
    return read_fields((), request, optional=(name,))[name]


def request_header(name: str, environ: dict | None = None) -> str | None:
    """A request header as text, or None when it was not sent; a 400 when it is not clean text.

    Bottle's ``request.get_header`` raises (a 500) on bytes that are not UTF-8, and a header can hold
    any byte a client likes, NUL and other control characters included: those are a 400 naming the
    header, never a value a route goes on with.
    """
    environ = bottle.request.environ if environ is None else environ
    key = "HTTP_" + name.upper().replace("-", "_")
    raw = environ.get({"HTTP_CONTENT_TYPE": "CONTENT_TYPE", "HTTP_CONTENT_LENGTH": "CONTENT_LENGTH"}.get(key, key))
    if raw is None:
        return None
    try:
        value = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise FormError(400, f"The {name} header is not UTF-8 text") from None
    if any(ord(c) < 32 and c != "\t" or c == "\x7f" for c in value):
        raise FormError(400, f"The {name} header holds control characters")
    return value


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
    return _content_type(request) in FORM_TYPES and "text/html" in request.environ.get("HTTP_ACCEPT", "")
