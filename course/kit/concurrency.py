"""Sessions under concurrency: the ready-made parts of lesson 09 (two tabs, one session).

A session middleware loads the whole record when a request starts and writes the whole record
back when it ends. Two requests of one session that overlap (two tabs, a double-click, an app on
several workers) both load the same record, and the one that saves last overwrites the other's
change: a *lost update*. This module holds what the lesson does not ask you to write:

* :func:`session_class` - a Beaker session class (on top of the course's hardened ones) with three
  knobs the lesson turns:

  - ``resave``: Beaker's default (``save_accessed_time=True``) writes the record back on *every*
    request that loaded it, even one that only read it, with the data as it was loaded: the
    equivalent of express-session's ``resave: true``, and a read-only request that overlaps a
    write then undoes it. With ``resave=False`` a request that changed nothing writes nothing.
  - ``write_delay``: seconds slept just before the record is written. On loopback a save takes
    a fraction of a millisecond, so the race would show only now and then; a small delay (and
    the route's own ``window``) stands for a store across a network and a route that does real
    work, and makes the race show every time. It changes no outcome, only how often.
  - ``merge``: save only what this request changed. Just before writing, the record is read again
    and ``merge(stored, loaded, mine)`` (exercise 09.4) decides what to write, under a short lock
    (``save_lock(session_id)``, a context manager) held for the save only, not the whole request.

* :class:`FileLocks` - one lock file per session, ``flock``-ed: the lock for the processes of
  *one machine* (SQLite's case: its workers share one disk). The kernel drops a dead holder's lock.
* :func:`store_config` - the Beaker options for a store URL (``course.kit.stores_beaker``), plus
  ``redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]``: Redis behind Sentinel, where the
  client asks the sentinels who the primary is and asks again after a failover.
* :func:`redis_for_locks` - the Redis client a lock uses (one per URL and process: the kit's RESP
  client: one write and one read per command).

Sources: Beaker's ``Session.save(accessed_only=True)`` writes ``accessed_dict``, the data as loaded
(https://github.com/bbangert/beaker/blob/master/beaker/session.py); express-session's ``resave``
and its warning about races (https://github.com/expressjs/session#resave); the Redis pattern for a
lock with a token and an expiry (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from course.kit import beaker_backends, stores_beaker

__all__ = ["session_class", "FileLocks", "store_config", "describe", "redis_for_locks", "SENTINEL_SCHEME",
           "counter_table"]

SENTINEL_SCHEME = "redis+sentinel"


# ---------------------------------------------------------------- the session class

class _Concurrent:
    """Mixed in before a Beaker session class (see :func:`session_class`)."""

    resave = False
    write_delay = 0.0
    merge = None
    save_lock = None

    def load(self):
        super().load()
        # What the request started from, deep-copied (a list the route appends to in place must
        # not change this copy too): merge-on-save compares against it.
        self.loaded = json.loads(json.dumps(_plain(self)))

    def save(self, accessed_only=False):
        if accessed_only and not self.resave:
            return None                      # read, never changed: nothing to write
        if self.write_delay:
            time.sleep(self.write_delay)
        if self.merge is None or accessed_only or self.is_new or not hasattr(self, "loaded"):
            return super().save(accessed_only)
        with self.save_lock(self.id):
            stored = self._stored_now()
            merged = self.merge(stored if stored is not None else {}, self.loaded, _plain(self))
            self.clear()
            self.update(merged)
            return super().save()

    def _stored_now(self) -> dict | None:
        """The record as the store holds it at this moment (another request may have saved since).

        Only a loaded session gets here, so it has a namespace (``load`` made it); after a new ID
        (``regenerate_id``) that namespace is the old ID's, and the new ID has no record yet.
        """
        if self.namespace.namespace != self.id:
            return None
        try:
            raw = self.namespace["session"]
        except KeyError:
            return None
        if raw is None:
            return None
        return _plain(self._decrypt_data(raw))


def _plain(data) -> dict:
    return {key: value for key, value in dict(data).items()}


def session_class(base: type, *, resave: bool = False, write_delay: float = 0.0, merge=None,
                  save_lock=None) -> type:
    """A subclass of ``base`` (a Beaker session class) with the knobs above."""
    if merge is not None and save_lock is None:
        raise ValueError("merge-on-save needs a save_lock: the re-read and the write must not interleave")
    return type(f"Concurrent{base.__name__}", (_Concurrent, base), {
        "resave": bool(resave), "write_delay": float(write_delay),
        "merge": staticmethod(merge) if merge else None,
        "save_lock": staticmethod(save_lock) if save_lock else None})


# ---------------------------------------------------------------- locks for one machine

class FileLocks:
    """``with locks.hold(session_id):`` an exclusive ``flock`` on one file per session.

    Every process (and every thread: each ``hold`` opens the file anew) on the machine waits for
    it; when a holder dies the kernel releases its lock at once. Files stay behind (one small empty
    file per session that was ever locked): remove the folder's old files along with the sessions.
    """

    def __init__(self, folder):
        self.folder = Path(folder)

    @contextlib.contextmanager
    def hold(self, session_id: str):
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:32] + ".lock"
        with open(self.folder / name, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- stores, Sentinel included

def store_config(url: str) -> dict:
    """Options for ``beakerkit.session_config`` for a store URL (a bad one: ``ValueError``)."""
    if url.partition(":")[0].lower() == SENTINEL_SCHEME:
        return _sentinel_options(url)
    return stores_beaker.hardened(stores_beaker.beaker_options(url))


def describe(url: str, options: dict) -> str:
    if url.partition(":")[0].lower() == SENTINEL_SCHEME:
        return "Redis behind Sentinel (redis-py asks the sentinels where the primary is)"
    return stores_beaker.describe(stores_beaker.beaker_options(url))


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``redis+sentinel://h1:p1,h2:p2/SERVICE/DB`` -> ([(h1, p1), (h2, p2)], SERVICE, DB)."""
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Bad Sentinel URL {url!r}: {item!r} is not HOST:PORT "
                             f"(as in {SENTINEL_SCHEME}://127.0.0.1:26379/mymaster/0)")
        hosts.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"Bad Sentinel URL {url!r}: it needs the service name the sentinels monitor "
                         f"(as in {SENTINEL_SCHEME}://127.0.0.1:26379/mymaster/0)")
    return hosts, path[0], int(path[1]) if len(path) == 2 else 0


_SENTINEL_CLIENTS: dict[str, object] = {}
_SENTINEL_LOCK = threading.Lock()


def sentinel_client(url: str):
    """redis-py's client for the current primary (one per URL and process), short timeouts.

    Each new connection asks the sentinels for the primary's address, so after a failover the
    next connection goes to the promoted replica; until the sentinels have promoted one, the
    commands fail and the app answers 503 (the store is down for that moment).
    """
    with _SENTINEL_LOCK:
        client = _SENTINEL_CLIENTS.get(url)
        if client is None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry
            from redis.sentinel import Sentinel

            hosts, service, db = parse_sentinel_url(url)
            sentinel = Sentinel(hosts, socket_timeout=0.5, socket_connect_timeout=0.5)
            client = sentinel.master_for(service, db=db, socket_timeout=1, socket_connect_timeout=1,
                                         retry=Retry(NoBackoff(), 1))
            _SENTINEL_CLIENTS[url] = client
        return client


def _sentinel_options(url: str) -> dict:
    parse_sentinel_url(url)                                    # a bad URL fails at start-up
    namespace = stores_beaker._guarded_class(beaker_backends.RedisJson, "Redis (Sentinel)", None)
    return {"type": "ext:redis", "url": _LazySentinel(url), "namespace_class": namespace,
            "session_class": beaker_backends.JsonSession}


class _LazySentinel:
    """The Sentinel client, made on first use (creating the app connects to nothing)."""

    def __init__(self, url: str):
        self.url = url

    def command(self, *args):
        """One command to the current primary (what ``beaker_backends.RedisJson`` sends)."""
        return sentinel_client(self.url).execute_command(*args)

    def __getattr__(self, name):
        return getattr(sentinel_client(self.url), name)


def redis_for_locks(url: str):
    """The client a Redis lock talks through: ``.command("SET", ...)`` and friends."""
    if url.partition(":")[0].lower() == SENTINEL_SCHEME:
        client = sentinel_client(url)
        return _RedisPyCommands(client)
    return beaker_backends.redis_store(url)


class _RedisPyCommands:
    """redis-py's client seen through ``command(*args)``, as ``beaker_backends.RedisStore`` offers."""

    def __init__(self, client):
        self.client = client

    def command(self, *args):
        return self.client.execute_command(*args)


# ---------------------------------------------------------------- a counter table (exercise 09.3)

def counter_table(store_options: dict) -> tuple[object, str, str]:
    """``(sql_store, table, placeholder)`` for the visit counters next to an SQL session table.

    The table (``<session table>_counters``: ``name`` the primary key, ``n`` the count, ``seen`` the
    time of its last visit, so counters whose session has ended can be deleted) is created if
    needed; ``sql_store.run(sql, params, fetch=True)`` runs one statement in autocommit mode and
    returns the first column of the first row.
    """
    store = beaker_backends.sql_store(store_options["url"], store_options.get("table_name", "beaker_cache"))
    table = store_options.get("table_name", "beaker_cache") + "_counters"
    store.run(f"CREATE TABLE IF NOT EXISTS {table} (name VARCHAR(255) PRIMARY KEY, n BIGINT NOT NULL, "
              "seen DOUBLE PRECISION)", ())
    return store, table, "?" if store.dialect == "sqlite" else "%s"

