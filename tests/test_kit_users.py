"""course.kit.users on its own: the users table in SQLite, made on first use, and verify()."""
import sqlite3
import threading
from types import SimpleNamespace

import pytest

from course.kit.passwords import hash_password
from course.kit.users import DEMO_USERS, UserDB, verify
from course.tools.testing import WatchedLock


def cheap(password):
    return hash_password(password, n=16, r=1, p=1)


@pytest.fixture
def db(tmp_path):
    return UserDB(tmp_path / "deep" / "users.sqlite3", hasher=cheap)


def test_nothing_is_touched_until_first_use(db):
    assert not db.path.parent.exists()
    assert repr(db) == f"UserDB({str(db.path)!r})"
    assert db.find("alice")[0] == 1
    assert db.path.exists()


def test_the_demo_users_are_one_and_two(db):
    assert DEMO_USERS == (("alice", "wonderland"), ("bob", "builder"))
    assert verify(db, "alice", "wonderland") == 1
    assert verify(db, "bob", "builder") == 2
    assert db.username(1) == "alice" and db.username(2) == "bob" and db.username(3) is None


def test_a_wrong_password_or_unknown_user_is_none(db):
    assert verify(db, "alice", "builder") is None
    assert verify(db, "nobody", "wonderland") is None
    assert db.find("nobody") is None
    assert db.verify("alice", "wonderland") == 1


def test_an_unknown_user_costs_a_hash_as_a_wrong_password_does(db, monkeypatch):
    import course.kit.users as users
    checked = []
    monkeypatch.setattr(users, "check_password", lambda password, stored: checked.append(stored) or False)
    verify(db, "nobody", "pw")
    assert len(checked) == 1 and checked[0].startswith("scrypt$16$1$1$"), "the dummy hash of this hasher"


def test_an_unknown_user_costs_what_the_tables_hashes_cost_not_what_the_hasher_would(db, monkeypatch):
    """A table hashed at one cost, opened with a hasher of another (lesson 10's tests hash their users
    cheaply; the app's hasher is the real one): the dummy follows the table, so a wrong name still
    costs what a wrong password costs."""
    import course.kit.users as users
    db.find("alice")                                       # the table, made at the cheap cost
    checked = []
    monkeypatch.setattr(users, "check_password", lambda password, stored: checked.append(stored) or False)
    real = UserDB(db.path)                                 # the default hasher: scrypt at SCRYPT_N
    verify(real, "nobody", "pw")
    verify(real, "alice", "pw")
    assert [stored.split("$")[1:4] for stored in checked] == [["16", "1", "1"]] * 2, checked
    assert checked[0] != checked[1], "the dummy is nobody's hash, not alice's"


def test_verify_takes_a_path_too(db):
    db.find("alice")
    assert verify(str(db.path), "alice", "wonderland") == 1
    assert verify(UserDB(db.path, hasher=cheap), "bob", "builder") == 2


def test_add_makes_a_user_and_a_taken_name_is_an_integrity_error(db):
    assert db.add("carol", "pw") == 3
    assert verify(db, "carol", "pw") == 3
    with pytest.raises(sqlite3.IntegrityError):
        db.add("alice", "again")


def test_an_in_memory_database_is_refused():
    with pytest.raises(ValueError, match="needs a file"):
        UserDB(":memory:")


def test_a_second_db_on_the_same_file_sees_the_same_users(db):
    db.add("carol", "pw")
    assert UserDB(db.path, hasher=cheap).find("carol")[0] == 3


def test_the_table_is_made_once_under_many_threads(db):
    results = []
    threads = [threading.Thread(target=lambda: results.append(db.find("alice")[0])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1] * 8


def test_a_hasher_that_fails_leaves_no_half_table(tmp_path):
    def broken(password):
        raise RuntimeError("no hashing today")

    db = UserDB(tmp_path / "u.sqlite3", hasher=broken)
    with pytest.raises(RuntimeError):
        db.find("alice")
    conn = sqlite3.connect(db.path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='users'").fetchone() is None
    conn.close()
    assert UserDB(db.path, hasher=cheap).find("alice")[0] == 1


def test_an_existing_table_is_kept_as_it_is(tmp_path):
    path = tmp_path / "u.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT UNIQUE, password_hash TEXT)")
    conn.execute("INSERT INTO users VALUES (7, 'zed', ?)", (cheap("z"),))
    conn.commit()
    conn.close()
    db = UserDB(path, hasher=cheap)
    assert db.find("zed")[0] == 7 and db.find("alice") is None


def test_connections_wait_ten_seconds_for_a_locked_file(db):
    db.find("alice")
    with db.db.connection() as conn:
        assert tuple(conn.execute("PRAGMA busy_timeout").fetchone()) == (10_000,), "sqlite3's timeout, in ms"


def recording_connections(db):
    """Keep every connection the db opens (so only the db itself can close them), and the statements
    run on them (``opened.statements``)."""
    opened, statements = [], []
    connect = db.db._connect

    def recorded():
        opened.append(connect())
        opened[-1].set_trace_callback(statements.append)
        return opened[-1]

    db.db._connect = recorded
    return SimpleNamespace(connections=opened, statements=statements)


def is_closed(conn) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_calls_share_one_pooled_connection_and_close_closes_it(db):
    opened = recording_connections(db).connections
    user_id, old = db.find("alice")
    db.username(user_id)
    db.add("carol", "pw")
    db.set_password(user_id, "new")
    db.change_password(user_id, db.find("alice")[1], "newer")
    assert len(opened) == 1, "one connection (WAL turned on, the table made) for every call"
    assert [is_closed(conn) for conn in opened] == [False]
    db.close()
    assert is_closed(opened[0]), "close closes the pooled connection"
    assert db.username(3) == "carol", "and the next call opens another"


def test_after_the_first_use_a_call_opens_nothing_and_takes_no_lock(db):
    db._lock = lock = WatchedLock()
    opened = recording_connections(db)
    db.find("alice")
    assert len(opened.connections) == 1 and lock.taken == 1, "the table is made under the lock, then the query"
    db.find("bob")
    db.username(1)
    assert len(opened.connections) == 1 and lock.taken == 1
    assert sum("sqlite_master" in sql for sql in opened.statements) == 1, "the table is looked for once"


def test_a_thread_that_waited_for_the_lock_finds_the_table_made_and_leaves_it(db):
    UserDB(db.path, hasher=cheap).find("alice")      # the table exists
    db._lock = lock = WatchedLock()
    opened = recording_connections(db)
    found = []
    lock.lock.acquire()                              # another thread is making the table
    waiter = threading.Thread(target=lambda: found.append(db.find("alice")))
    waiter.start()
    assert lock.waiting.wait(10)
    db._ready = True                                 # ... and has made it
    lock.lock.release()
    waiter.join()
    assert found[0][0] == 1
    assert not any("sqlite_master" in sql or "users (" in sql for sql in opened.statements), \
        f"only the query: the table is not looked at again: {opened.statements}"


def test_username_makes_the_table_on_first_use_too(db):
    assert db.username(2) == "bob"


def test_set_password_replaces_the_hash_of_an_existing_user_only(db):
    assert db.set_password(1, "new secret") is True
    assert verify(db, "alice", "new secret") == 1 and verify(db, "alice", "wonderland") is None
    assert verify(db, "bob", "builder") == 2, "the other users keep theirs"
    assert db.set_password(99, "x") is False


def test_change_password_is_compare_and_set(tmp_path):
    db = UserDB(tmp_path / "u.sqlite3", hasher=cheap)
    user_id, old = db.find("alice")
    assert db.change_password(user_id, old, "first") is True
    assert db.change_password(user_id, old, "second") is False, "the hash it was checked against is gone"
    assert verify(db, "alice", "first") == 1 and verify(db, "bob", "builder") == 2
    assert db.change_password(99, old, "x") is False


def test_a_failure_inside_the_table_transaction_is_raised_as_it_is(tmp_path):
    path = tmp_path / "u.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE VIEW users AS SELECT 1 AS id, 'zed' AS username, 'h' AS password_hash")
    conn.close()
    db = UserDB(path, hasher=cheap)
    with pytest.raises(sqlite3.OperationalError, match="cannot modify users because it is a view"):
        db.find("alice")
    assert db._ready is False


def test_a_first_call_of_any_kind_makes_the_table(tmp_path):
    assert UserDB(tmp_path / "a.sqlite3", hasher=cheap).change_password(1, "not the hash", "x") is False
    assert UserDB(tmp_path / "b.sqlite3", hasher=cheap).set_password(2, "x") is True
    assert UserDB(tmp_path / "c.sqlite3", hasher=cheap).add("carol", "pw") == 3


def test_the_folders_of_a_new_database_path_are_made(tmp_path):
    # make run's default lives in .sessions/, which a fresh clone does not have; a deeper path too.
    db = UserDB(tmp_path / "not" / "yet" / "users.sqlite3", hasher=cheap)
    assert db.username(1) == DEMO_USERS[0][0]
    assert (tmp_path / "not" / "yet" / "users.sqlite3").exists()
