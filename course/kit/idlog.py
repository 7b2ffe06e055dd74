"""Session IDs in logs: only as salted hashes (the finished piece of lesson 10).

A log line that holds a session ID hands the session to whoever reads the logs (an operator, a log
service, a backup). OWASP's Session Management Cheat Sheet asks to log the life cycle of every
session (created, renewed, ended, expired) and to correlate lines by a salted hash of the ID instead
(https://cheatsheetseries.owasp.org/cheatsheets/Session_Management_Cheat_Sheet.html#logging-sessions-life-cycle-monitoring-creation-usage-and-destruction-of-session-ids).
The salt is a key derived from the app's secret: the same ID gives the same hash in every line and
every worker, and without the secret nobody can test a guessed ID against the logs.
"""
from __future__ import annotations

import hashlib
import hmac
import json

__all__ = ["id_hash", "loggable"]


def id_hash(session_id: str | None, salt: str) -> str:
    """``h:`` and 16 hex digits of ``HMAC-SHA256(salt, session_id)``; ``h:-`` when there is no ID."""
    if not session_id:
        return "h:-"
    digest = hmac.new(salt.encode(), str(session_id).encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return "h:" + digest[:16]


def loggable(value, limit: int = 200) -> str:
    """``value`` as it may stand in a log line: plain when it is a short word of printable characters,
    else quoted and escaped (a newline becomes ``\\n``), cut at ``limit`` characters.

    A path, a header or a username comes from the client: copied as it is, ``%0a`` in a path (a
    newline once decoded) starts a forged line of the attacker's choosing (OWASP's Logging Cheat
    Sheet, "log injection"). Every untrusted value goes through here.
    """
    text = str(value)[:limit]
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text)
