"""Session stores, the reference for lesson 03: the Store interface, a memory store, a counting store.

The interface is express-session's, made synchronous for Python. A store keeps JSON-able dicts by
session ID; the middleware (``course.kit.sessions``) is its only caller.

=====================  =========  ===============================================================
method                 required?  contract
=====================  =========  ===============================================================
``get(sid)``           yes        the stored dict (a copy), or None: unknown, expired or destroyed
``set(sid, data,       yes        insert or replace; ``ttl`` seconds until the record expires
ttl=None)``                       (None: never), counted from now, as Redis ``SETEX`` does
``destroy(sid)``       yes        remove the record (no error when there is none)
``touch(sid,           optional   restart the record's ``ttl`` without rewriting its data (express
ttl=None)``                       calls it instead of ``set`` for an unchanged session)
``all()``              optional   ``{sid: data}`` of every live record
``length()``           optional   the number of live records
``clear()``            optional   remove every record
=====================  =========  ===============================================================

A store that cannot reach its backend raises (:class:`course.kit.storedown.StoreUnavailable`, or
any exception): the middleware answers 503 (``storedown.MESSAGE``) and the next request tries
again. Check for the optional methods with
``can(store, "touch")``, not ``hasattr``: a wrapper may hide one by setting it to None.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from typing import Callable, Protocol

from course.kit.storedown import StoreUnavailable


class Store(Protocol):
    """What the session middleware needs from a store (the optional methods are listed above)."""

    def get(self, sid: str) -> dict | None: ...
    def set(self, sid: str, data: dict, ttl: float | None = None) -> None: ...
    def destroy(self, sid: str) -> None: ...


def can(store, method: str) -> bool:
    """Does ``store`` offer the optional ``method`` (``touch``, ``all``, ``length``, ``clear``)?"""
    return callable(getattr(store, method, None))


class MemoryStore:
    """Sessions in a dict, in this process: gone when it stops, never shared with another.

    Records are kept as JSON text, as express's MemoryStore does: ``get`` hands out a fresh copy
    (a handler changing its session changes nothing here until the middleware saves it), and
    data that cannot be stored anywhere else (a socket, a function) is refused at once.
    Expired records are dropped when they are read, and swept on a write at most once every
    ``sweep_every`` seconds: a record nobody reads again (a bot's 3,000 one-visit sessions) goes too,
    instead of filling the process for ever. ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_every: float = 60.0):
        self.clock = clock
        self._records: dict[str, tuple[str, float | None]] = {}   # sid -> (json, expires at or None)
        self._lock = threading.Lock()
        self.sweep_every = sweep_every
        self._next_sweep = clock() + sweep_every

    def sweep(self) -> int:
        """Delete every expired record now; how many went. (Call with the lock held.)"""
        now = self.clock()
        dead = [sid for sid, (_, expires) in self._records.items() if expires is not None and expires <= now]
        for sid in dead:
            del self._records[sid]
        self._next_sweep = now + self.sweep_every
        return len(dead)

    def _expires(self, ttl: float | None) -> float | None:
        return None if ttl is None else self.clock() + ttl

    def _live(self, sid: str) -> tuple[str, float | None] | None:
        """The record if it has not expired; an expired one is deleted. Call with the lock held."""
        record = self._records.get(sid)
        if record is not None and record[1] is not None and record[1] <= self.clock():
            del self._records[sid]
            return None
        return record

    def get(self, sid: str) -> dict | None:
        with self._lock:
            record = self._live(sid)
        return None if record is None else json.loads(record[0])

    def set(self, sid: str, data: dict, ttl: float | None = None) -> None:
        text = json.dumps(data)
        with self._lock:
            if self.clock() >= self._next_sweep:
                self.sweep()
            self._records[sid] = (text, self._expires(ttl))

    def touch(self, sid: str, ttl: float | None = None) -> None:
        with self._lock:
            record = self._live(sid)
            if record is not None:
                self._records[sid] = (record[0], self._expires(ttl))

    def destroy(self, sid: str) -> None:
        with self._lock:
            self._records.pop(sid, None)

    def all(self) -> dict[str, dict]:
        with self._lock:
            live = {sid: self._live(sid) for sid in list(self._records)}
        return {sid: json.loads(record[0]) for sid, record in live.items() if record is not None}

    def length(self) -> int:
        return len(self.all())

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class CountingStore:
    """Wraps any store, counts its calls, and can be told to fail: for tests, notebooks and ``/store/stats``.

    The course's one counting store. Lessons 03-04 hand it to their middleware as a Store; the
    Beaker lessons (05-08) plug it in through :class:`course.kit.beakerkit.CountingNamespace`.

    >>> store = CountingStore()                   # around a new MemoryStore
    >>> store.set("a", {"n": 1}); store.get("a"); store.stats()
    {'gets': 1, 'sets': 1, 'touches': 0, 'destroys': 0, 'sessions': 1}
    >>> store.fail("get")          # every get now raises StoreUnavailable; fail() fails them all
    >>> store.recover()
    >>> with store.failing("destroy"):   # the same, for one block
    ...     pass

    Failing calls are counted too (the request did ask the store). :meth:`peek`, :meth:`holds`,
    :meth:`all`, :meth:`length` and :meth:`clear` are for inspectors: never counted, never failing.
    ``touch=False`` (or an inner store without ``touch``) hides ``touch``, as a store that cannot
    touch: ``can(store, "touch")`` is then False.
    """

    METHODS = ("get", "set", "touch", "destroy")
    DEFAULT_TTL = 24 * 60 * 60     # seconds: a record written without a TTL still dies (as connect-redis's day)

    def __init__(self, store=None, touch: bool = True, ttl: float | None = DEFAULT_TTL):
        self.store = MemoryStore() if store is None else store
        self.ttl = ttl                 # for set()/touch() calls that give no ttl of their own
        self.counts: Counter = Counter()
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        if not (touch and can(self.store, "touch")):
            self.touch = None          # the middleware checks can(store, "touch")

    def check(self, method: str) -> None:
        """Raise :class:`StoreUnavailable` if ``method`` is failing (for adapters that read uncounted)."""
        if method in self._failing:
            raise StoreUnavailable(f"the session store is down (CountingStore told to fail on {method})")

    def _call(self, method: str, *args, **kwargs):
        with self._lock:
            self.counts[method] += 1
        self.check(method)
        return getattr(self.store, method)(*args, **kwargs)

    def get(self, sid):
        return self._call("get", sid)

    def set(self, sid, data, ttl=None):
        return self._call("set", sid, data, ttl=self.ttl if ttl is None else ttl)

    def touch(self, sid, ttl=None):  # hidden per instance (self.touch = None) when the store cannot touch
        return self._call("touch", sid, ttl=self.ttl if ttl is None else ttl)

    def destroy(self, sid):
        return self._call("destroy", sid)

    # For inspectors: passed through uncounted, and never failing.
    def peek(self, sid):
        """The record stored under ``sid`` (a copy), or None: not counted, never failing."""
        return self.store.get(sid) if sid else None

    def holds(self, sid) -> bool:
        """Whether the store has a record under ``sid`` (not counted)."""
        return self.peek(sid) is not None

    def all(self):
        return self.store.all()

    def length(self):
        return self.store.length() if can(self.store, "length") else len(self.store.all())

    def clear(self):
        return self.store.clear()

    # Fault injection and counters.
    def fail(self, *methods: str) -> None:
        """Make ``methods`` (default: get, set, touch, destroy) raise :class:`StoreUnavailable`
        until :meth:`recover`."""
        unknown = set(methods) - set(self.METHODS)
        if unknown:
            raise ValueError(f"unknown store methods {sorted(unknown)}; choose from {self.METHODS}")
        self._failing = set(methods or self.METHODS)

    def recover(self) -> None:
        """The store is back: nothing fails any more."""
        self._failing = set()

    @contextlib.contextmanager
    def failing(self, *methods: str):
        """``with store.failing("destroy"): ...``: :meth:`fail` inside the block, :meth:`recover` after."""
        self.fail(*methods)
        try:
            yield self
        finally:
            self.recover()

    def reset(self) -> None:
        """Set every counter back to 0 (the records stay)."""
        with self._lock:
            self.counts.clear()

    def stats(self) -> dict[str, int]:
        """``{"gets", "sets", "touches", "destroys", "sessions"}``: calls so far and live records."""
        with self._lock:
            counts = dict(self.counts)
        return {"gets": counts.get("get", 0), "sets": counts.get("set", 0),
                "touches": counts.get("touch", 0), "destroys": counts.get("destroy", 0),
                "sessions": self.length()}
