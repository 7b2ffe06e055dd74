"""Lesson 10, the capstone: every applicable item of OWASP's Session Management Cheat Sheet as a test.

A test named ``test_owasp_ONN_...`` checks item ONN of the table in lessons/10_capstone/README.md
(``test_the_owasp_table_names_these_tests`` keeps the two in step). Black box over HTTP, as
everywhere: a real server per test on a free port, sessions in SQLite (and Redis and PostgreSQL,
against the real servers), users in a copy of one SQLite file made once per process (hashing
the demo passwords is slow on purpose). Timeouts of minutes and hours run on a ``FakeClock``;
production (``__Host-`` cookies, HTTPS only) is a trusted proxy's ``X-Forwarded-Proto: https``;
different clients are different ``X-Forwarded-For`` addresses behind that proxy.
"""
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from beaker.session import _session_id

from course import ROOT
from course.kit import auth, remember
from course.kit.idlog import id_hash
from course.kit.remember import RememberStore
from course.kit.security import FakeClock, derive_key
from course.tools import services
from course.tools.bench import Gunicorn
from course.tools.testing import (
    app_log,
    beaker_session,
    compare_digest_calls,
    cookie_attributes,
    in_lesson,
    quick_users,
    set_cookie_lines,
    stored_beaker_session,
)

SECRET = "lesson-10 test secret, long enough to be taken seriously"
SLUG = "10_capstone"
ALICE = {"username": "alice", "password": "wonderland"}
BOB = {"username": "bob", "password": "builder"}
HTTPS = {"X-Forwarded-Proto": "https"}
LOG_NAME = "course.capstone"


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    """The demo users, hashed once per test process; each app gets a copy."""
    path = tmp_path_factory.mktemp("lesson10") / "users.sqlite3"
    quick_users(path)           # a test-only scrypt cost: logins are not what most tests check
    return path


@pytest.fixture
def start(app_module, serve_app, users_file, tmp_path):
    """``url = start(**options)``: the capstone with a test secret, its own sessions and users."""
    def run(**options):
        folder = tmp_path / uuid.uuid4().hex[:8]
        folder.mkdir()
        os.chmod(folder, 0o1777)        # as tmp_path is under the grader: the app runs as a user of its own
        shutil.copy(users_file, folder / "users.sqlite3")
        options.setdefault("secret", SECRET)
        options.setdefault("db_path", str(folder / "users.sqlite3"))
        options.setdefault("store_url", f"sqlite:///{folder}/sessions.db")
        return serve_app(app_module.create_app(**options))
    return run


def form_login(url, browser, who=ALICE, remember=False, headers=None):
    """Log in as a browser does: GET /login for the form's token, then POST the form."""
    page = browser.get(url + "/login", headers=headers)
    for cookie in browser.cookies:       # behind the test's "HTTPS" proxy, a browser sends Secure cookies back
        cookie.secure = False
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, f"GET /login must carry the login CSRF token in a hidden csrf_token field:\n{page.text[:500]}"
    data = {**who, "csrf_token": token.group(1), **({"remember": "1"} if remember else {})}
    return browser.post(url + "/login", data=data, headers=headers)


def log_in(url, browser=None, who=ALICE, remember=False, headers=None):
    browser = browser if browser is not None else requests.Session()
    resp = form_login(url, browser, who, remember, headers)
    assert resp.status_code == 200 and auth.LOGIN_OK in resp.text, \
        f"the login should answer 200 {auth.LOGIN_OK!r}: {resp.status_code} {resp.text[:200]}"
    return browser


def token_of(url, browser, headers=None):
    resp = browser.get(url + "/csrf", headers=headers)
    assert resp.status_code == 200, f"GET /csrf when logged in: {resp.status_code} {resp.text[:200]}"
    return resp.json()["csrf_token"]


def post(url, browser, path, data=None, headers=None):
    """A state-changing POST with the session's CSRF token."""
    return browser.post(url + path, data=data or {}, headers={"X-CSRF-Token": token_of(url, browser, headers),
                                                             **(headers or {})})


def sid_of(browser, name="sid"):
    value = browser.cookies.get(name)
    assert value, f"no {name} cookie in the browser: {dict(browser.cookies)}"
    return value[40:]                          # Beaker: 40 hex of signature, then the ID


def give(browser, name, value):
    """Put a cookie in a browser's jar as the server would have (host 127.0.0.1, Path=/)."""
    browser.cookies.set(name, value, domain="127.0.0.1", path="/")
    return browser


def copy_of(browser):
    """Another browser holding the same cookies (a stolen copy, a replay)."""
    other = requests.Session()
    other.cookies.update(browser.cookies)
    return other


def dashboard(url, browser, headers=None):
    return browser.get(url + "/dashboard", headers=headers)


def assert_logged_in(resp, user=1, why=""):
    assert resp.status_code == 200 and f"user {user}" in resp.text, \
        f"expected user {user} to be logged in{why}: {resp.status_code} {resp.text[:200]}"


def assert_logged_out(resp, why=""):
    assert resp.status_code == 401 and auth.NOT_LOGGED_IN in resp.text, \
        f"expected 401 {auth.NOT_LOGGED_IN!r}{why}: {resp.status_code} {resp.text[:200]}"


def from_client(address):
    return {"X-Forwarded-For": address}


def production_login(start):
    url = start(production=True, trust_proxy=True)
    resp = form_login(url, requests.Session(), headers=HTTPS)
    lines = [line for line in set_cookie_lines(resp) if line.startswith("__Host-sid=")]
    assert resp.status_code == 200 and lines, f"production login over HTTPS sets __Host-sid: {set_cookie_lines(resp)}"
    return lines[0], resp


def messages(caplog):
    return [record.getMessage() for record in caplog.records]


# ---------------------------------------------------------------- O1-O4 the session ID

def test_owasp_O01_the_cookie_name_says_nothing_about_the_server(start):
    resp = form_login(start(), requests.Session())
    names = [line.split("=")[0] for line in set_cookie_lines(resp)]
    assert "sid" in names, f"the session cookie is called sid: {names}"
    for word in ("beaker", "bottle", "python", "wsgi", "session.id"):
        assert not any(word in name.lower() for name in names), f"{word!r} in a cookie name: {names}"


def test_owasp_O02_session_ids_carry_122_random_bits(start):
    ids = {_session_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), \
        "Beaker's IDs are uuid4().hex: 32 hex digits, 122 of their bits from os.urandom"
    url = start()
    seen = {sid_of(log_in(url)) for _ in range(3)}
    assert len(seen) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in seen), seen


def test_owasp_O03_the_id_means_nothing(start):
    url = start()
    alice, bob = log_in(url), log_in(url, who=BOB)
    for browser, who in ((alice, ALICE), (bob, BOB)):
        value = sid_of(browser)
        assert who["username"] not in value and re.fullmatch(r"[0-9a-f]{32}", value), value
    assert sid_of(alice)[:8] != sid_of(bob)[:8], "two IDs share nothing"


def test_owasp_O04_the_store_keeps_json_never_a_pickle(start, tmp_path):
    url = start(store_url=f"sqlite:///{tmp_path}/plain.db")
    log_in(url)
    with sqlite3.connect(tmp_path / "plain.db") as conn:
        rows = [bytes(row[0]) for row in conn.execute("SELECT data FROM beaker_cache")]
    assert rows, "the login's session should be in the store"
    for data in rows:
        assert not data.startswith(b"\x80"), "a pickle in the store: loading it could run code"
        assert "user_id" in json.loads(data.decode()), data[:200]


# ---------------------------------------------------------------- O5-O11 exchange and cookie

def test_owasp_O05_the_id_is_accepted_from_the_cookie_only(start):
    url = start()
    browser = log_in(url)
    value = browser.cookies.get("sid")
    for where in ({"params": {"sid": value}}, {"headers": {"X-Session-Id": value}},
                  {"headers": {"Authorization": f"Bearer {value}"}}):
        assert_logged_out(requests.get(url + "/dashboard", **where), f" with the ID in {where}")
    assert_logged_in(dashboard(url, browser))


def test_owasp_O06_production_sends_the_session_over_https_only(start):
    url = start(production=True, trust_proxy=True)
    plain = form_login(url, requests.Session())
    assert not [line for line in set_cookie_lines(plain) if line.startswith("__Host-sid")], \
        f"a Secure session cookie over plain HTTP: {set_cookie_lines(plain)}"
    _, resp = production_login(start)
    assert resp.headers.get("Strict-Transport-Security", "").startswith("max-age="), \
        "production answers with HSTS, so the browser never tries plain HTTP again"


def test_owasp_O07_the_cookie_is_secure_in_production(start):
    line, _ = production_login(start)
    assert "secure" in cookie_attributes(line), line


def test_owasp_O08_the_cookie_is_httponly(start):
    line, _ = production_login(start)
    assert "httponly" in cookie_attributes(line), line
    dev = [x for x in set_cookie_lines(form_login(start(), requests.Session())) if x.startswith("sid=")]
    assert dev and "httponly" in cookie_attributes(dev[0]), dev


def test_owasp_O09_the_cookie_is_samesite_lax(start):
    line, _ = production_login(start)
    assert cookie_attributes(line).get("samesite", "").lower() == "lax", line


def test_owasp_O10_host_prefix_no_domain_and_path_root(start):
    line, _ = production_login(start)
    attrs = cookie_attributes(line)
    assert line.startswith("__Host-sid=") and attrs.get("path") == "/" and "domain" not in attrs, line


def test_owasp_O11_the_session_cookie_dies_with_the_browser(start):
    line, _ = production_login(start)
    attrs = cookie_attributes(line)
    assert "expires" not in attrs and "max-age" not in attrs, f"a session cookie, not a persistent one: {line}"


def test_owasp_O12_no_page_shows_the_session_id(start):
    url = start()
    browser = log_in(url)
    post(url, browser, "/notes", {"text": "a note"})
    session_id = sid_of(browser)
    pieces = {session_id[i:i + 8] for i in range(len(session_id) - 7)}     # no 8 hex digits of it either
    for path in ("/", "/dashboard", "/csrf", "/notes", "/sessions", "/login"):
        body = browser.get(url + path).text
        shown = sorted(piece for piece in pieces if piece in body)
        assert not shown, f"GET {path} shows part of the session ID ({shown}) to every script of the page"


# ---------------------------------------------------------------- O13-O16 the life cycle

def signed(session_id, secret=SECRET):
    """A cookie value Beaker accepts as signed: HMAC-SHA1 hex of the ID, then the ID."""
    return hmac.new(secret.encode(), session_id.encode(), hashlib.sha1).hexdigest() + session_id


def test_owasp_O13_an_id_the_server_did_not_issue_is_never_adopted(start):
    url = start()
    made_up = uuid.uuid4().hex
    browser = give(requests.Session(), "sid", signed(made_up))
    assert_logged_out(dashboard(url, browser))
    resp = form_login(url, browser)
    assert resp.status_code == 200 and sid_of(browser) != made_up, "the login kept an ID the server never issued"


def test_owasp_O14_hostile_session_cookies_are_refused_never_a_500(start):
    url = start()
    for cookie in (b"sid=\xff\xfe", b'sid="' + b"\\" * 3000 + b'"', b"sid=" + b"a" * 5000, b"sid=;sid=1",
                   b"sid=" + signed("../../etc/passwd").encode(), b"sid=" + signed("x" * 300).encode()):
        resp = requests.get(url + "/dashboard", headers={"Cookie": cookie})
        assert resp.status_code in (401, 429), f"{cookie[:40]!r}: {resp.status_code} {resp.text[:200]}"


@pytest.mark.exercise("10.1")
def test_owasp_O15_new_id_at_login(start):
    url = start()
    attacker = log_in(url, who=BOB)                     # a real session ID, the attacker's own
    planted = sid_of(attacker)
    attacker_token = token_of(url, attacker)
    victim = give(requests.Session(), "sid", attacker.cookies.get("sid"))   # planted in the victim's browser
    log_in(url, victim)
    assert sid_of(victim) != planted, "session fixation: the login kept the planted session ID"
    assert token_of(url, victim) != attacker_token, "the login kept the CSRF token of the session before"
    assert len(token_of(url, victim)) >= 43, "a CSRF token of 32 random bytes at least"
    assert "user 1" not in dashboard(url, attacker).text, "the attacker's cookie now opens alice's session"


@pytest.mark.exercise("10.1")
def test_a_login_from_another_origin_is_refused(start):
    url = start()
    attempts = {"a form with no token": {"data": ALICE},
                "a form from another site": {"data": ALICE, "headers": {"Origin": "http://evil.test"}},
                "Sec-Fetch-Site cross-site": {"data": ALICE, "headers": {"Sec-Fetch-Site": "cross-site"}},
                "JSON from another origin": {"json": ALICE, "headers": {"Origin": "http://evil.test"}},
                "JSON with no Origin": {"json": ALICE},
                "a forged token": {"data": {**ALICE, "csrf_token": "A" * 43}},
                "a form with no token, from this site": {"data": ALICE, "headers": {"Origin": url}},
                "JSON from another origin, said to be same-origin": {
                    "json": ALICE, "headers": {"Origin": "http://evil.test", "Sec-Fetch-Site": "same-origin"}}}
    for what, request in attempts.items():
        resp = requests.post(url + "/login", **request)
        assert resp.status_code == 403 and not set_cookie_lines(resp, "sid"), \
            f"login CSRF: {what} was answered {resp.status_code} {resp.text[:100]}"
    same_origin = requests.post(url + "/login", json=ALICE, headers={"Origin": url})
    assert same_origin.status_code == 200, "a JSON login with this site's own Origin logs in"
    with_charset = requests.post(url + "/login", data=json.dumps(ALICE),
                                 headers={"Origin": url, "Content-Type": "application/json; charset=utf-8"})
    assert with_charset.status_code == 200, "Content-Type application/json; charset=utf-8 is JSON too"
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {"Origin": "http://evil.test"}):
        browser = requests.Session()                       # a good form token: only the origin gives it away
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(url + "/login").text).group(1)
        resp = browser.post(url + "/login", data={**BOB, "csrf_token": token}, headers=headers)
        assert resp.status_code == 403, f"login CSRF: a valid form token sent with {headers}: {resp.status_code}"


def test_owasp_O16_only_the_session_cookie_is_a_session(start):
    url = start()
    browser = log_in(url, remember=True)
    for name in ("device", "remember", "login_csrf"):
        value = browser.cookies.get(name)
        if value:
            stranger = requests.Session()
            stranger.cookies.set("sid", value)
            assert_logged_out(dashboard(url, stranger), f" with the {name} cookie's value as sid")
    alone = requests.Session()
    alone.cookies.set("device", browser.cookies.get("device"))
    assert_logged_out(dashboard(url, alone), " with the device cookie alone")


# ---------------------------------------------------------------- O17-O21 expiry and logout

@pytest.mark.exercise("10.2")
def test_owasp_O17_idle_timeout(start):
    clock = FakeClock()
    url = start(now=clock, idle_timeout=600, renew_every=300)    # renewal due too: idle must win
    browser = log_in(url)
    clock.advance(590)
    assert_logged_in(dashboard(url, browser), why=" 590 s after the last request (idle timeout 600 s)")
    clock.advance(601)
    assert_logged_out(dashboard(url, browser), " after 601 s without a request")
    clock.advance(-1000)
    assert_logged_out(dashboard(url, browser), ": an expired session is destroyed, not only refused")


@pytest.mark.exercise("10.2")
def test_owasp_O18_absolute_timeout(start):
    clock = FakeClock()
    url = start(now=clock, idle_timeout=600, absolute_timeout=3600, renew_every=300)
    browser = log_in(url)
    for _ in range(7):
        clock.advance(500)
        assert_logged_in(dashboard(url, browser), why=" busy (a request every 500 s), before the absolute timeout")
    clock.advance(200)                                  # 200 s idle only: the absolute timeout alone ends it
    assert_logged_out(dashboard(url, browser), " 3700 s after login, however busy (absolute timeout 3600 s)")


@pytest.mark.exercise("10.2")
def test_owasp_O19_renewal_timeout_gives_the_session_a_new_id(start):
    clock = FakeClock()
    url = start(now=clock, renew_every=300)
    browser = log_in(url)
    post(url, browser, "/notes", {"text": "kept"})
    old, stale = sid_of(browser), copy_of(browser)
    clock.advance(200)
    assert_logged_in(dashboard(url, browser))
    assert sid_of(browser) == old, "no new ID before the renewal timeout"
    clock.advance(200)
    assert_logged_in(dashboard(url, browser), why=" after the renewal: the same session, a new ID")
    assert sid_of(browser) != old, "after renew_every seconds the session gets a new ID"
    assert "kept" in browser.get(url + "/notes").text
    assert_logged_out(dashboard(url, stale), ": the old ID is dead after the renewal")


@pytest.mark.exercise("10.4")
def test_owasp_O20_logout_ends_the_session_on_the_server(start, tmp_path):
    url = start(store_url=f"sqlite:///{tmp_path}/logout.db")
    browser = log_in(url)
    replay, session_id = copy_of(browser), sid_of(browser)

    def stored():
        with sqlite3.connect(tmp_path / "logout.db") as conn:
            return [row[0] for row in conn.execute("SELECT namespace FROM beaker_cache")]

    assert session_id in stored(), "the logged-in session's record is in the store"
    resp = post(url, browser, "/logout")
    assert resp.status_code == 200 and auth.LOGOUT_OK in resp.text, resp.text
    assert session_id not in stored(), "after logout the session's record is still in the store"
    assert_logged_out(dashboard(url, replay), ": the cookie replayed after logout")


def test_owasp_O21_nothing_is_cached_and_logout_clears_site_data(start):
    url = start()
    browser = requests.Session()
    answers = {"GET /": browser.get(url + "/"), "GET /login": browser.get(url + "/login"),
               "POST /login": form_login(url, browser), "GET /notes": browser.get(url + "/notes"),
               "GET /sessions": browser.get(url + "/sessions"), "GET /csrf": browser.get(url + "/csrf")}
    logout = post(url, browser, "/logout")
    answers["POST /logout"] = logout
    answers["GET /dashboard (logged out)"] = dashboard(url, browser)
    cached = {what: r.headers.get("Cache-Control") for what, r in answers.items()
              if r.headers.get("Cache-Control") != "no-store"}
    assert not cached, f"Cache-Control: no-store missing: {cached}"
    assert '"cache"' in logout.headers.get("Clear-Site-Data", ""), logout.headers


# ---------------------------------------------------------------- O26-O30 attacks detected

def test_owasp_O26_made_up_ids_are_logged_and_throttled(start, caplog):
    caplog.set_level(logging.WARNING, logger="course.kit.ratelimit")
    url = start(trust_proxy=True, bad_id_limit=5)
    owner = log_in(url, headers=from_client("198.51.100.7"))
    guesses = [uuid.uuid4().hex for _ in range(5)]
    for guess in guesses:
        made_up = {**from_client("203.0.113.9"), "Cookie": f"sid={'0' * 40}{guess}"}
        resp = requests.get(url + "/dashboard", headers=made_up)
        assert resp.status_code == 401, resp.status_code
    more = requests.get(url + "/dashboard", headers={**from_client("203.0.113.9"), "Cookie": f"sid={'0' * 72}"})
    assert more.status_code == 429 and more.headers.get("Retry-After", "").isdigit(), \
        f"after 5 made-up IDs the client is throttled: {more.status_code}"
    assert any(line.startswith("sid=;") or line.startswith('sid="";') for line in set_cookie_lines(more)), \
        f"the 429 expires the refused cookie, so a browser recovers: {set_cookie_lines(more)}"
    shared = requests.get(url + "/dashboard", headers={**from_client("203.0.113.9"),
                                                       "Cookie": f"sid={owner.cookies.get('sid')}"})
    assert_logged_in(shared, why=": a cookie this server signed is never throttled (a user behind the same NAT)")
    assert requests.get(url + "/login", headers=from_client("203.0.113.9")).status_code == 200, \
        "a request without a session cookie is not throttled (the login page still opens)"
    assert_logged_in(dashboard(url, owner, headers=from_client("198.51.100.7")), why=": other clients go on")
    logged = [m for m in messages(caplog) if m.startswith("invalid session ID")]
    assert len(logged) == 5 and all("203.0.113.9" in m for m in logged), logged
    assert not any(guess in m for guess in guesses for m in messages(caplog)), "a session ID in clear in the log"


@pytest.mark.exercise("10.6")
def test_owasp_O27_an_id_used_from_another_browser_is_logged(start, app_module, monkeypatch, caplog):
    log = app_log(monkeypatch, caplog, app_module, LOG_NAME)
    url = start()
    browser = log_in(url)
    session_id = sid_of(browser)
    thief = copy_of(browser)
    thief.headers["User-Agent"] = "another browser/1.0"
    dashboard(url, thief)
    hashed = id_hash(session_id, derive_key(SECRET, "session-log"))
    lines = log.messages()
    assert any("client-changed" in m and hashed in m for m in lines), \
        f"the same session ID from another User-Agent is an anomaly: log it (with {hashed}): {lines}"
    assert session_id not in " ".join(lines)


def test_owasp_O28_the_session_is_bound_to_its_browser(start):
    url = start()
    browser = log_in(url)
    thief = copy_of(browser)
    thief.headers["User-Agent"] = "another browser/1.0"
    assert_logged_out(dashboard(url, thief), ": a session cookie used by another User-Agent")
    assert_logged_out(dashboard(url, browser), ": a session seen in two browsers is ended for both")


@pytest.mark.exercise("10.6")
def test_owasp_O29_the_life_cycle_is_logged_with_salted_hashes_only(start, app_module, monkeypatch, caplog):
    log = app_log(monkeypatch, caplog, app_module, LOG_NAME)
    clock = FakeClock()
    url = start(now=clock, renew_every=300)
    browser = log_in(url)
    ids = [sid_of(browser)]
    clock.advance(301)
    dashboard(url, browser)
    ids.append(sid_of(browser))
    post(url, browser, "/logout")
    lines = log.messages()
    salt = derive_key(SECRET, "session-log")
    for event, session_id in (("created", ids[0]), ("renewed", ids[1]), ("logged-out", ids[1])):
        assert any(event in m and id_hash(session_id, salt) in m for m in lines), \
            f"no {event!r} line with the salted hash {id_hash(session_id, salt)} of the ID: {lines}"
    leaked = [m for m in lines for session_id in ids if session_id in m or session_id[:16] in m]
    assert not leaked, f"a session ID in clear in the log: {leaked}"


def test_owasp_O30_sessions_are_listed_with_handles_and_revocable(start):
    url = start()
    laptop, phone = log_in(url), log_in(url, headers={"User-Agent": "phone/1.0"})
    phone.headers["User-Agent"] = "phone/1.0"
    listed = laptop.get(url + "/sessions", headers={"Accept": "application/json"}).json()
    assert len(listed) == 2 and sorted(s["current"] for s in listed) == [False, True], listed
    assert {"id", "current", "last_seen", "client"} <= set(listed[0]), listed[0]
    for session in listed:
        assert session["id"] not in (sid_of(laptop), sid_of(phone)), "a handle, never the session ID"
    other = next(s for s in listed if not s["current"])
    assert "phone/1.0" in other["client"] and "127.0.0.x" in other["client"], other
    resp = post(url, laptop, f"/sessions/{other['id']}/revoke")
    assert resp.status_code == 200, resp.text
    assert_logged_out(dashboard(url, phone), ": the revoked session")
    assert_logged_in(dashboard(url, laptop))
    assert post(url, laptop, "/sessions/not-a-handle/revoke").status_code == 404
    bob = log_in(url, who=BOB)
    bobs = bob.get(url + "/sessions", headers={"Accept": "application/json"}).json()[0]["id"]
    assert post(url, laptop, f"/sessions/{bobs}/revoke").status_code == 404, "alice revoked bob's session"
    assert_logged_in(dashboard(url, bob), 2, why=": another user's handle is not alice's to revoke")


def test_owasp_O32_the_cookie_is_no_framework_s_default_name(start):
    defaults = {"beaker.session.id", "PHPSESSID", "JSESSIONID", "ASP.NET_SessionId", "connect.sid", "session",
                "sessionid", "CFID", "CFTOKEN", "laravel_session", "_session_id"}
    names = {line.split("=")[0] for line in set_cookie_lines(form_login(start(), requests.Session()))}
    assert names and not names & defaults, names


# ---------------------------------------------------------------- 10.3 the login rate limit

def fail(url, client, who="alice"):
    return requests.post(url + "/login", json={"username": who, "password": "not-it"},
                         headers={"Origin": url, **from_client(client)})


@pytest.mark.exercise("10.3")
def test_logins_are_limited_per_account_whatever_the_client(start):
    url = start(trust_proxy=True)
    for n in range(5):
        assert fail(url, f"203.0.113.{n + 1}").status_code == 401
    resp = fail(url, "203.0.113.99")
    assert resp.status_code == 429 and int(resp.headers.get("Retry-After", "0")) > 0, \
        f"5 failures on alice from 5 clients: the 6th try waits (429, Retry-After): {resp.status_code}"
    right = requests.post(url + "/login", json=ALICE, headers={"Origin": url, **from_client("203.0.113.98")})
    assert right.status_code == 429, "a locked account refuses even the right password from a new device"
    assert fail(url, "203.0.113.99", who="bob").status_code == 401, "other accounts are not locked"


@pytest.mark.exercise("10.3")
def test_logins_are_limited_per_client_whatever_the_account(start):
    url = start(trust_proxy=True, login_limits={"per_client": 8})
    for n in range(8):
        assert fail(url, "203.0.113.50", who=f"user{n}").status_code == 401
    assert fail(url, "203.0.113.50", who="someone-else").status_code == 429, \
        "one client guessing many accounts is stopped after per_client failures"
    assert fail(url, "203.0.113.51", who="someone-else").status_code == 401, "other clients go on"


@pytest.mark.exercise("10.3")
def test_an_attacker_cannot_lock_the_owner_out_of_a_known_device(start):
    url = start(trust_proxy=True)
    owner = log_in(url, headers=from_client("198.51.100.7"))       # the owner's browser: a device cookie
    post(url, owner, "/logout", headers=from_client("198.51.100.7"))
    for n in range(6):
        fail(url, f"203.0.113.{n + 1}")
    assert fail(url, "203.0.113.99").status_code == 429, "the attacker's failures lock alice for new devices"
    resp = form_login(url, owner, headers=from_client("198.51.100.7"))
    assert resp.status_code == 200, f"the owner's known browser still logs in: {resp.status_code} {resp.text}"


@pytest.mark.exercise("10.3")
def test_a_lockout_ends_when_its_window_has_passed(start):
    clock = FakeClock()
    url = start(trust_proxy=True, now=clock)
    for n in range(5):
        fail(url, f"203.0.113.{n + 1}")
    resp = fail(url, "203.0.113.77")
    assert resp.status_code == 429, resp.status_code
    clock.advance(int(resp.headers["Retry-After"]) + 1)
    right = requests.post(url + "/login", json=ALICE, headers={"Origin": url, **from_client("203.0.113.77")})
    assert right.status_code == 200, "after Retry-After seconds the account opens again: no lockout for ever"


@pytest.mark.exercise("10.3")
def test_an_account_is_its_username_s_first_64_characters(start):
    url = start(trust_proxy=True)
    long_name = "m" * 70
    for n in range(5):
        assert fail(url, f"203.0.113.{n + 1}", who=long_name).status_code == 401
    assert fail(url, "203.0.113.99", who=long_name).status_code == 429, "a 70-character username is limited too"
    assert fail(url, "203.0.113.98", who="m" * 64 + "other").status_code == 429, \
        "the same first 64 characters: the same account (username[:64])"


# ---------------------------------------------------------------- 10.4 every session, all the others

@pytest.mark.exercise("10.4")
def test_a_logged_out_session_leaves_the_list_of_sessions(start):
    url = start()
    laptop, phone = log_in(url), log_in(url)
    post(url, phone, "/logout")
    listed = sessions_of(url, laptop)
    assert len(listed) == 1 and listed[0]["current"], f"the session that logged out is still listed: {listed}"


@pytest.mark.exercise("10.4")
def test_logout_everywhere_ends_every_session_this_one_too(start):
    url = start()
    laptop, phone = log_in(url), log_in(url)
    bob = log_in(url, who=BOB)
    replay = copy_of(laptop)
    resp = post(url, laptop, "/logout-everywhere")
    assert resp.status_code == 200 and "2 sessions ended" in resp.text, f"alice had 2 sessions: {resp.text}"
    assert_logged_out(dashboard(url, phone), ": alice's other session after logout everywhere")
    assert_logged_out(dashboard(url, replay), ": the session that asked, replayed")
    assert_logged_in(dashboard(url, bob), 2, why=": bob's session is not alice's business")


@pytest.mark.exercise("10.4")
def test_a_new_password_ends_every_other_session(start):
    url = start()
    laptop, phone = log_in(url), log_in(url)
    old = sid_of(laptop)
    wrong = post(url, laptop, "/password", {"current": "guess", "new": "a-new-password"})
    assert wrong.status_code == 403, "the current password is checked"
    resp = post(url, laptop, "/password", {"current": "wonderland", "new": "a-new-password"})
    assert resp.status_code == 200 and "1 other sessions ended" in resp.text, f"alice had 1 other session: {resp.text}"
    assert_logged_out(dashboard(url, phone), ": another session after the password changed")
    assert_logged_in(dashboard(url, laptop), 1, why=": the session that changed it stays")
    assert sid_of(laptop) != old, "a new password is a privilege change: a new ID for this session too"
    assert form_login(url, requests.Session()).status_code == 401, "the old password no longer works"
    assert log_in(url, who={"username": "alice", "password": "a-new-password"})


# ---------------------------------------------------------------- 10.5 remember me

def remember_token(browser):
    token = browser.cookies.get("remember")
    assert token and "." in token, f"a login with remember=1 sets a remember cookie selector.validator: {token!r}"
    return token


def rows_of(url_db):
    with sqlite3.connect(url_db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM remember_tokens")]


def without_session(browser):
    """A browser that kept only its remember cookie (closed and opened again)."""
    return give(requests.Session(), "remember", browser.cookies.get("remember"))


@pytest.mark.exercise("10.5")
def test_remember_me_is_stored_hashed(start, users_file, tmp_path):
    db = tmp_path / "remember.sqlite3"
    shutil.copy(users_file, db)
    url = start(db_path=str(db))
    token = remember_token(log_in(url, remember=True))
    selector, validator = token.split(".")
    rows = rows_of(db)
    assert len(rows) == 1 and rows[0]["selector"] == selector, rows
    dump = json.dumps(rows)
    assert validator not in dump, "the validator is in the table in clear: a stolen table logs anyone in"
    assert rows[0]["validator_hash"] == hashlib.sha256(validator.encode()).hexdigest()


@pytest.mark.exercise("10.5")
def test_remember_me_logs_in_and_is_rotated_on_use(start):
    url = start()
    first = remember_token(log_in(url, remember=True))
    browser = give(requests.Session(), "remember", first)
    assert_logged_in(dashboard(url, browser), 1, why=" from the remember-me cookie alone")
    second = browser.cookies.get("remember")
    assert second and second != first, "a used remember-me token is replaced by a new one"
    assert browser.cookies.get("sid"), "the remember-me login starts a real session"


@pytest.mark.exercise("10.5")
def test_logout_everywhere_revokes_remember_me(start):
    url = start()
    laptop = log_in(url, remember=True)
    reopened = without_session(laptop)
    assert_logged_in(dashboard(url, reopened), 1, why=" by the remember-me cookie alone, before logout everywhere")
    kept = without_session(reopened)               # the token as it is after that use (rotated)
    post(url, log_in(url), "/logout-everywhere")
    assert_logged_out(dashboard(url, kept), ": a remember-me cookie after logout everywhere")
    assert_logged_out(dashboard(url, laptop))


@pytest.mark.exercise("10.5")
def test_a_replayed_remember_me_token_is_theft(start, caplog):
    caplog.set_level(logging.INFO, logger=LOG_NAME)
    clock = FakeClock()
    url = start(now=clock)
    victim = log_in(url, remember=True)
    stolen = remember_token(victim)
    victim_later = without_session(victim)
    assert_logged_in(dashboard(url, victim_later), 1, why=" (the victim's browser, reopened)")
    clock.advance(60)
    thief = give(requests.Session(), "remember", stolen)
    assert_logged_out(dashboard(url, thief), ": an old, used remember-me token")
    assert_logged_out(dashboard(url, without_session(victim_later)),
                      ": once theft is seen, the whole series is revoked")
    assert_logged_out(dashboard(url, victim_later), ": and every session of the user ends")


# ---------------------------------------------------------------- 10.7 text, never markup

@pytest.mark.exercise("10.7")
def test_notes_and_search_terms_are_text_never_markup(start):
    url = start()
    browser = log_in(url)
    attack = "<script>fetch('/logout-everywhere')</script>"
    post(url, browser, "/notes", {"text": attack})
    page = browser.get(url + "/notes").text
    assert "<script>" not in page and "&lt;script&gt;" in page, "a note's markup reached the page as markup"
    found = browser.get(url + "/notes", params={"q": '"><img src=x onerror=alert(1)>'}).text
    assert "<img" not in found and "&lt;img" in found, "the search term reached the page as markup"


# ---------------------------------------------------------------- the rest of the contract

def test_state_changing_routes_need_the_session_s_csrf_token(start):
    url = start()
    browser, other = log_in(url), log_in(url)            # two sessions of alice: each has its own token
    post(url, browser, "/notes", {"text": "kept"})
    handle = browser.get(url + "/sessions", headers={"Accept": "application/json"}).json()[0]["id"]
    for path, data in (("/notes", {"text": "x"}), ("/password", {"current": "wonderland", "new": "whatever-1"}),
                       ("/logout", {}), ("/logout-everywhere", {}), ("/notes/1/delete", {}),
                       (f"/sessions/{handle}/revoke", {})):
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": token_of(url, other)}):
            resp = browser.post(url + path, data=data, headers=headers)
            assert resp.status_code == 403, f"POST {path} with CSRF token {headers or 'missing'}: {resp.status_code}"
    assert_logged_in(dashboard(url, browser), 1, why=": nothing changed")
    assert_logged_in(dashboard(url, other), 1, why=": nothing changed")
    assert "kept" in browser.get(url + "/notes").text
    assert requests.post(url + "/notes", data={"text": "x"}).status_code == 401


def test_notes_belong_to_their_owner(start):
    url = start()
    alice, bob = log_in(url), log_in(url, who=BOB)
    assert post(url, alice, "/notes", {"text": "alice's"}).status_code == 201
    notes = alice.get(url + "/notes", headers={"Accept": "application/json"}).json()
    assert [n["text"] for n in notes] == ["alice's"]
    assert bob.get(url + "/notes", headers={"Accept": "application/json"}).json() == []
    for spelling in ("{}", "{:05d}", "{}.0", " {}", "\u0661", "{}%00"):
        path = f"/notes/{spelling.format(notes[0]['id'])}/delete"
        assert post(url, bob, path).status_code == 404, f"bob cannot delete alice's note: POST {path}"
    assert post(url, alice, f"/notes/{notes[0]['id']}/delete").status_code == 200


def test_the_login_answers_the_contract(start):
    url = start()
    assert form_login(url, requests.Session(), who={"username": "alice", "password": "nope"}).status_code == 401
    assert form_login(url, requests.Session(), who={"username": "nobody", "password": "nope"}).text.strip() \
        == auth.LOGIN_FAILED
    resp = requests.post(url + "/login", json={"username": "alice"}, headers={"Origin": url})
    assert resp.status_code == 400


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_sessions_live_in_the_store_of_store_url(start, kind):
    base = services.require(kind)
    table = f"s10_{uuid.uuid4().hex[:10]}"
    store_url = base if kind == "redis" else f"{base}?table={table}"
    try:
        url = start(store_url=store_url)
        browser = log_in(url)
        assert post(url, browser, "/notes", {"text": kind}).status_code == 201
        replay = copy_of(browser)
        post(url, browser, "/logout")
        assert_logged_out(dashboard(url, replay), f" on {kind}")
    finally:
        if kind == "postgres":
            import sqlalchemy as sa

            from course.kit import stores_beaker
            with stores_beaker.sql_engine(stores_beaker.beaker_options(base)).begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


@pytest.mark.maintainers        # the README's claim, on real gunicorn workers: `make test` runs it, `check` not
def test_two_gunicorn_workers_on_redis_lose_nothing(course_target, users_file, tmp_path):
    redis_url = services.require("redis")
    shutil.copy(users_file, tmp_path / "users.sqlite3")
    server = Gunicorn(SLUG, str(course_target), {"secret": SECRET, "store_url": redis_url,
                                                  "db_path": str(tmp_path / "users.sqlite3")}, 2, no_session=False)
    try:
        url = server.url
        browser = requests.Session()
        assert browser.post(url + "/login", json=ALICE, headers={"Origin": url}).status_code == 200
        token = browser.get(url + "/csrf").json()["csrf_token"]
        cookie = browser.cookies.get("sid")

        def tab(n):
            with requests.Session() as other:
                give(other, "sid", cookie)
                return [other.post(url + "/notes", data={"text": f"{n}-{i}"},
                                   headers={"X-CSRF-Token": token}).status_code for i in range(20)]

        with ThreadPoolExecutor(6) as pool:
            statuses = [s for batch in pool.map(tab, range(6)) for s in batch]
        assert statuses.count(201) == 120, f"every note from 6 tabs x 20 was added: {sorted(set(statuses))}"
        notes = browser.get(url + "/notes", headers={"Accept": "application/json"}).json()
        assert len(notes) == 120, f"{120 - len(notes)} of 120 notes lost between two workers"
        assert_logged_in(dashboard(url, browser), 1, why=": the session survived 120 requests on two workers")
        for _ in range(5):
            fail(url, "ignored", who="bob")
        assert fail(url, "ignored", who="bob").status_code == 429, \
            "the two workers count one account's failures together (SQLite, not a dict per process)"
    finally:
        server.stop()


# ---------------------------------------------------------------- attacks an adversarial review found

def sessions_of(url, browser):
    return browser.get(url + "/sessions", headers={"Accept": "application/json"}).json()


def test_revoking_a_session_revokes_its_remember_me_token(start):
    url = start()
    thief = log_in(url, remember=True, headers={"User-Agent": "thief/1.0"})    # the stolen password, "keep me"
    thief.headers["User-Agent"] = "thief/1.0"
    alice = log_in(url, remember=True)
    handle = next(s["id"] for s in sessions_of(url, alice) if "thief/1.0" in s["client"])
    assert post(url, alice, f"/sessions/{handle}/revoke").status_code == 200
    assert_logged_out(dashboard(url, thief), ": a revoked session is back at once through its remember-me cookie")
    reopened = without_session(thief)
    reopened.headers["User-Agent"] = "thief/1.0"
    assert_logged_out(dashboard(url, reopened), ": the revoked device's remember-me cookie, browser reopened")
    mine = next(s["id"] for s in sessions_of(url, alice) if s["current"])
    resp = post(url, alice, f"/sessions/{mine}/revoke")
    assert resp.status_code == 200 and "remember=" in " ".join(set_cookie_lines(resp)), \
        f"revoking this session expires its remember-me cookie: {set_cookie_lines(resp)}"
    assert_logged_out(dashboard(url, alice), ": this session, revoked from /sessions")


@pytest.fixture
def paused_verify(monkeypatch, app_module):
    """``pause()``: the next password check (``auth.verify``) of the app waits, after checking, until
    ``resume()``: a login that checked the old password while something else happens."""
    checked, go, calls = threading.Event(), threading.Event(), []
    real = app_module.auth.verify

    def verify(*args):
        user_id = real(*args)
        if calls == ["armed"]:
            calls.append("paused")
            checked.set()
            go.wait(20)
        return user_id

    monkeypatch.setattr(app_module.auth, "verify", verify)

    class Pause:
        def pause(self):
            calls.append("armed")

        def wait_checked(self):
            assert checked.wait(20), "the paused password check never ran"

        def resume(self):
            go.set()
    return Pause()


@pytest.mark.parametrize("remember", [False, True])
def test_a_login_racing_a_password_change_does_not_survive_it(start, paused_verify, remember):
    url = start()
    alice = log_in(url)
    token = token_of(url, alice)
    thief = requests.Session()
    paused_verify.pause()
    with ThreadPoolExecutor(1) as pool:
        racing = pool.submit(form_login, url, thief, ALICE, remember)     # checks the old password, then waits
        paused_verify.wait_checked()
        changed = alice.post(url + "/password", data={"current": "wonderland", "new": "brand-new-pass"},
                             headers={"X-CSRF-Token": token})
        paused_verify.resume()
        racing.result()
    assert changed.status_code == 200, changed.text
    assert_logged_out(dashboard(url, thief), ": a session logged in with the old password during the change")
    if remember and thief.cookies.get("remember"):
        assert_logged_out(dashboard(url, without_session(thief)), ": a remember-me token issued with the old password")
    assert_logged_in(dashboard(url, alice), why=": the session that changed the password")


def test_two_password_changes_at_once_one_wins(start, paused_verify):
    url = start()
    first, second = log_in(url), log_in(url)
    tokens = token_of(url, first), token_of(url, second)
    paused_verify.pause()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(first.post, url + "/password", data={"current": "wonderland", "new": "password-number-1"},
                           headers={"X-CSRF-Token": tokens[0]})
        paused_verify.wait_checked()
        fast = second.post(url + "/password", data={"current": "wonderland", "new": "password-number-2"},
                           headers={"X-CSRF-Token": tokens[1]})
        paused_verify.resume()
        slow = slow.result()
    assert fast.status_code == 200, fast.text
    assert slow.status_code in (403, 409), \
        f"both changes checked the old password; the second to write must fail, not say changed: {slow.status_code}"
    assert log_in(url, who={"username": "alice", "password": "password-number-2"})
    assert form_login(url, requests.Session(), who={"username": "alice", "password": "password-number-1"}) \
        .status_code == 401


def test_the_current_password_check_is_rate_limited_and_ends_the_session(start):
    url = start()
    thief = log_in(url)                                  # a ridden or stolen session, no password
    spare = log_in(url, give(requests.Session(), "device", thief.cookies.get("device")))   # the same browser
    token = token_of(url, thief)
    codes = [thief.post(url + "/password", data={"current": f"guess-{n}", "new": "stolen-account-1"},
                        headers={"X-CSRF-Token": token}).status_code for n in range(5)]
    assert codes == [403, 403, 403, 403, 401], f"5 wrong current passwords: {codes}"
    assert_logged_out(dashboard(url, thief), ": a session that guessed the password 5 times is over")
    resp = post(url, spare, "/password", {"current": "wonderland", "new": "stolen-account-1"})
    assert resp.status_code == 429 and int(resp.headers.get("Retry-After", "0")) > 0, \
        f"the same browser's other session, right password: counted as the login counts (429): {resp.status_code}"
    assert form_login(url, requests.Session()).status_code == 429, "the account's failures count at the login"


@pytest.mark.exercise("10.3")
def test_a_known_device_is_exempt_from_the_per_client_limit(start):
    url = start(login_limits={"per_client": 8})
    owner = log_in(url)                                  # alice's browser: a device cookie
    post(url, owner, "/logout")
    for n in range(8):                                   # a stranger at the same address (a NAT, a proxy)
        assert fail(url, "ignored", who=f"nobody{n}").status_code == 401
    assert fail(url, "ignored", who="someone").status_code == 429, "the shared address is limited for strangers"
    resp = form_login(url, owner)
    assert resp.status_code == 200, f"alice's known browser at that address still logs in: {resp.status_code}"


@pytest.mark.exercise("10.3")
def test_a_known_device_still_counts_its_own_failures(start):
    url = start(trust_proxy=True)
    owner = log_in(url, headers=from_client("198.51.100.7"))
    post(url, owner, "/logout", headers=from_client("198.51.100.7"))
    codes = [form_login(url, owner, who={"username": "alice", "password": "x"},
                        headers=from_client(f"198.51.{n}.7")).status_code for n in range(6)]
    assert codes == [401] * 5 + [429], f"a known device guessing from ever new addresses: {codes}"


def test_a_refused_session_cookie_is_expired(start):
    url = start()
    old = log_in(url)
    rotated = start(secret=SECRET + " rotated")         # a new secret: every old cookie is refused
    browser = copy_of(old)
    resp = browser.get(rotated + "/notes")
    assert resp.status_code == 401 and any(line.startswith("sid=;") for line in set_cookie_lines(resp)), \
        f"a refused cookie is expired (Max-Age=0) so the browser stops sending it: {set_cookie_lines(resp)}"
    assert "sid" not in browser.cookies, "the browser dropped the refused cookie"
    for _ in range(12):
        browser.get(rotated + "/notes")
    log_in(rotated, browser)                             # never counted again: no 429 on the user's own login


def test_made_up_ids_from_a_shared_address_do_not_lock_real_users_out(start):
    url = start()
    victim = log_in(url)
    for _ in range(12):
        requests.get(url + "/", headers={"Cookie": f"sid={uuid.uuid4().hex}"})
    assert_logged_in(dashboard(url, victim), why=": a valid session at the address that made up IDs")


def test_log_lines_cannot_be_forged_through_the_path(start, caplog):
    caplog.set_level(logging.WARNING)
    url = start()
    requests.get(url + "/x%0aINFO:course.capstone:session created h:0 user=1", headers={"Cookie": "sid=garbage"})
    lines = [m for m in messages(caplog) if "invalid session ID" in m]
    assert lines and not any("\n" in m or "\r" in m for m in lines), f"a forged line in the log: {lines}"


def test_every_cookie_is_host_prefixed_and_secure_in_production(start):
    url = start(production=True, trust_proxy=True)
    browser = requests.Session()
    page = browser.get(url + "/login", headers=HTTPS)
    resp = form_login(url, browser, remember=True, headers=HTTPS)
    lines = set_cookie_lines(page) + set_cookie_lines(resp)
    assert any(line.startswith("__Host-login_csrf=") for line in lines), lines
    bad = [line for line in lines if not (line.startswith("__Host-") and "secure" in cookie_attributes(line))]
    assert not bad, f"production cookies without __Host- and Secure: {bad}"


@pytest.mark.exercise("10.5")
def test_a_remember_me_series_ends_30_days_after_its_login(start):
    clock = FakeClock()
    url = start(now=clock)
    browser = without_session(log_in(url, remember=True))
    for day, days_later in ((20, 20), (29, 9)):
        clock.advance(days_later * 24 * 3600)
        browser.cookies.pop("sid", None)
        assert_logged_in(dashboard(url, browser), why=f" by remember-me on day {day}")
    clock.advance(2 * 24 * 3600)
    browser.cookies.pop("sid", None)
    assert_logged_out(dashboard(url, browser), ": day 31: a series lasts 30 days from its login, however used")


@pytest.mark.exercise("10.5")
def test_the_remember_me_validator_is_compared_in_constant_time(start, app_module, monkeypatch):
    url = start()
    token = remember_token(log_in(url, remember=True))
    compared = compare_digest_calls(monkeypatch, app_module, function="redeem_remember")
    assert_logged_in(dashboard(url, give(requests.Session(), "remember", token)))
    expected = hashlib.sha256(token.split(".")[1].encode()).hexdigest()
    assert any(expected in pair for pair in compared), \
        "the validator's hash is compared with hmac.compare_digest (== tells a guesser how much matched)"


@pytest.mark.exercise("10.4")
def test_a_new_password_revokes_remember_me(start):
    url = start()
    laptop = log_in(url, remember=True)
    reopened = without_session(laptop)
    assert_logged_in(dashboard(url, reopened), why=" by the remember-me cookie alone, before the new password")
    kept = without_session(reopened)
    assert post(url, log_in(url), "/password", {"current": "wonderland", "new": "a-new-password"}).status_code == 200
    assert_logged_out(dashboard(url, kept), ": a remember-me cookie from before the new password")


def test_a_limit_cannot_be_dodged_by_headers_or_spellings(start):
    url = start(login_limits={"per_client": 5, "per_account": 100})
    for n in range(5):
        fail(url, f"10.0.0.{n}", who=f"u{n}")
    assert fail(url, "10.9.9.9", who="u99").status_code == 429, "without --trust-proxy, X-Forwarded-For is ignored"
    url = start(trust_proxy=True, login_limits={"per_client": 5, "per_account": 100})
    for n in range(5):
        fail(url, f"10.0.0.{n}, 192.0.2.1", who=f"u{n}")
    assert fail(url, "10.9.9.9, 192.0.2.1", who="u99").status_code == 429, "only the proxy's last hop counts"
    url = start(trust_proxy=True)
    for n in range(5):
        fail(url, f"203.0.113.{n}")
    for n, name in enumerate(["ALICE", " alice", "alice\u200b", "\uff41lice", "alice\x00", "alice" + "x" * 100]):
        resp = requests.post(url + "/login", json={"username": name, "password": "wonderland"},
                             headers={"Origin": url, **from_client(f"203.0.114.{n}")})
        assert resp.status_code in (401, 429), f"{name!r} is not alice, and does not dodge her lock: {resp.status_code}"
    resp = fail(url, "203.0.115.1")
    assert resp.status_code == 429 and resp.headers.get("Cache-Control") == "no-store", resp.headers


def test_a_login_form_token_works_only_in_its_own_browser(start):
    url = start()
    first, second = requests.Session(), requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', first.get(url + "/login").text).group(1)
    second.get(url + "/login")
    assert second.post(url + "/login", data={**ALICE, "csrf_token": token}).status_code == 403


def test_no_session_id_or_token_reaches_any_log_line(start, caplog):
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    url = start(now=clock, renew_every=300, trust_proxy=True)
    seen = []

    def keep(browser):
        value = browser.cookies.get("sid")
        seen.extend([value, value[40:], value[40:56]] if value else [])
        if browser.cookies.get("remember"):
            seen.extend([browser.cookies.get("remember"), browser.cookies.get("remember").split(".")[1]])

    alice = log_in(url, remember=True)
    keep(alice)
    seen.append(token_of(url, alice))
    clock.advance(301)
    dashboard(url, alice)
    keep(alice)
    reopened = without_session(alice)
    dashboard(url, reopened)
    keep(reopened)
    thief = copy_of(alice)
    thief.headers["User-Agent"] = "another browser/1.0"
    dashboard(url, thief)
    for _ in range(12):
        requests.get(url + "/dashboard", headers={"Cookie": "sid=" + alice.cookies.get("sid", "x")[:-1] + "0",
                                                  **from_client("203.0.113.5")})
    bob = log_in(url, who=BOB)
    keep(bob)
    post(url, bob, "/password", {"current": "builder", "new": "new-builder-pw"})
    keep(bob)
    post(url, bob, "/logout-everywhere")
    text = "\n".join(f"{record.getMessage()} {record.args}" for record in caplog.records)
    leaked = [value for value in seen if value and value in text]
    assert not leaked, f"session IDs or tokens in the log: {leaked}"


def test_no_page_shows_a_token_or_the_id_hash(start, users_file, tmp_path):
    db = tmp_path / "pages.sqlite3"
    shutil.copy(users_file, db)
    url = start(db_path=str(db))
    alice = log_in(url, remember=True)
    secrets = {"remember": alice.cookies.get("remember"), "device": alice.cookies.get("device")}
    with sqlite3.connect(db) as conn:
        hashes = [row[0] for row in conn.execute("SELECT id_hash FROM user_sessions")]
    secrets.update({f"id hash {n}": value for n, value in enumerate(hashes)})
    for path in ("/", "/sessions", "/notes", "/csrf", "/dashboard", "/login"):
        for accept in ("text/html", "application/json"):
            body = alice.get(url + path, headers={"Accept": accept}).text
            shown = [name for name, value in secrets.items() if value and value in body]
            assert not shown, f"GET {path} ({accept}) shows {shown}"


def test_guessing_handles_tells_nothing(start):
    url = start()
    alice, bob = log_in(url), log_in(url, who=BOB)
    bobs = sessions_of(url, bob)[0]["id"]
    answers = {post(url, alice, f"/sessions/{h}/revoke").text for h in (bobs, "A" * 16, "x", "%2e%2e", "a" * 3000)}
    assert len(answers) == 1, f"the answers tell a real handle from a made-up one: {answers}"


def test_renewal_and_a_new_password_keep_the_absolute_clock(start):
    clock = FakeClock()
    url = start(now=clock, idle_timeout=600, absolute_timeout=1800, renew_every=100)
    alice = log_in(url)
    for _ in range(3):
        clock.advance(500)
        assert_logged_in(dashboard(url, alice), why=" within the absolute timeout")
    assert post(url, alice, "/password", {"current": "wonderland", "new": "a-new-password"}).status_code == 200
    clock.advance(400)
    assert_logged_out(dashboard(url, alice), ": renewal and a new password do not restart the absolute timeout")


def test_theft_detection_ends_the_thiefs_session_too(start):
    clock = FakeClock()
    url = start(now=clock)
    victim = log_in(url, remember=True)
    thief = give(requests.Session(), "remember", remember_token(victim))
    assert_logged_in(dashboard(url, thief), why=": the thief uses the stolen token first")
    clock.advance(60)
    assert_logged_out(dashboard(url, without_session(victim)), ": the victim's copy, used: theft")
    assert_logged_out(dashboard(url, thief), ": the thief's session ends when theft is seen")


def test_two_tabs_redeeming_one_remember_me_token_log_in_once(start):
    url = start()
    token = remember_token(log_in(url, remember=True))
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: requests.get(url + "/dashboard", cookies={"remember": token}).status_code,
                                range(4)))
    assert codes.count(200) == 1 and set(codes) <= {200, 401}, codes


def test_forged_remember_me_tokens_are_refused_never_a_500(start):
    url = start()
    for value in ("a.b", "." * 50, "x" * 300, "a" * 16 + "." + "b" * 24, "\u00e9" * 20 + "." + "b" * 20,
                  "selector1.'; DROP TABLE remember_tokens; --", "%00%00.%00"):
        resp = requests.get(url + "/dashboard", cookies={"remember": value})
        assert resp.status_code == 401, (value, resp.status_code)


def test_two_logouts_at_once_end_the_session_once(start):
    url = start()
    alice = log_in(url)
    token, cookie = token_of(url, alice), alice.cookies.get("sid")
    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda _: requests.post(url + "/logout", cookies={"sid": cookie},
                                                        headers={"X-CSRF-Token": token}).status_code, range(2)))
    assert codes == [200, 401], codes
    assert requests.get(url + "/dashboard", cookies={"sid": cookie}).status_code == 401


def test_logout_expires_the_session_and_remember_me_cookies(start):
    url = start()
    alice = log_in(url, remember=True)
    resp = post(url, alice, "/logout")
    lines = set_cookie_lines(resp)
    assert any(x.startswith("remember=") for x in lines) and any(x.startswith("sid=") for x in lines), lines
    assert_logged_out(dashboard(url, alice))


# ---------------------------------------------------------------- the exercise functions, called directly

@pytest.mark.exercise("10.1")
def test_a_cross_site_login_request_is_refused_with_false(app_module):
    assert app_module.login_request_ok({"HTTP_SEC_FETCH_SITE": "cross-site"}, SECRET) is False, \
        "login_request_ok says whether: False for a request a page of another site sent"


@pytest.mark.exercise("10.1")
def test_start_session_saves_the_new_token_and_clocks(app_module):
    session = in_lesson(app_module, beaker_session)      # Beaker's own Session: a save writes at once
    session["cart"] = ["tea"]
    session.save()
    before = session.id
    app_module.start_session(session, 7, 1000.0)
    assert session.id != before, "a new ID at login"
    stored = in_lesson(app_module, stored_beaker_session, session.id)
    assert stored["cart"] == ["tea"] and stored["user_id"] == 7, f"the data moves to the new ID: {stored}"
    assert stored.get("csrf_token") == session["csrf_token"] and len(session["csrf_token"]) >= 43, \
        f"start_session saves: the new CSRF token is in the store: {stored}"
    assert [stored.get(k) for k in ("login_at", "seen_at", "renewed_at")] == [1000.0] * 3, \
        f"start_session saves: the three clocks are in the store: {stored}"


@pytest.mark.exercise("10.2")
def test_each_timeout_ends_the_session_only_after_more_than_its_seconds(app_module):
    state = app_module.session_state
    clocks = {"login_at": 1000.0, "seen_at": 1000.0, "renewed_at": 1000.0}
    idle, absolute, renew = 100, 300, 50
    assert state(dict(clocks), 1050, idle, absolute, renew) is None, "50 s after a new ID, renew 50: not more than 50"
    assert state(dict(clocks), 1051, idle, absolute, renew) == "renew"
    assert state(dict(clocks), 1100, idle, absolute, renew) == "renew", "100 s idle, idle 100: not more than 100"
    assert state(dict(clocks), 1101, idle, absolute, renew) == "idle"
    busy = {**clocks, "seen_at": 1290.0, "renewed_at": 1290.0}
    assert state(dict(busy), 1300, idle, absolute, renew) is None, "300 s after login, absolute 300: not more than 300"
    assert state(dict(busy), 1301, idle, absolute, renew) == "absolute"
    for broken in ({}, {**clocks, "seen_at": None}, {**clocks, "renewed_at": "1000"}):
        assert state(broken, 1000, idle, absolute, renew) == "absolute", f"no clocks, no session: {broken}"
    assert state({**clocks, "renewed_at": True}, 1000, idle, absolute, 2000) == "absolute", "True is no time"


@pytest.mark.exercise("10.5")
def test_redeeming_a_remember_me_token_tells_ok_race_theft_and_unknown(app_module, tmp_path):
    clock = FakeClock(1000.0)
    tokens = RememberStore(tmp_path / "remember.db", clock)
    token = app_module.issue_remember(tokens, 7)
    selector, validator = token.split(".")
    assert len(selector) >= 16 and len(validator) >= 43, f"at least 12 and 32 random bytes: {token!r}"
    [row] = tokens.all_rows()
    assert (row["selector"], row["validator_hash"], row["user_id"]) == (selector, remember.digest(validator), 7), row
    assert len(row["series"]) >= 16, f"a new series is random too (12 bytes at least): {row['series']!r}"
    wrong = f"{selector}.{'x' * len(validator)}"
    assert app_module.redeem_remember(tokens, wrong, clock()) == (None, None, "unknown"), "a wrong validator"
    assert app_module.redeem_remember(tokens, "not-a-token", clock()) == (None, None, "unknown")
    user_id, new_token, verdict = app_module.redeem_remember(tokens, token, clock())
    assert (user_id, verdict) == (7, "ok") and new_token not in (None, token), (user_id, new_token, verdict)
    assert {r["series"] for r in tokens.all_rows()} == {row["series"]}, "the new token belongs to the same series"
    other = app_module.issue_remember(tokens, 7)               # the same user's other browser: another series
    clock.advance(10)
    assert app_module.redeem_remember(tokens, token, clock()) == (None, None, "race"), "used 10 s ago: two tabs"
    clock.advance(1)
    assert app_module.redeem_remember(tokens, token, clock()) == (7, None, "theft"), "used 11 s ago: a copy"
    assert [r["selector"] for r in tokens.all_rows()] == [other.split(".")[0]], "theft revokes that series, all of it"


@pytest.mark.exercise("10.5")
def test_a_token_another_request_marked_used_after_it_was_read_is_a_race(app_module, tmp_path):
    tokens = RememberStore(tmp_path / "remember.db", FakeClock(1000.0))
    token = app_module.issue_remember(tokens, 7)
    other_tab, calls = RememberStore(tmp_path / "remember.db", FakeClock(1000.0)), []

    def clock():                    # the store reads it in find, then in mark_used: the other tab wins in between
        calls.append(len(calls))
        if len(calls) == 2:
            other_tab.mark_used(token.split(".")[0])
        return 1000.0

    tokens.clock = clock
    assert app_module.redeem_remember(tokens, token, 1000.0) == (None, None, "race"), \
        "read unused, but marked used by another request before this one could: two tabs, not a thief"


@pytest.mark.exercise("10.6")
def test_a_life_cycle_line_is_the_event_the_hash_and_sorted_details(app_module, monkeypatch, caplog):
    log = app_log(monkeypatch, caplog, app_module, LOG_NAME)
    app_module.log_event("created", "the-session-id", "salt", user=1, how="a\nb")
    assert [m.split() for m in log.messages()] == [["session", "created", id_hash("the-session-id", "salt"),
                                                    'how="a\\nb"', "user=1"]], log.messages()


@pytest.mark.exercise("10.7")
def test_quotes_in_text_cannot_end_an_attribute(app_module):
    shown = app_module.html_text('" onmouseover=\'x\' <b>&')
    assert not set(shown) & set("\"'<>") and "&lt;b&gt;" in shown, f"quotes and markup must become entities: {shown!r}"


# ---------------------------------------------------------------- the lesson text

TABLE_ROW = re.compile(r"^\|\s*O(\d\d)\s*\|([^|]+)\|\s*(✓|n/a)\s*\|([^|]*)\|", re.M)


def test_the_owasp_table_names_these_tests():
    text = (ROOT / "lessons" / SLUG / "README.md").read_text(encoding="utf-8")
    rows = TABLE_ROW.findall(text)
    assert [int(r[0]) for r in rows] == list(range(1, 33)), "the table has the 32 items O01..O32, in order"
    names = {name for name in globals() if name.startswith("test_owasp_")}
    cited = set()
    for number, item, mark, cell in rows:
        tests = re.findall(r"`(test_\w+)`", cell)
        if mark == "✓":
            assert tests, f"O{number} ({item.strip()}) is ✓ but names no test"
            for test in tests:
                assert test in names and test.startswith(f"test_owasp_O{number}_"), \
                    f"O{number} names {test}, which is not a test_owasp_O{number}_ test of this file"
            cited.update(tests)
        else:
            assert not tests and len(cell.strip()) > 20, f"O{number} is n/a: say why, and name no test"
    assert cited == names, f"tests the table does not cite: {sorted(names - cited)}"
    applicable = sum(1 for r in rows if r[2] == "✓")
    assert f"{applicable} of {applicable} applicable items" in text, \
        f"the closing note gives the count: '{applicable} of {applicable} applicable items'"
