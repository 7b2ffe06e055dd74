"""Lesson 08: where the sessions live.

Every store test runs against the real server (Redis, PostgreSQL, MariaDB, memcached) through
``course.tools.services.require``: skipped with how-to-start when it is not there, a failure in CI
(COURSE_REQUIRE_SERVICES=1). Each test has its own SQL table, folder or session IDs, so tests can
run in parallel with anybody else's; nothing flushes a shared store. "The store is down" is a
real outage: a TCP relay (course.tools.faults.Relay) in front of the real server, cut and restored.
"A restart" is a real process, killed with SIGKILL, and the app started again in another process.
"""
import argparse
import os
import secrets
import subprocess
import sys
import time
import uuid

import pytest
import requests

from course.kit import stores_beaker
from course.tools import services
from course.tools.faults import AppProcess, Relay
from course.tools.grading.sandbox import wrap
from course.tools.testing import set_cookie_lines

SECRET = "lesson-08-test-secret-0123456789abcdef"
KINDS = ["memory", "file", "dbm", "sqlite", "redis", "postgres", "mysql", "memcached"]
SERVERS = {"redis": 6379, "postgres": 5432, "mysql": 3306, "memcached": 11211}


def unique(prefix="s08"):
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(tmp_path, request):
    """``store(kind)``: a store URL of that kind, unique to this test; SQL tables are dropped after."""
    tables = []

    def make(kind):
        if kind == "memory":
            return "memory:"
        if kind in ("file", "dbm"):
            return f"{kind}:{tmp_path / unique(kind)}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / unique('sqlite')}/sessions.db"
        if kind in ("postgres", "mysql"):
            table = unique()
            base = services.require(kind)
            tables.append((kind, base, table))
            return f"{base}?table={table}"
        return services.require(kind)

    yield make
    for _kind, base, table in tables:
        options = stores_beaker.beaker_options(base)
        try:
            import sqlalchemy as sa
            with stores_beaker.sql_engine(options).begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        except Exception:  # cleanup only: never hide the test's own result
            pass


def visit(client, base_url, path="/visits"):
    resp = client.get(base_url + path, timeout=30)
    return resp


def count_of(resp):
    assert resp.status_code == 200, f"{resp.request.url} gave {resp.status_code}: {resp.text[:300]}"
    return int(resp.text.split("visited ")[1].split(" times")[0])


def session_id(client):
    value = client.cookies.get("sid")
    assert value and len(value) == 72, f"expected a signed Beaker session cookie sid=<40 hex><32 hex>, got {value!r}"
    return value[40:]


def holds(url, sid):
    """Whether the store at ``url`` holds a record for ``sid``, looked up directly (not via the app)."""
    options = stores_beaker.beaker_options(url)
    if options["type"] == "memory":
        return None
    return stores_beaker.peek(options, sid) is not None


# ---------------------------------------------------------------- 08.1 store URLs

EXPECTED = [
    ("memory:", {"type": "memory"}),
    ("file:.sessions/files", {"type": "file", "data_dir": ".sessions/files"}),
    ("dbm:/var/lib/app/sessions", {"type": "dbm", "data_dir": "/var/lib/app/sessions"}),
    ("sqlite:///.sessions/sessions.db", {"type": "ext:database", "url": "sqlite:///.sessions/sessions.db"}),
    ("sqlite:///s", {"type": "ext:database", "url": "sqlite:///s"}),     # the shortest file name there is
    ("redis://127.0.0.1:6379/0", {"type": "ext:redis", "url": "redis://127.0.0.1:6379/0"}),
    ("postgresql://postgres@127.0.0.1:5432/test",
     {"type": "ext:database", "url": "postgresql+psycopg://postgres@127.0.0.1:5432/test"}),
    ("mysql://root@127.0.0.1:3306/test", {"type": "ext:database", "url": "mysql+pymysql://root@127.0.0.1:3306/test"}),
    ("memcached://127.0.0.1:11211", {"type": "ext:memcached", "url": "127.0.0.1:11211"}),
    ("memcached://10.0.0.1:11211,10.0.0.2:11211", {"type": "ext:memcached", "url": "10.0.0.1:11211;10.0.0.2:11211"}),
    ("mongodb://127.0.0.1:27017/sessions", {"type": "ext:mongodb", "url": "mongodb://127.0.0.1:27017/sessions"}),
]
BAD_URLS = ["bogus://somewhere", "redis:", "postgresql://", "mysql://root@127.0.0.1", "sqlite://", "file:",
            "memcached://", "mongodb://127.0.0.1:27017", "", "127.0.0.1:6379",
            # an in-memory SQLite database (lost at restart, one per connection), a scheme nobody knows that
            # looks like a URL, a database without a host (a Unix socket this course does not use)
            "sqlite:///", "bogus://host/db", "postgresql:///test", "mysql:///test", "dbm:",
            # two slashes (sqlite:///PATH has three), and memory: with something after it
            "sqlite://sessions.db", "memory:sessions", "postgresql://postgres@127.0.0.1/", "mongodb:///sessions",
            "mongodb://127.0.0.1:27017/"]


@pytest.mark.exercise("08.1")
@pytest.mark.parametrize("url, expected", EXPECTED, ids=[u.split(":")[0] for u, _ in EXPECTED])
def test_store_options_maps_each_url_to_its_beaker_backend_and_driver(app_module, url, expected):
    got = app_module.store_options(url)
    for key, value in expected.items():
        assert got.get(key) == value, f"store_options({url!r})[{key!r}] should be {value!r}, got {got!r}"


@pytest.mark.exercise("08.1")
def test_an_sqlite_url_with_a_table_but_no_file_is_refused(app_module):
    with pytest.raises(ValueError):
        app_module.store_options("sqlite:///?table=sessions")   # no file: an in-memory database again


@pytest.mark.exercise("08.1")
def test_a_sql_url_can_name_its_table(app_module):
    got = app_module.store_options("postgresql://postgres@127.0.0.1/test?table=my_sessions")
    assert got.get("table_name") == "my_sessions" and "?" not in got["url"], got


@pytest.mark.exercise("08.1")
@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_is_a_value_error_that_names_it_and_lists_the_accepted_forms(app_module, url):
    with pytest.raises(ValueError) as info:
        app_module.store_options(url)
    message = str(info.value)
    assert repr(url) in message or f"'{url}'" in message, f"the error should name the URL {url!r}: {message}"
    for form in ("memory:", "sqlite:///", "redis://", "postgresql://", "mysql://", "memcached://"):
        assert form in message, f"the error should list the accepted form {form}: {message}"


@pytest.mark.exercise("08.1")
def test_create_app_fails_at_once_on_a_bad_url_and_touches_nothing_on_a_good_one(app_module, tmp_path):
    with pytest.raises(ValueError):
        app_module.create_app(store_url="bogus://x", secret=SECRET)
    db = tmp_path / "later" / "sessions.db"
    app_module.create_app(store_url=f"sqlite:///{db}", secret=SECRET)
    assert not db.parent.exists(), "create_app must not create files or connect: only the first request does"


@pytest.mark.exercise("08.1")
@pytest.mark.parametrize("kind", KINDS[1:])
def test_sessions_live_in_the_store_the_url_names(server, store, client, kind):
    url = store(kind)
    base_url = server(store_url=url, secret=SECRET)
    assert [count_of(visit(client, base_url)) for _ in range(3)] == [1, 2, 3]
    assert "Visits so far: 3" in visit(client, base_url, "/peek").text
    sid = session_id(client)
    assert holds(url, sid), f"the {kind} store at {url} holds nothing for session {sid}: is it really used?"
    page = client.get(base_url + "/")
    assert page.status_code == 200 and sid[:8] in page.text, "the page's inspector shows what the store holds"
    assert sid not in page.text, "the page (readable by any same-origin script) never prints the whole session ID"


@pytest.fixture
def started():
    """A list to put every AppProcess in: each is stopped when the test ends, whatever happened."""
    processes = []
    yield processes
    for proc in processes:
        proc.__exit__()


NO_SECRET = pytest.mark.filterwarnings("ignore:SESSION_SECRET is not set")
"""The development fallback's loud warning: expected where a test removes SESSION_SECRET on purpose."""


def restarted(course_target, store_url, tmp_path, started, server, monkeypatch):
    """Two visits to a real process on the store, then the process killed (SIGKILL: a crash, nothing
    saved on the way out), the app started again, and a third visit: (the first two counts, the third
    answer). No SESSION_SECRET: the development fallback must be stable.

    The app comes back in ``server``'s process (this test's; under the grader, the copy's sandbox):
    a process other than the killed one, that never saw this visitor, with a ``create_app`` called only
    after the kill. Whatever it knows of the session, it read from the store, as a fresh process
    would; and it costs no second interpreter importing the app and its drivers (each start of its
    own was about half of this test's CPU, and the grader's limit is CPU seconds per test)."""
    # No SESSION_SECRET anywhere: not in the process killed (nor in the sandbox the grader starts it in,
    # which gets this process's variables), not where server's create_app reads it.
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    client = requests.Session()
    first = AppProcess.create_app(course_target, "08_store_backends", cwd=tmp_path, env={"SESSION_SECRET": None},
                                  store_url=store_url)
    started.append(first)
    before = [count_of(visit(client, first.url)) for _ in range(2)]
    first.kill()
    assert first.proc.poll() is not None, "the first process must be dead before the app starts again"
    again = server(store_url=store_url)
    return before, visit(client, again)


@pytest.mark.exercise("08.1")
@NO_SECRET
@pytest.mark.parametrize("kind", ["sqlite", "file", "redis", "postgres"])
def test_sessions_survive_an_app_restart(course_target, server, store, tmp_path, started, monkeypatch, kind):
    # One store a test: the killed process is one of its own, and the grader's limit is CPU seconds per test.
    before, after = restarted(course_target, store(kind), tmp_path, started, server, monkeypatch)
    assert before == [1, 2], before
    assert count_of(after) == 3, f"after a restart the session on {kind} should count on (3), got {after.text!r}"


@NO_SECRET
def test_a_memory_session_is_gone_after_an_app_restart(course_target, server, store, tmp_path, started, monkeypatch):
    before, after = restarted(course_target, store("memory"), tmp_path, started, server, monkeypatch)
    assert before == [1, 2], before
    assert count_of(after) == 1, "memory: lives in the process; after a restart the visitor is new"
    assert any(line.startswith("sid=") for line in set_cookie_lines(after)), \
        "the restarted app must give the stranger a fresh session ID, not adopt the old one"


# ---------------------------------------------------------------- 08.2 --store, two processes

@pytest.mark.exercise("08.2")
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_two_app_processes_share_one_store(course_target, server, store, tmp_path, started, kind):
    # Two real processes on one store: the app started from the command line (python app.py --store URL)
    # in a process of its own, and create_app(store_url=URL) in server's process (this test's; under
    # the grader, the copy's sandbox). An app that ignored --store would keep its sessions in its
    # default store (SQLite in its own folder): the other process would not know the visitor. One
    # store a test: the grader's limit is CPU seconds per test, and a second start of its own cost
    # as much as the first without telling more.
    url = store(kind)
    a, b = from_the_command_line(course_target, url, tmp_path, started), server(store_url=url, secret=SECRET)
    client = requests.Session()
    counts = [count_of(visit(client, a.url)), count_of(visit(client, b)), count_of(visit(client, a.url))]
    assert counts == [1, 2, 3], f"two processes on one {kind} store should share the session: {counts}"


@pytest.mark.exercise("08.2")
def test_two_app_processes_on_memory_do_not_share(course_target, server, store, tmp_path, started):
    a, b = from_the_command_line(course_target, store("memory"), tmp_path, started), server(store_url="memory:",
                                                                                           secret=SECRET)
    # The process from the command line really is on memory: (not on its default store, where the other
    # would not find the visitor either).
    page = requests.get(a.url + "/", timeout=30)
    assert page.status_code == 200 and "Store URL: memory:" in page.text and "Sessions live in: memory" in page.text, \
        f"python app.py --store memory: should keep its sessions in memory: {page.text[:300]!r}"
    client = requests.Session()
    counts = [count_of(visit(client, a.url)), count_of(visit(client, b))]
    assert counts == [1, 1], f"each process has its own memory: the second one does not know the visitor: {counts}"


def from_the_command_line(course_target, url, tmp_path, started):
    """``python app.py --store URL`` in a process of its own, signing with SECRET (as server's app does)."""
    app_py = course_target / "08_store_backends" / "app.py"
    proc = AppProcess.script(app_py, "--store", url, cwd=tmp_path, env={"SESSION_SECRET": SECRET})
    started.append(proc)
    return proc


@pytest.mark.exercise("08.2")
def test_store_url_argument_gives_back_a_good_url_and_argparse_s_error_for_a_bad_one(app_module):
    assert app_module.store_url_argument("sqlite:///s.db") == "sqlite:///s.db"
    with pytest.raises(argparse.ArgumentTypeError) as info:
        app_module.store_url_argument("bogus://somewhere")
    assert "bogus://somewhere" in str(info.value) and "redis://" in str(info.value), (
        f"argparse prints this message as it is: name the URL and list the accepted forms: {info.value}")


@pytest.mark.exercise("08.2")
def test_a_bad_store_url_stops_the_app_with_one_clear_message(course_target, tmp_path):
    bad = "bogus://somewhere"
    app_py = course_target / "08_store_backends" / "app.py"
    argv, env, cwd = wrap([sys.executable, str(app_py), "--store", bad, "--port", "1"],
                          {**os.environ, "PYTHONPATH": str(app_py.parents[2])}, tmp_path)
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"the app should refuse to start with --store {bad}"
    assert "Traceback" not in out, f"a bad URL is a message for a person, not a traceback:\n{out}"
    assert bad in out and "redis://" in out and "sqlite:///" in out, \
        f"the message should name the URL and list the accepted forms:\n{out}"


# ---------------------------------------------------------------- 08.3 purge

def _age(url, sid, seconds):
    """Make session ``sid`` look ``seconds`` older in the store itself (its write time)."""
    options = stores_beaker.beaker_options(url)
    if options["type"] == "ext:database":
        from datetime import datetime, timedelta
        engine, table = stores_beaker.sql_table(options)
        with engine.begin() as conn:
            conn.execute(table.update().where(table.c.namespace == sid)
                         .values(accessed=datetime.now() - timedelta(seconds=seconds)))
        return
    for found, paths, mtime in stores_beaker.session_files(options):
        if found == sid:
            for path in paths:
                os.utime(path, (mtime - seconds, mtime - seconds))
            return
    raise AssertionError(f"no files for session {sid}")


@pytest.mark.exercise("08.3")
@pytest.mark.parametrize("kind", ["sqlite", "file", "dbm", "postgres", "mysql"])
def test_purge_deletes_the_expired_sessions_and_only_those(app_module, server, store, kind):
    url = store(kind)
    base_url = server(store_url=url, secret=SECRET)
    old, fresh = requests.Session(), requests.Session()
    visit(old, base_url), visit(fresh, base_url), visit(fresh, base_url)
    old_id, fresh_id = session_id(old), session_id(fresh)
    _age(url, old_id, 2 * 3600)                       # not seen for two hours
    assert app_module.purge_expired(url, older_than=3 * 3600) == 0, \
        "no session was idle for three hours: older_than is the caller's, not the app's SESSION_TIMEOUT"
    assert holds(url, old_id), "a session idle for two hours is not older than three"
    assert app_module.purge_expired(url, older_than=1800) == 1, "exactly one session was idle for > 30 minutes"
    assert not holds(url, old_id), "the expired session's record should be gone from the store"
    assert holds(url, fresh_id), "a session in use must not be purged"
    assert app_module.purge_expired(url, older_than=1800) == 0, "nothing is left to purge"
    assert count_of(visit(fresh, base_url)) == 3


@pytest.fixture
def time_zone(request):
    """This test's processes, and the app's (the grader passes TZ to its sandbox), in ``request.param``."""
    with pytest.MonkeyPatch.context() as patch:      # its own: undone here, not the other fixtures' too
        patch.setenv("TZ", request.param)
        time.tzset()
        yield request.param
    time.tzset()


@pytest.mark.exercise("08.3")
@pytest.mark.parametrize("time_zone", ["America/New_York", "Asia/Tokyo"], indirect=True)
def test_purge_compares_a_sql_sessions_local_time_with_local_time(app_module, server, store, time_zone):
    # Beaker stamps a SQL session's `accessed` with datetime.now(), the machine's local time. A purge that
    # compared it with utcfromtimestamp() passed on every machine on UTC (this one, CI) and, anywhere
    # else, deleted the sessions in use (west of Greenwich) or kept the expired ones for hours (east).
    url = store("sqlite")
    base_url = server(store_url=url, secret=SECRET)
    old, fresh = requests.Session(), requests.Session()
    visit(old, base_url), visit(fresh, base_url)
    _age(url, session_id(old), 2 * 3600)
    assert app_module.purge_expired(url, older_than=1800) == 1, \
        f"in {time_zone}, exactly one session was idle for > 30 minutes: compare local times with local times"
    assert holds(url, session_id(fresh)) and not holds(url, session_id(old))


@pytest.mark.exercise("08.3")
@pytest.mark.parametrize("kind", ["sqlite", "file", "dbm", "postgres", "mysql", "redis"])
def test_purge_on_a_store_where_nothing_was_ever_written_purges_nothing(app_module, store, kind):
    url = store(kind)
    assert app_module.purge_expired(url, older_than=0, now=time.time() + 3600) == 0, (
        f"purge_expired({url!r}) on a store no session was ever written to: nothing to delete, and no table, "
        "folder or file to read yet (that is not an error)")


@pytest.mark.exercise("08.3")
@pytest.mark.parametrize("kind", ["sqlite", "file", "dbm"])       # a SQL column and two kinds of file times
def test_purge_with_a_later_now_deletes_everything(app_module, server, store, kind):
    # ``now`` is the purge's clock on every store: one that reads time.time() itself for files was
    # given full marks while only SQLite was checked.
    url = store(kind)
    base_url = server(store_url=url, secret=SECRET)
    for _ in range(3):
        visit(requests.Session(), base_url)
    assert app_module.purge_expired(url, older_than=60, now=time.time() + 3600) == 3


@pytest.mark.exercise("08.3")
@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_purge_on_a_store_with_ttl_deletes_nothing_and_redis_expires_by_itself(app_module, server, store, client,
                                                                              kind):
    # Both expire keys themselves. A purge that "cleans" memcached with flush_all logs everybody out
    # (and empties whatever else shares the server): it was given full marks while only Redis was checked.
    url = store(kind)
    base_url = server(store_url=url, secret=SECRET, timeout=600)
    visit(client, base_url)
    assert app_module.purge_expired(url, older_than=0) == 0, f"{kind} expires keys itself: nothing to purge"
    assert holds(url, session_id(client)), f"the purge deleted a live session from {kind}"
    if kind == "redis":
        record = stores_beaker.peek(stores_beaker.beaker_options(url), session_id(client))
        assert record and 0 < record["ttl_seconds"] <= 600 + 120, f"the Redis key should expire by itself: {record}"


@pytest.mark.exercise("08.3")
def test_the_purge_command_reports_what_it_deleted(course_target, server, store, tmp_path):
    # A file store: the command is a new interpreter, and for a SQL store it imports SQLAlchemy (more than
    # half its CPU); purge_expired on each store is the test above's, what this one checks is the command.
    url = store("file")
    base_url = server(store_url=url, secret=SECRET)
    visit(requests.Session(), base_url), visit(requests.Session(), base_url)
    app_py = course_target / "08_store_backends" / "app.py"
    argv, env, cwd = wrap([sys.executable, str(app_py), "purge", "--store", url, "--older-than", "0"],
                          {**os.environ, "PYTHONPATH": str(app_py.parents[2])}, tmp_path)
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Purged 2 " in proc.stdout, f"expected 'Purged 2 expired sessions ...', got {proc.stdout!r}"


# ---------------------------------------------------------------- 08.4 the store is down

@pytest.mark.exercise("08.4")
@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql", "memcached"])
def test_a_store_that_is_down_answers_503_then_recovers_with_nothing_lost(server, store, client, kind):
    url = store(kind)
    with Relay.for_url(url, SERVERS[kind]) as relay:
        base_url = server(store_url=relay.url_for(url), secret=SECRET)
        assert [count_of(visit(client, base_url)) for _ in range(2)] == [1, 2]
        cookie = client.cookies.get("sid")
        relay.cut()
        for path in ("/visits", "/peek"):
            began = time.monotonic()
            resp = visit(client, base_url, path)
            took = time.monotonic() - began
            assert resp.status_code == 503, \
                f"{path} with the {kind} store down: expected 503, got {resp.status_code} {resp.text[:200]!r}"
            assert "Session store unavailable" in resp.text
            assert not [line for line in set_cookie_lines(resp) if line.startswith("sid=")], \
                "a 503 must not hand out a new session cookie: the visitor's session is safe in the store"
            assert took < 5, f"{path} took {took:.1f} s to notice the store was down"
        assert client.cookies.get("sid") == cookie
        relay.restore()
        resp = visit(client, base_url)
        assert count_of(resp) == 3, f"once {kind} is back, the same session goes on (3): {resp.text!r}"
        assert client.cookies.get("sid") == cookie, "the session ID must not change because of an outage"


@pytest.mark.exercise("08.4")
def test_a_store_that_is_down_at_start_up_is_503_not_500(server, client):
    # Nothing listens on this port: the app starts (it never connects at start-up) and answers 503.
    with Relay(("127.0.0.1", 9)) as relay:                 # a relay to the discard port: refused
        relay.cut()
        base_url = server(store_url=relay.url_for("redis://127.0.0.1:6379/0"), secret=SECRET)
        resp = visit(client, base_url)
    assert resp.status_code == 503 and "Session store unavailable" in resp.text, (resp.status_code, resp.text)


# ---------------------------------------------------------------- 08.5 too large for the store

@pytest.mark.exercise("08.5")
def test_a_session_too_large_for_mariadb_is_413_and_the_old_session_stays(server, store, client):
    url = store("mysql")
    base_url = server(store_url=url, secret=SECRET)
    assert count_of(visit(client, base_url)) == 1
    note = secrets.token_urlsafe(60_000)       # 80,000 random characters: they do not compress
    resp = client.post(base_url + "/notes", data={"note": note})
    assert resp.status_code == 413, f"a session over MariaDB's 64 KB BLOB: expected 413, got {resp.status_code}"
    assert "too large" in resp.text.lower() and "65535" in resp.text, \
        f"say what went wrong, with the size and the limit: {resp.text!r}"
    assert count_of(visit(client, base_url)) == 2, "the session as it was before the big note is still there"


@pytest.mark.exercise("08.1")      # store_error_answer is never called here: the URL's store (08.1) is what it checks
def test_the_same_note_fits_in_postgresql(server, store, client):
    url = store("postgres")
    base_url = server(store_url=url, secret=SECRET)
    resp = client.post(base_url + "/notes", data={"note": secrets.token_urlsafe(60_000)})
    assert resp.status_code == 200 and "80000 characters" in resp.text, (resp.status_code, resp.text[:200])
    assert holds(url, session_id(client)), "the big session is in PostgreSQL (bytea has room for it)"


# ---------------------------------------------------------------- ready-made parts and the toolkit

@pytest.mark.parametrize("url, expected", EXPECTED, ids=[u.split(":")[0] for u, _ in EXPECTED])
def test_the_toolkit_reference_maps_urls_as_the_lesson_does(url, expected):
    got = stores_beaker.beaker_options(url)
    for key, value in expected.items():
        assert got.get(key) == value, (url, got)


@pytest.mark.parametrize("url", BAD_URLS)
def test_the_toolkit_reference_refuses_bad_urls(url):
    with pytest.raises(ValueError, match="Accepted forms"):
        stores_beaker.beaker_options(url)


def test_the_relay_really_cuts_and_restores_a_real_server():
    url = services.require("redis")
    import redis
    with Relay.for_url(url, 6379) as relay:
        client = redis.Redis.from_url(relay.url_for(url), socket_timeout=1, socket_connect_timeout=1)
        key = unique("relay")
        client.set(key, b"1", ex=30)
        relay.cut()
        with pytest.raises(redis.ConnectionError):
            client.get(key)
        relay.restore()
        assert client.get(key) == b"1"
        client.delete(key)


def test_memcached_records_get_the_session_ttl_and_remove_deletes_only_one(server, store, client):
    url = store("memcached")
    options = stores_beaker.hardened(stores_beaker.beaker_options(url))
    manager = options["namespace_class"]
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    for sid in (mine, other):
        manager(sid, url=options["url"], timeout=300)["session"] = b"x"
    manager(mine, url=options["url"], timeout=300).do_remove()     # Beaker's own: flush_all
    assert manager(mine, url=options["url"])["session"] is None
    assert manager(other, url=options["url"])["session"] == b"x", "removing one session must not flush the others"
    import socket
    host, _, port = options["url"].partition(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:   # meta-get: the TTL left
        sock.sendall(f"mg {other}_session t\r\n".encode())
        reply = sock.recv(200).decode()
    assert reply.startswith("HD t") and 0 < int(reply.split("t", 1)[1].split()[0]) <= 300, reply


def test_mongodb_store_when_a_server_is_given(server, client):
    # No MongoDB server can be installed on the course's CI machine: this runs only when
    # MONGODB_URL names one (with a database, e.g. mongodb://127.0.0.1:27017/sessions).
    url = services.require("mongodb")
    base_url = server(store_url=url, secret=SECRET)
    assert [count_of(visit(client, base_url)) for _ in range(2)] == [1, 2]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_bad_cookies_never_give_a_500_on_a_real_store(server, store, client, kind):
    base_url = server(store_url=store(kind), secret=SECRET)
    visit(client, base_url)
    good = client.cookies.get("sid")
    unknown = "0" * 40 + uuid.uuid4().hex                 # a well-formed cookie, wrong signature
    for header in ["sid=garbage", f"sid={unknown}", "sid=" + "x" * 8000, f"null; sid={good}",
                   f"sid={good}; sid=garbage", "sid=%00%ff"]:
        resp = requests.get(base_url + "/visits", headers={"Cookie": header}, timeout=30)
        assert resp.status_code == 200, f"Cookie: {header[:60]} gave {resp.status_code}"
    assert count_of(requests.get(base_url + "/visits", headers={"Cookie": f"sid={good}"}, timeout=30)) == 4, \
        "the good session went on counting through its two appearances above"
