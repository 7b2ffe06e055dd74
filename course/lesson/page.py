"""The one HTML page every lesson's ``GET /`` draws: title, routes to try, and the inspector.

The inspector shows what the browser sent (the ``Cookie`` header, and each cookie decoded where
the lesson knows how) and, for server-side sessions, what the store holds for this session. It
never prints the value of an HttpOnly cookie: only its name, its length and what the server makes
of it (see :func:`shown_value`).
It is plain string building with ``html.escape`` (no Bottle template, so no template cache shared
between lessons or tests).

:func:`render_login` draws the small login page of lessons 06 on (the kit reads what it posts).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html import escape
from typing import Any, Callable, Iterable

from course.kit.cookies import parse_cookie_header


@dataclass(frozen=True)
class Route:
    """A route to try: a GET is a link; anything else is a small form with ``fields``."""
    method: str
    path: str
    description: str
    fields: tuple[str, ...] = field(default_factory=tuple)
    # a field may be "name" or "name=default"; "password" fields are drawn as password inputs


STYLE = """
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.1rem;margin-top:1.6rem}
code,pre{font-family:ui-monospace,monospace;font-size:.9rem}
pre{background:#f4f4f4;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#fafafa} .method{font-weight:bold;width:4rem} form{display:inline}
.inspector{border:2px solid #7a9;border-radius:6px;padding:.2rem 1rem 1rem;margin-top:1.5rem}
.muted{color:#777}
"""

NO_COOKIE = "(no Cookie header: the browser has no cookie for this site yet)"


def _inline(text: str) -> str:
    """Escape ``text`` for HTML, drawing `backticked` words as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def _route_row(route: Route) -> str:
    if route.method.upper() == "GET" and not route.fields:
        action = f'<a href="{escape(route.path)}">{escape(route.path)}</a>'
    else:
        inputs = []
        for spec in route.fields:
            name, _, default = spec.partition("=")
            kind = "password" if "password" in name else "text"
            inputs.append(f'<input name="{escape(name)}" type="{kind}" placeholder="{escape(name)}" '
                          f'value="{escape(default)}" size="12">')
        action = (f'<form method="{escape(route.method.lower())}" action="{escape(route.path)}">'
                  f'{" ".join(inputs)} <button type="submit">{escape(route.method.upper())} '
                  f'{escape(route.path)}</button></form>')
    return (f'<tr><td class="method">{escape(route.method.upper())}</td><td>{action}</td>'
            f'<td>{_inline(route.description)}</td></tr>')


def shown_value(name: str, value: str, readable: Iterable[str]) -> str:
    """A cookie's value as the inspector may show it: only the values page scripts may read.

    The page is HTML on the lesson's own origin, so any script on that origin can ``fetch('/')``
    and read it: printing an HttpOnly cookie there would hand the script what HttpOnly hides.
    Cookies the lesson does not name as readable (its own HttpOnly ones, and any cookie another
    app on this host set: cookies do not keep apart by port) show their length only.
    """
    if name in readable:
        return value
    return f"\u2039{len(value)} characters, not shown: HttpOnly or not this lesson's\u203a"


def render(*, lesson_id: str, title: str, intro: str = "", routes: Iterable[Route] = (),
           cookie_header: str | None = "",
           decode: Callable[[str, str], Any] | None = None,
           session: Any = None, session_label: str = "What the store holds for this session",
           extra_html: str = "", readable: Iterable[str] = (), inspector: bool = True) -> str:
    """The lesson page as an HTML string.

    ``decode(name, value)`` returns what the lesson can tell about a cookie (or None);
    ``session`` is the stored session data to show (None: the lesson has no server-side session).
    ``readable`` names the cookies whose values may be shown (the ones set without HttpOnly);
    ``inspector=False`` leaves the inspector out altogether (production has none).
    """
    rows = "\n".join(_route_row(r) for r in routes)
    readable = frozenset(readable)
    pairs = parse_cookie_header(cookie_header)
    cookie_rows = []
    for name, value in pairs:
        try:
            decoded = decode(name, value) if decode else None
        except Exception as exc:  # the inspector must never break the page
            exercise_id = getattr(exc, "exercise_id", None)
            decoded = (f"(finish exercise {exercise_id} to decode it)" if exercise_id
                       else f"(could not decode: {type(exc).__name__})")
        shown = "" if decoded is None else escape(str(decoded))
        cookie_rows.append(f"<tr><td><code>{escape(name)}</code></td>"
                           f"<td><code>{escape(shown_value(name, value, readable))}</code></td>"
                           f"<td>{shown}</td></tr>")
    cookies_table = (
        "<table><tr><th>name</th><th>value as sent</th><th>what the server makes of it</th></tr>"
        + "".join(cookie_rows) + "</table>"
        if cookie_rows else '<p class="muted">No cookies yet: try a route above, then come back.</p>'
    )
    store_html = ""
    if session is not None:
        store_html = (f"<h2>{escape(session_label)}</h2><pre>"
                      f"{escape(json.dumps(session, indent=2, sort_keys=True, default=str))}</pre>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lesson {escape(lesson_id)}: {escape(title)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Lesson {escape(lesson_id)}: {escape(title)}</h1>
{f"<p>{_inline(intro)}</p>" if intro else ""}
<h2>Routes to try</h2>
<table>{rows}</table>
{extra_html}
{_inspector(cookie_header, pairs, readable, cookies_table, store_html) if inspector else ""}
</body></html>
"""


def _inspector(cookie_header, pairs, readable, cookies_table: str, store_html: str) -> str:
    if cookie_header:
        masked = "; ".join(f"{name}={shown_value(name, value, readable)}" for name, value in pairs)
        sent = "Cookie: " + escape(masked)
    else:
        sent = NO_COOKIE
    return f"""<div class="inspector" id="inspector">
<h2>What your browser sent</h2>
<pre id="cookie-header">{sent}</pre>
{cookies_table}
{store_html}
</div>"""


# ---------------------------------------------------------------- the login page (lessons 06 on)

def render_login(*, title: str = "Log in", message: str = "", action: str = "/login",
               hidden: dict[str, str] | None = None, username: str = "", remember: bool = False) -> str:
    """A small HTML page with a working login form (``username``, ``password``) posting to ``action``.

    ``message`` is shown above the form (e.g. ``auth.LOGIN_FAILED``), ``hidden`` adds hidden fields
    (lesson 07's CSRF token), ``remember`` a "keep me logged in" checkbox (field ``remember``, lesson 10).
    Everything is escaped. (The kit reads what it posts:
    ``course.kit.auth.read_credentials``.)
    """
    extra = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                    for k, v in (hidden or {}).items())
    note = f'<p id="message"><strong>{escape(message)}</strong></p>' if message else ""
    keep = ('<p><label><input type="checkbox" name="remember" id="remember" value="1"> Keep me logged in'
            '</label></p>\n' if remember else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
{note}
<form method="post" action="{escape(action)}" id="login-form">{extra}
<p><label>Username <input name="username" id="username" autocomplete="username"
  value="{escape(username)}" required></label></p>
<p><label>Password <input name="password" id="password" type="password"
  autocomplete="current-password" required></label></p>
{keep}<p><button type="submit" id="login">Log in</button></p>
</form>
<p class="muted">Demo users: <code>alice</code> / <code>wonderland</code>
  and <code>bob</code> / <code>builder</code>.</p>
<p><a href="/">Back to the lesson page</a></p>
</body></html>
"""
