"""Lesson 05: Beaker, the real library, and its sharp edges.

Black-box over HTTP. Each test serves the lesson with a ``CountingStore`` of its own (the
``store`` option), so it can count what Beaker asked of the store and look inside it; two apps in
one process never share sessions. Until an exercise is done the lesson behaves as stock Beaker,
so each exercise test fails on the starter by showing the gap it closes.

The last part checks ``course.kit.beakerkit``, the finished reference that lessons 06-08 build on.
"""
import hmac
import secrets
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from hashlib import sha1

import bottle
import pytest
import requests

from course.kit import beakerkit, storedown
from course.kit.beakerkit import CountingStore
from course.tools.testing import set_cookie_lines

SECRET = "test-secret-05-" + secrets.token_hex(16)


def cookie_line(resp, name=None):
    """The Set-Cookie line for ``name`` (default: the first one), or None."""
    for line in set_cookie_lines(resp):
        if name is None or line.split("=", 1)[0].strip() == name:
            return line
    return None


def name_value(line):
    name, _, rest = line.partition("=")
    return name.strip(), rest.split(";", 1)[0].strip().strip('"')


def attributes(line):
    return [part.strip().lower() for part in line.split(";")[1:]]


def beaker_id(value):
    """The session ID inside a Beaker cookie value: signed values are 40 hex of HMAC + the ID."""
    return value[40:] if len(value) == 72 else value


def start_session(url, visits=2):
    """A browser that visited ``visits`` times: (client, cookie name, cookie value, session ID)."""
    client = requests.Session()
    first = client.get(url + "/visits")
    line = cookie_line(first)
    assert line, f"GET /visits on a new visitor sent no Set-Cookie: {first.status_code} {first.text!r}"
    name, value = name_value(line)
    for _ in range(visits - 1):
        client.get(url + "/visits")
    return client, name, value, beaker_id(value)


def peek(url, cookie):
    return requests.get(url + "/peek", headers={"Cookie": cookie})


@pytest.fixture
def store():
    return CountingStore()


@pytest.fixture
def url(server, store):
    """The lesson with a known secret and a store the test can look into."""
    return server(secret=SECRET, store=store)


# ---------------------------------------------------------------- 05.1 a safe configuration

@pytest.mark.exercise("05.1")
def test_the_session_cookie_is_sid_httponly_samesite_lax(url):
    resp = requests.get(url + "/visits")
    names = [line.split("=", 1)[0] for line in set_cookie_lines(resp)]
    assert "beaker.session.id" not in names, "the cookie is still Beaker's default beaker.session.id: set session.key"
    line = cookie_line(resp, "sid")
    assert line, f"no Set-Cookie named sid on a first visit (got {names})"
    attrs = attributes(line)
    assert "httponly" in attrs, f"HttpOnly missing (Beaker's default is off): {line!r}"
    assert "samesite=lax" in attrs, f"SameSite=Lax missing: {line!r}"
    assert "path=/" in attrs


@pytest.mark.exercise("05.1")
def test_the_cookie_is_signed_with_session_secret_from_the_environment(server, monkeypatch):
    env_secret = "env-secret-" + secrets.token_hex(16)
    monkeypatch.setenv("SESSION_SECRET", env_secret)
    resp = requests.get(server(store=CountingStore()) + "/visits")
    line = cookie_line(resp, "sid")
    assert line, f"no sid cookie: {set_cookie_lines(resp)}"
    value = name_value(line)[1]
    assert len(value) == 72, f"a signed Beaker ID is 40 hex of HMAC + 32 hex of ID, got {value!r}"
    expected = hmac.new(env_secret.encode(), value[40:].encode(), sha1).hexdigest()
    assert value[:40] == expected, "the cookie is not signed with SESSION_SECRET"


@pytest.mark.exercise("05.1")
def test_an_explicit_secret_wins_over_the_environment(server, monkeypatch):
    monkeypatch.setenv("SESSION_SECRET", "env-secret-" + secrets.token_hex(16))
    line = cookie_line(requests.get(server(secret=SECRET, store=CountingStore()) + "/visits"), "sid")
    assert line, "no Set-Cookie named sid"
    value = name_value(line)[1]
    assert value[:40] == hmac.new(SECRET.encode(), value[40:].encode(), sha1).hexdigest(), \
        "create_app(secret=...) must sign with that secret"


@pytest.mark.exercise("05.1")
def test_without_session_secret_it_warns_loudly_and_uses_the_development_secret(app_module, serve_app, monkeypatch):
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    with pytest.warns(Warning) as caught:
        config = app_module.session_config()
    assert any("SESSION_SECRET" in str(w.message) for w in caught), \
        f"the warning should name SESSION_SECRET: {[str(w.message) for w in caught]}"
    assert config["session.secret"] == app_module.DEV_SECRET
    with pytest.warns(Warning):
        url = serve_app(app_module.create_app(store=CountingStore()))
    value = name_value(cookie_line(requests.get(url + "/visits"), "sid"))[1]
    assert value[:40] == hmac.new(app_module.DEV_SECRET.encode(), value[40:].encode(), sha1).hexdigest()


@pytest.mark.exercise("05.1")
def test_session_config_holds_the_four_options(app_module):
    config = app_module.session_config(SECRET)
    assert config.get("session.key") == "sid"
    assert config.get("session.httponly") is True
    assert str(config.get("session.samesite")).lower() == "lax"
    assert config.get("session.secret") == SECRET


@pytest.mark.exercise("05.1")
def test_an_id_the_client_made_up_is_not_adopted(url, store):
    forged = "a" * 32
    resp = requests.get(url + "/visits", headers={"Cookie": f"sid={forged}; beaker.session.id={forged}"})
    assert resp.status_code == 200 and "You have visited 1 times" in resp.text
    line = cookie_line(resp, "sid")
    assert line, "a made-up ID must be replaced by a new, signed one (no sid Set-Cookie came back)"
    assert beaker_id(name_value(line)[1]) != forged
    assert not store.holds(forged), "the session was stored under the ID the client chose (fixation)"


# ---------------------------------------------------------------- 05.2 strict IDs

@pytest.mark.exercise("05.2")
def test_after_a_restart_the_old_cookie_gets_a_fresh_id(server):
    _, name, value, old_id = start_session(server(secret=SECRET, store=CountingStore()))
    restarted = CountingStore()                      # the same secret, an empty store: a restart
    resp = requests.get(server(secret=SECRET, store=restarted) + "/visits", headers={"Cookie": f"{name}={value}"})
    assert resp.status_code == 200 and "You have visited 1 times" in resp.text
    line = cookie_line(resp, name)
    assert line, ("the store had no record for the cookie's ID, yet no new cookie was sent: "
                  "Beaker adopted the old ID")
    new_id = beaker_id(name_value(line)[1])
    assert new_id != old_id
    assert not restarted.holds(old_id), "the new session was stored under the old, adopted ID"
    assert restarted.holds(new_id)


@pytest.mark.exercise("05.2")
def test_two_browsers_replaying_one_stale_cookie_never_share_a_session(server):
    _, name, value, _ = start_session(server(secret=SECRET, store=CountingStore()))
    url = server(secret=SECRET, store=CountingStore())
    # An attacker plants the stale cookie in a victim's browser and keeps a copy.
    planted = {"Cookie": f"{name}={value}"}
    victim = requests.get(url + "/visits", headers=planted)
    assert "You have visited 1 times" in victim.text
    attacker = requests.get(url + "/visits", headers=planted)
    assert "You have visited 1 times" in attacker.text, \
        f"the attacker's copy of the planted ID sees the victim's session: {attacker.text!r}"
    assert cookie_line(victim, name) and cookie_line(attacker, name), "each should get a fresh ID"
    assert name_value(cookie_line(victim, name)) != name_value(cookie_line(attacker, name))


# ---------------------------------------------------------------- 05.3 a real destroy

@pytest.mark.exercise("05.3")
def test_reset_removes_the_record_and_clears_the_cookie(url, store):
    client, name, _, old_id = start_session(url)
    assert store.holds(old_id)
    resp = client.post(url + "/reset")
    assert resp.status_code == 200, f"POST /reset gave {resp.status_code}: {resp.text!r}"
    assert not store.holds(old_id), "the store still holds a record under the old ID"
    assert store.stats()["sessions"] == 0, f"records left in the store: {store.stats()}"
    line = cookie_line(resp, name)
    assert line, "POST /reset sent no Set-Cookie: nothing tells the browser to drop the cookie"
    expires = [a.split("=", 1)[1] for a in attributes(line) if a.startswith("expires=")]
    max_age = [a for a in attributes(line) if a.startswith("max-age=")]
    past = (expires and parsedate_to_datetime(expires[0].replace("-", " ")) < datetime.now(timezone.utc)) \
        or max_age in (["max-age=0"], ["max-age=-1"])
    assert past, f"the cookie should be sent back already expired: {line!r}"
    assert name not in client.cookies


@pytest.mark.exercise("05.3")
def test_replaying_the_old_cookie_after_reset_gives_a_new_empty_session(url, store):
    client, name, value, old_id = start_session(url, visits=3)
    client.post(url + "/reset")
    assert "Visits so far: 0" in peek(url, f"{name}={value}").text, "the old cookie still loads the old data"
    resp = requests.get(url + "/visits", headers={"Cookie": f"{name}={value}"})
    assert "You have visited 1 times" in resp.text, f"the old cookie still counts on: {resp.text!r}"


@pytest.mark.exercise("05.3")
def test_reset_of_a_brand_new_visitor_is_not_an_error(url, store):
    resp = requests.post(url + "/reset")
    assert resp.status_code == 200, f"POST /reset without a session gave {resp.status_code}: {resp.text!r}"
    assert store.stats()["sessions"] == 0
    assert cookie_line(resp), "POST /reset sends the cookie back expired, even for a new visitor"


@pytest.mark.exercise("05.3")
def test_a_store_failure_during_reset_is_503_and_the_session_survives(url, store):
    client, name, _, old_id = start_session(url)
    with store.failing("destroy"):                  # the store dies just as the record is deleted
        resp = client.post(url + "/reset")
    assert resp.status_code == 503 and "Session store unavailable" in resp.text, \
        ("a store error while destroying must reach the caller (503), not be swallowed: "
         f"{resp.status_code} {resp.text!r}")
    assert "Visits so far: 2" in client.get(url + "/peek").text, "the session should be left as it was"
    assert client.post(url + "/reset").status_code == 200 and not store.holds(old_id)


# ---------------------------------------------------------------- 05.4 rolling

@pytest.mark.exercise("05.4")
def test_rolling_re_sends_the_cookie_of_an_existing_session_only(server, store):
    url = server(secret=SECRET, store=store, rolling=True, cookie_expires=3600)
    browser = requests.Session()
    fresh = browser.get(url + "/peek")
    assert not set_cookie_lines(fresh), "a new session that was never saved must get no cookie, rolling or not"
    created = browser.get(url + "/visits")
    name, value = name_value(cookie_line(created))
    for path in ("/peek", "/visits", "/peek"):
        resp = browser.get(url + path)
        line = cookie_line(resp, name)
        assert line, f"rolling=True: GET {path} of an existing session sent no Set-Cookie"
        assert name_value(line)[1] == value, "rolling re-sends the same session, not a new one"
        assert any(a.startswith("expires=") for a in attributes(line)), f"no fresh expiry in {line!r}"
    assert store.stats()["sessions"] == 1


@pytest.mark.exercise("05.4")
def test_rolling_never_loads_a_session_a_page_does_not_use(server, store):
    url = server(secret=SECRET, store=store, rolling=True)
    browser = requests.Session()
    browser.get(url + "/visits")
    before = store.stats()["gets"]
    page = browser.get(url + "/")
    assert store.stats()["gets"] == before, "GET / never uses the session: rolling must not load it"
    assert not set_cookie_lines(page)
    assert set_cookie_lines(browser.get(url + "/peek")), "rolling=True: GET /peek sent no Set-Cookie"


# ---------------------------------------------------------------- 05.5 a robust Cookie header

JUNK = {
    "bare token before": "null; {c}",
    "bare token after": "{c}; null",
    "quote in a name": 'bad"name=2; {c}',
    "space in a name": "a b=1; {c}",
    "attribute name as a cookie": "path=/; {c}",
    "several": "theme=dark; foo;; ; {c}; bar",
}


@pytest.mark.exercise("05.5")
@pytest.mark.parametrize("junk", list(JUNK.values()), ids=list(JUNK))
def test_junk_in_the_cookie_header_does_not_drop_the_session(url, junk):
    _, name, value, _ = start_session(url)
    resp = peek(url, junk.format(c=f"{name}={value}"))
    assert resp.status_code == 200
    assert "Visits so far: 2" in resp.text, \
        f"Cookie: {junk.format(c=name + '=...')} lost the session (Python's parser drops the whole header)"


@pytest.mark.exercise("05.5")
def test_of_two_session_cookies_the_first_wins(url):
    _, name, value, _ = start_session(url)
    other = "0" * 72
    assert "Visits so far: 2" in peek(url, f"{name}={value}; {name}={other}").text, "the first cookie should win"
    assert "Visits so far: 0" in peek(url, f"{name}={other}; {name}={value}").text, "the first cookie should win"


CLEANED = {
    "null; sid=abc": "sid=abc",
    "sid=abc; null": "sid=abc",
    'bad"name=2; sid=abc; theme=dark': "sid=abc",
    "a(b=1; sid=abc": "sid=abc",
    "a b=1; sid=abc": "sid=abc",
    "sid=abc; expires=Thu": "sid=abc",
    "sid=abc; sid=def": "sid=abc",
    'sid="abc"': "sid=abc",
    "theme=dark": "",
    "": "",
    'sid="a\\b"': "",
    "sid=a b": "",
    "sid=": "",
    "junk=x sid=FORGED; sid=abc": "sid=abc",
    # A Cookie header is split at every ";" (browsers and express do so too): the first sid here is
    # 'FORGED"', not a Beaker value, so Beaker gets nothing and starts a new session.
    'junk="x; sid=FORGED"; sid=abc': "",
    # A second sid hidden in another cookie's value, after the real one: Python's parser would read
    # both, and the last one wins there. Only the first sid counts.
    "sid=REAL; junk=x sid=FORGED": "sid=REAL",
}


@pytest.mark.exercise("05.5")
@pytest.mark.parametrize("header", list(CLEANED), ids=[repr(h) for h in CLEANED])
def test_clean_cookie_header_hands_beaker_its_own_cookie_alone(app_module, header):
    cleaned = app_module.clean_cookie_header(header, "sid")
    assert cleaned == CLEANED[header], \
        f"clean_cookie_header({header!r}, 'sid') = {cleaned!r}, expected {CLEANED[header]!r}"


@pytest.mark.exercise("05.5")
def test_a_second_sid_smuggled_in_another_cookie_does_not_replace_the_first(url):
    _, name, value, _ = start_session(url, visits=2)
    _, _, forged, _ = start_session(url, visits=5)          # a session the attacker made for the victim
    resp = peek(url, f"{name}={value}; junk=x {name}={forged}")
    assert "Visits so far: 2" in resp.text, (
        f"Cookie: {name}=<yours>; junk=x {name}=<another> read the other session ({resp.text!r}): hand Beaker "
        "only the first sid, and only a value made of a Beaker cookie's characters")
    resp = peek(url, f"{name}=x {name}={forged}")
    assert "Visits so far: 5" not in resp.text, (
        f"Cookie: {name}=x {name}=<another> read the other session: a sid whose value holds a space is not a "
        "Beaker value; hand Beaker nothing, so it starts a new session")


@pytest.mark.exercise("05.5")
def test_clean_cookie_header_reads_a_huge_header_in_linear_time(app_module):
    """CVE-2024-7592: Python 3.11.7's parser needs seconds for one 60 KB quoted cookie of backslashes.

    Timed on the clock, not as this process's CPU: the grader calls the function in the lesson's
    sandbox. The reference takes 0.004 s of the 1 s; http.cookies takes 7 s on the first header."""
    headers = ['a="' + "\\" * 61_000 + '"; sid=abc', "; ".join(f"c{i}=1" for i in range(10_000)) + "; sid=abc"]
    for header in headers:
        started = time.monotonic()
        assert app_module.clean_cookie_header(header, "sid") == "sid=abc"
        took = time.monotonic() - started
        assert took < 1.0, f"clean_cookie_header took {took:.1f} s: it must not hand the header to http.cookies"


@pytest.mark.parametrize("junk", ["a(b=1", "a)b=1; {c}", "{c}; [x]=1", 'a="' + "\\" * 2000 + '"; {c}'],
                         ids=["a refused name", "a refused name first", "brackets after", "backslashes"])
def test_a_cookie_name_python_refuses_does_not_break_the_page(url, junk):
    _, name, value, _ = start_session(url)
    resp = peek(url, junk.format(c=f"{name}={value}"))
    assert resp.status_code == 200, f"Cookie: {junk[:40]} gave {resp.status_code}"
    if "{c}" in junk:
        assert "Visits so far: 2" in resp.text, "the session beside the junk must survive"


# ---------------------------------------------------------------- ready-made parts and Beaker's own behaviour

def test_index_page_lists_the_routes_and_shows_what_was_sent(url):
    _, name, value, _ = start_session(url)
    resp = requests.get(url + "/", headers={"Cookie": f"null; {name}={value}"})
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    for path in ("/visits", "/peek", "/store/stats"):
        assert f'href="{path}"' in resp.text
    assert 'action="/reset"' in resp.text and 'method="post"' in resp.text
    assert f"{name}=" in resp.text, "the inspector shows the Cookie header that was sent"
    assert value not in resp.text, "the session cookie is HttpOnly: the page never prints its value"
    assert "&quot;visits&quot;: 2" in resp.text, "the inspector shows what the store holds for this session"


def test_index_page_escapes_what_the_browser_sent(url):
    resp = requests.get(url + "/", headers={"Cookie": "x=<script>alert(1)</script>"})
    assert resp.status_code == 200 and "<script>alert(1)" not in resp.text


def test_store_stats_counts_what_beaker_asks_of_the_store(url):
    stats = requests.get(url + "/store/stats").json()
    assert stats == {"gets": 0, "sets": 0, "touches": 0, "destroys": 0, "sessions": 0}
    start_session(url, visits=2)
    stats = requests.get(url + "/store/stats").json()
    assert stats == {"gets": 1, "sets": 2, "touches": 0, "destroys": 0, "sessions": 1}


def test_beaker_defaults_as_measured(url, store):
    """What Beaker 1.14.1 does with its defaults (auto=False, save_accessed_time=True), as lesson 05's table says."""
    browser = requests.Session()
    fresh = browser.get(url + "/peek")
    assert store.stats()["sets"] == 0 and not set_cookie_lines(fresh), "a fresh read-only visit: no write, no cookie"
    created = browser.get(url + "/visits")
    assert store.stats()["sets"] == 1 and set_cookie_lines(created), "a saved new session: one write and its cookie"
    before = store.stats()
    again = browser.get(url + "/peek")
    after = store.stats()
    assert (after["gets"] - before["gets"], after["sets"] - before["sets"]) == (1, 1), \
        "save_accessed_time=True writes a read-only session back (a new access time)"
    assert not set_cookie_lines(again), "Beaker never re-sends the cookie of an existing session"
    assert not set_cookie_lines(browser.get(url + "/visits")), "not even when the session changes"


def test_save_accessed_time_false_makes_a_read_only_visit_read_only(server, store):
    url = server(secret=SECRET, store=store, save_accessed_time=False)
    browser = requests.Session()
    browser.get(url + "/visits")
    before = store.stats()["sets"]
    browser.get(url + "/peek")
    assert store.stats()["sets"] == before


def test_auto_saves_even_an_untouched_new_session(server, store):
    url = server(secret=SECRET, store=store, auto=True)
    resp = requests.get(url + "/peek")
    assert store.stats()["sets"] == 1 and set_cookie_lines(resp), "auto=True is saveUninitialized=true"


def test_stock_beaker_has_the_gaps_the_exercises_close(server, store):
    url = server(stock=True, store=store)
    line = cookie_line(requests.get(url + "/visits"))
    assert line.startswith("beaker.session.id=") and "httponly" not in attributes(line)
    resp = requests.get(url + "/visits", headers={"Cookie": "beaker.session.id=attacker-chosen"})
    assert not set_cookie_lines(resp) and store.holds("attacker-chosen"), "stock Beaker adopts a made-up ID"
    client, name, value, sid = start_session(url)
    assert "Visits so far: 0" in peek(url, f"null; {name}={value}").text, "stock: a bare token drops every cookie"


def test_two_apps_in_one_process_never_share_sessions(server):
    _, name, value, _ = start_session(server(secret=SECRET))
    assert "Visits so far: 0" in peek(server(secret=SECRET), f"{name}={value}").text


BAD_COOKIES = {
    "tampered": lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),
    "unsigned": lambda v: v[40:],
    "empty": lambda v: "",
    "garbage": lambda v: "%%%<>\\",
    "oversized": lambda v: "a" * 5000,
    "unicode": lambda v: "é" * 10,
    "quoted": lambda v: f'"{v}',
    "unknown, well signed": lambda v: hmac.new(SECRET.encode(), b"f" * 32, sha1).hexdigest() + "f" * 32,
}


@pytest.mark.parametrize("make", list(BAD_COOKIES.values()), ids=list(BAD_COOKIES))
def test_a_bad_session_cookie_starts_a_new_session_never_a_500(url, make):
    _, name, value, _ = start_session(url)
    resp = requests.get(url + "/visits", headers={"Cookie": f"{name}={make(value)}"})
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:200]!r}"
    assert "You have visited 1 times" in resp.text


def test_a_store_that_is_down_is_503_and_nothing_is_lost(url, store):
    client, name, value, sid = start_session(url)
    with store.failing():
        for path in ("/visits", "/peek"):
            resp = client.get(url + path)
            assert resp.status_code == 503 and "Session store unavailable" in resp.text, (path, resp.status_code)
        fresh = requests.get(url + "/visits")
        assert fresh.status_code == 503, "a new visitor's session cannot be saved: 503, not a 500"
    assert "You have visited 3 times" in client.get(url + "/visits").text


# ---------------------------------------------------------------- course.kit.beakerkit, the reference

def kit_app(rolling=False, **config_options):
    """A small app on HardenedSessions, as lessons 06-08 build theirs."""
    app = bottle.Bottle()
    app.install(storedown.plugin)

    @app.get("/inc")
    def inc():
        session = beakerkit.get_session()
        session["n"] = session.get("n", 0) + 1
        session.save()
        return f"n={session['n']}"

    @app.get("/peek")
    def peek_():
        return f"n={beakerkit.get_session().get('n', 0)}"

    @app.get("/login")
    def login():
        session = beakerkit.get_session()
        beakerkit.regenerate_session(session)
        session["user"] = "alice"
        session.save()
        return "in"

    @app.get("/user")
    def user():
        return f"user={beakerkit.get_session().get('user')}"

    @app.post("/logout")
    def logout():
        beakerkit.destroy_session(beakerkit.get_session())
        return "out"

    config = beakerkit.session_config(secret=SECRET, **config_options)
    return beakerkit.HardenedSessions(app, config, rolling=rolling), config.get("session.store")


def test_kit_session_config_has_safe_defaults_and_warns_without_a_secret(monkeypatch):
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    with pytest.warns(beakerkit.InsecureSecretWarning, match="SESSION_SECRET"):
        config = beakerkit.session_config(data_dir="/tmp/x", cookie_expires=60)
    assert config["session.secret"] == beakerkit.DEV_SECRET
    assert (config["session.key"], config["session.httponly"], config["session.samesite"]) == ("sid", True, "Lax")
    assert config["session.data_dir"] == "/tmp/x" and config["session.cookie_expires"] == 60
    assert isinstance(config["session.store"], CountingStore)
    monkeypatch.setenv("SESSION_SECRET", SECRET)
    assert beakerkit.session_config()["session.secret"] == SECRET
    assert beakerkit.session_config()["session.store"] is not beakerkit.session_config()["session.store"]


def test_kit_hardened_sessions_close_every_gap(serve_app):
    app, store = kit_app()
    url = serve_app(app)
    browser = requests.Session()
    first = browser.get(url + "/inc")
    line = cookie_line(first, "sid")
    assert line and "httponly" in attributes(line) and "samesite=lax" in attributes(line)
    browser.get(url + "/inc")
    value = browser.cookies["sid"]
    assert requests.get(url + "/peek", headers={"Cookie": f"null; sid={value}"}).text == "n=2"
    assert requests.get(url + "/peek", headers={"Cookie": f"sid={value}; sid=x"}).text == "n=2"
    # strict: another app (a restart) never adopts the ID
    other, other_store = kit_app()
    resp = requests.get(serve_app(other) + "/inc", headers={"Cookie": f"sid={value}"})
    assert resp.text == "n=1" and beaker_id(name_value(cookie_line(resp, "sid"))[1]) != value[40:]
    assert not other_store.holds(value[40:])
    # regenerate: a new ID, the same data, the old record gone
    browser.get(url + "/login")
    new_value = browser.cookies["sid"]
    assert new_value != value and browser.get(url + "/peek").text == "n=2"
    assert not store.holds(value[40:])
    assert requests.get(url + "/user", headers={"Cookie": f"sid={value}"}).text == "user=None"
    # destroy: the record gone, the cookie cleared, the old cookie worthless
    out = browser.post(url + "/logout")
    assert out.text == "out" and "sid" not in browser.cookies and store.stats()["sessions"] == 0
    assert requests.get(url + "/user", headers={"Cookie": f"sid={new_value}"}).text == "user=None"
    assert store.stats()["sessions"] == 0
    assert requests.post(url + "/logout").text == "out"          # a brand-new session: nothing to destroy


def test_kit_rolling_re_sends_the_cookie_of_an_existing_session(serve_app):
    app, store = kit_app(rolling=True, cookie_expires=60)
    url = serve_app(app)
    browser = requests.Session()
    assert not set_cookie_lines(browser.get(url + "/peek"))
    browser.get(url + "/inc")
    line = cookie_line(browser.get(url + "/peek"), "sid")
    assert line and "expires=" in line.lower()


def test_kit_store_errors_are_raised_and_answered_503(serve_app):
    app, store = kit_app()
    url = serve_app(app)
    browser = requests.Session()
    browser.get(url + "/inc")
    with store.failing("destroy"):
        resp = browser.post(url + "/logout")
    assert resp.status_code == 503 and browser.get(url + "/peek").text == "n=1", "destroy must raise, not swallow"
    with store.failing("set"):
        resp = browser.get(url + "/inc")
    assert resp.status_code == 503 and "Session store unavailable" in resp.text
    with store.failing():
        assert requests.get(url + "/inc").status_code == 503
    assert browser.get(url + "/peek").text == "n=1"


def test_kit_a_corrupt_record_starts_a_new_session(serve_app):
    app, store = kit_app()
    url = serve_app(app)
    browser = requests.Session()
    browser.get(url + "/inc")
    sid = browser.cookies["sid"][40:]
    assert store.holds(sid)
    store.store.set(sid, {"session": ["str", "not base64 at all!"]})   # the record as Beaker would find it
    with pytest.warns(Warning):
        assert browser.get(url + "/inc").text == "n=1"


@pytest.mark.parametrize("header, expected", [
    ("null; sid=abc; theme=dark", "sid=abc"),
    ('bad"name=2; a(b=1; sid=abc', "sid=abc"),
    ("path=/; sid=abc; expires=Thu", "sid=abc"),
    ("sid=abc; sid=def", "sid=abc"),
    ('sid="a b\\073c"', ""),
    ("$Version=1; sid=abc", "sid=abc"),
    (None, ""),
])
def test_kit_clean_cookie_header_hands_beaker_its_own_cookie_alone(header, expected):
    assert beakerkit.clean_cookie_header(header, "sid") == expected


def test_kit_session_id_from_cookie_checks_the_signature():
    session_id = "b" * 32
    signed = hmac.new(SECRET.encode(), session_id.encode(), sha1).hexdigest() + session_id
    assert beakerkit.session_id_from_cookie(f"null; sid={signed}", "sid", SECRET) == session_id
    assert beakerkit.session_id_from_cookie(f"sid={signed[:-1]}c", "sid", SECRET) is None
    assert beakerkit.session_id_from_cookie(f"sid={session_id}", "sid", SECRET) is None
    assert beakerkit.session_id_from_cookie("other=1", "sid", SECRET) is None
