"""course.kit.locks: the lock of each session (threads, Redis, files), which one a store needs, and
the WSGI wrapper that holds it around the session middleware. Redis is the real one on 6379."""
import hashlib
import hmac
import os
import re
import threading
import time

import pytest

from course.kit import beaker_backends, concurrency, locks
from course.tools import services

SECRET = "locks test secret"
NAME = "app_sid"


def signed(session_id):
    return hmac.new(SECRET.encode(), session_id.encode(), hashlib.sha1).hexdigest() + session_id


# ---------------------------------------------------------------- ProcessLocks

def test_a_process_lock_is_shared_by_its_waiters_and_dropped_by_the_last():
    held = locks.ProcessLocks()
    inside, second_inside, release, release_second = (threading.Event() for _ in range(4))

    def holder(entered, leave):
        with held.hold("a"):
            entered.set()
            leave.wait(10)

    first = threading.Thread(target=holder, args=(inside, release))
    first.start()
    assert inside.wait(10)
    lock, count = held.locks["a"]
    assert count == 1 and lock.locked(), "one holder: the lock is taken, counted once"
    second = threading.Thread(target=holder, args=(second_inside, release_second))
    second.start()
    while held.locks["a"][1] != 2:                  # the second request is counted before it waits
        time.sleep(0.001)
    assert held.locks["a"][0] is lock and not second_inside.is_set(), "both wait on one lock"
    release.set()
    first.join(10)
    assert second_inside.wait(10)
    assert held.locks["a"] == [lock, 1] and lock.locked(), "the second holds it now, and it is still listed"
    release_second.set()
    second.join(10)
    assert held.locks == {} and not lock.locked(), "the last one out drops it"


# ---------------------------------------------------------------- RedisLocks

class FakeTime:
    """time for locks.RedisLocks: monotonic() moves only when sleep() is called; the pauses are kept."""

    def __init__(self):
        self.now, self.pauses = 100.0, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def redis_locks():
    """``redis_locks(**options)``: a RedisLocks on the real Redis."""
    url = services.require("redis")
    return lambda **options: locks.RedisLocks(url, **options)


def session_id():
    return f"kit-locks-test-{os.getpid()}-{time.time_ns()}"


def test_a_redis_lock_is_a_key_with_its_holder_s_token_and_ttl(redis_locks):
    held, sid = redis_locks(ttl=10_000), session_id()
    with held.hold(sid):
        token = held.redis.command("GET", f"lock:session:{sid}")
        token = token.decode() if isinstance(token, bytes) else token
        assert re.fullmatch(rf"{os.getpid()}:[0-9a-f]{{32}}", token), token
        ttl = int(held.redis.command("PTTL", f"lock:session:{sid}"))
        assert 9_990_000 < ttl <= 10_000_000, f"PX is ttl in milliseconds: {ttl}"
    assert not held.redis.command("EXISTS", f"lock:session:{sid}"), "released on the way out"


def test_a_waiter_backs_off_from_1_ms_to_20_ms_until_its_deadline(redis_locks, monkeypatch):
    holder, waiter, sid = redis_locks(), redis_locks(wait=0.1), session_id()
    fake = FakeTime()
    with holder.hold(sid):
        monkeypatch.setattr(locks, "time", fake)
        with pytest.raises(locks.LockBusy, match=r"still held after 0.1 s"):
            with waiter.hold(sid):
                pass
        monkeypatch.undo()
    assert fake.pauses == pytest.approx([0.001, 0.002, 0.004, 0.008, 0.016, 0.02, 0.02, 0.02, 0.02])


def test_a_waiter_with_no_time_tries_once_more_at_its_deadline(redis_locks, monkeypatch):
    holder, waiter, sid = redis_locks(), redis_locks(wait=0), session_id()
    fake = FakeTime()
    with holder.hold(sid):
        monkeypatch.setattr(locks, "time", fake)
        with pytest.raises(locks.LockBusy):
            with waiter.hold(sid):
                pass
        monkeypatch.undo()
    assert fake.pauses == [0.001], "the deadline is passed only after it"


def test_a_lock_taken_over_after_its_ttl_is_not_released_by_the_old_holder(redis_locks):
    old, new, sid = redis_locks(ttl=10), redis_locks(), session_id()
    key = f"lock:session:{sid}"
    with old.hold(sid):
        old.redis.command("DEL", key)              # its ttl ran out...
        with new.hold(sid):                        # ...and another request took the lock
            pass
        assert not new.redis.command("EXISTS", key)
        new.redis.command("SET", key, "someone-else", "PX", "10000")
    assert new.redis.command("EXISTS", key), "the old holder's release left the new holder's lock alone"
    new.redis.command("DEL", key)


# ---------------------------------------------------------------- locks_for

def test_file_and_dbm_stores_lock_files_in_their_data_folder(tmp_path):
    for kind in ("file", "dbm"):
        chosen = locks.locks_for(f"{kind}://{tmp_path}", {"type": kind, "data_dir": str(tmp_path / kind)})
        assert isinstance(chosen, concurrency.FileLocks) and chosen.folder == tmp_path / kind / "locks", kind


def test_sqlite_locks_live_next_to_the_database(tmp_path):
    for query in ("", "?timeout=5", "?journal=a/b"):
        chosen = locks.locks_for(f"sqlite:///{tmp_path}/s.db{query}", {"type": "ext:database"})
        assert chosen.folder == tmp_path / "locks", f"the query is not part of the path: {query}"
    assert str(locks.locks_for("sqlite:///s.db", {"type": "ext:database"}).folder) == "locks", \
        "a database in the current folder: ./locks"


def test_other_stores_lock_in_redis_url_or_the_local_redis(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/5")
    chosen = locks.locks_for("postgresql://u@127.0.0.1/db", {"type": "ext:database"})
    assert isinstance(chosen, locks.RedisLocks) and chosen.redis is beaker_backends.redis_store("redis://127.0.0.1:6379/5")
    monkeypatch.delenv("REDIS_URL")
    chosen = locks.locks_for("memcached://127.0.0.1:11211", {"type": "ext:memcached"})
    assert chosen.redis is beaker_backends.redis_store("redis://127.0.0.1:6379/0")
    own = locks.locks_for("redis://127.0.0.1:6379/3", {"type": "ext:redis"})
    assert own.redis is beaker_backends.redis_store("redis://127.0.0.1:6379/3"), "a Redis store locks in itself"


# ---------------------------------------------------------------- locked, as WSGI

class Recorder:
    """A session middleware stand-in: what the lock table held while it ran."""

    def __init__(self, held):
        self.held, self.seen = held, []

    def __call__(self, environ, start_response):
        self.seen.append({k: v[1] for k, v in self.held.locks.items()})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def call(app, cookie=None):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    got = {}
    body = app(environ, lambda status, headers, exc_info=None: got.update(status=status, headers=headers))
    return got.get("status"), b"".join(body or [])


def test_the_request_s_session_lock_is_held_while_the_middleware_runs():
    held = locks.ProcessLocks()
    inner = Recorder(held)
    app = locks.locked(inner, held, NAME, SECRET)
    assert call(app, f"{NAME}={signed('c' * 32)}") == ("200 OK", b"ok")
    assert call(app) == ("200 OK", b"ok"), "no session cookie: no lock"
    assert call(app, f"{NAME}=made-up") == ("200 OK", b"ok")
    assert call(app, f"sid={signed('d' * 32)}") == ("200 OK", b"ok"), "another cookie's name"
    assert inner.seen == [{"c" * 32: 1}, {}, {}, {}] and held.locks == {}


def test_a_session_whose_lock_stays_busy_gets_503(redis_locks):
    holder, sid = redis_locks(), session_id()
    app = locks.locked(Recorder(locks.ProcessLocks()), redis_locks(wait=0), NAME, SECRET)
    with holder.hold(sid):
        status, body = call(app, f"{NAME}={signed(sid)}")
    assert (status, body) == ("503 Service Unavailable", (locks.BUSY + "\n").encode())
