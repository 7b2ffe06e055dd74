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

from course.kit.passwords import check_password, dummy_hash, hash_password

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
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UserDB({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; BEGIN/COMMIT are written out where needed.
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            try:
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
            finally:
                conn.close()
            self._ready = True

    def find(self, username: str) -> tuple[int, str] | None:
        """``(user_id, password_hash)`` of ``username``, or None when there is no such user."""
        self._ensure()
        conn = self._connect()
        try:
            row = conn.execute("SELECT id, password_hash FROM users WHERE username = ?", (username,)).fetchone()
        finally:
            conn.close()
        return (row[0], row[1]) if row else None

    def username(self, user_id: int) -> str | None:
        """The username of ``user_id``, or None."""
        self._ensure()
        conn = self._connect()
        try:
            row = conn.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
        finally:
            conn.close()
        return row[0] if row else None

    def verify(self, username: str, password: str) -> int | None:
        """``verify(self, username, password)``: the user's id, or None (see :func:`verify`)."""
        return verify(self, username, password)

    def set_password(self, user_id: int, password: str) -> bool:
        """Store a new hash for ``user_id``'s password; whether there is such a user."""
        self._ensure()
        stored = self.hasher(password)
        conn = self._connect()
        try:
            return conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (stored, user_id)).rowcount == 1
        finally:
            conn.close()

    def change_password(self, user_id: int, old_hash: str, password: str) -> bool:
        """Store a new hash for ``user_id`` only if the stored one is still ``old_hash`` (the one the
        caller checked the current password against): of two changes at once, one wins, the other
        gets False (compare-and-set)."""
        self._ensure()
        stored = self.hasher(password)
        conn = self._connect()
        try:
            return conn.execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                                (stored, user_id, old_hash)).rowcount == 1
        finally:
            conn.close()

    def add(self, username: str, password: str) -> int:
        """Create a user; its id. ``sqlite3.IntegrityError`` when the username is taken."""
        self._ensure()
        stored = self.hasher(password)
        conn = self._connect()
        try:
            return conn.execute("INSERT INTO users (username, password_hash) VALUES (?, ?)",
                                (username, stored)).lastrowid
        finally:
            conn.close()


def verify(db: UserDB | str | Path, username: str, password: str) -> int | None:
    """The id of the user whose name and password these are, or None.

    An unknown user costs one scrypt, as a wrong password does (against :func:`dummy_hash`), so an
    attacker cannot tell from the time taken which usernames exist. ``db`` is a :class:`UserDB`
    or the path of its file.
    """
    if not isinstance(db, UserDB):
        db = UserDB(db)
    row = db.find(username)
    if row is None:
        check_password(password, dummy_hash(db.hasher))   # the same work, thrown away
        return None
    user_id, stored = row
    return user_id if check_password(password, stored) else None
