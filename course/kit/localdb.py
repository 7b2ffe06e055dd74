"""A table or two in one SQLite file, shared by every thread and process of one machine.

The capstone (lesson 10) keeps what must outlive a request and be seen by every worker next to
its users: the sessions each user has (:mod:`course.kit.registry`), failed logins
(:mod:`course.kit.ratelimit`) and remember-me tokens (:mod:`course.kit.remember`). Each of those
is a :class:`LocalDB` with its own ``CREATE TABLE`` statements, run on first use (never at import).
A connection is opened per call, so one object serves every thread; WAL mode lets readers and a
writer work at once, and a busy timeout makes writers of other processes wait instead of failing.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

__all__ = ["LocalDB"]


class LocalDB:
    """``LocalDB(path, schema)``: ``rows(sql, params)`` and ``run(sql, params)`` on the file at ``path``."""

    def __init__(self, path: str | Path, schema: tuple[str, ...]):
        if str(path) == ":memory:":
            raise ValueError("LocalDB needs a file: each call opens its own connection")
        self.path = Path(path)
        self.schema = schema
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.row_factory = sqlite3.Row
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
            finally:
                conn.close()
            self._ready = True

    def rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """The rows a query returns."""
        self._ensure()
        conn = self._connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def run(self, sql: str, params: tuple = ()) -> int:
        """Run one statement (in its own transaction); how many rows it changed."""
        self._ensure()
        conn = self._connect()
        try:
            return conn.execute(sql, params).rowcount
        finally:
            conn.close()
