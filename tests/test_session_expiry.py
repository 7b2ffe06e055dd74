"""Session records expire in every lesson: a bot's 500 cookieless visits leave nothing behind.

Each visit without a cookie makes a new session (a record in the store). Nobody ever sends those
cookies back, so nobody reads those records again: a store that drops expired records only when
they are read would keep all 500 for ever (or 3,000, or a million: a sweep runs on time, not on a
count of records). The clock is a fake one, moved past the sessions' lifetime; one more visit then
finds a store that has swept them.
"""
import pytest
import requests

from course.kit.stores import CountingStore, MemoryStore
from course.tools.loader import load_app_module

VISITS = 500


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def lesson_store(course_target, slug, clock):
    """(the store to pass to the lesson's create_app, a function counting the records it holds)."""
    if slug == "03_session_ids":
        store = load_app_module(course_target, slug).MemoryStore(clock=clock)   # the lesson's own store
        return store, lambda: len(store.records)
    memory = MemoryStore(clock=clock)
    if slug == "04_session_options":
        return memory, lambda: len(memory._records)       # the lesson wraps it in a CountingStore
    return CountingStore(memory, ttl=60), lambda: len(memory._records)


@pytest.mark.parametrize("slug", [
    pytest.param("03_session_ids", marks=pytest.mark.exercise("03.1")),
    "04_session_options", "05_beaker", "06_login_logout"])
def test_five_hundred_cookieless_visits_leave_no_record_once_expired(course_target, serve_app, slug, tmp_path):
    clock = Clock()
    store, held = lesson_store(course_target, slug, clock)
    options = {"store": store}
    if slug == "06_login_logout":
        options["db_path"] = str(tmp_path / "users.sqlite3")
    base = serve_app(load_app_module(course_target, slug).create_app(**options))
    for _ in range(VISITS):
        assert requests.get(base + "/visits", timeout=10).status_code == 200
    assert held() == VISITS, "each cookieless visit makes one session"
    clock.now += 2 * 24 * 60 * 60          # two days: past every lifetime and every sweep interval
    requests.get(base + "/visits", timeout=10)
    assert held() <= 1, f"{held()} expired records are still in the store: nothing ever sweeps them"
