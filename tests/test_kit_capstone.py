"""The kit's pieces new in lesson 10, on their own: failure counting, device cookies, the watch on
made-up session IDs, the sessions' registry, the remember-me table, hashed IDs in logs, the locks."""
import hashlib
import hmac
import logging
import threading
import time

import pytest
import requests

from course.kit import locks, ratelimit, remember
from course.kit.idlog import id_hash, loggable
from course.kit.ratelimit import FailureCounter, InvalidIdGuard, address_prefix, client_address
from course.kit.registry import SessionRegistry
from course.kit.remember import RememberStore
from course.kit.security import FakeClock
from course.tools import services


def test_failures_wait_until_the_oldest_leaves_the_window(tmp_path):
    clock = FakeClock(1000.0)
    failures = FailureCounter(tmp_path / "f.db", clock)
    for _ in range(3):
        failures.add("account:alice")
        clock.advance(10)
    assert failures.count("account:alice", 60) == 3
    assert failures.retry_after("account:alice", 4, 60) == 0, "under the limit: no wait"
    assert failures.retry_after("account:alice", 3, 60) == 30, "the oldest (t=1000) leaves at 1060; now 1030"
    assert failures.retry_after("account:bob", 1, 60) == 0, "keys are counted apart"
    clock.advance(31)
    assert failures.retry_after("account:alice", 3, 60) == 0
    failures.clear("account:alice")
    assert failures.count("account:alice", 10**6) == 0


def test_failures_are_shared_by_two_counters_on_one_file(tmp_path):
    one, two = FailureCounter(tmp_path / "f.db"), FailureCounter(tmp_path / "f.db")
    one.add("client:x")
    two.add("client:x")
    assert one.count("client:x", 60) == 2, "two workers (two counters on one file) count together"


def test_a_device_cookie_names_its_user_and_cannot_be_forged():
    token = ratelimit.device_token("secret", "Alice")
    nonce = ratelimit.device_of("secret", "alice", token)
    assert nonce and token.startswith(nonce + "."), "usernames match whatever their case"
    assert ratelimit.device_of("secret", "bob", token) is None, "alice's device cookie is not bob's"
    assert ratelimit.device_of("other secret", "alice", token) is None
    for bad in (None, "", "x", "a.b.c", nonce + ".0" * 16, "é." * 60):
        assert ratelimit.device_of("secret", "alice", bad) is None, bad


def test_the_client_is_the_proxy_s_last_address_only_when_trusted():
    environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.9"}
    assert client_address(environ) == "10.0.0.1"
    assert client_address(environ, trust_proxy=True) == "203.0.113.9", "the address our proxy appended"
    assert client_address({**environ, "HTTP_X_FORWARDED_FOR": "<script>"}, True) == "10.0.0.1"
    assert address_prefix("203.0.113.9") == "203.0.113.x"
    assert address_prefix("2001:db8:1:2::5") == "2001:db8:1::/48"


def test_invalid_session_ids_are_counted_logged_hashed_and_throttled(tmp_path, serve_app, caplog):
    caplog.set_level(logging.WARNING, logger="course.kit.ratelimit")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    failures = FailureCounter(tmp_path / "f.db")
    url = serve_app(InvalidIdGuard(app, failures, "sid", "secret", "salt", limit=2, window=60))
    made_up = "0" * 40 + "f" * 32
    assert requests.get(url, cookies={"sid": made_up}).status_code == 200, "the app decides what a bad ID gets"
    assert requests.get(url, cookies={"sid": made_up}).status_code == 200
    first = requests.get(url, cookies={"sid": made_up})
    assert "sid=; Max-Age=0" in first.headers.get("Set-Cookie", ""), "a refused cookie is expired in the browser"
    third = requests.get(url, cookies={"sid": made_up})
    assert third.status_code == 429 and third.headers["Retry-After"].isdigit()
    assert "Max-Age=0" in third.headers.get("Set-Cookie", "") and "clear" in third.text
    assert requests.get(url).status_code == 200, "no session cookie: not throttled"
    real = hmac.new(b"secret", b"a" * 32, hashlib.sha1).hexdigest() + "a" * 32     # signed as Beaker signs
    served = requests.get(url, cookies={"sid": real})
    assert served.status_code == 200 and "Set-Cookie" not in served.headers, "a signed cookie is never throttled"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert id_hash(made_up, "salt") in logged and made_up not in logged and "f" * 32 not in logged


def test_the_registry_lists_ends_and_keeps(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    a = registry.add(1, "h:a", "laptop", 100.0)
    b = registry.add(1, "h:b", "phone", 200.0)
    c = registry.add(2, "h:c", "bob's", 300.0)
    assert [s["handle"] for s in registry.of_user(1)] == [b, a], "the most recently used first"
    assert registry.is_live(a, 1) and not registry.is_live(a, 2) and not registry.is_live(None, 1)
    registry.seen(a, 400.0, "h:a2")
    assert registry.of_user(1)[0] == {"handle": a, "id_hash": "h:a2", "client": "laptop", "created": 100.0,
                                      "last_seen": 400.0}
    assert not registry.end(c, 1), "a user cannot end another user's session"
    assert registry.end_all(1, keep=a) == 1 and registry.is_live(a, 1) and not registry.is_live(b, 1)
    assert registry.end_all(1) == 1 and registry.of_user(1) == [] and registry.is_live(c, 2)


def test_the_remember_table_keeps_hashes_and_expires(tmp_path):
    clock = FakeClock(1000.0)
    tokens = RememberStore(tmp_path / "t.db", clock, lifetime=60)
    tokens.add("selector-1", remember.digest("validator"), 1, "series-1")
    row = tokens.find("selector-1")
    assert row["validator_hash"] == remember.digest("validator") and row["used_at"] is None
    assert tokens.mark_used("selector-1") and not tokens.mark_used("selector-1"), "used once only"
    assert tokens.find("selector-1")["used_at"] == 1000.0
    clock.advance(61)
    assert tokens.find("selector-1") is None, "an expired token is not found"
    tokens.add("selector-2", remember.digest("v"), 1, "s")
    assert tokens.revoke_user(1) == 2 and tokens.all_rows() == []


def test_a_remember_token_is_split_only_when_well_formed():
    assert remember.split("abcdefgh.0123456789abcdef") == ("abcdefgh", "0123456789abcdef")
    for bad in (None, "", "nodot", "a.b", "abcdefgh.0123456789abcdef.x", "abcdefg!.0123456789abcdef",
                "abcdefgh." + "v" * 200):
        assert remember.split(bad) is None, bad


def test_id_hash_is_salted_stable_and_short():
    assert id_hash("abc", "salt") == id_hash("abc", "salt") != id_hash("abc", "pepper")
    assert id_hash("abc", "salt").startswith("h:") and len(id_hash("abc", "salt")) == 18
    assert id_hash(None, "salt") == "h:-"


def test_process_locks_are_per_session_and_dropped():
    held = locks.ProcessLocks()
    order = []

    def second():
        with held.hold("a"):
            order.append("second")

    with held.hold("a"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.05)
        with held.hold("b"):
            order.append("b does not wait")
        order.append("first")
    thread.join()
    assert order == ["b does not wait", "first", "second"] and held.locks == {}


def test_a_redis_lock_makes_others_wait_and_is_released():
    held = locks.RedisLocks(services.require("redis"), ttl=0.2, wait=0.1)
    session_id = f"kit-test-{time.time_ns()}"
    with held.hold(session_id):
        with pytest.raises(locks.LockBusy):
            with held.hold(session_id):
                pass
    with held.hold(session_id):
        pass


def test_locks_for_picks_the_lock_of_the_store(tmp_path):
    assert isinstance(locks.locks_for("memory:", {"type": "memory"}), locks.ProcessLocks)
    assert type(locks.locks_for(f"sqlite:///{tmp_path}/s.db", {"type": "ext:database"})).__name__ == "FileLocks"
    assert isinstance(locks.locks_for("redis://127.0.0.1:6379/0", {"type": "ext:redis"}), locks.RedisLocks)


def test_loggable_keeps_a_value_on_its_line():
    assert loggable("abc") == "abc" and loggable(42) == "42"
    assert loggable("/x\nINFO: forged") == '"/x\\nINFO: forged"', "a newline is escaped, the value quoted"
    assert loggable("a b") == '"a b"' and loggable("") == '""' and loggable("k=v") == '"k=v"'
    assert "\u2028" not in loggable("\u2028") and len(loggable("x" * 1000)) == 200


def test_the_registry_remembers_each_session_s_series(tmp_path):
    registry = SessionRegistry(tmp_path / "r.db")
    a, b = registry.add(1, "h:a", "laptop", 1.0), registry.add(2, "h:b", "bob's", 1.0)
    registry.set_series(a, "series-a")
    assert registry.series_of(a, 1) == "series-a" and registry.series_of(a, 2) is None, "only its owner's"
    assert registry.series_of(b, 2) is None
    registry.end(a, 1)
    assert registry.series_of(a, 1) is None


def test_a_remember_series_never_outlives_its_cap(tmp_path):
    clock = FakeClock(0.0)
    tokens = RememberStore(tmp_path / "t.db", clock, lifetime=100, series_lifetime=150)
    tokens.add("selector-1", remember.digest("v1"), 1, "series")
    clock.advance(90)
    tokens.add("selector-2", remember.digest("v2"), 1, "series")       # a rotation: 100 s more, but capped
    clock.advance(61)
    assert tokens.find("selector-2") is None, "150 s after the series began, its newest token is over too"
    tokens.add("selector-3", remember.digest("v3"), 1, "another")
    assert tokens.find("selector-3") is not None, "a new series starts its own clock"


def test_a_password_change_is_compare_and_set(tmp_path):
    from course.kit import auth
    users = auth.UserDB(tmp_path / "u.db")
    user_id, old = users.find("alice")
    assert users.change_password(user_id, old, "first-new-password")
    assert not users.change_password(user_id, old, "second-new-password"), "the hash it checked is gone"
    assert auth.verify(users, "alice", "first-new-password") == user_id
