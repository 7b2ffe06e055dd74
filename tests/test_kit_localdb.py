"""course.kit.localdb: one SQLite file, a connection per call, the schema run once, on first use."""
import sqlite3
import threading

import pytest

from course.kit.localdb import LocalDB

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


class WatchedLock:
    """A lock that says when somebody waits for it (to stop a thread between _ensure's two checks)."""

    def __init__(self):
        self.lock, self.waiting = threading.Lock(), threading.Event()

    def __enter__(self):
        self.waiting.set()
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


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
