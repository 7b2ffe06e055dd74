"""Lesson 03: the server remembers (server-side sessions by hand).

The store is checked directly (03.1, 03.2 are functions); the middleware black-box over HTTP, with
a counting store from the toolkit wrapped around the reference MemoryStore, so the middleware's
tests do not depend on the student's store. Case numbers (T01...) name cases of express-session's
behaviour that these tests port (its own tests: test/session.js in https://github.com/expressjs/session).
"""
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import pytest
import requests

from course.kit.signing import sign_cookie
from course.kit.stores import CountingStore, MemoryStore
from course.tools.testing import set_cookie_lines

SECRET = "lesson 03 test secret"
ID = re.compile(r"[A-Za-z0-9_-]{43}")


class Clock:
    """A clock the test moves by hand: no sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def sid_lines(resp):
    """The raw Set-Cookie lines for the cookie ``sid``."""
    return set_cookie_lines(resp, "sid")


def issued_id(resp):
    """The session ID in the response's sid Set-Cookie (None when there is none)."""
    lines = sid_lines(resp)
    if not lines:
        return None
    value = unquote(lines[0].split(";", 1)[0].split("=", 1)[1])
    assert value.startswith("s:"), f"the sid cookie should be signed, s:<id>.<sig>: {lines[0]!r}"
    return value[2:].rpartition(".")[0]


def express_cookie(sid, secret=SECRET):
    """What express-session would put in the cookie for ``sid`` (the reference signing)."""
    return "sid=" + requests.utils.quote(sign_cookie(sid, secret), safe="!'()*-._~")


@pytest.fixture
def store():
    return CountingStore(MemoryStore())


@pytest.fixture
def url(server, store):
    return server(secret=SECRET, store=store)


# ---------------------------------------------------------------- 03.1 MemoryStore

@pytest.mark.exercise("03.1")
def test_store_keeps_gets_and_destroys_a_record(app_module):
    store = app_module.MemoryStore()
    assert store.get("nobody") is None, "an unknown ID gives None"
    store.set("a", {"visits": 2, "user": "bob"})
    assert store.get("a") == {"visits": 2, "user": "bob"}
    store.set("a", {"visits": 3})
    assert store.get("a") == {"visits": 3}, "set replaces the record"
    store.destroy("a")
    assert store.get("a") is None, "destroy removes the record"
    store.destroy("a")  # destroying twice is no error


@pytest.mark.exercise("03.1")
def test_store_hands_out_copies(app_module):
    store = app_module.MemoryStore()
    data = {"cart": ["apple"]}
    store.set("a", data)
    data["cart"].append("pear")                 # the caller keeps changing its dict...
    got = store.get("a")
    got["cart"].append("plum")                  # ...and the dict it got back
    assert store.get("a") == {"cart": ["apple"]}, ("the store must keep what was set, not the caller's "
                                                  "dict: store JSON text (json.dumps) and hand out json.loads copies")


@pytest.mark.exercise("03.1")
def test_store_sweeps_the_expired_records_nobody_reads_again_every_sweep_every(app_module):
    """3,000 one-visit bots must not fill the memory: set() drops what expired, once per SWEEP_EVERY."""
    clock = Clock()
    store = app_module.MemoryStore(clock=clock)
    every = app_module.SWEEP_EVERY
    for i in range(50):
        store.set(f"bot{i}", {"n": i}, ttl=5)
    store.set("edge", {"n": 0}, ttl=every + 1)           # expires exactly when the sweep below runs
    store.set("forever", {"n": 1})
    store.set("later", {"n": 2}, ttl=10 * every)
    clock.now += every + 1
    store.set("new", {"n": 3}, ttl=60)
    assert sorted(store.records) == ["forever", "later", "new"], (
        f"after SWEEP_EVERY seconds, set() should drop the expired records (expires_at <= now) and keep the "
        f"rest; the store holds {sorted(store.records)[:6]}...")
    store.set("short", {"n": 4}, ttl=1)
    clock.now += 2
    store.set("other", {"n": 5})
    assert "short" in store.records, "the next sweep is SWEEP_EVERY seconds after the last, not at every set()"
    clock.now += every
    store.set("another", {"n": 6})
    assert "short" not in store.records, "SWEEP_EVERY seconds after the last sweep, set() sweeps again"


@pytest.mark.exercise("03.1")
def test_store_records_expire_after_their_ttl(app_module):
    clock = Clock()
    store = app_module.MemoryStore(clock=clock)
    store.set("short", {"n": 1}, ttl=10)
    store.set("forever", {"n": 2})
    clock.now += 9.9
    assert store.get("short") == {"n": 1}, "alive 9.9 s into a 10 s ttl"
    clock.now += 0.1
    assert store.get("short") is None, "gone once ttl seconds have passed"
    clock.now += 10 ** 6
    assert store.get("forever") == {"n": 2}, "ttl=None never expires"


@pytest.mark.exercise("03.1")
def test_store_touch_restarts_the_ttl_and_keeps_the_data(app_module):
    clock = Clock()
    store = app_module.MemoryStore(clock=clock)
    store.set("a", {"n": 1}, ttl=10)
    clock.now += 8
    store.touch("a", ttl=10)
    clock.now += 8
    assert store.get("a") == {"n": 1}, "touch at 8 s should keep it alive until 18 s"
    clock.now += 2.5
    assert store.get("a") is None
    store.touch("ghost", ttl=10)
    assert store.get("ghost") is None, "touching an unknown ID must not create a record"


@pytest.mark.exercise("03.1")
def test_store_all_length_and_clear_count_only_live_records(app_module):
    clock = Clock()
    store = app_module.MemoryStore(clock=clock)
    store.set("a", {"n": 1}, ttl=5)
    store.set("b", {"n": 2}, ttl=50)
    store.set("c", {"n": 3})
    assert store.length() == 3
    clock.now += 6
    assert store.all() == {"b": {"n": 2}, "c": {"n": 3}}, "all() leaves out expired records"
    assert store.length() == 2
    store.clear()
    assert store.length() == 0 and store.all() == {}


@pytest.mark.exercise("03.1")
def test_store_survives_parallel_writers(app_module):
    store = app_module.MemoryStore()

    def write(prefix):
        for i in range(150):
            store.set(f"{prefix}-{i}", {"i": i}, ttl=60)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(6)))          # re-raises what a writer raised
    assert store.length() == 900


# ---------------------------------------------------------------- 03.2 the cookie

EXPRESS_VECTORS = [  # from express-session's test/session.js, secret "keyboard cat"
    ("apple", "s%3Aapple.D8Y%2BpkTAmeR0PobOhY4G97PRW%2Bj7bUnP%2F5m6%2FOn1MCU"),
    ("%", "s%3A%25.kzQ6x52kKVdF35Qh62AWk4ZekS28K5XYCXKa%2FOTZ01g"),
    ("/foo", "s%3A%2Ffoo.paEKBtAHbV5s1IB8B2zPnzAgYmmnRPIqObW4VRYj%2FMQ"),
]


@pytest.mark.exercise("03.2")
@pytest.mark.parametrize("sid, expected", EXPRESS_VECTORS, ids=["apple", "percent", "slash"])
def test_cookie_value_is_what_express_sends(app_module, sid, expected):
    assert app_module.cookie_value(sid, "keyboard cat") == expected


@pytest.mark.exercise("03.2")
def test_session_ids_are_long_random_and_distinct(app_module):
    ids = [app_module.new_session_id() for _ in range(500)]
    assert all(ID.fullmatch(i) for i in ids), f"expected 43 URL-safe characters (token_urlsafe(32)): {ids[0]!r}"
    assert len(set(ids)) == 500, "IDs repeat"
    assert len({i[:4] for i in ids}) > 100 and len({i[-4:] for i in ids}) > 100, "no fixed prefix or suffix"


@pytest.mark.exercise("03.2")
@pytest.mark.parametrize("secret", [SECRET, [SECRET], ["a newer secret", SECRET]],
                         ids=["string", "list", "rotated: signed with the older secret"])
def test_session_id_from_reads_a_cookie_it_signed(app_module, secret):
    sid = "Zm9v" * 10 + "abc"
    header = f"theme=dark; {express_cookie(sid)}; other=1"
    assert app_module.session_id_from(header, secret) == sid


def _signed_cookie_of_length(length):
    """A ``sid=...`` header whose value, signed and percent-encoded, is exactly ``length`` characters."""
    for size in range(length - 120, length):
        for last in "ABCDEFGH":                   # the signature's encoded length varies: try a few IDs
            sid = "A" * size + last
            value = express_cookie(sid).split("=", 1)[1]
            if len(value) == length:
                return sid, "sid=" + value
    raise AssertionError(f"no signed cookie of {length} characters")


@pytest.mark.exercise("03.2")
def test_session_id_from_reads_a_cookie_of_the_largest_size_and_refuses_one_more(app_module):
    limit = app_module.MAX_COOKIE_CHARS
    sid, header = _signed_cookie_of_length(limit)
    assert app_module.session_id_from(header, SECRET) == sid, (
        f"a signed cookie of exactly MAX_COOKIE_CHARS ({limit}) characters is still one a browser keeps: read it")
    _, longer = _signed_cookie_of_length(limit + 1)
    assert app_module.session_id_from(longer, SECRET) is None, "one character more than MAX_COOKIE_CHARS: refuse it"


BAD_COOKIES = {
    "no cookie header": None,
    "empty header": "",
    "no sid cookie": "theme=dark",
    "empty sid": "sid=",
    "unsigned raw id": "sid=" + "A" * 43,
    "s: prefix, no signature": "sid=s%3A" + "A" * 43,
    "tampered signature": express_cookie("A" * 43)[:-3] + "xyz",
    "tampered id": express_cookie("A" * 43).replace("AAAA", "AAAB", 1),
    "truncated": express_cookie("A" * 43)[:30],
    "signed with another secret": express_cookie("A" * 43, "not our secret"),
    "oversized (5000 chars)": "sid=s%3A" + "A" * 5000,
    "signed but oversized": express_cookie("A" * 4100),
    "garbage first, valid second": "sid=garbage; " + express_cookie("A" * 43),
    "bare token": "null",
}


@pytest.mark.exercise("03.2")
@pytest.mark.parametrize("header", list(BAD_COOKIES.values()), ids=list(BAD_COOKIES))
def test_session_id_from_refuses_what_it_did_not_sign(app_module, header):
    assert app_module.session_id_from(header, SECRET) is None


# ---------------------------------------------------------------- 03.3 load and save

@pytest.mark.exercise("03.3")
def test_the_session_is_loaded_from_the_cookie(url, client, store):  # T02
    bodies = [client.get(url + "/visits").text for _ in range(3)]
    assert [f"You have visited {n} times" in b for n, b in zip((1, 2, 3), bodies, strict=True)] == [True] * 3, bodies
    assert store.length() == 1, "three visits of one browser are one session"


@pytest.mark.exercise("03.3")
def test_an_unknown_id_gets_a_new_one(url, client, store):  # T10
    first = client.get(url + "/visits")
    old = issued_id(first)
    client.get(url + "/visits")
    store.clear()                               # the server forgot every session (a restart)
    resp = client.get(url + "/visits")
    assert "You have visited 1 times" in resp.text
    new = issued_id(resp)
    assert new and new != old, "an ID the store does not hold must be replaced by a new one"


@pytest.mark.exercise("03.3")
def test_a_signed_id_the_server_never_issued_is_not_adopted(url, store):  # T11
    resp = requests.get(url + "/visits", headers={"Cookie": express_cookie("attacker-chosen-id")})
    assert resp.status_code == 200 and "You have visited 1 times" in resp.text
    assert store.stats()["gets"] == 1, "a correctly signed ID is looked up once"
    new = issued_id(resp)
    assert new and new != "attacker-chosen-id", "session fixation: the attacker's ID was adopted"
    assert store.get("attacker-chosen-id") is None, "nothing may be stored under an ID the server did not issue"


@pytest.mark.exercise("03.3")
@pytest.mark.parametrize("header", [h for h in BAD_COOKIES.values() if h], ids=[k for k, h in BAD_COOKIES.items() if h])
def test_a_bad_cookie_starts_a_fresh_session_without_asking_the_store(url, store, header):  # T12, T13, T16
    resp = requests.get(url + "/visits", headers={"Cookie": header})
    assert resp.status_code == 200, f"Cookie {header[:60]!r} gave {resp.status_code}: bad input is never an error"
    assert "You have visited 1 times" in resp.text
    assert store.stats()["gets"] == 0, "a cookie we did not sign must not cost a store lookup"
    assert ID.fullmatch(issued_id(resp) or ""), "a fresh session gets a fresh ID"


@pytest.mark.exercise("03.3")
def test_a_loaded_session_the_handler_emptied_is_saved_empty(app_module):
    store = MemoryStore()
    store.set("known-id", {"visits": 3, "cart": ["tea"]})
    session = app_module.Session("known-id", {"visits": 3, "cart": ["tea"]}, is_new=False)
    session.clear()                                        # the handler removed everything it held
    app_module.SessionMiddleware(None, SECRET, store).save(session)
    assert store.get("known-id") == {}, (
        "a session loaded from the store and emptied by the handler must be saved (empty): skipping the save "
        "leaves the old data in the store for the next request")


@pytest.mark.exercise("03.3")
def test_the_first_of_duplicate_sid_cookies_wins(url, client):  # T16
    client.get(url + "/visits")
    mine = express_cookie(unquote(client.cookies["sid"])[2:].rpartition(".")[0])
    later = requests.get(url + "/visits", headers={"Cookie": f"{mine}; sid=garbage"})
    assert "You have visited 2 times" in later.text, "the first sid cookie is the one that counts"
    assert not sid_lines(later), "a loaded session needs no new cookie"


@pytest.mark.exercise("03.3")
def test_an_expired_session_is_replaced(server, client):  # T14
    clock = Clock()
    store = CountingStore(MemoryStore(clock=clock))
    url = server(secret=SECRET, store=store)
    old = issued_id(client.get(url + "/visits"))
    clock.now += 30 * 60 + 1                     # idle for longer than IDLE_TIMEOUT
    assert store.length() == 0
    resp = client.get(url + "/visits")
    assert "You have visited 1 times" in resp.text
    assert issued_id(resp) not in (None, old), "an expired ID is replaced by a new one"


@pytest.mark.exercise("03.3")
def test_a_store_that_fails_on_get_answers_503_and_recovers(url, client, store):
    client.get(url + "/visits")
    store.fail("get")
    down = client.get(url + "/visits")
    assert down.status_code == 503 and "Session store unavailable" in down.text, (down.status_code, down.text)
    assert not sid_lines(down), "no cookie while the store is down"
    store.recover()
    assert "You have visited 2 times" in client.get(url + "/visits").text, "after recovery the session is back"



@pytest.mark.exercise("03.3")
def test_a_new_session_is_stored_and_its_signed_id_sent(url, store):  # T01
    resp = requests.get(url + "/visits")
    assert "You have visited 1 times" in resp.text
    lines = sid_lines(resp)
    assert len(lines) == 1, f"expected one Set-Cookie for sid, got {lines}"
    assert re.match(r"sid=s%3A[A-Za-z0-9_-]{43}\.[A-Za-z0-9%]+;", lines[0]), \
        f"the value is s:<id>.<sig>, percent-encoded as express does: {lines[0]!r}"
    attrs = {a.strip().lower() for a in lines[0].split(";")[1:]}
    assert {"path=/", "httponly", "samesite=lax"} <= attrs, f"Path=/, HttpOnly, SameSite=Lax: {lines[0]!r}"
    sid = issued_id(resp)
    assert store.stats()["sets"] == 1 and store.get(sid) == {"visits": 1}
    assert "visits" not in lines[0].split(";")[0], "the data stays on the server; the cookie holds the ID"


@pytest.mark.exercise("03.3")
def test_the_cookie_is_sent_once_and_the_data_saved_every_time(url, client, store):
    client.get(url + "/visits")
    sid = unquote(client.cookies["sid"])[2:].rpartition(".")[0]
    again = client.get(url + "/visits")
    assert not sid_lines(again), "the browser already holds the cookie: do not send it again"
    assert store.get(sid) == {"visits": 2}


@pytest.mark.exercise("03.3")
def test_a_visitor_who_stores_nothing_gets_no_cookie_and_no_record(url, store):  # T22
    resp = requests.get(url + "/session")
    assert resp.status_code == 200 and resp.json() == {}
    assert not sid_lines(resp), "an empty new session is not worth a cookie"
    assert store.stats()["sets"] == 0 and store.length() == 0


@pytest.mark.exercise("03.3")
def test_parallel_cookieless_requests_get_separate_sessions(url, store):  # T03, T04
    barrier = threading.Barrier(8)
    results = [None] * 8

    def visit(i):
        barrier.wait()
        results[i] = requests.get(url + "/visits", timeout=10)

    threads = [threading.Thread(target=visit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [issued_id(r) for r in results]
    assert all("You have visited 1 times" in r.text for r in results)
    assert all(ID.fullmatch(i or "") for i in ids) and len(set(ids)) == 8, f"eight visitors, eight IDs: {ids}"
    assert store.length() == 8


@pytest.mark.exercise("03.3")
def test_no_data_of_one_session_shows_in_another(url):
    browsers = [requests.Session() for _ in range(5)]
    counts = [3, 1, 4, 2, 5]

    def use(browser, n):
        for _ in range(n):
            browser.get(url + "/visits", timeout=10)

    threads = [threading.Thread(target=use, args=(b, n)) for b, n in zip(browsers, counts, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = [b.get(url + "/session").json() for b in browsers]
    assert seen == [{"visits": n} for n in counts], f"each browser sees only its own visits: {seen}"
    stranger = requests.get(url + "/session")
    assert stranger.json() == {}, "a new visitor sees nobody's data"


@pytest.mark.exercise("03.3")
def test_every_save_restarts_the_idle_timeout(server, client):
    clock = Clock()
    url = server(secret=SECRET, store=MemoryStore(clock=clock))
    client.get(url + "/visits")
    for expected in (2, 3, 4):
        clock.now += 30 * 60 - 10                # nearly idle for IDLE_TIMEOUT, each time
        assert f"You have visited {expected} times" in client.get(url + "/visits").text


@pytest.mark.exercise("03.3")
def test_a_store_that_fails_on_set_answers_503_and_recovers(url, client, store):
    client.get(url + "/visits")
    store.fail("set")
    down = client.get(url + "/visits")
    assert down.status_code == 503 and "Session store unavailable" in down.text, (down.status_code, down.text)
    fresh = requests.get(url + "/visits")
    assert fresh.status_code == 503 and not sid_lines(fresh), "no cookie for a session that was not stored"
    store.recover()
    assert "You have visited 2 times" in client.get(url + "/visits").text, \
        "the failed request changed nothing; the next one works"


@pytest.mark.exercise("03.3")
def test_the_session_page_shows_the_data_and_never_the_secret(url, client):
    client.get(url + "/visits")
    resp = client.get(url + "/session")
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {"visits": 1}
    page = client.get(url + "/")
    assert SECRET not in resp.text and SECRET not in page.text


# ---------------------------------------------------------------- 03.4 destroy

@pytest.mark.exercise("03.4")
def test_reset_destroys_the_record_and_clears_the_cookie(url, client, store):
    client.get(url + "/visits")
    client.get(url + "/visits")
    old = unquote(client.cookies["sid"])[2:].rpartition(".")[0]
    stolen = express_cookie(old)
    resp = client.post(url + "/reset")
    assert resp.status_code == 200
    lines = sid_lines(resp)
    assert lines, "POST /reset must send a Set-Cookie that clears sid"
    line = lines[0].lower()
    assert line.startswith("sid=;") and "path=/" in line and ("max-age=0" in line or "1970" in line), line
    assert "sid" not in client.cookies, "the browser should have dropped the cookie"
    assert store.stats()["destroys"] == 1 and store.length() == 0, "the record must be gone from the store"
    replay = requests.get(url + "/visits", headers={"Cookie": stolen})
    assert "You have visited 1 times" in replay.text, "a copy of the old cookie must not revive the session"
    assert issued_id(replay) not in (None, old), "and it gets a new ID"


@pytest.mark.exercise("03.4")
def test_reset_without_a_session_is_harmless(url, store):
    for headers in ({}, {"Cookie": "sid=garbage"}, {"Cookie": express_cookie("never-issued")}):
        resp = requests.post(url + "/reset", headers=headers)
        assert resp.status_code == 200, f"POST /reset with {headers} gave {resp.status_code}"
        assert sid_lines(resp), "the cookie is cleared anyway"
    assert store.stats()["destroys"] == 0 and store.length() == 0


# ---------------------------------------------------------------- ready-made parts

def test_index_page_lists_the_routes_and_shows_the_store(url, client):
    client.get(url + "/visits")
    resp = client.get(url + "/")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    for path in ('href="/visits"', 'href="/session"', 'action="/reset"'):
        assert path in resp.text
    assert "signature valid" in resp.text and "&quot;visits&quot;: 1" in resp.text
