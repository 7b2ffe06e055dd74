"""Lesson 04: express-session's options, checked by counting store calls and Set-Cookie headers.

``GET /store/stats`` (served beside the session middleware, so reading it changes nothing) gives
the store's call counts; a test takes them before and after one request. The oracle below is
express-session 1.19's rules, as its index.js decides when to save, touch and send the cookie
(https://github.com/expressjs/session/blob/master/index.js; the case numbers T21-T35 are the
course's own names for them); the lesson README's table must say the same (the notebook checks that).
"""
import itertools
import re
import threading
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

import pytest
import requests

from course.kit.stores import MemoryStore
from course.tools.testing import set_cookie_lines

SECRET = "lesson 04 test secret"
COUNTS = ("gets", "sets", "touches", "destroys")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class StoreWithoutTouch(MemoryStore):
    """A store that cannot touch (express: a store without the optional touch method)."""
    touch = None


def sid_lines(resp):
    return set_cookie_lines(resp, "sid")


def cookie_id(line):
    value = unquote(line.split(";", 1)[0].split("=", 1)[1])
    return value[2:].rpartition(".")[0]


def stats(url):
    return requests.get(url + "/store/stats").json()


def step(browser, url, path):
    """One request and what it cost: (response, {gets, sets, touches, destroys} during it)."""
    before = stats(url)
    resp = browser.get(url + path)
    after = stats(url)
    # Every step must answer: "nothing written" from a save() that raised proves nothing.
    assert resp.status_code == 200, f"{path} gave {resp.status_code}: {resp.text[:200]}"
    return resp, {k: after[k] - before[k] for k in COUNTS}


# ---------------------------------------------------------------- the combination table

def expected(scenario, save_uninitialized, resave, rolling, max_age):
    """(store write, Set-Cookie sent) by express-session's rules."""
    if scenario == "new visitor, reads":
        return ("set", True) if save_uninitialized else (None, False)
    if scenario == "new visitor, writes":
        return "set", True
    if scenario == "returning, reads":
        return ("set" if resave else "touch"), rolling
    return "set", rolling or max_age is not None            # returning, writes


SCENARIOS = ["new visitor, reads", "new visitor, writes", "returning, reads", "returning, writes"]
COMBINATIONS = list(itertools.product([False, True], [False, True], [False, True], [None, 60]))


def exercise_for(scenario, save_uninitialized, resave, rolling, max_age):
    """The last exercise a case needs (exercises build on each other: 04.4 needs 04.3 ...)."""
    if scenario == "returning, reads":
        return "04.4"
    if scenario == "returning, writes":
        return "04.3"
    write, cookie = expected(scenario, save_uninitialized, resave, rolling, max_age)
    return "04.2" if cookie and max_age is not None else "04.1"


CASES = [
    pytest.param(scenario, *combo, marks=pytest.mark.exercise(exercise_for(scenario, *combo)),
                 id=f"{scenario}-saveUninit={combo[0]}-resave={combo[1]}-rolling={combo[2]}-maxAge={combo[3]}")
    for combo in COMBINATIONS for scenario in SCENARIOS
]


@pytest.mark.parametrize("scenario, save_uninitialized, resave, rolling, max_age", CASES)
def test_every_combination_writes_and_sends_what_express_would(server, scenario, save_uninitialized,
                                                              resave, rolling, max_age):
    url = server(secret=SECRET, save_uninitialized=save_uninitialized, resave=resave,
                 rolling=rolling, max_age=max_age)
    browser = requests.Session()
    returning = scenario.startswith("returning")
    if returning:
        browser.get(url + "/visits")
        old = browser.cookies.get("sid")
    path = "/peek" if scenario.endswith("reads") else "/visits"
    resp, delta = step(browser, url, path)
    assert resp.status_code == 200, f"{path} gave {resp.status_code}: {resp.text[:200]}"
    visits = (2 if returning else 1) if path == "/visits" else None
    if visits:
        assert f"You have visited {visits} times" in resp.text
    else:
        assert resp.json() == ({"visits": 1} if returning else {})
    write, cookie = expected(scenario, save_uninitialized, resave, rolling, max_age)
    measured = ("set" if delta["sets"] else "touch" if delta["touches"] else None,
                bool(sid_lines(resp)))
    assert delta["sets"] + delta["touches"] <= 1 and delta["destroys"] == 0, f"one write at most: {delta}"
    assert measured == (write, cookie), (
        f"{scenario} with save_uninitialized={save_uninitialized}, resave={resave}, rolling={rolling}, "
        f"max_age={max_age}: expected store write {write} and Set-Cookie {cookie}; measured {measured}")
    assert delta["gets"] == (1 if returning else 0), f"a returning visitor costs one get, a new one none: {delta}"
    if returning and cookie:
        assert cookie_id(sid_lines(resp)[0]) == unquote(old)[2:].rpartition(".")[0], "the same ID is re-sent"


# ---------------------------------------------------------------- 04.1 save_uninitialized

@pytest.mark.exercise("04.1")
@pytest.mark.parametrize("save_uninitialized, stored", [(False, 2), (True, 6)])
def test_parallel_first_visits_store_only_what_is_worth_storing(server, save_uninitialized, stored):  # T58
    url = server(secret=SECRET, save_uninitialized=save_uninitialized)
    paths = ["/peek", "/visits"] * 2 + ["/peek"] * 2
    barrier = threading.Barrier(len(paths))
    results = [None] * len(paths)

    def go(i):
        barrier.wait()
        results[i] = requests.get(url + paths[i], timeout=10)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [cookie_id(sid_lines(r)[0]) for r in results if sid_lines(r)]
    assert stats(url)["sessions"] == stored and len(set(ids)) == stored, \
        f"save_uninitialized={save_uninitialized}: expected {stored} sessions, got {stats(url)}"


@pytest.mark.exercise("04.1")
def test_an_untouched_new_session_is_not_even_touched(server):  # T22
    url = server(secret=SECRET)
    resp, delta = step(requests.Session(), url, "/")
    assert delta == {"gets": 0, "sets": 0, "touches": 0, "destroys": 0} and not sid_lines(resp)
    assert "Lesson 04" in resp.text


# ---------------------------------------------------------------- 04.2 max_age

@pytest.mark.exercise("04.2")
def test_max_age_gives_the_cookie_max_age_and_expires(server):
    url = server(secret=SECRET, max_age=120)
    resp = requests.get(url + "/visits")
    line = sid_lines(resp)[0]
    attrs = dict((a.strip().split("=", 1) + [""])[:2] for a in line.split(";")[1:])
    attrs = {k.lower(): v for k, v in attrs.items()}
    assert attrs.get("max-age") == "120", f"Max-Age is in seconds (express's maxAge is ms): {line!r}"
    assert "expires" in attrs, f"Expires, for browsers that ignore Max-Age: {line!r}"
    gap = (parsedate_to_datetime(attrs["expires"]) - parsedate_to_datetime(resp.headers["Date"])).total_seconds()
    assert 118 <= gap <= 122, f"Expires should be Date + 120 s, is Date + {gap} s ({line!r})"
    assert attrs["expires"].endswith("GMT"), "an HTTP date is in GMT"
    assert {"path", "httponly", "samesite"} <= set(attrs), f"lesson 03's attributes stay: {line!r}"


@pytest.mark.exercise("04.2")
def test_without_max_age_the_cookie_is_a_browser_session_cookie(server):
    # The same app, asked for a lifetime and not: only the first cookie carries one.
    kept = sid_lines(requests.get(server(secret=SECRET, save_uninitialized=True, max_age=120) + "/peek"))[0].lower()
    assert "max-age=120" in kept and "expires=" in kept, kept
    line = sid_lines(requests.get(server(secret=SECRET, save_uninitialized=True) + "/peek"))[0].lower()
    assert "max-age" not in line and "expires" not in line, line


@pytest.mark.exercise("04.2")
def test_max_age_is_also_the_stores_idle_timeout(server, client):  # T14
    clock = Clock()
    url = server(secret=SECRET, max_age=60, store=MemoryStore(clock=clock))
    first = client.get(url + "/visits")
    old = cookie_id(sid_lines(first)[0])
    clock.now += 59
    assert stats(url)["sessions"] == 1, "alive 59 s into a 60 s max_age"
    clock.now += 2
    assert stats(url)["sessions"] == 0, "gone after max_age seconds in the store too"
    resp = client.get(url + "/visits")
    assert "You have visited 1 times" in resp.text and cookie_id(sid_lines(resp)[0]) != old


# ---------------------------------------------------------------- 04.3 rolling

@pytest.mark.exercise("04.3")
def test_a_browser_session_cookie_is_sent_once(server, client):  # T35
    url = server(secret=SECRET)
    assert sid_lines(client.get(url + "/visits"))
    resp, delta = step(client, url, "/visits")
    assert "You have visited 2 times" in resp.text and delta["sets"] == 1
    assert not sid_lines(resp), "no max_age, no rolling: the browser keeps the cookie it has"


@pytest.mark.exercise("04.3")
def test_rolling_sends_the_same_id_on_every_response(server, client):  # T32
    url = server(secret=SECRET, rolling=True, max_age=300)
    first = cookie_id(sid_lines(client.get(url + "/visits"))[0])
    for n in (2, 3):
        resp = client.get(url + "/visits")
        lines = sid_lines(resp)
        assert lines and cookie_id(lines[0]) == first, f"rolling: Set-Cookie with the same ID on response {n}"
        assert "max-age=300" in lines[0].lower(), "with a fresh Max-Age"


@pytest.mark.exercise("04.3")
def test_a_persistent_cookie_is_resent_when_the_session_changes(server, client):  # T34 (changes)
    url = server(secret=SECRET, max_age=300)
    client.get(url + "/visits")
    resp = client.get(url + "/visits")
    assert sid_lines(resp) and "max-age=300" in sid_lines(resp)[0].lower(), \
        "with max_age, a changed session's cookie goes out again with a fresh expiry"


# ---------------------------------------------------------------- 04.4 resave

@pytest.mark.exercise("04.4")
@pytest.mark.parametrize("resave, sets, touches", [(True, 1, 0), (False, 0, 1)])
def test_resave_writes_an_unchanged_session_or_only_touches_it(server, client, resave, sets, touches):  # T25, T26
    url = server(secret=SECRET, resave=resave)
    client.get(url + "/visits")
    resp, delta = step(client, url, "/peek")
    assert resp.json() == {"visits": 1}
    assert (delta["sets"], delta["touches"]) == (sets, touches), f"resave={resave}: {delta}"
    assert not sid_lines(resp), "resave never sends the cookie (rolling does)"


@pytest.mark.exercise("04.4")
def test_without_resave_only_changing_requests_write(server, client):  # T27
    url = server(secret=SECRET)
    writes = [step(client, url, path)[1]["sets"] for path in ("/visits", "/peek", "/peek", "/visits", "/peek")]
    assert writes == [1, 0, 0, 1, 0], f"sets per request: {writes}"


@pytest.mark.exercise("04.4")
def test_a_store_without_touch_gets_no_write_at_all(server, client):  # T29
    url = server(secret=SECRET, store=StoreWithoutTouch())
    client.get(url + "/visits")
    resp, delta = step(client, url, "/peek")
    assert resp.json() == {"visits": 1}
    assert delta == {"gets": 1, "sets": 0, "touches": 0, "destroys": 0}, delta


@pytest.mark.exercise("04.4")
def test_touch_keeps_a_session_in_use_alive(server, client):  # T56
    clock = Clock()
    url = server(secret=SECRET, max_age=60, store=MemoryStore(clock=clock))
    client.get(url + "/visits")
    for _ in range(3):
        clock.now += 50                          # each read comes 50 s after the last
        assert client.get(url + "/peek").json() == {"visits": 1}, "a touched session must stay alive"
    assert stats(url)["touches"] == 3


@pytest.mark.exercise("04.4")
def test_a_persistent_cookie_is_sent_only_when_the_session_changes(server, client):  # T34
    url = server(secret=SECRET, max_age=300)
    answers = [client.get(url + path) for path in ("/visits", "/visits", "/peek", "/visits")]
    assert [resp.status_code for resp in answers] == [200] * 4, [resp.text[:200] for resp in answers]
    sent = [bool(sid_lines(resp)) for resp in answers]
    assert sent == [True, True, False, True], f"Set-Cookie per request: {sent}"


@pytest.mark.exercise("04.4")
def test_rolling_resends_an_unchanged_sessions_cookie(server, client):  # T31, T32
    for rolling in (False, True):
        url = server(secret=SECRET, rolling=rolling)
        client.cookies.clear()
        client.get(url + "/visits")
        resp = client.get(url + "/peek")
        assert bool(sid_lines(resp)) is rolling, f"rolling={rolling}: Set-Cookie on an unchanged session?"


# ---------------------------------------------------------------- ready-made parts

def test_store_stats_counts_and_is_not_counted(server):
    url = server(secret=SECRET, save_uninitialized=True)
    for _ in range(3):
        resp = requests.get(url + "/store/stats")
        assert not sid_lines(resp)
    assert resp.json() == {"gets": 0, "sets": 0, "touches": 0, "destroys": 0, "sessions": 0}


def test_bad_cookies_and_a_failing_store_are_never_a_500(server):
    url = server(secret=SECRET, resave=True, rolling=True, max_age=60)
    for cookie in ("sid=garbage", "sid=s%3A" + "A" * 5000, "null; sid=", "sid=s%3Aabc.def; sid=x"):
        resp = requests.get(url + "/visits", headers={"Cookie": cookie})
        assert resp.status_code == 200 and "You have visited 1 times" in resp.text, (cookie, resp.status_code)

    class Broken(MemoryStore):
        def set(self, sid, data, ttl=None):
            raise ConnectionError("store is down")

    down = requests.get(server(secret=SECRET, store=Broken()) + "/visits")
    assert down.status_code == 503 and "Session store unavailable" in down.text and not sid_lines(down)


def test_index_page_lists_the_routes(server):
    resp = requests.get(server(secret=SECRET) + "/")
    assert resp.status_code == 200
    for path in ("/peek", "/visits", "/store/stats"):
        assert f'href="{path}"' in resp.text
    assert re.search(r"resave=False", resp.text)


def test_the_bench_measures_this_app_without_losing_a_session(server):
    # course/tools/bench.py is what the README's figures come from; keep it honest and cheap here.
    from course.tools.bench import make_sessions, run
    url = server(secret=SECRET) + "/visits"
    cookies = make_sessions(url, 5)
    result = run(url, requests=60, concurrency=3, cookies=cookies, warmup=5)
    assert result.requests == 60 and result.errors == 0 and result.statuses == {"200": 60}
    assert result.set_cookies == 0, "every request carried an existing session: none should get a new cookie"
    assert result.rps > 0 and 0 < result.p50_ms <= result.p99_ms
    assert stats(url.rsplit("/", 1)[0])["sessions"] == 5
