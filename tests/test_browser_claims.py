"""What a browser does with cookies, checked in a real browser: headless Chromium.

Every sentence or table row of a lesson that says what "the browser" does names the test here that
checks it (``tests/test_browser_claims.py::test_...``), and each test is named after its claim.
They run against a cookie lab: a tiny WSGI app that sends the ``Set-Cookie`` lines it is given in
``?set=...`` (and ``Clear-Site-Data`` in ``?csd=...``), answers with the ``Cookie`` header it
received, and logs every request, so each test sees both sides: what the browser keeps
(``context.cookies()``, ``document.cookie``) and what it sends back.

Host names: Chromium resolves every ``*.test`` name to 127.0.0.1 (``--host-resolver-rules``), so
``site-a.test`` and ``site-b.test`` are two *sites* (``.test`` is a top-level domain: no two names
under it share a registrable domain), ``www.example.test`` and ``evil.example.test`` are two
hosts of one site, and none of them is "localhost" to the browser. No request leaves this machine.

Chromium is one browser. Where others differ (Safari and ``Secure`` on localhost, Firefox and
Safari without a ``SameSite`` default, the two-minute grace of Chrome alone), the lesson text says
so and cites MDN; these tests pin what Chromium does.

Each claim runs in both of Debian's builds (``chrome``): Chromium itself (``full``, the browser
the texts speak of) and its headless shell (``shell``), which the lessons' checks use because it
starts in a third of the time. A claim that held in one and not the other would fail here, and
the checks would have to stop using the shell. One browser at a time, a fresh, empty profile per
test (``context``).
"""
from __future__ import annotations

import json
import threading
import time
import urllib.parse

import pytest

from course.lesson.server import serve
from course.tools import browser


class CookieLab:
    """A WSGI app that sets what it is told to and answers with the Cookie header it received."""

    def __init__(self):
        self.log: list[tuple[str, str, str, str]] = []      # (method, host, path, Cookie header)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        cookie = environ.get("HTTP_COOKIE", "")
        with self.lock:
            self.log.append((environ["REQUEST_METHOD"], environ.get("HTTP_HOST", "").split(":")[0],
                             environ.get("PATH_INFO", "/"), cookie))
        headers = [("Set-Cookie", line) for line in query.get("set", [])]
        headers += [("Clear-Site-Data", value) for value in query.get("csd", [])]
        if "html" in query:
            body, kind = query["html"][0], "text/html; charset=utf-8"
        else:
            body, kind = json.dumps({"cookie": cookie}), "application/json"
        headers += [("Content-Type", kind), ("Cache-Control", "no-store")]
        start_response("200 OK", headers)
        return [body.encode("utf-8")]

    def sent(self, host: str, path: str, method: str = "GET") -> list[str]:
        """The Cookie headers the lab received for ``method host path``, in order."""
        with self.lock:
            return [c for m, h, p, c in self.log if (m, h, p) == (method, host, path)]


def setting(*lines: str, **extra: str) -> str:
    """``?set=line&set=line...``: the query that makes the lab send these Set-Cookie lines."""
    pairs = [("set", line) for line in lines] + list(extra.items())
    return "?" + urllib.parse.urlencode(pairs)


def page_html(html: str) -> str:
    return "?" + urllib.parse.urlencode({"html": html})


@pytest.fixture(scope="module")
def lab():
    app = CookieLab()
    with serve(app) as url:
        app.port = int(url.rsplit(":", 1)[1])
        yield app


@pytest.fixture(scope="module", params=["full", "shell"])
def chrome(request):
    with browser.chromium(browser.require_chromium(request.param), test_hosts=True) as instance:
        yield instance


@pytest.fixture
def context(chrome):
    ctx = chrome.new_context()
    ctx.set_default_timeout(8000)
    try:
        yield ctx
    finally:
        ctx.close()


def origin(lab, host: str) -> str:
    return f"http://{host}:{lab.port}"


def jar(context) -> dict[str, dict]:
    """The browser's cookies by name: ``{"visits": {"path": "/", "expires": -1, ...}}``."""
    return {c["name"]: c for c in context.cookies()}


def cookie_sent(page, url: str) -> str:
    """Load ``url`` in ``page`` and return the Cookie header the lab received for it."""
    page.goto(url)
    return json.loads(page.evaluate("document.body.innerText"))["cookie"]


# ---------------------------------------------------------------- Path (lessons 01, 02)

def test_a_cookie_set_without_path_gets_the_folder_of_the_url_as_its_path(lab, context):
    """RFC 6265 §5.1.4: ``GET /visits`` without ``Path`` gives ``/``; ``GET /a/visits`` gives ``/a``."""
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/visits" + setting("top=1"))
    page.goto(base + "/a/visits" + setting("deep=1"))
    cookies = jar(context)
    assert cookies["top"]["path"] == "/", cookies["top"]
    assert cookies["deep"]["path"] == "/a", cookies["deep"]
    assert cookie_sent(page, base + "/elsewhere") == "top=1", "a Path=/ cookie goes to every page"


def test_a_path_cookie_goes_to_that_path_and_below_it_only(lab, context):
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/a/set" + setting("scoped=1; Path=/a"))
    for path in ("/a", "/a/", "/a/b"):
        assert cookie_sent(page, base + path) == "scoped=1", path
    for path in ("/ab", "/b", "/"):
        assert cookie_sent(page, base + path) == "", f"{path} is not under /a"


def test_of_two_cookies_with_one_name_the_longer_path_is_sent_first(lab, context):
    """RFC 6265 §5.4: longer paths first, whichever was set first."""
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/set" + setting("visits=root; Path=/"))
    page.goto(base + "/set" + setting("visits=deep; Path=/visits"))
    page.goto(base + "/set" + setting("visits=deeper; Path=/visits/x"))
    assert cookie_sent(page, base + "/visits/x") == "visits=deeper; visits=deep; visits=root"
    assert cookie_sent(page, base + "/visits") == "visits=deep; visits=root"


def test_a_sibling_subdomain_can_put_its_cookie_first_with_a_longer_path(lab, context):
    """Cookie tossing: evil.example.test sets ``Domain=example.test; Path=/visits``, and
    www.example.test's own ``visits`` (Path=/) comes second. Reading "the first" does not help."""
    page = context.new_page()
    site = origin(lab, "www.example.test")
    page.goto(site + "/set" + setting("visits=mine; Path=/"))
    page.goto(origin(lab, "evil.example.test") + "/set"
              + setting("visits=planted; Domain=example.test; Path=/visits"))
    assert cookie_sent(page, site + "/visits") == "visits=planted; visits=mine"


# ---------------------------------------------------------------- lifetime and deletion (lesson 01)

def test_without_max_age_or_expires_a_cookie_is_a_browser_session_cookie(lab, context):
    page = context.new_page()
    page.goto(origin(lab, "127.0.0.1") + "/set" + setting("plain=1; Path=/", "kept=1; Max-Age=600; Path=/",
                                                          "dated=1; Expires=Wed, 01 Jan 2100 00:00:00 GMT; Path=/"))
    cookies = jar(context)
    assert cookies["plain"]["expires"] == -1, "no Max-Age/Expires: gone when the browser closes"
    assert 590 < cookies["kept"]["expires"] - time.time() <= 601, cookies["kept"]
    # RFC 6265bis: no cookie lives longer than 400 days, whatever its Expires or Max-Age says.
    assert abs(cookies["dated"]["expires"] - (time.time() + 400 * 86400)) < 5, cookies["dated"]


def test_max_age_zero_or_a_past_expires_deletes_a_cookie(lab, context):
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/set" + setting("a=1; Path=/", "b=1; Path=/", "c=1; Path=/"))
    page.goto(base + "/set" + setting("a=; Max-Age=0; Path=/", "b=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"))
    assert sorted(jar(context)) == ["c"]


def test_deleting_from_forget_without_a_path_removes_a_path_slash_cookie(lab, context):
    """``/forget``'s default path is ``/``, so a deletion without ``Path`` matches ``Path=/``."""
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/visits" + setting("visits=3; Max-Age=600; Path=/"))
    page.goto(base + "/forget" + setting("visits=; Max-Age=0"))
    assert "visits" not in jar(context)


def test_deleting_with_another_path_leaves_the_cookie_in_place(lab, context):
    """A deletion is a cookie of the same name, domain and path: ``Path=/`` does not delete ``Path=/a``."""
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/a/set" + setting("visits=3; Max-Age=600; Path=/a"))
    page.goto(base + "/a/forget" + setting("visits=; Max-Age=0; Path=/"))
    assert jar(context)["visits"]["value"] == "3"
    page.goto(base + "/a/forget" + setting("visits=; Max-Age=0; Path=/a"))
    assert "visits" not in jar(context)


# ---------------------------------------------------------------- HttpOnly (lessons 01, 06, 07)

def test_an_httponly_cookie_is_sent_but_hidden_from_document_cookie(lab, context):
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/set" + setting("sid=secret; HttpOnly; Path=/", "theme=dark; Path=/"))
    assert cookie_sent(page, base + "/") == "sid=secret; theme=dark"
    assert page.evaluate("document.cookie") == "theme=dark"
    page.evaluate("document.cookie = 'sid=overwritten; path=/'")
    assert jar(context)["sid"]["value"] == "secret", "a script cannot overwrite an HttpOnly cookie either"


# ---------------------------------------------------------------- Secure and __Host- (lesson 07)

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_secure_and_host_cookies_are_kept_and_sent_over_http_on_loopback(lab, context, host):
    """Chrome 89+ (and Firefox 75+) treat http://localhost and 127.0.0.1 as secure; Safari does not."""
    page = context.new_page()
    base = origin(lab, host)
    page.goto(base + "/set" + setting("sec=1; Secure; Path=/", "__Host-sid=2; Secure; HttpOnly; Path=/"))
    assert sorted(jar(context)) == ["__Host-sid", "sec"]
    assert cookie_sent(page, base + "/") == "sec=1; __Host-sid=2"


def test_secure_and_host_cookies_are_dropped_over_http_on_another_name(lab, context):
    """``http://site-a.test`` (here on 127.0.0.1 too) is not a secure origin: both are refused."""
    page = context.new_page()
    base = origin(lab, "site-a.test")
    page.goto(base + "/set" + setting("sec=1; Secure; Path=/", "__Host-sid=2; Secure; Path=/", "plain=3; Path=/"))
    assert sorted(jar(context)) == ["plain"]
    assert cookie_sent(page, base + "/") == "plain=3"


def test_a_host_prefixed_cookie_needs_secure_path_slash_and_no_domain(lab, context):
    """The defence against cookie tossing: a sibling can set a ``Domain`` cookie, never a ``__Host-``
    one. On www.localhost, where ``Secure`` works (Chromium treats ``*.localhost`` as loopback)."""
    page = context.new_page()
    page.goto(origin(lab, "www.localhost") + "/a/set" + setting(
        "__Host-ok=1; Secure; Path=/", "__Host-nosecure=1; Path=/", "__Host-path=1; Secure; Path=/a",
        "__Host-domain=1; Secure; Path=/; Domain=www.localhost", "domain=1; Secure; Path=/; Domain=www.localhost"))
    assert sorted(jar(context)) == ["__Host-ok", "domain"], "only __Host-ok keeps every rule"


def test_a_cookie_without_domain_never_goes_to_a_sibling_subdomain(lab, context):
    page = context.new_page()
    page.goto(origin(lab, "www.example.test") + "/set" + setting("sid=1; Path=/"))
    assert cookie_sent(page, origin(lab, "evil.example.test") + "/") == ""
    assert cookie_sent(page, origin(lab, "www.example.test") + "/") == "sid=1"


# ---------------------------------------------------------------- SameSite (lesson 07)

SAMESITE_COOKIES = ("lax=1; SameSite=Lax; Path=/", "strict=1; SameSite=Strict; Path=/", "unset=1; Path=/")


def test_a_cross_site_post_carries_no_lax_or_strict_cookie(lab, context):
    """site-b.test posts a form to site-a.test. ``unset`` (no SameSite) rides along: Chrome's
    two-minute grace for a fresh cookie without SameSite ("Lax+POST")."""
    page = context.new_page()
    site_a = origin(lab, "site-a.test")
    page.goto(site_a + "/set" + setting(*SAMESITE_COOKIES))
    form = f'<form method="post" action="{site_a}/post"></form><script>document.forms[0].submit()</script>'
    page.goto(origin(lab, "site-b.test") + "/attack" + page_html(form))
    page.wait_for_url(site_a + "/post")
    assert lab.sent("site-a.test", "/post", "POST")[-1] == "unset=1"


def test_a_same_site_post_carries_lax_and_strict_cookies(lab, context):
    page = context.new_page()
    site_a = origin(lab, "site-a.test")
    page.goto(site_a + "/set" + setting(*SAMESITE_COOKIES))
    form = f'<form method="post" action="{site_a}/post-home"></form><script>document.forms[0].submit()</script>'
    page.goto(site_a + "/form" + page_html(form))
    page.wait_for_url(site_a + "/post-home")
    assert lab.sent("site-a.test", "/post-home", "POST")[-1] == "lax=1; strict=1; unset=1"


def test_cross_site_images_and_frames_carry_no_lax_cookie(lab, context):
    """A cookie without SameSite is treated as Lax here (Chromium's default)."""
    page = context.new_page()
    site_a = origin(lab, "site-a.test")
    page.goto(site_a + "/set" + setting(*SAMESITE_COOKIES))
    html = f'<img src="{site_a}/img"><iframe src="{site_a}/frame"></iframe>'
    page.goto(origin(lab, "site-b.test") + "/embeds" + page_html(html))
    page.wait_for_load_state("load")
    deadline = time.time() + 5
    while not (lab.sent("site-a.test", "/img") and lab.sent("site-a.test", "/frame")) and time.time() < deadline:
        time.sleep(0.05)
    assert lab.sent("site-a.test", "/img")[-1:] == [""], "a cross-site image"
    assert lab.sent("site-a.test", "/frame")[-1:] == [""], "a cross-site frame"


def test_following_a_link_from_another_site_carries_lax_but_not_strict_cookies(lab, context):
    page = context.new_page()
    site_a = origin(lab, "site-a.test")
    page.goto(site_a + "/set" + setting(*SAMESITE_COOKIES))
    page.goto(origin(lab, "site-b.test") + "/links" + page_html(f'<a href="{site_a}/landing">go</a>'))
    page.click("a")
    page.wait_for_url(site_a + "/landing")
    assert lab.sent("site-a.test", "/landing")[-1] == "lax=1; unset=1"


# ---------------------------------------------------------------- size (lessons 03, 07)

def test_a_cookie_of_more_than_4096_bytes_is_dropped(lab, context):
    """Chromium counts name + value: 4096 bytes are kept, 4097 are refused without a word."""
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/set" + setting("big=" + "x" * (4096 - 3) + "; Path=/"))
    assert len(jar(context)["big"]["value"]) == 4093
    context.clear_cookies()
    page.goto(base + "/set" + setting("big=" + "x" * (4097 - 3) + "; Path=/"))
    assert "big" not in jar(context)


# ---------------------------------------------------------------- Clear-Site-Data (lesson 07)

def test_clear_site_data_clears_cookies_on_localhost_but_not_over_http_elsewhere(lab, context):
    page = context.new_page()
    for host, left in (("127.0.0.1", []), ("site-a.test", ["k"])):
        base = origin(lab, host)
        page.goto(base + "/set" + setting("k=1; Path=/"))
        page.goto(base + "/logout" + setting(csd='"cookies"'))
        assert [c["name"] for c in context.cookies() if c["domain"] == host] == left, host


# ---------------------------------------------------------------- junk in the Cookie header (lesson 05)

def test_a_script_writing_document_cookie_null_makes_the_browser_send_a_bare_null(lab, context):
    """``document.cookie = "null"`` stores a cookie with no name, sent as a bare ``null`` token:
    the junk that makes Python's SimpleCookie drop the whole header (lesson 05, 05.5)."""
    page = context.new_page()
    base = origin(lab, "127.0.0.1")
    page.goto(base + "/set" + setting("sid=abc; Path=/"))
    page.evaluate('document.cookie = "null"')
    assert cookie_sent(page, base + "/") == "sid=abc; null"
