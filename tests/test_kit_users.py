"""course.kit.users on its own: the users table in SQLite, made on first use, and verify()."""
import sqlite3
import threading

import pytest

from course.kit.passwords import hash_password
from course.kit.users import DEMO_USERS, UserDB, verify


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
