"""Beaker store backends of the course's own: JSON records, native expiry, one round trip, no pickle.

Beaker's own backends pickle every record (``ext:redis``, ``ext:database``, ``file``, ``dbm``,
``ext:mongodb``; python-memcached pickles anything that is not a string): whoever can write one
value into the store runs code in the app the next time that session is loaded. They also make
more trips to the store than a request needs, and none of the SQL or file stores ever expires a
record. The classes here replace them, plugged in through Beaker's ``namespace_class`` option
(``stores_beaker.hardened()`` picks them; the URL forms and Beaker ``type`` names stay the same):

==================  =============================================  ==================================
store               one load / one save                            expiry
==================  =============================================  ==================================
Redis               ``GET key`` / ``SET key value EX ttl``         Redis drops the key (``EX``)
PostgreSQL,         ``SELECT data ... WHERE namespace = ? AND      an ``expires`` column with an
MariaDB, SQLite     expires > now`` / one upsert (``INSERT ...     index: expired rows are never
                    ON CONFLICT`` / ``ON DUPLICATE KEY``)          loaded, and purged every 5 minutes
memcached           ``get`` / ``set`` with the TTL                 memcached drops the item
files, dbm          one read / one write of the record             by the purge (``app.py purge``)
MongoDB             Beaker's, minus pickle (NOT verified here)     an ``expiration`` field
==================  =============================================  ==================================

The record is the session as JSON text (:class:`JsonSession`), exactly what the store holds:
``{"visits":3,"_creation_time":...,"_accessed_time":...}``, readable with ``redis-cli GET``, ``SELECT``
or ``cat``. A record that is not JSON (a pickle planted by an attacker, a stock-Beaker leftover)
is never unpickled: it is logged once as corrupt and the visitor gets a new, empty session.

``timeout`` (Beaker passes the session timeout + 120 s) is the record's time to live, restarted by
every save, as express-session's stores do. Connection errors are the drivers' own; the classes
are wrapped by ``stores_beaker`` so that "the store is down" becomes one exception.
"""
from __future__ import annotations

import atexit
import errno
import json
import logging
import math
import os
import threading
import time
from contextlib import closing, suppress
from datetime import datetime

from beaker.container import DBMNamespaceManager, FileNamespaceManager, NamespaceManager
from beaker.synchronization import null_synchronizer

from course.kit.beakerkit import CorruptSession, StrictSession
from course.kit.storedown import StoreUnavailable

log = logging.getLogger("course.kit.beaker_backends")

# (MongoJson is made on first use, by the module's __getattr__: pymongo's bson loads only then.)
__all__ = ["JsonSession", "SessionTooLarge", "RedisJson", "RedisStore", "redis_store", "SqlJson", "MemcachedJson",
           "FileJson", "DbmJson", "sql_store", "PURGE_EVERY"]

PURGE_EVERY = 300.0        # seconds between two purges of expired SQL rows, per process and table


class SessionTooLarge(Exception):
    """The session is bigger than the store can hold; nothing was written (the old record stays)."""

    def __init__(self, size: int, limit: int, store: str):
        self.size, self.limit, self.store = size, limit, store
        super().__init__(f"Session too large for the store: it is {size} bytes once encoded, and "
                         f"{store} holds at most {limit} bytes per session")


# ---------------------------------------------------------------- the record: JSON text

class JsonSession(StrictSession):
    """:class:`~course.kit.beakerkit.StrictSession` whose record is the session as plain JSON.

    Beaker's ``data_serializer='json'`` still wraps the JSON in zlib and base64, and its backends
    then pickle that. Here the text handed to the store is ``json.dumps(session)`` (with
    ``encrypt_key``, Beaker's encrypted form, which is ASCII). A record that does not decode to a
    JSON object is corrupt: logged, and the visitor starts a new session with a new ID (never a
    500, never the old ID).
    """

    def _encrypt_data(self, session_data=None):
        if self.encrypt_key:
            return super()._encrypt_data(session_data)
        return json.dumps(session_data or self.copy(), separators=(",", ":"))

    #: Beaker's bookkeeping keys: it subtracts them from the time (the timeout check) and shows them
    #: (``session.created``, ``last_accessed``), so they must be times, never text, null or NaN.
    TIME_KEYS = ("_creation_time", "_accessed_time")

    def _decrypt_data(self, session_data):
        if not isinstance(session_data, (str, bytes, bytearray, memoryview)):
            # What a store with types of its own can hand back (SQLite's INTEGER or REAL in the data
            # column): never converted, ``bytes(10**15)`` would try to allocate a petabyte.
            raise CorruptSession(f"the stored session {self.id} is a {type(session_data).__name__}, "
                                 f"not JSON text; it was not loaded")
        if self.encrypt_key:
            return self.checked_record(super()._decrypt_data(session_data))
        try:
            if not isinstance(session_data, str):
                session_data = bytes(session_data).decode("utf-8")
            data = json.loads(session_data)
        except Exception as exc:
            raise CorruptSession(f"the stored session {self.id} is not JSON "
                                 f"({type(exc).__name__}); it was not loaded") from None
        return self.checked_record(data)

    def checked_record(self, data):
        """``data``, the decoded record, if Beaker can use it; else :class:`CorruptSession`.

        The one place that decides whether a loaded record is valid. Anything Beaker would choke on
        after this point is a 500 on every request with that cookie (``now - "x"`` in its timeout
        check), so it is refused here: a record that is not a JSON object, or whose bookkeeping
        keys (:attr:`TIME_KEYS`, when present) are not finite numbers. What the app keeps in its
        own keys is the app's to check.
        """
        if not isinstance(data, dict):
            raise CorruptSession(f"the stored session {self.id} is not a JSON object; it was not loaded")
        for key in self.TIME_KEYS:
            value = data.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CorruptSession(f"the stored session {self.id} has a {key} that is not a time "
                                     f"({type(value).__name__}); it was not loaded")
        return data

    def load(self):
        try:
            super().load()
        except CorruptSession as exc:
            log.warning("corrupt session record ignored, a new session starts: %s", exc)
            self.clear()
            self.accessed_dict = {}
            self._create_id()               # is_new=True; the new cookie goes out when it is saved
            self["_accessed_time"] = self["_creation_time"] = time.time()


def _encode(value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class _JsonNamespace(NamespaceManager):
    """One session's record (Beaker makes one of these per request; keep ``__init__`` cheap).

    Beaker only ever uses the key ``"session"``; subclasses implement ``_load() -> bytes | None``,
    ``_save(data: bytes, ttl)`` and ``_delete()``.
    """

    limit: int | None = None               # the most one record may hold (bytes), if the store has a limit
    store_name = "the store"

    def __init__(self, namespace, timeout=None, **_ignored):
        self.namespace = namespace
        self.ttl = int(timeout) if timeout else None

    def get_creation_lock(self, key):
        return null_synchronizer()

    def __getitem__(self, key):
        data = self._load()
        if data is None:
            raise KeyError(key)
        return data

    def __contains__(self, key):
        return self._load() is not None

    def has_key(self, key):
        return key in self

    def set_value(self, key, value, expiretime=None):
        data = _encode(value)
        if self.limit is not None and len(data) > self.limit:
            raise SessionTooLarge(len(data), self.limit, self.store_name)
        self._save(data, int(expiretime) if expiretime else self.ttl)

    def __setitem__(self, key, value):
        self.set_value(key, value)

    def __delitem__(self, key):
        self._delete()

    def do_remove(self):
        self._delete()

    def keys(self):
        return ["session"] if self._load() is not None else []


# ---------------------------------------------------------------- Redis

class RedisJson(_JsonNamespace):
    """``GET`` to load, ``SET ... EX`` to save, ``DEL`` to destroy: one command each.

    ``url`` is the :class:`RedisStore` of the URL (``stores_beaker.hardened()`` puts it there, from
    :func:`redis_store`). The key is Beaker's own, ``beaker_cache:<session id>:session``.
    """

    store_name = "Redis"

    def __init__(self, namespace, url=None, timeout=None, **_ignored):
        self.namespace = namespace
        self.ttl = int(timeout) if timeout else None
        self.store = url
        self.key = f"beaker_cache:{namespace}:session"

    def _load(self):
        return self.store.command("GET", self.key)

    def _save(self, data, ttl):
        if ttl:
            self.store.command("SET", self.key, data, "EX", ttl)
        else:
            self.store.command("SET", self.key, data)

    def _delete(self):
        self.store.command("DEL", self.key)


class RedisStore:
    """redis-py's connections to one Redis URL, for the three commands a session needs.

    Everything that talks to Redis is redis-py's: the URL (``redis://``, ``rediss://`` for TLS,
    user, password, database), the connection (``AUTH`` and ``SELECT`` once, timeouts, TLS), the
    protocol and its parser, the errors. What is skipped is the layer around one command:
    ``redis.Redis.get()`` checks the pooled connection out with a non-blocking read and two timeout
    changes, dispatches events and records metrics: 54 µs of CPU per ``GET`` + ``SET`` against 22 µs
    this way (measured in-process, lesson 08's README), where a session needs one ``send_command``
    and one ``read_response`` (one round trip). So the idle connections are kept here, one list per
    process (at most 16 idle; more are closed when given back):

    * connect timeout 1 s, reply timeout 2 s (redis-py's default is no timeout at all);
    * a pooled connection found broken (Redis restarted, the network dropped it) is dropped and the
      command sent once more, at once, on a new connection (GET, SET and DEL can be repeated safely;
      never on another pooled one: after a restart they are all broken), so an outage costs no
      request once Redis is back; nothing else is retried, not a timeout either
      (redis-py's default is three retries with back-off, which would hang a request for seconds
      while Redis is down);
    * no ``CLIENT SETINFO`` on connect (two round trips per new connection, for a label);
    * after a fork, the child never uses the parent's sockets.

    redis-py's ``ConnectionError`` and ``TimeoutError`` are "the store is down"
    (:func:`course.kit.storedown.store_errors`); an error reply (``-OOM``, ``-READONLY``,
    ``-MISCONF``...) means Redis is not storing sessions now, so it is :class:`StoreUnavailable` too,
    except ``-WRONGTYPE``: the key holds something that is not a record, a
    :class:`~course.kit.beakerkit.CorruptSession` (a new session), never an outage.
    """

    def __init__(self, url: str):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.pool = redis.ConnectionPool.from_url(      # used only to make connections, never to lend them
            url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0), driver_info=None)
        self._down = (redis.ConnectionError, redis.TimeoutError)
        self._slow = redis.TimeoutError
        self._refused = redis.ResponseError
        self._idle: list = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def command(self, *args):
        """Send one command, read its reply (bytes, an int, or None)."""
        with self._lock:
            if self._pid != os.getpid():              # forked: never share the parent's sockets
                self._idle, self._pid = [], os.getpid()
            pooled = self._idle.pop() if self._idle else None
        if pooled is not None:
            try:
                return self._send(pooled, args)
            except self._slow:
                raise                                 # a timeout is not retried: Redis is there but stuck
            except self._down:
                pass                                  # a pooled connection that died meanwhile: once more,
        return self._send(self.pool.make_connection(), args)    # on a new one (it connects on its first command)

    def _send(self, conn, args):
        try:
            conn.send_command(*args)
            reply = conn.read_response()
        except self._refused as exc:
            self._checkin(conn)                       # the connection is fine; Redis said no
            if str(exc).startswith("WRONGTYPE"):
                # About the key, not about Redis: it holds a list, a hash... (someone else wrote it).
                # Reported as "unavailable", that cookie got a 503 for as long as the key lived.
                raise CorruptSession(f"the Redis key {args[1]!r} holds another type than a string "
                                     f"record ({exc}); it was not loaded") from exc
            raise StoreUnavailable(f"Redis refused {args[0]}: {exc}") from exc
        except BaseException:
            conn.disconnect()                         # redis-py has closed it already; a reply may be half read
            raise
        self._checkin(conn)
        return reply

    def _checkin(self, conn):
        with self._lock:
            if len(self._idle) < 16:
                self._idle.append(conn)
                return
        conn.disconnect()


_REDIS_STORES: dict[str, RedisStore] = {}
_REDIS_LOCK = threading.Lock()


def redis_store(url: str) -> RedisStore:
    """The :class:`RedisStore` of a Redis URL (one per process; made on first use)."""
    store = _REDIS_STORES.get(url)
    if store is None:
        with _REDIS_LOCK:
            store = _REDIS_STORES.get(url)
            if store is None:
                store = _REDIS_STORES[url] = RedisStore(url)
    return store


# ---------------------------------------------------------------- SQL: PostgreSQL, MariaDB/MySQL, SQLite

_SQL_STORES: dict[tuple[str, str], "SqlStore"] = {}
_SQL_LOCK = threading.Lock()


@atexit.register
def _close_sql_stores() -> None:
    for store in list(_SQL_STORES.values()):
        store.close_idle()


def sql_store(url: str, table: str) -> "SqlStore":
    """The :class:`SqlStore` of a SQLAlchemy URL and a table (one per process; made on first use)."""
    key = (url, table)
    store = _SQL_STORES.get(key)
    if store is None:
        with _SQL_LOCK:
            store = _SQL_STORES.get(key)
            if store is None:
                store = _SQL_STORES[key] = SqlStore(url, table)
    return store


class SqlStore:
    """A table of session records and a small pool of DBAPI connections in autocommit mode.

    SQLAlchemy parses the URL and makes the connections (its dialect knows each driver's
    arguments), but the hot path is plain DBAPI: one statement, no transaction block, no
    ``pool_pre_ping`` (which would be a second round trip on every request). A connection that
    turns out to be broken (the server restarted, the network dropped it) is thrown away and the
    statement retried once on a new one, so an outage costs no request after the server is back.

    The table (Beaker's columns, so ``sql_table()`` and the lesson's purge read it as before, plus
    ``expires``)::

        namespace  the session ID (primary key)      created, accessed  when (local time, as Beaker)
        data       the record: JSON, UTF-8 bytes      expires            epoch seconds, or NULL: never

    A table made by stock Beaker (``id``, pickled ``data``) gets the ``expires`` column added; its
    old records are pickles, so they are not loaded (treated as corrupt: new sessions).
    """

    def __init__(self, url: str, table: str):
        import sqlalchemy as sa
        self.url, self.table = url, table
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.dialect = self.engine.dialect.name            # postgresql, mysql, sqlite
        self.dbapi = self.engine.dialect.loaded_dbapi
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        self._cargs, self._cparams = cargs, cparams
        self._idle: list = []
        self._pid = os.getpid()                            # the process whose connections _idle holds
        self._lock = threading.Lock()
        self._init_lock = threading.Lock()
        self._ready = False
        self._next_purge = 0.0
        self.errors = (self.dbapi.OperationalError, self.dbapi.InterfaceError)
        q = "?" if self.dialect == "sqlite" else "%s"
        t = table
        self.select_sql = (f"SELECT data FROM {t} WHERE namespace = {q} "
                           f"AND (expires IS NULL OR expires > {q})")
        columns = f"INSERT INTO {t} (namespace, created, accessed, data, expires) VALUES ({q}, {q}, {q}, {q}, {q})"
        if self.dialect == "mysql":
            self.upsert_sql = (columns + " ON DUPLICATE KEY UPDATE accessed = VALUES(accessed), "
                               "data = VALUES(data), expires = VALUES(expires)")
        else:
            self.upsert_sql = (columns + " ON CONFLICT (namespace) DO UPDATE SET accessed = excluded.accessed, "
                               "data = excluded.data, expires = excluded.expires")
        self.delete_sql = f"DELETE FROM {t} WHERE namespace = {q}"
        self.purge_sql = f"DELETE FROM {t} WHERE expires IS NOT NULL AND expires <= {q}"

    # connections
    def _connect(self):
        if self.dialect == "sqlite":
            import sqlite3
            path = self._cargs[0]                          # SQLAlchemy's: an absolute path, or ":memory:"
            folder = os.path.dirname(path)
            if folder:
                os.makedirs(folder, exist_ok=True)         # SQLite creates the file, not its folder
            # timeout: wait up to 5 s for another writer (sqlite3 sets SQLite's busy timeout from it)
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
            # NORMAL: a commit does not wait for the disk (a power cut may lose the last sessions
            # written, never corrupt the file). WAL (readers never wait for the writer) is kept in
            # the file itself, so it is turned on once, below, with the table.
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn = self.dbapi.connect(*self._cargs, **self._cparams)
            if self.dialect == "mysql":
                conn.autocommit(True)
            else:
                conn.autocommit = True
                # A session write need not wait for PostgreSQL's disk flush (most of a save's time):
                # a crash of the server may lose the last moment of session writes, never corrupt them.
                conn.execute("SET synchronous_commit = off")
        if not self._ready:
            # One thread makes the table (and turns WAL on) while the others wait: four threads
            # doing it at once on a new SQLite file got "database is locked".
            with self._init_lock:
                if not self._ready:
                    if self.dialect == "sqlite":
                        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                    self._create_table(conn)
        return conn

    def _own_idle(self) -> list:
        """The pooled connections, emptied first if they were made by another process (call with the lock).

        After a fork the child holds copies of the parent's sockets: a statement sent on one by both
        processes gets its reply read by either of them (on PostgreSQL a visitor was handed another
        visitor's session, and the save that followed wrote it under the wrong ID). So the child
        drops them, without closing them: ``close()`` would tell the server to end the parent's
        connection (PostgreSQL's Terminate, MariaDB's COM_QUIT). The drivers' own finalizers are
        fork-safe: psycopg does not finish a connection made by another pid, PyMySQL's only closes its
        socket (the parent's stays open), and SQLite has no server to tell.
        """
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        return self._idle

    def _checkin(self, conn):
        with self._lock:
            idle = self._own_idle()
            if len(idle) < 16:
                idle.append(conn)
                return
        conn.close()

    def close_idle(self) -> None:
        """Close the pooled connections (at exit: the drivers warn about a connection left open).

        In a forked child that never used the store, the pool is the parent's: it is dropped, not
        closed (see :meth:`_own_idle`)."""
        with self._lock:
            idle, self._idle = self._own_idle(), []
        for conn in idle:
            with suppress(Exception):
                conn.close()

    def run(self, sql: str, params: tuple, fetch: bool = False):
        """Execute one statement (one round trip); the first column of the first row if ``fetch``.

        On a pooled connection first; if that one turns out to be broken (not on SQLite, whose
        connections do not drop), once more on a new connection, never on another pooled one (after a
        restart of the server they are all broken). Never on a connection of another process."""
        with self._lock:
            idle = self._own_idle()
            pooled = idle.pop() if idle else None
        if pooled is not None:
            try:
                return self._execute(pooled, sql, params, fetch)
            except StoreUnavailable:
                if self.dialect == "sqlite":
                    raise
        try:
            conn = self._connect()
        except self.errors as exc:
            raise self._unavailable(exc) from exc
        return self._execute(conn, sql, params, fetch)

    def _execute(self, conn, sql: str, params: tuple, fetch: bool):
        try:
            with closing(conn.cursor()) as cur:
                cur.execute(sql, params)
                result = cur.fetchone() if fetch else cur.rowcount
        except self.errors as exc:
            _close_quietly(conn)
            raise self._unavailable(exc) from exc
        except BaseException:
            _close_quietly(conn)
            raise
        self._checkin(conn)
        if fetch:
            return None if result is None else result[0]
        return result

    @staticmethod
    def _unavailable(exc: BaseException) -> StoreUnavailable:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return StoreUnavailable(f"the SQL session store is unavailable ({type(exc).__name__}: {first})")

    # the table
    def _create_table(self, conn):
        t = self.table
        with closing(conn.cursor()) as cur:
            if self.dialect == "postgresql":
                ddl = [f"CREATE TABLE IF NOT EXISTS {t} (namespace VARCHAR(255) PRIMARY KEY, "
                       f"created TIMESTAMP NOT NULL, accessed TIMESTAMP NOT NULL, data BYTEA NOT NULL, "
                       f"expires DOUBLE PRECISION)",
                       f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS expires DOUBLE PRECISION",
                       f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires)"]
            elif self.dialect == "mysql":
                cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                            "AND table_name = %s", (t,))
                names = [str(row[0]).lower() for row in cur.fetchall()]
                if not names:
                    # VARBINARY: the ID compares byte for byte. A VARCHAR compares by the table's
                    # collation, case-insensitive by default: a signed upper-case copy of an ID
                    # loaded that visitor's session. (A table stock Beaker made is left as it is.)
                    ddl = [f"CREATE TABLE IF NOT EXISTS {t} (namespace VARBINARY(255) NOT NULL PRIMARY KEY, "
                           f"created DATETIME(6) NOT NULL, accessed DATETIME(6) NOT NULL, data BLOB NOT NULL, "
                           f"expires DOUBLE NULL, INDEX {t}_expires (expires))"]
                elif "expires" not in names:
                    ddl = [f"ALTER TABLE {t} ADD COLUMN expires DOUBLE NULL, ADD INDEX {t}_expires (expires)"]
                else:
                    ddl = []
            else:
                ddl = [f"CREATE TABLE IF NOT EXISTS {t} (namespace VARCHAR(255) PRIMARY KEY, "
                       f"created TIMESTAMP NOT NULL, accessed TIMESTAMP NOT NULL, data BLOB NOT NULL, "
                       f"expires REAL)"]
                cur.execute(f"PRAGMA table_info({t})")
                names = [row[1] for row in cur.fetchall()]
                if names and "expires" not in names:
                    ddl.append(f"ALTER TABLE {t} ADD COLUMN expires REAL")
                ddl.append(f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires)")
            for statement in ddl:
                try:
                    cur.execute(statement)
                except self.dbapi.IntegrityError:
                    pass                        # PostgreSQL: another process created it at the same moment
        self._ready = True

    def load(self, sid: str, now: float) -> bytes | None:
        return self.run(self.select_sql, (sid, now), fetch=True)

    def save(self, sid: str, data: bytes, ttl: int | None) -> None:
        moment = time.time()
        stamp = datetime.fromtimestamp(moment)
        if self.dialect == "sqlite":
            stamp = stamp.isoformat(" ", "microseconds")   # what SQLAlchemy's DateTime writes there
        self.run(self.upsert_sql, (sid, stamp, stamp, data, moment + ttl if ttl else None))
        if moment >= self._next_purge:
            self._next_purge = moment + PURGE_EVERY
            self.purge(moment)

    def delete(self, sid: str) -> None:
        self.run(self.delete_sql, (sid,))

    def purge(self, now: float | None = None) -> int:
        """Delete the records whose ``expires`` has passed; how many."""
        return self.run(self.purge_sql, (time.time() if now is None else now,))


def _retry_locked(statement, tries: int = 50, pause: float = 0.02):
    """Run ``statement()``; while SQLite answers "database is locked" (switching to WAL takes the whole
    file, and the busy timeout does not apply to it), wait a moment and try again."""
    import sqlite3
    for attempt in range(tries):
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(pause)


def _close_quietly(conn) -> None:
    try:
        conn.close()
    except Exception:
        pass


class SqlJson(_JsonNamespace):
    """One ``SELECT`` to load, one upsert to save, in the table ``table_name`` (see :class:`SqlStore`)."""

    store_name = "the SQL store"

    def __init__(self, namespace, url=None, table_name="beaker_cache", timeout=None, **_ignored):
        self.namespace = namespace
        self.ttl = int(timeout) if timeout else None
        self.store = sql_store(url, table_name)

    def _load(self):
        """The ``data`` column as it is: bytes, or whatever else SQLite's dynamic typing let in
        (TEXT is read as JSON text; an INTEGER or REAL, never converted, is refused as corrupt by
        :meth:`JsonSession._decrypt_data`)."""
        data = self.store.load(self.namespace, time.time())
        return bytes(data) if isinstance(data, (bytearray, memoryview)) else data

    def _save(self, data, ttl):
        self.store.save(self.namespace, data, ttl)

    def _delete(self):
        self.store.delete(self.namespace)


# ---------------------------------------------------------------- memcached

class _RefuseToUnpickle:
    """python-memcached's ``unpickler``: an item flagged as a pickle is refused, never loaded.

    (A second guard: the kit's client never decodes an item flagged as anything but bytes.)"""

    def __init__(self, file):
        """python-memcached hands over the item's bytes; they are never read."""

    def load(self):
        log.warning("a memcached item flagged as a pickle was refused (never unpickled); "
                    "the session is treated as unknown")
        raise ValueError("pickled memcached items are refused")


_MEMCACHED_CLIENTS: dict[str, object] = {}
_MEMCACHED_RECORD_FLAGS = 0            # python-memcached's flags for bytes stored as they are: what the kit writes


def _record_only_client_class():
    """python-memcached's ``Client``, except that only an item with the kit's flags is ever decoded.

    python-memcached decodes an item by the flags stored with it: 1 unpickles, 2 and 4 ``int()``
    (then the kit's ``bytes(int)`` was 50 MB for the text ``50000000``, a MemoryError for
    ``1000000000000000``), 8 decompresses (a 194 kB zlib bomb became 200 MB), 16 decodes UTF-8. The
    kit only ever writes bytes (flags 0), so whoever wrote any other flags was not the kit: the item
    is read off the connection as it is (which keeps the protocol in step), never decoded, logged
    as corrupt, and the session is unknown (a new one starts).
    """
    import memcache

    class RecordOnlyClient(memcache.Client):
        def _get_server(self, key):
            """The key's own server, or none when it is down: python-memcached would try the key on
            the next live server, where the session is not, and the visitor was logged out (a new
            session, no 503) whenever one of several servers went down."""
            serverhash, key = key if isinstance(key, tuple) else (memcache.serverHashFunction(key), key)
            if not self.buckets:
                return None, None
            server = self.buckets[serverhash % len(self.buckets)]
            return (server, key) if server.connect() else (None, None)

        def _recv_value(self, server, flags, rlen):
            if flags == _MEMCACHED_RECORD_FLAGS:
                return super()._recv_value(server, flags, rlen)
            super()._recv_value(server, _MEMCACHED_RECORD_FLAGS, rlen)     # consumed, not decoded
            log.warning("corrupt session record ignored: a memcached item with flags %d (not the kit's "
                        "record; never unpickled, decompressed or converted); the session is treated as "
                        "unknown", flags)
            return None

    return RecordOnlyClient


def _memcached_client(url: str):
    client = _MEMCACHED_CLIENTS.get(url)
    if client is None:
        client = _MEMCACHED_CLIENTS[url] = _record_only_client_class()(
            url.split(";"), socket_timeout=1, dead_retry=1, unpickler=_RefuseToUnpickle)
    return client


class MemcachedJson(_JsonNamespace):
    """python-memcached, fixed: ``get``/``set`` with the TTL, bytes only (no pickle either way).

    An item whose flags are not the kit's is never decoded (:func:`_record_only_client_class`) and
    an ID memcached cannot have as a key (over 250 characters) is an unknown session, not a 500.

    A store that is down raises instead of looking like an empty session (python-memcached answers
    None), a server is retried after 1 s instead of 30 s, and removing a session deletes that
    session only (Beaker's ``remove()`` is ``flush_all``: everybody's).
    """

    limit = 1_000_000                      # memcached's default item size is 1 MB
    store_name = "memcached"

    def __init__(self, namespace, url=None, timeout=None, **_ignored):
        self.namespace = namespace
        self.ttl = int(timeout) if timeout else None
        self.mc = _memcached_client(url)
        self.key = f"{namespace}_session"

    def _down(self) -> bool:
        """Whether the server this session's key lives on is down (of one, or of several)."""
        return self.mc._get_server(self.mc._encode_key(self.key))[0] is None

    def __getitem__(self, key):
        return self._load()                # None when absent: what Beaker expects of memcached

    def _load(self):
        try:
            value = self.mc.get(self.key)       # bytes or None: see _record_only_client_class
        except self.mc.MemcachedKeyError:
            return None                         # an ID memcached cannot have as a key (over 250 characters...)
        if value is None and self._down():
            raise StoreUnavailable("memcached is unavailable")
        return value

    def _save(self, data, ttl):
        if not self.mc.set(self.key, data, time=ttl or 0):
            raise StoreUnavailable("memcached did not store the session")

    def _delete(self):
        try:
            self.mc.delete(self.key)
        except self.mc.MemcachedKeyError:
            return                              # no such key can exist
        if self._down():
            raise StoreUnavailable("memcached is unavailable")


# ---------------------------------------------------------------- files and dbm: Beaker's layout and locks

class FileJson(FileNamespaceManager):
    """Beaker's ``file`` backend (same folders, same ``flock`` locks), the file being the JSON record.

    Beaker writes ``pickle.dumps({"session": record})``; here the file holds the record itself.
    An unreadable file (a pickle) reaches :class:`JsonSession` as it is, which refuses it.
    """

    def __init__(self, namespace, timeout=None, **kwargs):
        super().__init__(namespace, **kwargs)

    def do_open(self, flags, replace):
        self.hash = {}
        if not replace:
            try:
                with open(self.file, "rb") as fh:
                    self.hash["session"] = fh.read()
            except FileNotFoundError:
                pass
        self.flags = flags

    def do_close(self):
        if self.flags in ("c", "w"):
            if "session" in self.hash:
                from beaker import util
                util.safe_write(self.file, _encode(self.hash["session"]))
            else:
                try:
                    os.remove(self.file)
                except FileNotFoundError:
                    pass
        self.hash = {}
        self.flags = None


class DbmJson(DBMNamespaceManager):
    """Beaker's ``dbm`` backend with the record stored as bytes (Beaker pickles it).

    A session's dbm files that are not a dbm any more are a corrupt record (a new session), not a
    500 or an outage. ``dbm.dumb`` reads its ``.dir`` index with ``ast.literal_eval``, so a rewritten
    index fails to open with SyntaxError, ValueError, RecursionError...; an offset in it that points
    nowhere fails the read with ``EINVAL``. Any other ``OSError`` is the disk failing: the store is down.
    """

    def __init__(self, namespace, timeout=None, **kwargs):
        super().__init__(namespace, **kwargs)

    def do_open(self, flags, replace):
        try:
            super().do_open(flags, replace)
        except OSError:
            raise
        except Exception as exc:
            raise CorruptSession(f"the dbm files of session {self.namespace} are not a dbm "
                                 f"({type(exc).__name__}); it was not loaded") from None

    def __getitem__(self, key):
        try:
            return self.dbm[key]
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            bad = exc
        except ValueError as exc:                 # a negative seek position, on some Pythons
            bad = exc
        raise CorruptSession(f"the dbm index of session {self.namespace} points outside its data "
                             f"({type(bad).__name__}); it was not loaded")

    def __setitem__(self, key, value):
        self.dbm[key] = _encode(value)


# ---------------------------------------------------------------- MongoDB (not verified: no server here)

def _mongo_class():
    from beaker.ext.mongodb import MongoNamespaceManager

    class MongoJson(MongoNamespaceManager):
        """Beaker's ``ext:mongodb`` with the record stored as bytes, never pickled, and the TTL set.

        NOT verified in the course's CI (no MongoDB server can be installed there).
        """

        def __init__(self, namespace, url, timeout=None, **kw):
            super().__init__(namespace, url, **kw)
            self.ttl = int(timeout) if timeout else None

        def __getitem__(self, key):
            self._clear_expired()
            entry = self.db.backer_cache.find_one({"_id": self._format_key(key)})
            if entry is None:
                raise KeyError(key)
            return bytes(entry["value"])

        def set_value(self, key, value, expiretime=None):
            import bson
            self._clear_expired()
            ttl = expiretime or self.ttl
            self.db.backer_cache.update_one(
                {"_id": self._format_key(key)},
                {"$set": {"value": bson.Binary(_encode(value)), "expiration": time.time() + ttl if ttl else None}},
                upsert=True)

    return MongoJson


def __getattr__(name):
    if name == "MongoJson":
        return _mongo_class()
    raise AttributeError(name)
