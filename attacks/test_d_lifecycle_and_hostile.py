"""Timeouts on a fake clock, remember-me edge cases, production cookies, hostile input, concurrency."""
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
import requests
from conftest import ALICE, BOB, form_login, give, log_in, post, status, token_of

from course.kit.security import FakeClock
from course.tools.testing import cookie_attributes, set_cookie_lines

HTTPS = {"X-Forwarded-Proto": "https"}


# ---------------------------------------------------------------- timeouts

def test_idle_timeout_is_not_reset_by_a_request_of_a_copied_cookie_from_another_browser(start):
    clock = FakeClock()
    url, _ = start(now=clock, idle_timeout=600, renew_every=10**6)
    alice = log_in(url)
    clock.advance(601)
    assert status(url, alice) == 401


def test_renewal_keeps_the_absolute_clock(start):
    clock = FakeClock()
    url, _ = start(now=clock, idle_timeout=600, absolute_timeout=1800, renew_every=100)
    alice = log_in(url)
    for _ in range(3):
        clock.advance(500)
        assert status(url, alice) == 200
    clock.advance(400)
    assert status(url, alice) == 401, "renewal must not restart the absolute timeout"


def test_password_change_renewal_keeps_the_absolute_clock(start):
    clock = FakeClock()
    url, _ = start(now=clock, idle_timeout=10**6, absolute_timeout=1000, renew_every=10**6)
    alice = log_in(url)
    clock.advance(900)
    assert post(url, alice, "/password", {"current": "wonderland", "new": "a-new-password"}).status_code == 200
    clock.advance(200)
    assert status(url, alice) == 401


def test_absolute_timeout_is_not_extended_by_remember_me_for_ever(start):
    """Remember-me re-logs in after the absolute timeout (by design); but a token's life is 30 days
    from issue and each use issues a new one: a thief who stole it once stays in for ever while
    the victim does not use it. Shown: after 29 days x 3 uses, still in (informational)."""
    clock = FakeClock()
    url, _ = start(now=clock)
    token = log_in(url, remember=True).cookies.get("remember")
    browser = give(requests.Session(), "remember", token)
    for _ in range(3):
        clock.advance(29 * 24 * 3600)
        browser.cookies.pop("sid", None)
        assert status(url, browser) == 200
    pytest.xfail("sliding 30-day remember-me with no absolute cap (87 days and counting): informational")


# ---------------------------------------------------------------- remember-me

def test_theft_detection_ends_the_thiefs_session_too(start):
    clock = FakeClock()
    url, _ = start(now=clock)
    victim = log_in(url, remember=True)
    stolen = victim.cookies.get("remember")
    thief = give(requests.Session(), "remember", stolen)
    assert status(url, thief) == 200                      # the thief goes first
    clock.advance(60)
    again = give(requests.Session(), "remember", stolen)
    assert status(url, again) == 401                      # the victim's copy: theft
    assert status(url, thief) == 401, "the thief's session ends when theft is detected"
    assert status(url, victim) == 401


def test_remember_me_race_of_two_tabs_logs_in_one_and_keeps_the_new_token(start):
    url, _ = start()
    token = log_in(url, remember=True).cookies.get("remember")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: requests.get(url + "/dashboard", cookies={"remember": token}), range(4)))
    codes = sorted(r.status_code for r in answers)
    assert 500 not in codes and codes.count(200) == 1, codes


def test_remember_token_forgeries_never_500(start):
    url, _ = start()
    for value in ("a.b", "." * 50, "x" * 300, "aaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbb",
                  "\u00e9" * 20 + "." + "b" * 20,
                  "selector1.'; DROP TABLE remember_tokens; --", "%00%00.%00"):
        resp = requests.get(url + "/dashboard", cookies={"remember": value})
        assert resp.status_code == 401, (value, resp.status_code)


# ---------------------------------------------------------------- production

def test_every_cookie_is_host_prefixed_and_secure_in_production(start):
    url, _ = start(production=True, trust_proxy=True)
    browser = requests.Session()
    page = browser.get(url + "/login", headers=HTTPS)
    lines = set_cookie_lines(page)
    import re
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    resp = browser.post(url + "/login", data={**ALICE, "csrf_token": token, "remember": "1"}, headers=HTTPS)
    lines += set_cookie_lines(resp)
    bad = [line for line in lines if not (line.startswith("__Host-") and "secure" in cookie_attributes(line))]
    assert not bad, f"production cookies without __Host- / Secure: {bad}"


# ---------------------------------------------------------------- hostile input

def raw(url, request_bytes):
    parts = urlparse(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


HOSTILE = [
    ("GET", "/dashboard", {"Cookie": "sid=" + "a" * 40 + "%" * 4000}),
    ("GET", "/dashboard", {"Cookie": "remember=" + "a" * 8000}),
    ("GET", "/dashboard", {"Cookie": "__Host-sid=1; sid=" + "\\" * 3000}),
    ("GET", "/", {"Cookie": "sid=" + "0" * 40 + "../../x"}),
    ("GET", "/sessions", {"Accept": "application/json" * 500}),
    ("POST", "/login", {"Content-Type": "application/json", "Origin": "http://127.0.0.1"}),
    ("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded; charset=utf-16"}),
    ("GET", "/login", {"Cookie": "login_csrf=" + "A" * 100000}),
    ("GET", "/", {"Host": "\u00ff\u00fe" * 100}),
    ("POST", "/login", {"Host": "", "Origin": "http://", "Content-Type": "application/json"}),
    ("GET", "/notes?q=" + "%ff" * 2000, {}),
    ("POST", "/sessions/" + "%ff" * 100 + "/revoke", {}),
    ("POST", "/notes/" + "9" * 500 + "/delete", {}),
    ("GET", "/dashboard", {"X-Forwarded-For": "1" * 10000, "User-Agent": "\u00ff" * 5000}),
]


@pytest.mark.parametrize("method,path,headers", HOSTILE)
def test_hostile_requests_never_500(start, method, path, headers):
    url, _ = start(trust_proxy=True)
    alice = log_in(url)
    resp = alice.request(method, url + path, headers={"X-CSRF-Token": token_of(url, alice), **headers},
                         data=b'{"username": "alice", "password": ' if method == "POST" else None)
    assert resp.status_code < 500, (method, path, resp.status_code, resp.text[:200])


@pytest.mark.parametrize("body", [b"{" * 100000, b'{"username": "' + b"a" * 2_000_000 + b'", "password": "x"}',
                                  b'{"username": ["alice"], "password": {"x": 1}}', b'{"username": "alice", '
                                  b'"username": "bob", "password": "builder"}', b"\xff\xfe\x00\x00", b"null", b"[]",
                                  b'{"username": "alice\\ud800", "password": "x"}'])
def test_hostile_login_bodies_never_500(start, body):
    url, _ = start()
    resp = requests.post(url + "/login", data=body, headers={"Content-Type": "application/json", "Origin": url})
    assert resp.status_code < 500 and resp.status_code != 200, (body[:40], resp.status_code, resp.text[:100])


def test_lying_content_length_never_500(start):
    url, _ = start()
    line = raw(url, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 99999999999999999999\r\nConnection: close\r\n\r\n{}")
    assert not line.startswith(b"HTTP/1.0 5") and not line.startswith(b"HTTP/1.1 5"), line


def test_hostile_note_bodies(start):
    url, _ = start()
    alice = log_in(url)
    for text in ("\x00" * 10, "\ud800" if False else "\u202e" * 100, "x" * 2001, "a" * 2000):
        resp = post(url, alice, "/notes", {"text": text})
        assert resp.status_code in (201, 400), (text[:10], resp.status_code)


# ---------------------------------------------------------------- concurrency

def test_two_logouts_at_once(start):
    url, _ = start()
    alice = log_in(url)
    token = token_of(url, alice)
    cookie = alice.cookies.get("sid")
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda _: requests.post(url + "/logout", cookies={"sid": cookie},
                                                      headers={"X-CSRF-Token": token}).status_code, range(2)))
    assert sorted(codes) == [200, 401], codes
    assert requests.get(url + "/dashboard", cookies={"sid": cookie}).status_code == 401


def test_logout_everywhere_while_other_tabs_add_notes(start):
    url, _ = start()
    alice = log_in(url)
    token, cookie = token_of(url, alice), alice.cookies.get("sid")
    other = log_in(url)
    codes = []

    other_token = token_of(url, other)

    def writer():
        for i in range(15):
            codes.append(requests.post(url + "/notes", cookies={"sid": other.cookies.get("sid")},
                                       data={"text": f"n{i}"}, headers={"X-CSRF-Token": other_token}
                                       ).status_code)

    thread = threading.Thread(target=writer)
    thread.start()
    requests.post(url + "/logout-everywhere", cookies={"sid": cookie}, headers={"X-CSRF-Token": token})
    thread.join()
    assert 500 not in codes and status(url, other) == 401, codes
    fresh = log_in(url)
    kept = len(fresh.get(url + "/notes", headers={"Accept": "application/json"}).json())
    assert kept == codes.count(201), f"{codes.count(201)} answered 201, {kept} kept"


def test_two_password_changes_at_once(start):
    url, _ = start()
    a, b = log_in(url), log_in(url)
    ta, tb = token_of(url, a), token_of(url, b)

    def change(args):
        browser, token, new = args
        return browser.post(url + "/password", data={"current": "wonderland", "new": new},
                            headers={"X-CSRF-Token": token}).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(change, [(a, ta, "password-number-a"), (b, tb, "password-number-b")]))
    assert 500 not in codes, codes
    works = [form_login(url, requests.Session(), who={"username": "alice", "password": p}).status_code
             for p in ("password-number-a", "password-number-b")]
    alive = [status(url, x) for x in (a, b)]
    assert works.count(200) == 1, works
    # The session whose password is the one in force should be the one left logged in.
    winner = works.index(200)
    assert alive[winner] == 200, f"both changes said 200 {codes}; password {'ab'[winner]} is in force, " \
                                 f"but sessions alive: {alive}"


def test_concurrent_logins_and_sessions_page(start):
    url, _ = start()
    with ThreadPoolExecutor(4) as pool:
        browsers = list(pool.map(lambda _: log_in(url, who=BOB), range(6)))
    listed = browsers[0].get(url + "/sessions", headers={"Accept": "application/json"}).json()
    assert len(listed) == 6 and all(status(url, b) == 200 for b in browsers)
