"""Requests from other sites: telling them apart, and the login form's token (login CSRF).

A CSRF token kept in the session (lesson 07, exercise 07.5) protects what a logged-in user does.
Two requests it cannot protect:

* **the login itself** - there is no session yet. A page on another site can post the attacker's
  own username and password to ``/login`` from the victim's browser: the victim is now logged in
  as the attacker, and what they type next (a card number, a search, a note) lands in the
  attacker's account. This is *login CSRF*; express-session's tutorial login has no defence;
* **the logout** - a cross-site ``POST /logout`` that ends the victim's session (``SameSite=Lax``
  keeps the cookie from being sent, but a logout that always answers with a deletion still clears it).

Two defences, both here, used by lessons 06 and 07:

* **Fetch metadata and Origin** (:func:`is_cross_site`). Browsers say where a request comes from:
  ``Sec-Fetch-Site`` (Chrome 76+, Edge 79+, Firefox 90+, Safari 16.4+) is ``same-origin`` for the
  site's own pages, ``none`` for a typed URL or a bookmark, ``same-site`` or ``cross-site``
  otherwise; and ``Origin`` comes with every cross-origin ``POST``. Another port of the same host
  is ``same-site``, not ``same-origin``: refused too. A request with neither header comes from no
  browser (curl, a script): nobody's browser can be made to send it.
* **A pre-session token** (:func:`login_form_token`, :func:`login_token_ok`). ``GET /login`` puts a
  random value in a short-lived HttpOnly cookie and ``HMAC(secret, value)`` in the form;
  ``POST /login`` must bring both back (the "signed double-submit cookie" of OWASP's CSRF
  Prevention Cheat Sheet, https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html).
  A page on another site can neither read that cookie nor compute the HMAC.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import secrets as random
from typing import Callable

import bottle

from course.kit.cookies import request_cookies
from course.kit.forms import FormError, optional_field, request_header
from course.kit.idlog import loggable
from course.kit.security import SCHEME_KEY

__all__ = ["LOGIN_COOKIE", "LOGIN_COOKIE_KEY", "login_cookie_name", "TOKEN_FIELD", "TOKEN_HEADER",
           "CROSS_SITE_REFUSED", "is_cross_site", "login_form_token", "login_token_ok", "refuse_cross_site",
           "protect_login"]

log = logging.getLogger("course.kit.csrf")

LOGIN_COOKIE = "login_csrf"          # the pre-session token's random half (HttpOnly, SameSite=Strict)
LOGIN_COOKIE_KEY = "course.csrf.login_cookie"   # an app may name it otherwise per request (environ key)
TOKEN_FIELD = "csrf_token"           # the form field that carries a CSRF token
TOKEN_HEADER = "X-CSRF-Token"        # ... or the header, for scripts
CROSS_SITE_REFUSED = "Cross-site request refused"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")
_LOGIN_TOKEN_AGE = 3600              # seconds a login form stays usable


def own_origin(environ: dict) -> str:
    """``scheme://host[:port]`` of this server as the browser addressed it.

    The scheme is what :class:`course.kit.security.SecureCookieGate` found the browser used
    (``https`` behind a proxy lesson 07 trusts), else ``wsgi.url_scheme`` (``https`` only when this
    server itself speaks TLS); the host is the ``Host`` header (``X-Forwarded-Host`` is never
    believed here: any client can send it).
    """
    scheme = environ.get(SCHEME_KEY) or environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    host = host.encode("latin-1", "replace").decode("utf-8", "replace").lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def is_cross_site(environ: dict) -> bool:
    """Whether a browser sent this request from a page of another origin (another site or port).

    ``Sec-Fetch-Site`` decides where the browser sends it; else ``Origin`` (``null`` counts as
    cross-site: sandboxed frames, some redirects); with neither, no browser page sent it.
    """
    site = request_header("Sec-Fetch-Site", environ)
    if site:
        return site.strip().lower() not in ("same-origin", "none")
    origin = request_header("Origin", environ)
    if origin is None:
        return False
    return origin.strip().lower() != own_origin(environ)


def _mac(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), b"login-csrf:" + value.encode(), hashlib.sha256).hexdigest()


def login_cookie_name(environ: dict) -> str:
    """The login cookie's name: ``LOGIN_COOKIE``, or what the app put in ``environ[LOGIN_COOKIE_KEY]``
    (lesson 10 in production: ``__Host-login_csrf``, which only this host can set, over HTTPS)."""
    return environ.get(LOGIN_COOKIE_KEY) or LOGIN_COOKIE


def _cookie_value(environ: dict) -> str | None:
    name = login_cookie_name(environ)
    value = next((v for n, v in request_cookies(environ) if n == name), None)
    return value if value is not None and _TOKEN.fullmatch(value) else None


def login_form_token(secret: str) -> str:
    """The hidden field for a login form: ``HMAC(secret, v)`` of the random ``v`` in a cookie.

    Reuses the browser's cookie when it has a good one (two tabs of the login page both work), else
    sets a new one on ``bottle.response`` (HttpOnly, ``SameSite=Strict``, one hour).
    """
    value = _cookie_value(bottle.request.environ)
    if value is None:
        value = random.token_urlsafe(32)
        name = login_cookie_name(bottle.request.environ)
        bottle.response.set_cookie(name, value, path="/", max_age=_LOGIN_TOKEN_AGE, httponly=True,
                                   samesite="Strict", secure=name.startswith("__Host-"))
    return _mac(secret, value)


def login_token_ok(secret: str, sent: str | None, environ: dict | None = None) -> bool:
    """Whether ``sent`` is the HMAC of the login cookie this browser holds."""
    value = _cookie_value(bottle.request.environ if environ is None else environ)
    if value is None or not sent or len(sent) > 128:
        return False
    return hmac.compare_digest(_mac(secret, value).encode(), sent.encode("utf-8", "replace"))


def sent_token() -> str | None:
    """The CSRF token a request brought: the ``X-CSRF-Token`` header, else the form field."""
    return request_header(TOKEN_HEADER) or optional_field(TOKEN_FIELD)


def refused(status: int = 403, message: str = CROSS_SITE_REFUSED) -> FormError:
    log.warning("refused a cross-site %s %s", loggable(bottle.request.method), loggable(bottle.request.path))
    return FormError(status, message)


def refuse_cross_site(route: Callable) -> Callable:
    """Decorator: a request a page of another origin sent gets 403 and changes nothing (logout)."""

    @functools.wraps(route)
    def guarded(*args, **kwargs):
        if is_cross_site(bottle.request.environ):
            raise refused()
        return route(*args, **kwargs)

    return guarded


def protect_login(secret_of: Callable[[], str]) -> Callable[[Callable], Callable]:
    """Decorator factory for ``POST /login``: no login CSRF.

    A request that brings a token must bring the right one (the HMAC of its login cookie); a
    request with no token must not come from a page of another origin. ``secret_of()`` gives the
    app's secret (read at request time, so the decorator can sit on a module-level route).
    """

    def decorator(route: Callable) -> Callable:
        @functools.wraps(route)
        def guarded(*args, **kwargs):
            if is_cross_site(bottle.request.environ):
                raise refused()
            try:
                sent = sent_token()
            except FormError:
                sent = None          # a body the kit refuses: the route's own reading answers it
            if sent is not None and not login_token_ok(secret_of(), sent):
                raise refused(403, "Login form expired or forged: reload the login page and try again")
            return route(*args, **kwargs)

        return guarded

    return decorator
