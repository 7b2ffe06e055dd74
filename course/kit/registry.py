"""Which sessions a user has: the list behind "your devices", "log out everywhere" and revocation.

A session store is keyed by session ID: it cannot answer "which sessions does alice have?", and an
app must never keep the IDs themselves anywhere else (a copy of a session ID is a copy of the
session). :class:`SessionRegistry` keeps, per live session of a logged-in user, an opaque *handle*
(random, not derived from the ID), a salted hash of the ID for the logs, the client it was made for
and when it was last used; in SQLite next to the users (:mod:`course.kit.localdb`), so every worker
sees the same list. The session record holds its handle; a request whose handle is no longer in the
registry is a session that was ended elsewhere (another device, a password change), and the app
destroys it on the spot. The finished piece of lesson 10.
"""
from __future__ import annotations

import secrets

from course.kit.localdb import LocalDB

__all__ = ["SessionRegistry"]

_SCHEMA = ("CREATE TABLE IF NOT EXISTS user_sessions (handle TEXT PRIMARY KEY, user_id INTEGER NOT NULL,"
           " id_hash TEXT NOT NULL, client TEXT NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL)",
           "CREATE INDEX IF NOT EXISTS user_sessions_by_user ON user_sessions (user_id)",
           "CREATE TABLE IF NOT EXISTS session_series (handle TEXT PRIMARY KEY, series TEXT NOT NULL)")


class SessionRegistry:
    """``SessionRegistry(path)``: the live sessions of every user, in the SQLite file at ``path``."""

    def __init__(self, path):
        self.db = LocalDB(path, _SCHEMA)

    def add(self, user_id: int, id_hash: str, client: str, now: float) -> str:
        """Register a new session of ``user_id``; its handle (what pages and URLs may show)."""
        handle = secrets.token_urlsafe(12)
        self.db.run("INSERT INTO user_sessions (handle, user_id, id_hash, client, created, last_seen)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (handle, user_id, id_hash, client[:200], now, now))
        return handle

    def is_live(self, handle, user_id: int) -> bool:
        """Whether ``handle`` is a live session of ``user_id``."""
        if not isinstance(handle, str):
            return False
        return bool(self.db.rows("SELECT 1 FROM user_sessions WHERE handle = ? AND user_id = ?", (handle, user_id)))

    def seen(self, handle: str, now: float, id_hash: str | None = None) -> None:
        """The session was used now (and, after a new ID, is known by a new hash)."""
        if id_hash is None:
            self.db.run("UPDATE user_sessions SET last_seen = ? WHERE handle = ?", (now, handle))
        else:
            self.db.run("UPDATE user_sessions SET last_seen = ?, id_hash = ? WHERE handle = ?", (now, id_hash, handle))

    def of_user(self, user_id: int) -> list[dict]:
        """The user's live sessions, the most recently used first."""
        rows = self.db.rows("SELECT handle, id_hash, client, created, last_seen FROM user_sessions"
                            " WHERE user_id = ? ORDER BY last_seen DESC", (user_id,))
        return [dict(row) for row in rows]

    def set_series(self, handle: str, series: str) -> None:
        """The session ``handle`` was logged in with "keep me logged in": its remember-me ``series``
        (revoking the session must revoke the series, or the browser's cookie logs straight back in)."""
        self.db.run("INSERT OR REPLACE INTO session_series (handle, series) VALUES (?, ?)", (handle, series))

    def series_of(self, handle, user_id: int) -> str | None:
        """The remember-me series of ``user_id``'s live session ``handle``, or None."""
        rows = self.db.rows("SELECT s.series FROM session_series s JOIN user_sessions u ON u.handle = s.handle"
                            " WHERE s.handle = ? AND u.user_id = ?", (handle, user_id))
        return rows[0]["series"] if rows else None

    def end(self, handle: str, user_id: int | None = None) -> bool:
        """End one session (of ``user_id``, when given); whether there was one."""
        if user_id is None:
            ended = self.db.run("DELETE FROM user_sessions WHERE handle = ?", (handle,)) > 0
        else:
            ended = self.db.run("DELETE FROM user_sessions WHERE handle = ? AND user_id = ?", (handle, user_id)) > 0
        if ended:
            self.db.run("DELETE FROM session_series WHERE handle = ?", (handle,))
        return ended

    def end_all(self, user_id: int, keep: str | None = None) -> int:
        """End every session of ``user_id`` except ``keep`` (a handle, or None: all); how many."""
        self.db.run("DELETE FROM session_series WHERE handle IN (SELECT handle FROM user_sessions"
                    " WHERE user_id = ? AND handle IS NOT ?)", (user_id, keep))
        return self.db.run("DELETE FROM user_sessions WHERE user_id = ? AND handle IS NOT ?", (user_id, keep))
