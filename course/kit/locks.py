"""A lock per session, held from the load of its record to the save: lesson 09's, finished.

Lesson 09 wrote these as exercises (09.1, 09.2) and measured why they are needed: two requests of
one session that overlap both load the same record, and the one that saves last wipes out the
other's change. Lesson 10 imports them:

* :class:`ProcessLocks` - one ``threading.Lock`` per session ID, for the threads of one process;
* :class:`RedisLocks` - ``SET key token NX PX ttl`` in Redis, released only by its holder (a Lua
  script), for every process that shares the Redis;
* ``concurrency.FileLocks`` - one ``flock``-ed file per session, for the processes of one machine;
* :func:`locks_for` - which of the three a store URL needs; :func:`locked` - the WSGI wrapper that
  holds the request's lock around the whole session middleware (the record is written after the
  route returns, so a lock inside the route would be released too early).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time

from course.kit import concurrency, storedown
from course.kit.beakerkit import session_id_from_cookie
from course.kit.cookies import cookie_header

__all__ = ["LockBusy", "ProcessLocks", "RedisLocks", "locks_for", "locked", "BUSY"]

BUSY = "This session is busy with another request: try again"
RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
           "else return 0 end")


class LockBusy(Exception):
    """The session's lock could not be taken in time."""


class ProcessLocks:
    """``with locks.hold(session_id):`` one ``threading.Lock`` per session; unused locks are dropped."""

    def __init__(self):
        self.guard = threading.Lock()
        self.locks: dict[str, list] = {}

    @contextlib.contextmanager
    def hold(self, session_id: str):
        with self.guard:
            entry = self.locks.setdefault(session_id, [threading.Lock(), 0])
            entry[1] += 1
        entry[0].acquire()
        try:
            yield
        finally:
            entry[0].release()
            with self.guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self.locks[session_id]


class RedisLocks:
    """``with locks.hold(session_id):`` a lock in Redis with a token and an expiry (``ttl`` seconds);
    waits up to ``wait`` seconds, then :class:`LockBusy`."""

    def __init__(self, url: str, ttl: float = 10.0, wait: float = 10.0):
        self.redis = concurrency.redis_for_locks(url)
        self.ttl, self.wait = ttl, wait

    @contextlib.contextmanager
    def hold(self, session_id: str):
        key = f"lock:session:{session_id}"
        token = f"{os.getpid()}:{secrets.token_hex(16)}"
        deadline = time.monotonic() + self.wait
        pause = 0.001
        while not self.redis.command("SET", key, token, "NX", "PX", str(int(self.ttl * 1000))):
            if time.monotonic() > deadline:
                raise LockBusy(f"session lock {key} still held after {self.wait:g} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        try:
            yield
        finally:
            self.redis.command("EVAL", RELEASE, "1", key, token)


def locks_for(store_url: str, options: dict):
    """The locks a store needs: memory, one process; SQLite and files, this machine; the rest, Redis
    (the store's own Redis, or ``REDIS_URL``)."""
    if options["type"] == "memory":
        return ProcessLocks()
    if options["type"] in ("file", "dbm") or store_url.startswith("sqlite"):
        folder = options.get("data_dir") or os.path.dirname(store_url.split("?")[0][len("sqlite:///"):])
        return concurrency.FileLocks(os.path.join(folder or ".", "locks"))
    redis_url = store_url if store_url.startswith("redis") else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return RedisLocks(redis_url)


def locked(sessions_app, locks, cookie_name: str, secret: str):
    """WSGI: run ``sessions_app`` (the session middleware) holding the lock of the request's session."""

    def app(environ, start_response):
        session_id = session_id_from_cookie(cookie_header(environ), cookie_name, secret)
        if session_id is None:
            return sessions_app(environ, start_response)
        try:
            with locks.hold(session_id):
                return sessions_app(environ, start_response)
        except LockBusy:
            return storedown.respond(start_response, "503 Service Unavailable", BUSY)

    return app
