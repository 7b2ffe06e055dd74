"""CSRF on every state-changing route; session IDs and tokens in logs, pages, JSON and errors."""
import logging
import re

import pytest
import requests
from conftest import ALICE, BOB, SECRET, form_login, give, log_in, post, status, token_of

ROUTES = [("/notes", {"text": "x"}), ("/password", {"current": "wonderland", "new": "whatever-123"}),
          ("/logout", {}), ("/logout-everywhere", {}), ("/notes/1/delete", {}), ("/sessions/{handle}/revoke", {})]


def handle_of(url, browser):
    return browser.get(url + "/sessions", headers={"Accept": "application/json"}).json()[0]["id"]


@pytest.mark.parametrize("path,data", ROUTES)
@pytest.mark.parametrize("how", ["missing", "wrong", "other session's", "empty", "in query string",
                                 "json body", "json header wrong + Origin", "huge"])
def test_every_state_changing_route_needs_this_sessions_token(start, path, data, how):
    url, _ = start()
    alice = log_in(url)
    post(url, alice, "/notes", {"text": "keep me"})
    other = log_in(url)                                    # alice's other session (same user!)
    path = path.format(handle=handle_of(url, alice))
    wrong = {"missing": {}, "wrong": {"X-CSRF-Token": "A" * 43},
             "other session's": {"X-CSRF-Token": token_of(url, other)},
             "empty": {"X-CSRF-Token": ""}, "huge": {"X-CSRF-Token": "A" * 60000}}
    if how == "in query string":
        resp = alice.post(url + path + "?csrf_token=" + token_of(url, alice), data=data)
    elif how == "json body":
        resp = alice.post(url + path, json={**data, "csrf_token": "B" * 43})
    elif how == "json header wrong + Origin":
        resp = alice.post(url + path, json=data, headers={"Origin": url, "X-CSRF-Token": "C" * 43})
    else:
        resp = alice.post(url + path, data=data, headers=wrong[how])
    assert resp.status_code in (400, 403, 431), f"POST {path} with a {how} token: {resp.status_code} {resp.text[:80]}"
    assert status(url, alice) == 200 and "keep me" in alice.get(url + "/notes").text


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "null"}, {"Origin": "http://127.0.0.1.evil.test"},
                                     {"Origin": "http://evil.test", "Sec-Fetch-Site": "same-origin"}])
def test_login_csrf_with_a_valid_form_token_from_another_origin(start, headers):
    """The attacker holds a valid form token of its OWN login cookie; a cross-site form can't send
    that cookie... unless it is tossed. Whatever the token, a cross-site login is refused."""
    url, _ = start()
    browser = requests.Session()
    page = browser.get(url + "/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = browser.post(url + "/login", data={**BOB, "csrf_token": token}, headers=headers)
    expected = 200 if headers.get("Sec-Fetch-Site") == "same-origin" else 403
    assert resp.status_code == expected, (headers, resp.status_code)


@pytest.mark.parametrize("body", [{"data": "username=alice&password=wonderland",
                                   "headers": {"Content-Type": "text/plain"}},
                                  {"data": '{"username":"alice","password":"wonderland"}',
                                   "headers": {"Content-Type": "text/plain"}},
                                  {"json": ALICE, "headers": {"Origin": "HTTP://EVIL.TEST"}},
                                  {"json": ALICE, "headers": {"Origin": "null"}},
                                  {"json": ALICE, "headers": {}}])
def test_login_without_token_other_shapes(start, body):
    url, _ = start()
    resp = requests.post(url + "/login", **body)
    assert resp.status_code in (400, 403, 415), resp.status_code


def test_login_token_of_one_browser_fails_in_another(start):
    url, _ = start()
    a, b = requests.Session(), requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', a.get(url + "/login").text).group(1)
    b.get(url + "/login")
    assert b.post(url + "/login", data={**ALICE, "csrf_token": token}).status_code == 403


def secrets_of(browser):
    values = {}
    for name in ("sid", "remember", "login_csrf", "device"):
        value = browser.cookies.get(name)
        if value:
            values[name] = value
            if name == "sid":
                values["sid id"] = value[40:]
                values["sid id[:12]"] = value[40:52]
            if name == "remember":
                values["validator"] = value.split(".")[1]
    return values


def test_no_id_or_token_in_any_log_line_at_any_level(start, caplog):
    """Every logger, every level, through the whole life cycle (incl. hostile and throttled paths)."""
    caplog.set_level(logging.DEBUG)
    from course.kit.security import FakeClock
    clock = FakeClock()
    url, _ = start(now=clock, renew_every=300, trust_proxy=True)
    seen = {}
    alice = log_in(url, remember=True)
    seen.update({f"1 {k}": v for k, v in secrets_of(alice).items()})
    post(url, alice, "/notes", {"text": "n"})
    clock.advance(301)
    alice.get(url + "/dashboard")
    seen.update({f"2 {k}": v for k, v in secrets_of(alice).items()})
    reopened = give(requests.Session(), "remember", alice.cookies.get("remember"))
    reopened.get(url + "/dashboard")
    seen.update({f"3 {k}": v for k, v in secrets_of(reopened).items()})
    thief = requests.Session()
    thief.cookies.update(alice.cookies)
    thief.headers["User-Agent"] = "other"
    thief.get(url + "/dashboard")
    for _ in range(12):
        requests.get(url + "/dashboard", headers={"Cookie": "sid=" + alice.cookies.get("sid", "")[:-1] + "0",
                                                  "X-Forwarded-For": "203.0.113.5"})
    bob = log_in(url, who=BOB)
    seen.update({f"4 {k}": v for k, v in secrets_of(bob).items()})
    seen["bob csrf"] = token_of(url, bob)
    post(url, bob, "/password", {"current": "builder", "new": "new-builder-pw"})
    seen.update({f"5 {k}": v for k, v in secrets_of(bob).items()})
    post(url, bob, "/logout-everywhere")
    text = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    leaked = {k: v for k, v in seen.items() if v and v in text}
    assert not leaked, f"in the log: {sorted(leaked)}"


def test_log_lines_cannot_be_forged_through_the_path(start, caplog):
    """OWASP logging: attacker text with a newline must not become a second log line. The made-up
    ID warning copies PATH_INFO (decoded, so %0a is a newline) into the line."""
    caplog.set_level(logging.WARNING)
    url, _ = start()
    fake = "/x%0aINFO:course.capstone:session created h:0000000000000000 how=password user=1"
    requests.get(url + fake, headers={"Cookie": "sid=garbage"})
    lines = [r.getMessage() for r in caplog.records if "invalid session ID" in r.getMessage()]
    assert lines and not any("\n" in m for m in lines), f"a forged line in the log: {lines}"


def test_the_index_page_shows_no_part_of_the_session_id(start):
    """O12 claims no page shows the ID; the dev-mode index page shows its first 8 hex digits
    (32 of its 122 bits) to any script of the origin."""
    url, _ = start()
    alice = log_in(url)
    session_id = alice.cookies.get("sid")[40:]
    page = alice.get(url + "/").text
    assert session_id[:8] not in page, f"GET / shows {session_id[:8]}... of the session ID"


def test_sessions_json_and_pages_hold_no_id_hash_or_token(start):
    url, folder = start()
    alice = log_in(url, remember=True)
    values = secrets_of(alice)
    import sqlite3
    with sqlite3.connect(folder / "users.sqlite3") as conn:
        hashes = [r[0] for r in conn.execute("SELECT id_hash FROM user_sessions")]
    for path in ("/", "/sessions", "/notes", "/csrf", "/dashboard", "/login"):
        for accept in ("text/html", "application/json"):
            body = alice.get(url + path, headers={"Accept": accept}).text
            for name, value in values.items():
                assert value not in body, f"{path} shows {name}"
            for h in hashes:
                assert h not in body, f"{path} shows the ID hash"


def test_a_handle_does_not_derive_from_the_session_id(start):
    url, _ = start()
    alice = log_in(url)
    import hashlib
    session_id = alice.cookies.get("sid")[40:]
    handle = handle_of(url, alice)
    assert len(handle) == 16 and handle not in session_id
    assert handle not in hashlib.sha256(session_id.encode()).hexdigest()
    _ = SECRET


def test_guessing_handles_tells_nothing(start):
    url, _ = start()
    alice, bob = log_in(url), log_in(url, who=BOB)
    bobs = handle_of(url, bob)
    answers = {post(url, alice, f"/sessions/{h}/revoke").text for h in (bobs, "A" * 16, "x", "%2e%2e", "a" * 5000)}
    assert len(answers) == 1, f"the answers tell a real handle apart: {answers}"
    _ = form_login
