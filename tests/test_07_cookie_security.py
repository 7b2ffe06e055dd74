"""Lesson 07: cookie security - attributes, proxies, timeouts, CSRF.

Black box over HTTP. Two things a test server cannot do are played by small WSGI wrappers:
a server that speaks TLS itself (``environ["wsgi.url_scheme"] = "https"``) and a reverse proxy
(a client that sends ``X-Forwarded-Proto``). Timeouts of minutes and hours run on a
``FakeClock`` the test moves by hand. A ``Secure`` cookie is never sent back by ``requests`` over
http://, so production tests send the ``Cookie`` header themselves.
"""
import base64
import re
import secrets
import zlib

import pytest
import requests

from course.kit.beakerkit import CountingStore, HardenedSessions, get_session, session_config
from course.kit.security import FakeClock
from course.tools import browser
from course.tools.testing import compare_digest_calls, cookie_attributes, quick_users, set_cookie_lines

# A tampered cookie session is refused with a BeakerWarning: expected here, and tested.
pytestmark = pytest.mark.filterwarnings("ignore:Invalidating corrupt session")

SECRET = "lesson-07 test secret, long enough to be taken seriously"
LOGIN = {"username": "alice", "password": "wonderland"}
WRONG_TOKENS = {"wrong": "not-the-token", "empty": "", "non-ascii": "jeton-évident-ü"}


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    """One users database per test process, its passwords hashed at a test-only cost (testing.quick_users)."""
    return quick_users(tmp_path_factory.mktemp("lesson07") / "users.db")


@pytest.fixture
def start(app_module, serve_app, db_path):
    """``url = start(**options)``: the lesson's app with a test secret and a private users DB.

    ``https=True`` serves it as a server that speaks TLS itself would (wsgi.url_scheme https).
    """
    def run(https=False, **options):
        options.setdefault("secret", SECRET)
        options.setdefault("db_path", db_path)
        return serve_app(app_module.create_app(**options), url_scheme="https" if https else None)
    return run


def assert_host_cookie(line):
    """The production session cookie: Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain."""
    attrs = cookie_attributes(line)
    assert "secure" in attrs, f"Secure missing: {line}"
    assert "httponly" in attrs, f"HttpOnly missing: {line}"
    assert attrs.get("samesite", "").lower() == "lax", f"SameSite=Lax missing: {line}"
    assert attrs.get("path") == "/", f"__Host- cookies need Path=/: {line}"
    assert "domain" not in attrs, f"__Host- cookies must have no Domain: {line}"


def pair(line):
    """``name=value`` of a Set-Cookie line: what a browser sends back."""
    return line.split(";")[0].strip()


def log_in(url, client=None, headers=None):
    resp = (client or requests).post(url + "/login", data=LOGIN, headers=headers or {})
    assert resp.status_code == 200 and "Login successful!" in resp.text, (resp.status_code, resp.text)
    return resp


def token_of(page):
    """The hidden csrf_token in the profile form."""
    field = re.search(r"<input[^>]*name=[\"']csrf_token[\"'][^>]*>", page)
    assert field, f"GET /profile has no <input name=\"csrf_token\">:\n{page[:800]}"
    value = re.search(r"value=[\"']([^\"']*)[\"']", field.group(0))
    assert value and value.group(1), f"the csrf_token field has no value: {field.group(0)}"
    return value.group(1)


def logged_in_with_token(url, client):
    log_in(url, client)
    page = client.get(url + "/profile")
    assert page.status_code == 200, f"GET /profile after login gave {page.status_code}: {page.text[:300]}"
    return token_of(page.text)


def display_name(url, client):
    page = client.get(url + "/profile").text
    match = re.search(r'name="display_name" value="([^"]*)"', page)
    return match.group(1) if match else page


# ---------------------------------------------------------------- 07.1 private pages

@pytest.mark.exercise("07.1")
def test_security_headers_say_no_store_and_clear_site_data_on_logout(app_module):
    plain = {k.lower(): v for k, v in app_module.security_headers().items()}
    assert plain.get("cache-control") == "no-store", plain
    assert "clear-site-data" not in plain, "Clear-Site-Data belongs on logout only: it wipes the site's cookies"
    out = {k.lower(): v for k, v in app_module.security_headers(logging_out=True).items()}
    assert out.get("cache-control") == "no-store"
    assert '"cookies"' in out.get("clear-site-data", ""), f'logout needs Clear-Site-Data: "cookies": {out}'


@pytest.mark.exercise("07.1")
def test_every_session_page_answers_no_store(start):
    url = start()
    browser = requests.Session()
    answers = {"GET /login": browser.get(url + "/login"),
               "POST /login": browser.post(url + "/login", data=LOGIN),
               "GET / ": browser.get(url + "/"),
               "POST /logout": browser.post(url + "/logout"),
               "GET /dashboard (logged out)": browser.get(url + "/dashboard")}
    assert answers["POST /login"].status_code == 200 and answers["POST /login"].headers.get("Set-Cookie"), \
        "the login should answer 200 and set the session cookie"
    missing = {what: (r.status_code, r.headers.get("Cache-Control")) for what, r in answers.items()
               if "no-store" not in r.headers.get("Cache-Control", "")}
    assert not missing, f"these session pages may be cached (Cache-Control: no-store missing): {missing}"


@pytest.mark.exercise("07.1")
def test_logout_clears_site_data_and_the_session(start):
    url = start()
    browser = requests.Session()
    log_in(url, browser)
    old = dict(browser.cookies)
    resp = browser.post(url + "/logout")
    assert resp.status_code == 200 and "Logged out successfully" in resp.text
    assert '"cookies"' in resp.headers.get("Clear-Site-Data", ""), \
        f"logout should answer Clear-Site-Data: \"cookies\" (got {resp.headers.get('Clear-Site-Data')!r})"
    assert "no-store" in resp.headers.get("Cache-Control", "")
    replay = requests.get(url + "/dashboard", cookies=old)
    assert replay.status_code == 401, "the old cookie still works after logout"


# ---------------------------------------------------------------- 07.2 the production cookie

def beaker_cookie(settings):
    """The Set-Cookie line Beaker writes with these settings (through course.kit.beakerkit, as the lesson)."""
    config = session_config(secret=SECRET, **settings)

    def app(environ, start_response):
        session = get_session(environ)
        session["user_id"] = 1
        session.save()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"saved\n"]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "https"}
    captured = {}
    b"".join(HardenedSessions(app, config)(environ, lambda status, headers, exc=None: captured.update(headers=headers)))
    return [v.strip() for k, v in captured["headers"] if k.lower() == "set-cookie"]


@pytest.mark.exercise("07.2")
def test_production_settings_make_a_host_cookie(app_module):
    lines = beaker_cookie(app_module.cookie_settings(True))
    assert len(lines) == 1, lines
    assert lines[0].startswith("__Host-sid="), f"the production cookie is __Host-sid: {lines[0]}"
    assert_host_cookie(lines[0])
    attrs = cookie_attributes(lines[0])
    assert "expires" not in attrs and "max-age" not in attrs, f"a browser-session cookie: no expiry ({lines[0]})"


def test_development_settings_make_a_plain_sid_without_secure(app_module):
    lines = beaker_cookie(app_module.cookie_settings(False))
    assert len(lines) == 1 and lines[0].startswith("sid="), lines
    attrs = cookie_attributes(lines[0])
    assert "secure" not in attrs, "http://127.0.0.1 is not HTTPS: a Secure cookie would never come back"
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "lax", lines[0]


@pytest.mark.exercise("07.2")
def test_cookie_settings_for_development_and_production(app_module):
    dev, prod = app_module.cookie_settings(False), app_module.cookie_settings(True)
    assert dev.get("key") == "sid" and not dev.get("secure"), f"development: plain sid, not Secure: {dev}"
    assert prod.get("key") == "__Host-sid" and prod.get("secure") is True, f"production: {prod}"
    for settings in (dev, prod):
        assert settings.get("httponly") is True and str(settings.get("samesite")).lower() == "lax", settings
        assert not settings.get("cookie_domain") and not settings.get("domain"), settings


# ---------------------------------------------------------------- 07.3 idle and absolute timeouts

@pytest.mark.exercise("07.3")
@pytest.mark.parametrize("login_at, seen_at, now, expected", [
    (1000, 1000, 1000, None),
    (1000, 1000, 1060, None),          # idle exactly 60: not over yet
    (1000, 1000, 1061, "idle"),
    (1000, 1250, 1300, None),          # busy: seen 50 s ago, 300 s after login
    (1000, 1590, 1600, None),          # absolute exactly 600
    (1000, 1595, 1601, "absolute"),    # busy, but 601 s after login
], ids=["fresh", "idle at the limit", "idle", "busy", "absolute at the limit", "absolute"])
def test_session_expired(app_module, login_at, seen_at, now, expected):
    session = {"user_id": 1, "login_at": login_at, "seen_at": seen_at}
    assert app_module.session_expired(session, now, 60, 600) == expected


@pytest.mark.exercise("07.3")
def test_an_idle_session_expires(start):
    clock = FakeClock()
    url = start(now=clock, idle_timeout=60, absolute_timeout=3600)
    browser = requests.Session()
    log_in(url, browser)
    clock.advance(59)
    assert browser.get(url + "/dashboard").status_code == 200, "59 s idle of 60: still logged in"
    clock.advance(61)
    resp = browser.get(url + "/dashboard")
    assert resp.status_code == 401 and "Please log in to view this page." in resp.text, \
        "61 s without a request (idle_timeout=60): the session is over"


@pytest.mark.exercise("07.3")
def test_activity_keeps_a_session_alive_past_the_idle_timeout(start):
    clock = FakeClock()
    url = start(now=clock, idle_timeout=60, absolute_timeout=3600)
    browser = requests.Session()
    log_in(url, browser)
    for minute in range(1, 6):
        clock.advance(40)
        resp = browser.get(url + "/dashboard")
        assert resp.status_code == 200, f"a request every 40 s (idle_timeout=60) is activity; failed at {40 * minute} s"


@pytest.mark.exercise("07.3")
def test_the_absolute_timeout_ends_a_busy_session(start):
    clock = FakeClock()
    url = start(now=clock, idle_timeout=60, absolute_timeout=300)
    browser = requests.Session()
    log_in(url, browser)
    elapsed = 0
    while elapsed + 50 <= 300:
        clock.advance(50)
        elapsed += 50
        assert browser.get(url + "/dashboard").status_code == 200, f"busy and {elapsed} s after login: still on"
    clock.advance(10)
    resp = browser.get(url + "/dashboard")
    assert resp.status_code == 401, "310 s after login (absolute_timeout=300): over, however busy"


@pytest.mark.exercise("07.3")
def test_an_expired_session_is_destroyed_not_just_refused(start):
    clock = FakeClock()
    url = start(now=clock, idle_timeout=60, absolute_timeout=3600)
    browser = requests.Session()
    log_in(url, browser)
    old = dict(browser.cookies)
    clock.advance(120)
    assert requests.get(url + "/dashboard", cookies=old).status_code == 401
    clock.advance(-120)                       # the clock goes back (or the check had a bug)...
    assert requests.get(url + "/dashboard", cookies=old).status_code == 401, \
        "an expired session must be destroyed when found, not kept for a later request to revive"


# ---------------------------------------------------------------- 07.4 HTTPS, directly or behind a proxy

@pytest.mark.exercise("07.4")
@pytest.mark.parametrize("environ, trust_proxy, expected", [
    ({"wsgi.url_scheme": "https"}, False, True),
    ({"wsgi.url_scheme": "http"}, False, False),
    ({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "https"}, False, False),
    ({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "https"}, True, True),
    ({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "https,http"}, True, True),
    ({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": " HTTPS , http"}, True, True),
    ({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "http,https"}, True, False),
    ({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "httpsx"}, True, False),
    ({"wsgi.url_scheme": "http"}, True, False),
], ids=["direct tls", "plain", "xfp untrusted", "xfp trusted", "first of two", "spaces and case",
        "https second", "not https", "no header"])
def test_request_is_https(app_module, environ, trust_proxy, expected):
    assert app_module.request_is_https(environ, trust_proxy) is expected, \
        f"request_is_https({environ}, trust_proxy={trust_proxy}) should be {expected}"


@pytest.mark.exercise("07.4")
def test_a_secure_cookie_is_never_sent_over_plain_http(start):
    url = start(production=True)
    resp = requests.post(url + "/login", data=LOGIN)
    assert resp.status_code in (200, 303), resp.text
    assert not set_cookie_lines(resp), f"over plain HTTP no session cookie may go out: {set_cookie_lines(resp)}"


@pytest.mark.exercise("07.4")
def test_x_forwarded_proto_is_ignored_unless_the_proxy_is_trusted(start):
    url = start(production=True, trust_proxy=False)
    resp = requests.post(url + "/login", data=LOGIN, headers={"X-Forwarded-Proto": "https"})
    assert resp.status_code in (200, 303)
    assert not set_cookie_lines(resp), "any client can send X-Forwarded-Proto: without trust_proxy it means nothing"


@pytest.mark.exercise("07.4")
@pytest.mark.parametrize("forwarded, sent", [("https", True), ("https,http", True), ("http,https", False),
                                             ("http", False), (None, False)])
def test_behind_a_trusted_proxy_the_first_x_forwarded_proto_decides(start, forwarded, sent):
    url = start(production=True, trust_proxy=True)
    headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
    resp = requests.post(url + "/login", data=LOGIN, headers=headers)
    assert resp.status_code in (200, 303)
    lines = set_cookie_lines(resp, "__Host-sid")
    assert bool(lines) is sent, \
        f"X-Forwarded-Proto: {forwarded!r} should {'' if sent else 'not '}get the cookie: {lines}"
    if sent:
        again = requests.get(url + "/dashboard", headers={"Cookie": pair(lines[0]), **headers})
        assert "Welcome to your dashboard, user 1" in again.text


@pytest.mark.exercise("07.4")
def test_a_server_that_speaks_tls_itself_needs_no_proxy(start):
    url = start(production=True, https=True, trust_proxy=False)
    assert set_cookie_lines(log_in(url), "__Host-sid"), "wsgi.url_scheme == 'https' is HTTPS, proxy or not"


@pytest.mark.exercise("07.4")
def test_the_production_app_sets_only_the_host_cookie_over_https(start):
    url = start(production=True, https=True)
    resp = log_in(url)
    lines = set_cookie_lines(resp)
    names = [line.split("=", 1)[0] for line in lines]
    assert names == ["__Host-sid"], f"production login should set exactly one cookie, __Host-sid; got {names}"
    assert_host_cookie(lines[0])


@pytest.mark.exercise("07.4")
def test_production_session_works_over_https(start):
    url = start(production=True, https=True)
    cookie = pair(set_cookie_lines(log_in(url), "__Host-sid")[0])
    resp = requests.get(url + "/dashboard", headers={"Cookie": cookie})
    assert resp.status_code == 200 and "Welcome to your dashboard, user 1" in resp.text
    assert requests.get(url + "/dashboard", headers={"Cookie": "sid=" + cookie.split("=", 1)[1]}).status_code == 401, \
        "in production only __Host-sid carries the session"


# ---------------------------------------------------------------- 07.5 CSRF tokens

@pytest.mark.exercise("07.5")
def test_the_profile_form_carries_a_hidden_csrf_token(start):
    url = start()
    browser = requests.Session()
    token = logged_in_with_token(url, browser)
    page = browser.get(url + "/profile").text
    hidden_token = (r'type=["\']hidden["\'][^>]*name=["\']csrf_token'
                    r'|name=["\']csrf_token["\'][^>]*type=["\']hidden')
    assert re.search(hidden_token, page), \
        "the token travels in a hidden form field"
    assert len(token) >= 22, f"a CSRF token needs at least 128 random bits: {token!r}"
    assert token_of(page) == token, "the token stays the same for the session"
    assert requests.get(url + "/profile").status_code == 401, "the profile is for logged-in users"


@pytest.mark.exercise("07.5")
def test_a_form_with_the_token_changes_the_profile(start):
    url = start()
    browser = requests.Session()
    token = logged_in_with_token(url, browser)
    resp = browser.post(url + "/profile", data={"display_name": "Alice L.", "csrf_token": token})
    assert resp.status_code == 200, resp.text
    assert display_name(url, browser) == "Alice L."


@pytest.mark.exercise("07.5")
@pytest.mark.parametrize("kind", ["missing", *WRONG_TOKENS])
def test_without_the_right_token_the_answer_is_403_and_nothing_changes(start, kind):
    url = start()
    browser = requests.Session()
    token = logged_in_with_token(url, browser)
    browser.post(url + "/profile", data={"display_name": "Alice", "csrf_token": token})
    data = {"display_name": "Mallory was here"}
    if kind != "missing":
        data["csrf_token"] = WRONG_TOKENS[kind]
    resp = browser.post(url + "/profile", data=data)
    assert resp.status_code == 403 and "CSRF token missing or invalid" in resp.text, (kind, resp.status_code, resp.text)
    assert display_name(url, browser) == "Alice", "a refused form must change nothing"


@pytest.mark.exercise("07.5")
def test_a_token_belongs_to_its_session(start):
    url = start()
    alice, mallory = requests.Session(), requests.Session()
    alice_token = logged_in_with_token(url, alice)
    mallory_token = logged_in_with_token(url, mallory)
    assert alice_token != mallory_token, "each session has a token of its own"
    resp = alice.post(url + "/profile", data={"display_name": "pwned", "csrf_token": mallory_token})
    assert resp.status_code == 403, "a token from another session (the attacker's own) must not work"
    assert display_name(url, alice) != "pwned", "a refused form changes nothing"


@pytest.mark.exercise("07.5")
def test_an_empty_token_does_not_match_a_session_without_one(start):
    url = start()
    browser = requests.Session()
    log_in(url, browser)                      # never opened the form: the session has no token yet
    resp = browser.post(url + "/profile", data={"display_name": "pwned", "csrf_token": ""})
    assert resp.status_code == 403, "no token in the session matches nothing, not the empty string"
    assert display_name(url, browser) != "pwned", "a refused form changes nothing"


@pytest.mark.exercise("07.5")
def test_a_new_login_gets_a_new_csrf_token(start):
    url = start()
    browser = requests.Session()
    before = logged_in_with_token(url, browser)
    after = logged_in_with_token(url, browser)      # logs in again: a new session ID and a new token
    assert before != after
    resp = browser.post(url + "/profile", data={"display_name": "x", "csrf_token": before})
    assert resp.status_code == 403, "the token of the session before the login must not work after it"


@pytest.mark.exercise("07.5")
def test_the_token_may_come_in_a_header(start):
    url = start()
    browser = requests.Session()
    token = logged_in_with_token(url, browser)
    resp = browser.post(url + "/profile", data={"display_name": "Al"}, headers={"X-CSRF-Token": token})
    assert resp.status_code == 200 and display_name(url, browser) == "Al"


# ---------------------------------------------------------------- 07.6 encrypted cookie sessions

def cookie_payload(value):
    """Everything anyone can read in a Beaker cookie session without the keys.

    The value is a 40-hex signature, then base64. Unencrypted, that base64 holds the session
    serialized (JSON, zlib-compressed by Beaker); encrypted, it holds a nonce and AES ciphertext.
    """
    raw = value.strip('"')[40:]
    readable = raw.encode()
    for start in range(0, 24):               # unencrypted: base64 from the start; skip a nonce if any
        try:
            data = base64.b64decode(raw[start:] + "=" * (-len(raw[start:]) % 4))
        except ValueError:
            continue
        readable += data
        try:
            readable += zlib.decompress(data)
        except zlib.error:
            pass
    return readable


@pytest.mark.exercise("07.6")
def test_a_cookie_session_keeps_the_login_in_the_browser(start):
    url = start(session_type="cookie")
    browser = requests.Session()
    log_in(url, browser)
    assert browser.get(url + "/dashboard").text.startswith("Welcome to your dashboard, user 1")
    value = browser.cookies.get("sid")
    assert value and len(value) > 100, f"the whole session is the cookie: {value!r}"


@pytest.mark.exercise("07.6")
def test_a_cookie_session_is_encrypted_and_tamper_proof(start):
    url = start(session_type="cookie")
    browser = requests.Session()
    token = logged_in_with_token(url, browser)
    browser.post(url + "/profile", data={"display_name": "Zyxwvut", "csrf_token": token})
    value = browser.cookies.get("sid")
    readable = cookie_payload(value)
    for secret in (b"Zyxwvut", b"user_id", token.encode()):
        assert secret not in readable, f"{secret!r} can be read from the cookie: encrypt it (encrypt_key)"
    flipped = value[:60] + ("A" if value[60] != "A" else "B") + value[61:]
    resp = requests.get(url + "/dashboard", cookies={"sid": flipped})
    assert resp.status_code == 401, "a tampered cookie session is refused, never a 500"


@pytest.mark.exercise("07.6")
def test_a_session_too_big_for_a_cookie_is_a_clear_413_and_nothing_changes(start):
    url = start(session_type="cookie")
    browser = requests.Session()
    token = logged_in_with_token(url, browser)
    browser.post(url + "/profile", data={"display_name": "Small", "csrf_token": token})
    bio = secrets.token_urlsafe(3750)         # 5000 characters that do not compress (Beaker zlibs the data)
    resp = browser.post(url + "/profile", data={"display_name": "Big", "bio": bio, "csrf_token": token})
    assert resp.status_code == 413, f"a bio of 5000 random characters cannot fit in a 4 KB cookie: {resp.status_code}"
    assert "too large" in resp.text and "cookie" in resp.text, resp.text
    assert display_name(url, browser) == "Small", "the browser keeps the session it had"


@pytest.mark.exercise("07.6")
def test_a_cookie_session_cannot_be_revoked(start):
    url = start(session_type="cookie")
    browser = requests.Session()
    log_in(url, browser)
    stolen = dict(browser.cookies)
    resp = browser.post(url + "/logout")
    assert resp.status_code == 200 and "sid" not in browser.cookies
    replay = requests.get(url + "/dashboard", cookies=stolen)
    assert replay.status_code == 200 and "user 1" in replay.text, \
        "the lesson's warning: a copy of a cookie session stays valid after logout (nothing on the server to delete)"


@pytest.mark.exercise("07.6")
def test_only_the_absolute_timeout_ends_a_stolen_cookie_session(start):
    clock = FakeClock()
    url = start(session_type="cookie", now=clock, idle_timeout=600, absolute_timeout=900)
    browser = requests.Session()
    log_in(url, browser)
    stolen = dict(browser.cookies)
    browser.post(url + "/logout")
    clock.advance(500)
    assert requests.get(url + "/dashboard", cookies=stolen).status_code == 200
    clock.advance(500)
    assert requests.get(url + "/dashboard", cookies=stolen).status_code == 401, \
        "the login time inside the cookie is what ends it"


# ---------------------------------------------------------------- lesson 06's flow and the ready-made parts

def test_lesson_page_lists_the_routes_and_escapes_the_cookie_header(start):
    url = start()
    resp = requests.get(url + "/", headers={"Cookie": "x=<script>alert(1)</script>"})
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    for path in ("/login", "/dashboard", "/profile", "/logout"):
        assert f'"{path}"' in resp.text, f"the lesson page should offer {path}"
    assert "<script>alert(1)" not in resp.text


def test_login_logout_flow_and_texts(start):
    url = start()
    browser = requests.Session()
    assert requests.post(url + "/login", data={"username": "alice", "password": "nope"}).status_code == 401
    unknown = requests.post(url + "/login", data={"username": "nobody", "password": "nope"})
    assert unknown.status_code == 401 and "Authentication failed" in unknown.text
    missing = requests.post(url + "/login", data={"username": "alice"})
    assert missing.status_code == 400 and "password" in missing.text
    assert requests.get(url + "/dashboard").status_code == 401
    log_in(url, browser)
    assert "Welcome to your dashboard, user 1" in browser.get(url + "/dashboard").text
    json_login = requests.post(url + "/login", json={"username": "bob", "password": "builder"})
    assert json_login.status_code == 200 and "Login successful!" in json_login.text
    assert "Logged out successfully" in browser.post(url + "/logout").text
    assert browser.get(url + "/dashboard").status_code == 401


def test_the_session_id_changes_at_login(start):
    url = start()
    browser = requests.Session()
    browser.get(url + "/profile")
    logged_in_with_token(url, browser)
    before = dict(browser.cookies)
    log_in(url, browser)
    assert dict(browser.cookies) != before
    assert requests.get(url + "/dashboard", cookies=before).status_code == 401, "the pre-login ID is dead"


def test_development_cookie_is_sid_httponly_lax_and_not_secure(start):
    url = start()
    lines = set_cookie_lines(log_in(url), "sid")
    assert lines, "the development session cookie is sid"
    attrs = cookie_attributes(lines[0])
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "lax" and "secure" not in attrs


def test_a_browser_form_login_is_redirected_to_the_dashboard(start):
    url = start()
    browser = requests.Session()
    resp = browser.post(url + "/login", data=LOGIN, headers={"Accept": "text/html"}, allow_redirects=False)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/dashboard")


def test_production_refuses_the_development_secret(app_module, monkeypatch):
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        app_module.create_app(production=True, secret=None)


@pytest.mark.parametrize("cookie", ["sid=garbage", "null; sid=", "sid=" + "a" * 5000, "sid=x; sid=y",
                                    "__Host-sid=%00%ff", 'sid="unbalanced'],
                         ids=["garbage", "bare token", "oversized", "duplicated", "bytes", "quote"])
@pytest.mark.parametrize("session_type", ["memory", "cookie"])
def test_bad_cookies_never_give_a_500(start, cookie, session_type):
    url = start(session_type=session_type)
    for method, path in (("GET", "/"), ("GET", "/dashboard"), ("GET", "/profile"), ("POST", "/profile"),
                         ("POST", "/logout")):
        resp = requests.request(method, url + path, headers={"Cookie": cookie})
        assert resp.status_code < 500, f"{method} {path} with Cookie: {cookie[:40]!r} gave {resp.status_code}"


def test_a_store_that_is_down_is_a_503_and_logout_says_it_failed(start):
    store = CountingStore()
    url = start(store=store)
    browser = requests.Session()
    log_in(url, browser)
    with store.failing():
        down = browser.get(url + "/dashboard")
        assert down.status_code == 503 and "Session store unavailable" in down.text, (down.status_code, down.text)
        out = browser.post(url + "/logout")
        assert out.status_code == 500 and "Failed to log out." in out.text, (out.status_code, out.text)
    assert "Welcome to your dashboard, user 1" in browser.get(url + "/dashboard").text, \
        "a logout that failed leaves the session as it was"


@pytest.mark.parametrize("data", [{"display_name": "x" * 200_000}, {"display_name": "a\x00b"},
                                  {"display_name": ""}, {"display_name": "ok", "bio": "b" * 6000}],
                         ids=["huge body", "control character", "empty", "bio too long"])
def test_bad_profile_bodies_are_4xx_never_a_500(start, data):
    url = start()
    browser = requests.Session()
    token = logged_in_with_token(url, browser)
    browser.post(url + "/profile", data={"display_name": "Before", "csrf_token": token})
    resp = browser.post(url + "/profile", data={**data, "csrf_token": token})
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text[:200]}"
    assert display_name(url, browser) == "Before"


# ---------------------------------------------------------------- a real browser: what SameSite covers

ATTACK_PAGE = """<!doctype html><html><body>
<form method="post" action="{target}/profile"><input name="display_name" value="pwned"></form>
<script>document.forms[0].submit()</script></body></html>"""


@pytest.mark.maintainers     # the text's claim, in a real Chromium: `make test` runs it, a student's `check` not
def test_samesite_stops_a_cross_site_form_but_only_the_token_stops_a_same_site_one(start, serve_app):
    """Chromium, with made-up host names all resolving to 127.0.0.1: the app at www.example.test,
    an attacker at www.attacker.test (another site) and at evil.example.test (the same site)."""
    path = browser.require_chromium("full")
    app_url = start()
    # Without a working login and CSRF form (the starter), fail now over plain HTTP instead of
    # letting the browser wait for pages that never come.
    with requests.Session() as http:
        http.post(app_url + "/login", data={"username": "alice", "password": "wonderland"}, timeout=10)
        form = http.get(app_url + "/profile", timeout=10)
    assert form.status_code == 200 and 'name="csrf_token"' in form.text, \
        f"log in and GET /profile first work over plain HTTP (got {form.status_code}: {form.text[:120]!r})"
    app_port = app_url.rsplit(":", 1)[1]
    site = f"http://www.example.test:{app_port}"

    def attacker(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [ATTACK_PAGE.format(target=site).encode()]

    attacker_port = serve_app(attacker).rsplit(":", 1)[1]
    # every *.test name is 127.0.0.1 in this browser: www.example.test and evil.example.test are one site,
    # www.attacker.test another
    with browser.chromium(path, test_hosts=True) as chrome:
        page = chrome.new_context().new_page()
        page.set_default_timeout(8000)
        page.goto(site + "/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "wonderland")
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.goto(site + "/profile")
        page.fill("input[name=display_name]", "Alice")
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "Profile saved" in page.content(), page.content()[:300]

        page.goto(f"http://www.attacker.test:{attacker_port}/")     # another site
        page.wait_for_url(site + "/profile")
        assert "Please log in to view this page." in page.content(), \
            "SameSite=Lax: the cross-site form arrived without the session cookie"

        page.goto(f"http://evil.example.test:{attacker_port}/")     # a sibling subdomain: same site
        page.wait_for_url(site + "/profile")
        assert "CSRF token missing or invalid" in page.content(), \
            "the same-site form arrived WITH the cookie: only the CSRF token stopped it"

        page.goto(site + "/profile")
        assert page.input_value("input[name=display_name]") == "Alice"


# ---------------------------------------------------------------- what an adversarial review found missing

@pytest.mark.exercise("07.3")
def test_a_session_without_its_timestamps_is_over(app_module):
    """The docstring's promise: no login_at / seen_at (an old or tampered record) means logged out."""
    for session in ({}, {"login_at": 100.0}, {"seen_at": 100.0}, {"login_at": "x", "seen_at": 100.0}):
        reason = app_module.session_expired(session, 200.0, 1800, 28800)
        assert reason in ("idle", "absolute"), (
            f"session_expired({session}, ...) = {reason!r}: a session without its timestamps is over, and the "
            "answer says why as the other cases do, \"idle\" or \"absolute\" (never a TypeError, never a 500)")


@pytest.mark.exercise("07.5")
def test_csrf_tokens_are_long_random_and_unpredictable(app_module):
    """At least 128 random bits (token_urlsafe(32) is 43 characters): no clock, no counter."""
    tokens = [app_module.csrf_token(FakeSession()) for _ in range(64)]
    assert len(set(tokens)) == len(tokens), "two sessions got the same CSRF token"
    assert all(len(t) >= 32 for t in tokens), f"a {len(tokens[0])}-character token is too short to be unguessable"
    assert tokens != sorted(tokens), "the tokens come in order: they are made from a clock or a counter"
    alphabet = set("".join(tokens))
    assert len(alphabet) > 16, "the tokens use only hex digits: use secrets.token_urlsafe(32)"


@pytest.mark.exercise("07.5")
def test_csrf_tokens_are_compared_with_hmac_compare_digest(app_module, monkeypatch):
    calls = compare_digest_calls(monkeypatch, app_module, function="csrf_token_ok")
    session = FakeSession()
    token = app_module.csrf_token(session)
    assert app_module.csrf_token_ok(session, token) and not app_module.csrf_token_ok(session, token[:-1] + "x")
    assert calls, "compare CSRF tokens with hmac.compare_digest: == tells an attacker, by its timing, how much is right"


@pytest.mark.exercise("07.5")
def test_a_new_csrf_token_is_saved_in_the_session_and_then_reused(app_module):
    class CountingSaves(FakeSession):
        saves = 0

        def save(self):
            self.saves += 1

    session = CountingSaves()
    token = app_module.csrf_token(session)
    assert session.get("csrf_token") == token and session.saves == 1, (
        "csrf_token makes the token on first use and saves the session (session.save()), or the next request "
        "does not know the token the page carries")
    assert app_module.csrf_token(session) == token and session.saves == 1, "an existing token is reused as it is"


@pytest.mark.exercise("07.5")
@pytest.mark.parametrize("session", [{}, {"csrf_token": None}, {"csrf_token": ""}], ids=["none", "None", "empty"])
def test_a_token_sent_to_a_session_that_has_none_is_refused(app_module, session):
    sent = "a-token-the-session-never-issued-0123456789abcdef"
    assert app_module.csrf_token_ok(FakeSession(session), sent) is False, (
        "a session without a CSRF token matches no token: refuse it (and never hand None to compare_digest)")
    assert app_module.csrf_token_ok(FakeSession(session), "") is False and \
        app_module.csrf_token_ok(FakeSession(session), None) is False


@pytest.mark.exercise("07.6")
def test_the_cookie_session_encrypts_and_signs_with_two_different_keys(app_module):
    settings = app_module.cookie_session_settings("a-long-random-secret-for-the-test-0123456789")
    assert settings["encrypt_key"] and settings["validate_key"]
    assert settings["encrypt_key"] != settings["validate_key"], "one key per job: derive each from the secret"
    assert "a-long-random-secret-for-the-test-0123456789" not in (settings["encrypt_key"], settings["validate_key"]), \
        "derive the keys from the secret (security.derive_key), do not use the secret itself"


class FakeSession(dict):
    """A session for the pure-function exercises: a dict with Beaker's save()."""

    def save(self):
        pass
