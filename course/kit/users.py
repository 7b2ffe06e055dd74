"""The users table: ``UserDB`` (an SQLite file) and ``verify`` (lesson 06's reference).

Created with the demo users on first use (never at import): ``alice`` / ``wonderland`` is user 1,
``bob`` / ``builder`` user 2. :func:`verify` takes about as long for an unknown user as for a wrong
password (an unknown user is checked against a dummy hash), so the answer's timing does not tell
which usernames exist.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Callable

from course.kit.localdb import LocalDB
from course.kit.passwords import check_password, dummy_hash, dummy_like, hash_password

__all__ = ["DEMO_USERS", "UserDB", "verify"]

DEMO_USERS = (("alice", "wonderland"), ("bob", "builder"))   # user 1 and user 2
"""Created with the table. Demo passwords, in a public repository: never in production."""


class UserDB:
    """The ``users`` table (``id``, ``username``, ``password_hash``) in one SQLite file.

    Nothing is touched until first use: then the folder and the file are made, and the table is
    created with :data:`DEMO_USERS` (alice is user 1, bob user 2). ``hasher`` makes the stored hashes
    (lesson 06 passes its own ``hash_password``). A connection is opened per call, so one UserDB can
    serve every thread of a threaded server; several processes may share the file.
    """

    def __init__(self, path: str | Path, *, hasher: Callable[[str], str] = hash_password):
        if str(path) == ":memory:":
            raise ValueError("UserDB needs a file: each call opens its own connection")
        self.path = Path(path)
        self.hasher = hasher
        self.db = LocalDB(self.path, ())          # the connections; the table is made below, with its users
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UserDB({str(self.path)!r})"

    def close(self) -> None:
        """Close the pooled connections now (they are closed when the object goes, too)."""
        self.db.close()

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            with self.db.connection() as conn:
                exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='users'").fetchone()
                if not exists:
                    # Hash first (slow, and it may raise), then create and fill the table in one
                    # transaction: another process sees either no table or the table with its users.
                    rows = [(number, name, self.hasher(password))
                            for number, (name, password) in enumerate(DEMO_USERS, start=1)]
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.execute("CREATE TABLE IF NOT EXISTS users ("
                                     " id INTEGER PRIMARY KEY,"
                                     " username TEXT NOT NULL UNIQUE,"
                                     " password_hash TEXT NOT NULL)")
                        conn.executemany("INSERT OR IGNORE INTO users (id, username, password_hash) "
                                         "VALUES (?, ?, ?)", rows)
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
            self._ready = True

    def _one(self, sql: str, params: tuple):
        """The first row of a query on the table (made on first use), or None."""
        self._ensure()
        with self.db.connection() as conn:
            return conn.execute(sql, params).fetchone()

    def _change(self, sql: str, params: tuple) -> sqlite3.Cursor:
        self._ensure()
        with self.db.connection() as conn:
            return conn.execute(sql, params)

    def find(self, username: str) -> tuple[int, str] | None:
        """``(user_id, password_hash)`` of ``username``, or None when there is no such user."""
        row = self._one("SELECT id, password_hash FROM users WHERE username = ?", (username,))
        return (row[0], row[1]) if row else None

    def username(self, user_id: int) -> str | None:
        """The username of ``user_id``, or None."""
        row = self._one("SELECT username FROM users WHERE id = ?", (user_id,))
        return row[0] if row else None

    def dummy(self) -> str:
        """The hash an unknown user's password is checked against: nobody's, at the cost of the first
        user's stored hash (so a wrong name costs what a wrong password costs, even in a table hashed
        at another cost than ``hasher``'s), else at ``hasher``'s."""
        row = self._one("SELECT password_hash FROM users ORDER BY id LIMIT 1", ())
        return (dummy_like(row[0]) if row else None) or dummy_hash(self.hasher)

    def verify(self, username: str, password: str) -> int | None:
        """``verify(self, username, password)``: the user's id, or None (see :func:`verify`)."""
        return verify(self, username, password)

    def set_password(self, user_id: int, password: str) -> bool:
        """Store a new hash for ``user_id``'s password; whether there is such a user."""
        stored = self.hasher(password)
        return self._change("UPDATE users SET password_hash = ? WHERE id = ?", (stored, user_id)).rowcount == 1

    def change_password(self, user_id: int, old_hash: str, password: str) -> bool:
        """Store a new hash for ``user_id`` only if the stored one is still ``old_hash`` (the one the
        caller checked the current password against): of two changes at once, one wins, the other
        gets False (compare-and-set)."""
        stored = self.hasher(password)
        return self._change("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                            (stored, user_id, old_hash)).rowcount == 1

    def add(self, username: str, password: str) -> int:
        """Create a user; its id. ``sqlite3.IntegrityError`` when the username is taken."""
        stored = self.hasher(password)
        return self._change("INSERT INTO users (username, password_hash) VALUES (?, ?)",
                            (username, stored)).lastrowid


def verify(db: UserDB | str | Path, username: str, password: str) -> int | None:
    """The id of the user whose name and password these are, or None.

    An unknown user costs one scrypt at the stored hashes' cost, as a wrong password does (against
    ``UserDB.dummy``), so an attacker cannot tell from the time taken which usernames exist. ``db`` is a :class:`UserDB`
    or the path of its file.
    """
    if not isinstance(db, UserDB):
        db = UserDB(db)
    row = db.find(username)
    if row is None:
        check_password(password, db.dummy())              # the same work, thrown away
        return None
    user_id, stored = row
    return user_id if check_password(password, stored) else None
