"""Lesson 06: who is this? Login and logout, on Beaker.

Black box over HTTP, as in every lesson: each test serves the lesson on a free port with a session
store of its own (a ``beakerkit.CountingStore``, which the test can look into and switch off) and a
users file shared by the module. A ``requests.Session`` (``client``) is a browser's cookie jar. The
password functions (06.1, 06.2) are also called directly, and the last tests drive a real headless
Chromium through the login form.
"""
import functools
import hashlib
import hmac
import inspect
import json
import time
import uuid

import pytest
import requests

from course.kit import auth, beakerkit
from course.tools import browser, testing
from course.tools.testing import compare_digest_calls, in_lesson, login_required_app, seed_random

SECRET = "lesson-06-test-secret-" + "k" * 24
ALICE = {"username": "alice", "password": "wonderland"}
BOB = {"username": "bob", "password": "builder"}
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}   # a browser's


@pytest.fixture(scope="module")
def users_db(tmp_path_factory):
    """One users file for the module's apps (made by the first app that needs it)."""
    return str(tmp_path_factory.mktemp("users06") / "users.sqlite3")


@pytest.fixture
def store():
    return beakerkit.CountingStore()


@pytest.fixture
def cheap_hashes(app_module, monkeypatch):
    """The lesson's hashes cost 2**12 in this test, where the app names its cost SCRYPT_N: 2**12 is
    the lowest cost the 06.1 tests require check_password to accept, and a test of the salt, the
    format, the comparison or the login is not a test of the cost. Two 06.1 tests check the cost
    (the app's own, and OWASP's 2**17). The dummy hash an unknown user is checked against is made
    at this cost too (once a process), as the 06.2 users' hashes are.
    """
    if hasattr(app_module, "SCRYPT_N"):
        monkeypatch.setattr(app_module, "SCRYPT_N", 2 ** 12)


@pytest.fixture
def url(server, users_db, store, cheap_hashes):
    """The lesson served with a known secret, the module's users file and this test's store.

    Its hashes cost 2**12 (``cheap_hashes``): these tests log in some forty times.
    """
    return server(secret=SECRET, db_path=users_db, store=store)


def session_id(cookie_value):
    """The session ID inside a signed ``sid`` cookie value (None when the signature is wrong)."""
    return beakerkit.session_id_from_cookie(f"sid={cookie_value}", "sid", SECRET)


def signed(session_id_):
    """A ``sid`` value signed as Beaker signs it: ``hex(HMAC-SHA1(secret, id)) + id``."""
    return hmac.new(SECRET.encode(), session_id_.encode(), hashlib.sha1).hexdigest() + session_id_


def set_cookie_lines(resp, name="sid"):
    """The session cookie's raw Set-Cookie lines (or another cookie's, by name)."""
    return testing.set_cookie_lines(resp, name)


def clears_cookie(line):
    """Does this Set-Cookie line tell the browser to drop the cookie (an expiry in the past)?"""
    attrs = [part.strip().lower() for part in line.split(";")[1:]]
    if "max-age=0" in attrs:
        return True
    for attr in attrs:
        if attr.startswith("expires="):
            from email.utils import parsedate_to_datetime
            try:
                return parsedate_to_datetime(attr[8:].replace("-", " ")).timestamp() < time.time()
            except (TypeError, ValueError):
                return False
    return False


def log_in(client, url, who=ALICE, **kwargs):
    return client.post(url + "/login", json=who, **kwargs)


def stored_data(store, sid):
    """The session's data in the store, without Beaker's own bookkeeping (``_accessed_time``...)."""
    data = beakerkit.stored_data(store, sid)
    return None if data is None else {k: v for k, v in data.items() if not k.startswith("_")}


# ---------------------------------------------------------------- 06.1 hash_password, check_password

def parse_hash(stored):
    scheme, n, r, p, salt, key = stored.split("$")
    return scheme, int(n), int(r), int(p), bytes.fromhex(salt), bytes.fromhex(key)


@pytest.mark.exercise("06.1")
def test_hash_password_is_scrypt_with_a_salt_and_names_its_cost(app_module):
    stored = app_module.hash_password("wonderland")
    assert isinstance(stored, str) and stored.count("$") == 5, \
        f"expected 'scrypt$<n>$<r>$<p>$<salt hex>$<key hex>', got {stored!r}"
    scheme, n, r, p, salt, key = parse_hash(stored)
    assert scheme == "scrypt"
    assert n >= 2 ** 14 and r >= 8 and p >= 1, f"scrypt's cost is too low to slow an attacker: n={n}, r={r}, p={p}"
    assert len(salt) >= 16, f"the salt is {len(salt)} bytes; use at least 16 random bytes"
    assert len(key) == 32, f"the key is {len(key)} bytes; derive 32 (dklen=32)"
    again = hashlib.scrypt(b"wonderland", salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=len(key))
    assert again == key, "the key is not hashlib.scrypt(password.encode('utf-8'), salt=..., n=..., r=..., p=...)"
    assert "wonderland" not in stored


@pytest.mark.exercise("06.1")
def test_the_same_password_hashes_differently_every_time(app_module, cheap_hashes):
    first, second = app_module.hash_password("builder"), app_module.hash_password("builder")
    assert first != second, "two hashes of one password are equal: each needs a fresh random salt"
    assert parse_hash(first)[4] != parse_hash(second)[4], "the salts are equal: use secrets.token_bytes"


@pytest.mark.exercise("06.1")
def test_check_password_accepts_the_password_and_nothing_else(app_module, cheap_hashes):
    stored = app_module.hash_password("wonderland")
    assert app_module.check_password("wonderland", stored) is True
    for wrong in ("Wonderland", "wonderland ", "wonder", "", "builder", "wonderlanđ"):
        assert app_module.check_password(wrong, stored) is False, f"{wrong!r} was accepted"
    other_scheme = "sha1" + stored[len("scrypt"):]
    assert app_module.check_password("wonderland", other_scheme) is False, (
        "a stored hash that does not say scrypt is not one of ours: refuse it rather than guess how it was made")


@pytest.mark.exercise("06.1")
def test_check_password_reads_the_salt_and_cost_from_the_stored_hash(app_module, cheap_hashes):
    # A hash made elsewhere (course/kit/auth.py) with another cost: as a table made years ago would hold.
    older = auth.hash_password("wonderland", n=2 ** 12, r=4, p=2)
    assert app_module.check_password("wonderland", older) is True, \
        "check_password must use the n, r, p and salt written in the stored hash, not today's constants"
    assert app_module.check_password("builder", older) is False
    # ...and the hashes the lesson makes are the course's format.
    assert auth.check_password("builder", app_module.hash_password("builder"))


@pytest.mark.exercise("06.1")
def test_a_hash_at_owasps_cost_of_2_17_is_made_and_checked(app_module, monkeypatch):
    # OWASP's production cost needs 128 MiB. A fixed maxmem of 64 MiB makes hash_password raise and
    # check_password answer False for the RIGHT password: every login would fail without a word.
    # One key at this cost takes 0.35 s, so hashlib.scrypt keeps each key it derives here by all of
    # its arguments, and a second call with the very same ones (password, salt, n, r, p, maxmem,
    # dklen) gets that key back: hashlib.scrypt answers such a call the same way every time. A
    # check_password that sizes maxmem otherwise than hash_password does is derived for real.
    monkeypatch.setattr(app_module, "SCRYPT_N", 2 ** 17)
    real_scrypt, derived = hashlib.scrypt, {}
    arguments = inspect.signature(real_scrypt)

    def scrypt(*args, **kwargs):
        try:
            bound = arguments.bind(*args, **kwargs)
            bound.apply_defaults()
            call = tuple(bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value
                         for value in bound.arguments.values())
            hash(call)
        except TypeError:                      # not a call hashlib.scrypt takes: let it say so
            return real_scrypt(*args, **kwargs)
        if call not in derived:                # a refused call (too little maxmem) raises every time
            derived[call] = real_scrypt(*args, **kwargs)
        return derived[call]

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    try:
        stored = app_module.hash_password("wonderland")
    except ValueError as exc:
        pytest.fail(f"hash_password raised at n=2**17 ({exc}): size maxmem from n and r (scrypt_maxmem)",
                    pytrace=False)
    assert parse_hash(stored)[1] == 2 ** 17, f"hash_password ignores SCRYPT_N: {stored[:24]}..."
    assert app_module.check_password("wonderland", stored) is True, \
        "check_password refused the right password at n=2**17: size maxmem from n and r (scrypt_maxmem)"


@pytest.mark.exercise("06.1")
@pytest.mark.parametrize("stored", [
    "", "garbage", "scrypt$16384$8$1", "scrypt$16384$8$1$zz$zz", "md5$16384$8$1$00ff$00ff",
    "scrypt$abc$8$1$00ff$00ff", "scrypt$16385$8$1$00ff$00ff", "scrypt$1073741824$8$1$00ff$00ff",
    "scrypt$16384$8$1$00ff$00ff$extra",
], ids=["empty", "garbage", "too few parts", "not hex", "other scheme", "n not a number",
        "n not a power of two", "n far too big", "too many parts"])
def test_check_password_is_false_for_a_malformed_hash_never_an_error(app_module, stored):
    assert app_module.check_password("wonderland", stored) is False


# ---------------------------------------------------------------- 06.2 verify

@pytest.fixture(scope="module")
def reference_users(tmp_path_factory):
    """A users table made by course/kit/auth.py (so 06.2 does not depend on the lesson's hash_password).

    Its hashes cost 2**12, as the served apps' do (``url``): verify reads the cost from the hash, an
    unknown user is still checked against a dummy hash of that cost (about 10 ms against 0.1 ms for
    none, so the timing test still tells the two apart), and the 06.2 tests hash some thirty times.
    """
    users = auth.UserDB(tmp_path_factory.mktemp("users06ref") / "users.sqlite3",
                        hasher=functools.partial(auth.hash_password, n=2 ** 12))
    users.find("alice")       # create it now, outside any timing
    return users


@pytest.mark.exercise("06.2")
def test_verify_knows_the_demo_users(app_module, reference_users, cheap_hashes):
    assert app_module.verify(reference_users, "alice", "wonderland") == 1
    assert app_module.verify(reference_users, "bob", "builder") == 2


@pytest.mark.exercise("06.2")
@pytest.mark.parametrize("username, password", [
    ("alice", "builder"), ("bob", "wonderland"), ("alice", "wonderland "), ("Alice", "wonderland"),
    ("nobody", "wonderland"), ("alice'--", "x"), ("", "wonderland"),
], ids=["alice, bob's password", "bob, alice's password", "trailing space", "capital A", "unknown user",
        "sql-ish name", "empty name"])
def test_verify_refuses_a_wrong_password_or_an_unknown_user(app_module, reference_users, cheap_hashes,
                                                           username, password):
    assert app_module.verify(reference_users, username, password) is None


@pytest.mark.exercise("06.2")
def test_an_unknown_user_takes_as_long_as_a_wrong_password(app_module, reference_users, cheap_hashes):
    def seconds(username):
        start = time.perf_counter()
        assert app_module.verify(reference_users, username, "not the password") is None
        return time.perf_counter() - start

    seconds("nobody-at-all")                      # the dummy hash may be made on first use
    # Interleaved, and the fastest of each kept: a busy machine slows both alike. Four rounds tell
    # them apart on a quiet machine; while they do not, more come (up to 16): a load that slowed all
    # four tries of the wrong password once failed a right answer (7 ms against 35 ms, both hashes
    # at 2**12). Each fastest time only falls toward its own true cost, so no number of rounds
    # makes a lookup without a hash (0.1 ms) pass for a hash (10 ms).
    wrong_password = unknown_user = float("inf")
    for tries in range(1, 17):
        wrong_password = min(wrong_password, seconds("alice"))
        unknown_user = min(unknown_user, seconds(f"nobody-{uuid.uuid4().hex[:8]}"))
        if tries >= 4 and unknown_user > 0.4 * wrong_password:
            break
    assert unknown_user > 0.4 * wrong_password, (
        f"an unknown user is answered in {unknown_user * 1000:.1f} ms, a wrong password in "
        f"{wrong_password * 1000:.1f} ms: the time tells an attacker which usernames exist. "
        "Check the password against dummy_hash() for an unknown user too.")


# ---------------------------------------------------------------- 06.3 login_required, /dashboard

@pytest.mark.exercise("06.3")
def test_the_dashboard_is_closed_without_a_session(url):
    resp = requests.get(url + "/dashboard")
    assert resp.status_code == 401, f"GET /dashboard without logging in gave {resp.status_code}"
    assert "Please log in to view this page." in resp.text
    assert "Welcome" not in resp.text


@pytest.mark.exercise("06.3")
@pytest.mark.parametrize("cookie", [
    "sid=forged",
    "sid=" + signed(uuid.uuid4().hex),                  # signed with the app's secret, never issued
    "sid=" + "0" * 40 + uuid.uuid4().hex,               # a wrong signature
    "null; sid=" + signed(uuid.uuid4().hex),            # a stray bare token first
    "sid=" + signed(uuid.uuid4().hex) + "; sid=second",  # duplicated
    "sid=" + "a" * 5000,                                # oversized
    'sid="unbalanced; user_id=1',                       # a cookie is not the session
], ids=["unsigned", "signed but never issued", "wrong signature", "bare token", "duplicated",
        "oversized", "malformed and a user_id cookie"])
def test_a_cookie_alone_never_opens_the_dashboard(url, cookie):
    resp = requests.get(url + "/dashboard", headers={"Cookie": cookie})
    assert resp.status_code == 401, \
        f"Cookie {cookie[:60]!r} gave {resp.status_code}: only a session the server holds logs in"
    assert "Please log in to view this page." in resp.text


@pytest.mark.exercise("06.3")
def test_login_required_runs_the_route_only_for_a_logged_in_session(app_module, serve_app, store, client):
    base = serve_app(in_lesson(app_module, login_required_app, store, SECRET))
    closed = client.get(base + "/hello/world")
    assert closed.status_code == 401 and "Please log in to view this page." in closed.text
    assert "hello" not in closed.text, "the route ran for a visitor who is not logged in"
    assert "planted" in client.get(base + "/as/7").text
    opened = client.get(base + "/hello/world")
    assert opened.status_code == 200, f"a logged-in session got {opened.status_code}: {opened.text!r}"
    assert "hello world, user 7" in opened.text, "the route must get its arguments and return its own answer"


# ---------------------------------------------------------------- 06.4 POST /login

@pytest.mark.exercise("06.4")
@pytest.mark.parametrize("who, user_id", [(ALICE, 1), (BOB, 2)], ids=["alice", "bob"])
@pytest.mark.parametrize("how", ["form", "json"])
def test_a_login_opens_the_dashboard(url, client, who, user_id, how):
    resp = client.post(url + "/login", **({"data": who} if how == "form" else {"json": who}))
    assert resp.status_code == 200, f"logging in as {who['username']} ({how}) gave {resp.status_code}: {resp.text!r}"
    assert "Login successful!" in resp.text
    assert "sid" in client.cookies, "the login sent no session cookie"
    dashboard = client.get(url + "/dashboard")
    assert dashboard.status_code == 200
    assert f"Welcome to your dashboard, user {user_id}" in dashboard.text


@pytest.mark.exercise("06.4")
def test_the_session_cookie_is_httponly_and_samesite(url):
    lines = set_cookie_lines(requests.post(url + "/login", json=ALICE))
    assert len(lines) == 1, f"expected one Set-Cookie for sid, got {lines}"
    attrs = [part.strip().lower() for part in lines[0].split(";")[1:]]
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs, lines[0]


@pytest.mark.exercise("06.4")
def test_a_wrong_password_and_an_unknown_user_get_the_same_401(url, client, store):
    wrong = client.post(url + "/login", json={"username": "alice", "password": "builder"})
    unknown = client.post(url + "/login", json={"username": "mallory", "password": "builder"})
    for resp in (wrong, unknown):
        assert resp.status_code == 401, f"a failed login gave {resp.status_code}: {resp.text!r}"
        assert "Authentication failed" in resp.text
        assert not set_cookie_lines(resp), "a failed login must not start a session"
    assert wrong.text == unknown.text, "the answers differ: they tell an attacker which usernames exist"
    assert store.stats()["sessions"] == 0
    assert client.get(url + "/dashboard").status_code == 401


# The body checks come from course.kit.auth.read_credentials, ready-made; each is one test (not one
# per case), so most of 06.4's points stay with the login itself.

@pytest.mark.exercise("06.4")
def test_a_missing_field_is_a_400_naming_it(url):
    cases = [({"password": "wonderland"}, "username"), ({"username": "alice"}, "password"),
             ({}, "username"), ({"username": "", "password": "wonderland"}, "username")]
    for how in ("form", "json"):
        for body, missing in cases:
            resp = requests.post(url + "/login", **({"data": body} if how == "form" else {"json": body}))
            assert resp.status_code == 400, f"{body} ({how}) gave {resp.status_code}: {resp.text!r}"
            assert missing in resp.text, f"the 400 should name the missing field {missing!r}: {resp.text!r}"


@pytest.mark.exercise("06.4")
def test_a_malformed_json_body_is_a_400(url):
    bodies = [b'{"username": "alice", "password": ', b"[1, 2]", b'"alice"', b"null",
              b'{"username": 1, "password": "wonderland"}', b'{"username": ["alice"], "password": "wonderland"}',
              b"\xff\xfe{}", b'{"username": "\\ud800", "password": "wonderland"}']
    for body in bodies:
        resp = requests.post(url + "/login", data=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, f"{body!r} gave {resp.status_code}: {resp.text!r}"
        assert "Login successful!" not in resp.text


@pytest.mark.exercise("06.4")
def test_an_oversized_body_is_a_413(url):
    huge = {"username": "alice", "password": "x" * 100_000}
    for how in ("form", "json"):
        resp = requests.post(url + "/login", **({"data": huge} if how == "form" else {"json": huge}))
        assert resp.status_code == 413, f"a 100 KB login body ({how}) gave {resp.status_code}"


@pytest.mark.exercise("06.4")
def test_odd_form_bodies_are_answered_never_a_500(url):
    cases = [
        ("username=alice&username=bob&password=wonderland", "application/x-www-form-urlencoded", 400),
        ("username=%FF&password=wonderland", "application/x-www-form-urlencoded", 400),
        ("username=alice&password=wonderland", "text/plain", 415),
        ("--xx\r\nbroken", "multipart/form-data; boundary=xx", 400),
    ]
    for body, ctype, status in cases:
        resp = requests.post(url + "/login", data=body, headers={"Content-Type": ctype})
        assert resp.status_code == status, f"{body!r} as {ctype} gave {resp.status_code}, expected {status}"


@pytest.mark.exercise("06.4")
def test_login_gives_a_new_session_id_and_the_old_cookie_no_longer_works(url, client, store):
    assert "You have visited 1 times" in client.get(url + "/visits").text
    before = client.cookies["sid"]               # an anonymous session: an attacker can get one too
    old_id = session_id(before)
    assert store.holds(old_id)
    assert "Login successful!" in log_in(client, url).text
    after = client.cookies["sid"]
    assert session_id(after) != old_id, "the session ID did not change at login: session fixation"
    assert not store.holds(old_id), "the pre-login record is still in the store: destroy it (regenerate_session)"
    replay = requests.get(url + "/dashboard", headers={"Cookie": f"sid={before}"})
    assert replay.status_code == 401, "the pre-login cookie opens the dashboard after the login"
    again = requests.get(url + "/visits", headers={"Cookie": f"sid={before}"})
    assert "You have visited 1 times" in again.text, "the pre-login cookie still loads the old session"
    assert "Welcome to your dashboard, user 1" in client.get(url + "/dashboard").text


@pytest.mark.exercise("06.4")
def test_the_session_holds_only_the_user_id(url, client, store):
    client.get(url + "/visits")
    log_in(client, url)
    data = stored_data(store, session_id(client.cookies["sid"]))
    assert data is not None, "nothing is stored under the new session ID: did you save()?"
    assert data.get("user_id") == 1, f"the session should hold user_id 1: {data}"
    assert set(data) <= {"user_id", "visits"}, f"store the user's id only, nothing else about them: {data}"
    dumped = json.dumps(beakerkit.stored_data(store, session_id(client.cookies["sid"])))
    assert "wonderland" not in dumped and "alice" not in dumped, f"the session holds the password or the name: {dumped}"


@pytest.mark.exercise("06.4")
def test_logging_in_as_someone_else_replaces_the_session(url, client, store):
    log_in(client, url, ALICE)
    alice_cookie = client.cookies["sid"]
    log_in(client, url, BOB)
    assert "Welcome to your dashboard, user 2" in client.get(url + "/dashboard").text
    assert not store.holds(session_id(alice_cookie)), "alice's session is still in the store"
    assert requests.get(url + "/dashboard", headers={"Cookie": f"sid={alice_cookie}"}).status_code == 401


@pytest.mark.exercise("06.4")
def test_the_login_redirect_never_takes_its_host_from_the_request(url, client):
    """bottle.redirect() builds Location from X-Forwarded-Host, which any client sends: an open redirect."""
    resp = client.post(url + "/login", data=ALICE, allow_redirects=False,
                       headers={**HTML, "X-Forwarded-Host": "evil.example", "Host": "evil.example"})
    assert resp.status_code == 303
    assert "evil.example" not in resp.headers["Location"], \
        f"Location: {resp.headers['Location']}: use a relative Location (see_other), not the request's host"


@pytest.mark.exercise("06.4")
def test_a_browser_form_login_is_redirected_to_the_dashboard(url, client):
    resp = client.post(url + "/login", data=ALICE, headers=HTML, allow_redirects=False)
    assert resp.status_code == 303, f"a browser's form login should get 303 to /dashboard, got {resp.status_code}"
    assert resp.headers["Location"].endswith("/dashboard")
    assert set_cookie_lines(resp), "the redirect must carry the new session cookie"
    page = client.get(url + resp.headers["Location"][resp.headers["Location"].index("/dashboard"):])
    assert "Welcome to your dashboard, user 1" in page.text
    failed = requests.post(url + "/login", data={"username": "alice", "password": "nope"}, headers=HTML)
    assert failed.status_code == 401 and "Authentication failed" in failed.text


@pytest.mark.exercise("06.4")
def test_a_login_while_the_store_is_down_is_503_never_a_success(url, client, store):
    with store.failing():
        resp = log_in(client, url)
    assert resp.status_code == 503, f"the store is down, the login gave {resp.status_code}: {resp.text!r}"
    assert "Login successful!" not in resp.text
    assert client.get(url + "/dashboard").status_code == 401


# ---------------------------------------------------------------- 06.5 POST /logout

@pytest.mark.exercise("06.5")
def test_logout_destroys_the_session_and_clears_the_cookie(url, client, store):
    log_in(client, url)
    cookie = client.cookies["sid"]
    assert store.holds(session_id(cookie))
    resp = client.post(url + "/logout")
    assert resp.status_code == 200 and "Logged out successfully" in resp.text
    lines = set_cookie_lines(resp)
    assert lines and clears_cookie(lines[-1]), f"the logout must clear the sid cookie (an expiry in the past): {lines}"
    assert "sid" not in client.cookies
    assert client.get(url + "/dashboard").status_code == 401


@pytest.mark.exercise("06.5")
def test_a_cookie_replayed_after_logout_is_401_and_the_store_holds_nothing(url, client, store):
    log_in(client, url)
    cookie = client.cookies["sid"]
    client.post(url + "/logout")
    assert not store.holds(session_id(cookie)), ("the store still holds the session after logout: Beaker's "
                                                 "delete() and invalidate() leave a record; destroy it")
    replay = requests.get(url + "/dashboard", headers={"Cookie": f"sid={cookie}"})
    assert replay.status_code == 401 and "Please log in to view this page." in replay.text
    assert store.stats()["sessions"] == 0


@pytest.mark.exercise("06.5")
def test_logout_without_a_session_is_harmless(url):
    resp = requests.post(url + "/logout", headers={"Cookie": "sid=forged"})
    assert resp.status_code == 200 and "Logged out successfully" in resp.text


@pytest.mark.exercise("06.5")
@pytest.mark.parametrize("failing", [(), ("destroy",)], ids=["store down", "deletes fail"])
def test_a_store_failure_at_logout_is_500_and_the_user_stays_logged_in(url, client, store, failing):
    log_in(client, url)
    cookie = client.cookies["sid"]
    with store.failing(*failing):
        resp = client.post(url + "/logout")
    assert resp.status_code == 500, f"the store failed, the logout gave {resp.status_code}: {resp.text!r}"
    assert "Failed to log out." in resp.text
    assert not set_cookie_lines(resp), ("a failed logout changed the cookie: the browser would forget a "
                                        "session the server still honours (half logged out)")
    assert client.cookies["sid"] == cookie
    assert store.holds(session_id(cookie))
    # The store is back: the user is still logged in, and a second logout works.
    assert "Welcome to your dashboard, user 1" in client.get(url + "/dashboard").text
    assert "Logged out successfully" in client.post(url + "/logout").text
    assert requests.get(url + "/dashboard", headers={"Cookie": f"sid={cookie}"}).status_code == 401


# ---------------------------------------------------------------- a real browser

def browser_form_login_works(url):
    """Checked over HTTP first, so a student without Chromium still sees unfinished work fail."""
    resp = requests.post(url + "/login", data=ALICE, headers=HTML, allow_redirects=False)
    assert resp.status_code == 303, f"the form login is not done yet (POST /login gave {resp.status_code})"


@pytest.fixture(scope="module")
def chromium():
    path = browser.require_chromium()
    with browser.chromium(path) as chromium_browser:
        yield chromium_browser


@pytest.fixture(scope="module")
def chromium_page(chromium):
    """The module's one browser page. A page in a context of its own costs about 0.3 s of CPU here
    (Chromium starts a renderer process for it), and the module's two browser tests each had one."""
    page = chromium.new_context().new_page()
    yield page
    page.context.close()


@pytest.fixture
def open_page(request):
    """``page = open_page()``: the module's browser page with no cookies, as a browser that never
    saw the site (only cookies carry a login: the app keeps nothing in the browser's storage)."""

    def open_():
        page = request.getfixturevalue("chromium_page")   # skips here without Chromium
        if page.is_closed():                                # a test before this one closed it
            page = page.context.new_page()
        page.context.clear_cookies()
        page.set_default_timeout(10_000)   # generous: a busy CI machine
        return page

    return open_


def form_login(page, url):
    page.goto(url + "/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wonderland")
    with page.expect_navigation():
        page.click("button[type=submit]")


@pytest.mark.exercise("06.4")
def test_a_real_browser_logs_in_and_its_scripts_cannot_read_the_session_cookie(open_page, url):
    browser_form_login_works(url)
    page = open_page()
    form_login(page, url)
    assert page.url.endswith("/dashboard"), f"after the form login the browser is at {page.url}"
    assert "Welcome to your dashboard, user 1" in page.inner_text("body")
    sid = [c for c in page.context.cookies() if c["name"] == "sid"]
    assert sid and sid[0]["httpOnly"], f"the browser holds no HttpOnly sid cookie: {page.context.cookies()}"
    page.evaluate("document.cookie = 'probe=visible; path=/'")       # scripts can see their own cookies
    seen = page.evaluate("document.cookie")
    assert "probe=visible" in seen and "sid=" not in seen, f"document.cookie shows {seen!r}"


@pytest.mark.exercise("06.5")
def test_a_real_browser_logs_out_and_the_dashboard_is_closed(open_page, url):
    browser_form_login_works(url)
    page = open_page()
    form_login(page, url)
    page.goto(url + "/")
    with page.expect_navigation():
        page.click("form[action='/logout'] button")
    assert "Logged out successfully" in page.inner_text("body")
    assert not [c for c in page.context.cookies() if c["name"] == "sid"], "the browser still holds sid"
    closed = page.goto(url + "/dashboard")
    assert closed.status == 401 and "Please log in to view this page." in page.inner_text("body")


# ---------------------------------------------------------------- ready-made parts

def test_index_and_login_pages_have_working_forms(url):
    index = requests.get(url + "/")
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    assert 'action="/login"' in index.text and 'action="/logout"' in index.text and 'href="/dashboard"' in index.text
    login = requests.get(url + "/login")
    assert login.status_code == 200 and login.headers["Content-Type"].startswith("text/html")
    assert 'method="post" action="/login"' in login.text
    assert 'name="username"' in login.text and 'name="password"' in login.text and 'type="password"' in login.text


def test_index_page_never_starts_a_session_and_escapes_the_cookie_header(url, store):
    resp = requests.get(url + "/", headers={"Cookie": "x=<script>alert(1)</script>; sid=forged"})
    assert resp.status_code == 200
    assert "<script>alert(1)" not in resp.text
    assert not set_cookie_lines(resp) and store.stats()["sessions"] == 0


def test_visits_counts_in_an_anonymous_session(url, client):
    bodies = [client.get(url + "/visits").text for _ in range(2)]
    assert "You have visited 1 times" in bodies[0] and "You have visited 2 times" in bodies[1]


def test_the_users_file_is_made_on_first_use_not_at_import(app_module, tmp_path):
    path = tmp_path / "not-yet" / "users.sqlite3"
    app_module.create_app(secret=SECRET, db_path=str(path))
    assert not path.exists() and not path.parent.exists(), "create_app() must not touch the disk"


@pytest.mark.exercise("06.1")
def test_check_password_compares_with_hmac_compare_digest(app_module, monkeypatch, cheap_hashes):
    calls = compare_digest_calls(monkeypatch, app_module, function="check_password")
    stored = app_module.hash_password("wonderland")
    assert app_module.check_password("wonderland", stored) and not app_module.check_password("nope", stored)
    assert calls, "compare the derived keys with hmac.compare_digest, not =="


@pytest.mark.exercise("06.1")
def test_the_salt_comes_from_a_cryptographic_source_not_random(app_module, cheap_hashes):
    """random is seedable and predictable; the salt must come from secrets (or os.urandom)."""
    seed_random(app_module, 6)
    first = app_module.hash_password("x")
    seed_random(app_module, 6)
    second = app_module.hash_password("x")
    assert first.split("$")[4] != second.split("$")[4], "the same random.seed gave the same salt: use secrets"
