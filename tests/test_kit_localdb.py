"""course.kit.localdb: one SQLite file, a few pooled connections, the schema run once, on first use."""
import gc
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from course.kit.localdb import KEEP_IDLE, LocalDB
from course.tools.testing import WatchedLock

SCHEMA = ("CREATE TABLE t (x INTEGER)",)      # no IF NOT EXISTS: it fails if it is run twice


def test_an_in_memory_database_is_refused():
    with pytest.raises(ValueError, match="needs a file"):
        LocalDB(":memory:", SCHEMA)


def test_the_schema_runs_once_on_first_use_in_a_new_folder(tmp_path):
    path = tmp_path / "new" / "folder" / "x.db"
    db = LocalDB(path, SCHEMA)
    assert not path.exists(), "nothing is created before the first call"
    assert db.run("INSERT INTO t (x) VALUES (?)", (1,)) == 1
    assert db.run("INSERT INTO t (x) VALUES (1), (2)") == 2, "the schema is not run again (it would fail)"
    assert [tuple(row) for row in db.rows("SELECT x FROM t ORDER BY x")] == [(1,), (1,), (2,)]
    assert db.rows("SELECT x FROM t WHERE x = ?", (2,))[0]["x"] == 2, "rows are sqlite3.Row, by name"
    assert repr(db) == f"LocalDB({str(path)!r})"


def test_each_call_commits_and_two_objects_share_the_file(tmp_path):
    one = LocalDB(tmp_path / "x.db", SCHEMA)
    one.run("INSERT INTO t (x) VALUES (5)")
    other = LocalDB(tmp_path / "x.db", ())
    assert [row["x"] for row in other.rows("SELECT x FROM t")] == [5], "a write is committed when run returns"
    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)


def test_the_file_is_in_wal_mode_and_writers_wait_ten_seconds(tmp_path):
    db = LocalDB(tmp_path / "x.db", SCHEMA)
    assert db.rows("PRAGMA journal_mode")[0][0] == "wal", "readers and a writer work at once"
    assert db.rows("PRAGMA busy_timeout")[0][0] == 10_000, "a busy file is waited for, 10 s, not an error"


def test_a_thread_that_waited_for_the_schema_does_not_run_it_again(tmp_path):
    db = LocalDB(tmp_path / "x.db", SCHEMA)
    db._lock = watched = WatchedLock()
    errors = []
    with watched.lock:                              # another thread is running the schema
        thread = threading.Thread(target=lambda: errors.extend(_call(db)))
        thread.start()
        assert watched.waiting.wait(10), "the second thread waits for the lock"
        LocalDB(db.path, SCHEMA).rows("SELECT 1")   # the schema, run by "the first thread"
        db._ready = True
    thread.join(10)
    assert errors == [], f"the schema ran twice: {errors}"


def _call(db):
    try:
        db.rows("SELECT COUNT(*) FROM t")
    except sqlite3.Error as exc:
        return [exc]
    return []


def open_files_under(folder):
    """The files under ``folder`` this process holds open (Linux: /proc/self/fd)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:                 # the listing's own descriptor, closed meanwhile
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held


def test_calls_reuse_a_few_pooled_connections_and_close_closes_them(tmp_path):
    # Python 3.11's sqlite3 connection is in a reference cycle with its statement cache: one that
    # is not closed stays open (a file descriptor, the WAL's shared memory) until the cyclic
    # garbage collector runs, which may be never under a steady load. Off here, to see a leak.
    db = LocalDB(tmp_path / "x.db", SCHEMA)
    gc.disable()
    try:
        for n in range(50):
            db.run("INSERT INTO t (x) VALUES (?)", (n,))
            assert len(db.rows("SELECT x FROM t")) == n + 1
        assert len(db._idle) == 1, "one thread, one connection, taken again and again"
        with db.connection() as first, db.connection() as second:
            assert first is not second, "a connection serves one caller at a time"
        assert len(db._idle) == 2
        held = open_files_under(tmp_path)
        with ThreadPoolExecutor(KEEP_IDLE + 4) as pool:
            gate = threading.Barrier(KEEP_IDLE + 4)
            list(pool.map(lambda _: _held_at_once(db, gate), range(KEEP_IDLE + 4)))
        assert len(db._idle) == KEEP_IDLE, "the connections over KEEP_IDLE are closed when given back"
        db.close()
        assert db._idle == [] and open_files_under(tmp_path) == [], f"close closes them: {held}"
        assert db.rows("SELECT COUNT(*) FROM t")[0][0] == 50, "and the next call opens one again"
    finally:
        gc.enable()


def _held_at_once(db, gate):
    with db.connection() as conn:
        gate.wait(10)                       # every thread holds its own connection at the same time
        return conn.execute("SELECT 1").fetchone()


def test_pooled_connections_close_when_the_object_goes(tmp_path):
    db = LocalDB(tmp_path / "x.db", SCHEMA)
    gc.disable()
    try:
        db.rows("SELECT 1")
        assert open_files_under(tmp_path), "the pooled connection is open"
        del db
        assert open_files_under(tmp_path) == [], "closed with the object, not left to the garbage collector"
    finally:
        gc.enable()


def test_a_connection_whose_block_failed_or_left_a_transaction_is_not_given_back(tmp_path):
    db = LocalDB(tmp_path / "x.db", SCHEMA)
    with pytest.raises(sqlite3.OperationalError):
        with db.connection() as conn:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (x) VALUES (1)")
            conn.execute("SELECT no_such_column FROM t")
    assert db._idle == [], "a connection half way through a transaction is closed, not pooled"
    with pytest.raises(RuntimeError, match="inside a transaction"):
        with db.connection() as conn:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (x) VALUES (2)")
    assert db._idle == [] and db.rows("SELECT COUNT(*) FROM t")[0][0] == 0, "neither insert was committed"
    with db.connection() as conn:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (x) VALUES (3)")
        conn.execute("COMMIT")
    assert len(db._idle) == 1 and [row["x"] for row in db.rows("SELECT x FROM t")] == [3]


def test_once_the_schema_has_run_no_call_takes_the_schema_lock(tmp_path):
    # The first check of the double-checked lock: without it every query of every thread would
    # queue on one lock, only to find the schema made.
    db = LocalDB(tmp_path / "x.db", SCHEMA)
    db.rows("SELECT 1")
    db._lock = watched = WatchedLock()
    assert db.run("INSERT INTO t (x) VALUES (1)") == 1
    assert [row["x"] for row in db.rows("SELECT x FROM t")] == [1]
    assert not watched.waiting.is_set(), "a ready database went for the schema lock"
