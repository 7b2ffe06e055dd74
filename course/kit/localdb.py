"""A table or two in one SQLite file, shared by every thread and process of one machine.

The capstone (lesson 10) keeps what must outlive a request and be seen by every worker next to
its users: the sessions each user has (:mod:`course.kit.registry`), failed logins
(:mod:`course.kit.ratelimit`) and remember-me tokens (:mod:`course.kit.remember`). Each of those
is a :class:`LocalDB` with its own ``CREATE TABLE`` statements, run on first use (never at import).
Each call takes a connection of its own from a small pool (one is never used by two threads at
once), so one object serves every thread; WAL mode lets readers and a writer work at once, and a
busy timeout makes writers of other processes wait instead of failing.
"""
from __future__ import annotations

import sqlite3
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LocalDB"]

KEEP_IDLE = 8
"""Connections a LocalDB keeps open between calls. Opening one costs more than most statements here
(the file, its WAL and shared-memory files, the schema read again), and while one stays open SQLite
does not checkpoint and delete the WAL file, which it does whenever the last connection closes."""


class LocalDB:
    """``LocalDB(path, schema)``: ``rows(sql, params)`` and ``run(sql, params)`` on the file at ``path``."""

    def __init__(self, path: str | Path, schema: tuple[str, ...]):
        if str(path) == ":memory:":
            raise ValueError("LocalDB needs a file: each call opens its own connection")
        self.path = Path(path)
        self.schema = schema
        self._ready = False
        self._lock = threading.Lock()               # the schema's, taken once
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        # The pooled connections close when the object goes: a sqlite3 connection left to the garbage
        # collector stays open (a file descriptor, the WAL's shared memory) until a full collection.
        weakref.finalize(self, _close_all, self._idle)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: a pooled connection serves one thread at a time, but not always the same one.
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # In WAL mode NORMAL is still safe from corruption and survives a crash of the app; only a power
        # cut can lose the last commits. FULL (the default) syncs the file at every commit.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                for statement in self.schema:
                    conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            with self._pool_lock:        # the first pooled one: closed, as the last, it would checkpoint the WAL
                self._idle.append(conn)
            self._ready = True

    @contextmanager
    def connection(self):
        """A connection of this thread's alone until the block ends (autocommit: each statement is its
        own transaction unless the block says BEGIN); it goes back to the pool after."""
        self._ensure()
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            conn.close()                   # it may be half way through a transaction: not for the next caller
            raise
        if conn.in_transaction:
            conn.close()
            raise RuntimeError("a LocalDB block ended inside a transaction: COMMIT or ROLLBACK it")
        with self._pool_lock:
            if len(self._idle) < KEEP_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the pooled connections now (they are closed when the object goes, too)."""
        with self._pool_lock:
            _close_all(self._idle)

    def rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """The rows a query returns."""
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def run(self, sql: str, params: tuple = ()) -> int:
        """Run one statement (in its own transaction); how many rows it changed."""
        with self.connection() as conn:
            return conn.execute(sql, params).rowcount


def _close_all(idle: list[sqlite3.Connection]) -> None:
    while idle:
        idle.pop().close()
