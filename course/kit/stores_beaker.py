"""Where Beaker keeps sessions: store URLs, the fixes each backend needs, purging, and a look inside.

The finished reference of lesson 08:

* :func:`beaker_options` - a store URL (``memory:``, ``file:PATH``, ``dbm:PATH``,
  ``sqlite:///PATH``, ``redis://...``, ``postgresql://...``, ``mysql://...``, ``memcached://...``,
  ``mongodb://...``) as Beaker options: the backend (``type``) and what it needs (``url``,
  ``data_dir``, ``table_name``). A bad URL is a ``ValueError`` naming it and listing the forms.
* :func:`hardened` - those options plus the course's own backends (``course.kit.beaker_backends``)
  and the fixes each store needs on current drivers, as extra options for ``beakerkit.session_config``:

  - every backend: the record is the session as **JSON** (``beaker_backends.JsonSession``), and
    nothing on any load path unpickles (Beaker's own backends pickle every record: a value written
    into the store by somebody else would run code in the app); one round trip per load and per
    save; a store error surfaces as ``storedown.StoreUnavailable`` (so the app answers 503, never
    a 500 and never a silent new session), and a session too big for the store is a
    :class:`SessionTooLarge` raised *before* anything is written (MariaDB's ``BLOB`` holds 65,535
    bytes; memcached items 1 MB - python-memcached would drop a bigger one without a word);
  - Redis: ``GET`` / ``SET ... EX`` (Redis expires the key), short socket timeouts and one
    immediate retry (redis-py's default is 3 retries with an exponential back-off of up to 10 s,
    so a dead Redis would hang each request for seconds);
  - PostgreSQL / MariaDB / SQLite: one ``SELECT`` / one upsert on a connection in autocommit mode,
    an ``expires`` column with an index (expired rows are never loaded, and are purged every few
    minutes), a connect timeout, and a broken pooled connection replaced (not a failed request
    after an outage); SQLite in WAL mode with a busy timeout, its folder created;
  - memcached (python-memcached, never pylibmc): a store that is down raises instead of looking
    like an empty session (python-memcached answers ``None``), items get the session's TTL
    (Beaker forgets to pass it), a server is retried after 1 s instead of 30 s, and removing a
    session deletes that session only (Beaker's ``remove()`` is ``flush_all``: everybody's);
  - files and dbm: Beaker's folders and locks, the record stored as it is (no pickle);
  - MongoDB (pymongo): Beaker's backend minus pickle, a TTL, a short server-selection timeout.
    Not verified in CI (no server here).

* :func:`purge_expired` - delete the sessions idle for longer than a timeout (and, in SQL, the rows
  whose ``expires`` has passed). Stock Beaker never deletes a record: SQL rows and files stay
  forever, and its MongoDB backend writes ``expiration: None`` on every document and creates no TTL
  index, so nothing there expires either (tests/test_library_claims.py shows it). Redis and
  memcached expire the kit's records themselves (a TTL on each key); the kit's MongoDB backend
  writes an ``expiration`` time that Beaker's own clean-up honours, which cannot be verified here
  (no MongoDB server); the memory store lives and
  dies with its process.
* :func:`peek` - what the store holds for one session (the Redis key and its TTL, the SQL row, the
  file on disk), for the lesson page and the notebook.
"""
from __future__ import annotations

import dbm
import errno
import functools
import hashlib
import json
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from course.kit import beaker_backends
from course.kit.beaker_backends import SessionTooLarge
from course.kit.storedown import StoreUnavailable, is_store_down

__all__ = ["ACCEPTED_FORMS", "beaker_options", "hardened", "SessionTooLarge", "purge_expired", "peek", "redact",
           "session_files", "sql_engine", "sql_table",
           "redis_client", "max_session_bytes",
           "describe"]

ACCEPTED_FORMS = (
    "memory:                                  (inside the app's process: lost on restart, not shared)",
    "file:PATH                                (one file per session under the folder PATH)",
    "dbm:PATH                                 (dbm files under the folder PATH)",
    "sqlite:///PATH                           (an SQLite database file; sqlite:////abs/path)",
    "redis://[:PASSWORD@]HOST[:PORT][/DB]",
    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?table=NAME]",
    "mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?table=NAME]     (MySQL or MariaDB)",
    "memcached://HOST[:PORT][,HOST[:PORT]...]",
    "mongodb://[USER:PASSWORD@]HOST[:PORT]/DATABASE",
)

DEFAULT_TABLE = "beaker_cache"          # Beaker's own name for its table
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SQL_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                "postgresql+psycopg": "postgresql+psycopg",
                "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "mysql+pymysql": "mysql+pymysql"}


def bad_url(url, why: str) -> ValueError:
    forms = "\n  ".join(ACCEPTED_FORMS)
    return ValueError(f"Bad session store URL {url!r}: {why}.\nAccepted forms:\n  {forms}")


def beaker_options(url: str) -> dict:
    """The Beaker options for a store URL (no connection is made); ``ValueError`` for a bad one.

    >>> beaker_options("postgresql://postgres@127.0.0.1/test")
    {'type': 'ext:database', 'url': 'postgresql+psycopg://postgres@127.0.0.1/test', 'table_name': 'beaker_cache'}
    """
    if not isinstance(url, str) or not url.strip():
        raise bad_url(url, "it is empty")
    url = url.strip()
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon:
        raise bad_url(url, "it has no scheme (the part before ':')")
    if scheme == "memory":
        if rest not in ("", "//"):
            raise bad_url(url, "memory: takes nothing after the colon")
        return {"type": "memory"}
    if scheme in ("file", "dbm"):
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise bad_url(url, f"{scheme}: needs a folder, as in {scheme}:.sessions/{scheme}")
        return {"type": scheme, "data_dir": path}
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "sqlite":
        if not rest.startswith("///") or len(rest) <= 3:
            raise bad_url(url, "sqlite needs a file, as in sqlite:///.sessions/sessions.db")
        table = _table(url, query)
        return {"type": "ext:database", "url": _without(url, "table"), "table_name": table}
    if scheme in _SQL_DRIVERS:
        if not parts.hostname or not parts.path.strip("/"):
            raise bad_url(url, "it needs a host and a database, as in "
                               f"{scheme.split('+')[0]}://user@127.0.0.1/test")
        table = _table(url, query)
        driver_url = _SQL_DRIVERS[scheme] + url[len(scheme):]
        return {"type": "ext:database", "url": _without(driver_url, "table"), "table_name": table}
    if scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise bad_url(url, "it needs a host, as in redis://127.0.0.1:6379/0")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise bad_url(url, "the Redis database is a number, as in redis://127.0.0.1:6379/0")
        return {"type": "ext:redis", "url": url}
    if scheme == "memcached":
        servers = [s.strip() for s in parts.netloc.split(",") if s.strip()]
        if not servers:
            raise bad_url(url, "it needs a server, as in memcached://127.0.0.1:11211")
        for server in servers:
            host, _, port = server.rpartition(":") if ":" in server else (server, "", "11211")
            if not host or not port.isdigit():
                raise bad_url(url, f"{server!r} is not HOST:PORT")
        return {"type": "ext:memcached", "url": ";".join(servers)}
    if scheme in ("mongodb", "mongodb+srv"):
        if not parts.netloc or not parts.path.strip("/"):
            raise bad_url(url, "it needs a host and a database, as in mongodb://127.0.0.1:27017/sessions")
        return {"type": "ext:mongodb", "url": url}
    raise bad_url(url, f"there is no session store called {scheme!r}")


def _table(url: str, query: dict) -> str:
    table = query.get("table", DEFAULT_TABLE)
    if not _TABLE_NAME.fullmatch(table):
        raise bad_url(url, f"{table!r} is not a table name (letters, digits and _)")
    return table


def _without(url: str, name: str) -> str:
    base, _, query = url.partition("?")      # (not urlunsplit: it turns sqlite:////abs into sqlite://abs)
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != name]
    return base + ("?" + urlencode(kept) if kept else "")


def _with_defaults(url: str, **defaults) -> str:
    base, _, query = url.partition("?")
    pairs = dict(parse_qsl(query, keep_blank_values=True))
    for name, value in defaults.items():
        pairs.setdefault(name, str(value))
    return base + "?" + urlencode(pairs)


def redact(url: str) -> str:
    """The URL with its password hidden, for pages and logs: ``redis://:***@host:6379/0``."""
    # Up to the last "@" before the path, as urlsplit (and so every driver) reads it: a password
    # holding an unescaped "@" is hidden whole.
    return re.sub(r"^([a-z0-9+]+://[^/@:]*):[^/]*@", r"\1:***@", url, flags=re.I)


def describe(options: dict) -> str:
    """One line for people: which store, through which driver."""
    kind, url = options.get("type"), options.get("url", "")
    if kind == "memory":
        return "memory (inside this process: lost on restart, not shared between processes)"
    if kind in ("file", "dbm"):
        return f"{kind} files under {options['data_dir']}"
    if kind == "ext:database":
        name = url.split(":", 1)[0]
        return f"SQL ({name} via SQLAlchemy), table {options.get('table_name', DEFAULT_TABLE)}"
    return {"ext:redis": "Redis (redis-py)", "ext:memcached": "memcached (python-memcached)",
            "ext:mongodb": "MongoDB (pymongo)"}.get(kind, str(kind))


# ---------------------------------------------------------------- errors



def max_session_bytes(options: dict) -> int | None:
    """The most one session's record may hold in this store, or None when the limit is not a concern."""
    if options.get("type") == "ext:database" and str(options.get("url", "")).startswith("mysql"):
        return 65_535                  # the data column is a BLOB on MySQL/MariaDB
    if options.get("type") == "ext:memcached":
        return 1_000_000               # memcached's default item size is 1 MB (key and header included)
    return None


# ---------------------------------------------------------------- the fixes, as namespace classes

def _guard(method):
    """Turn a store's connection errors into StoreUnavailable, whatever the driver."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (StoreUnavailable, SessionTooLarge):
            raise
        except Exception as exc:
            if is_store_down(exc):
                raise StoreUnavailable(f"the session store is unavailable ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
            raise

    return guarded


_GUARDED = ("__init__", "do_open", "do_close", "do_remove", "__getitem__", "__setitem__",
            "__contains__", "__delitem__", "set_value", "keys")


def _guarded_class(base: type, name: str, limit: int | None) -> type:
    namespace = {}
    for method in _GUARDED:
        impl = getattr(base, method, None)
        if impl is not None:
            namespace[method] = _guard(impl)
    namespace["store_name"] = name
    if limit is not None:
        namespace["limit"] = limit            # checked by beaker_backends before anything is written
    return type(f"Guarded{base.__name__}", (base,), namespace)


_BACKENDS = {"ext:redis": "RedisJson", "ext:database": "SqlJson", "ext:memcached": "MemcachedJson",
             "file": "FileJson", "dbm": "DbmJson", "ext:mongodb": "MongoJson"}


@functools.lru_cache(maxsize=None)
def _namespace_class(kind: str, limited_as: str | None, limit: int | None) -> type:
    base = getattr(beaker_backends, _BACKENDS[kind])
    return _guarded_class(base, limited_as or kind, limit)


_REDIS_CLIENTS: dict[str, object] = {}
_REDIS_LOCK = threading.Lock()


def redis_client(url: str):
    """One redis-py client per URL, for the tools (``peek``, the tests): short timeouts, one immediate retry.

    The sessions themselves go through ``beaker_backends.redis_store(url)``: redis-py's connections
    without the client layer around each command (one write, one read).
    """
    with _REDIS_LOCK:
        client = _REDIS_CLIENTS.get(url)
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2,
                                          retry=Retry(NoBackoff(), 1))
            _REDIS_CLIENTS[url] = client
        return client


def hardened(options: dict) -> dict:
    """``options`` (from :func:`beaker_options`) plus the course's backends, for ``session_config``."""
    out = dict(options)
    kind = out["type"]
    if kind == "memory":
        return out                                        # beakerkit's per-app CountingStore
    limit = max_session_bytes(options)
    limited_as = {"ext:redis": "Redis", "ext:memcached": "memcached", "file": "the file store",
                  "dbm": "the dbm store", "ext:mongodb": "MongoDB"}.get(kind)
    if kind == "ext:database":
        limited_as = "MariaDB/MySQL (a BLOB column)" if limit else "the SQL store"
        out["url"] = _sql_url(out["url"])
    elif kind == "ext:redis":
        out["url"] = beaker_backends.redis_store(out["url"])     # redis-py's connections, one set per process
    elif kind == "ext:mongodb":
        out["url"] = _with_defaults(out["url"], serverSelectionTimeoutMS=500, connectTimeoutMS=500)
    out["namespace_class"] = _namespace_class(kind, limited_as, limit)
    out["session_class"] = beaker_backends.JsonSession
    return out


def _sql_url(url: str) -> str:
    if url.startswith("postgresql+psycopg:"):
        return _with_defaults(url, connect_timeout=2)
    if url.startswith("mysql+pymysql:"):
        return _with_defaults(url, connect_timeout=2, read_timeout=5, write_timeout=5)
    return url


# ---------------------------------------------------------------- purge

_ENGINES: dict[str, object] = {}
_ENGINES_LOCK = threading.Lock()


def sql_engine(options: dict):
    """A SQLAlchemy engine for an ``ext:database`` store (one per URL, made on first use)."""
    import sqlalchemy as sa
    url = _sql_url(options["url"]) if options["type"] == "ext:database" else None
    if url is None:
        raise ValueError(f"{describe(options)} is not an SQL store")
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            if url.startswith("sqlite:///"):
                folder = os.path.dirname(url[len("sqlite:///"):].split("?")[0])
                if folder:
                    os.makedirs(folder, exist_ok=True)
            engine = _ENGINES[url] = sa.create_engine(url, pool_pre_ping=True)
        return engine


def sql_table(options: dict):
    """``(engine, table)`` for an ``ext:database`` store; the table is None until Beaker created it."""
    import sqlalchemy as sa
    engine = sql_engine(options)
    name = options.get("table_name", DEFAULT_TABLE)
    if not sa.inspect(engine).has_table(name):
        return engine, None
    return engine, sa.table(name, sa.column("namespace"), sa.column("accessed"), sa.column("created"),
                            sa.column("data"), sa.column("expires"))


def session_files(options: dict):
    """Each session of a ``file`` or ``dbm`` store: ``(session_id, [its files], last write time)``."""
    kind, root = options["type"], Path(options["data_dir"])
    folder = root / ("container_file" if kind == "file" else "container_dbm")
    locks = root / ("container_file_lock" if kind == "file" else "container_dbm_lock")
    if not folder.is_dir():
        return
    pattern = "*.cache" if kind == "file" else "*.dbm*"
    found: dict[str, list[Path]] = {}
    for path in folder.rglob(pattern):
        session_id = path.name.split(".", 1)[0]
        found.setdefault(session_id, []).append(path)
    for session_id, paths in found.items():
        try:
            mtime = max(p.stat().st_mtime for p in paths)
        except FileNotFoundError:       # removed meanwhile
            continue
        digest = hashlib.sha1(session_id.encode()).hexdigest()
        lock = locks / digest[:1] / digest[:2] / f"{digest}.lock"
        yield session_id, paths + ([lock] if lock.exists() else []), mtime


def _files_of(options: dict, session_id: str):
    """``session_files`` for one session (a session ID ``peek`` has checked): its files at Beaker's path
    (``ab/abcd.../``), no walk."""
    kind, root = options["type"], Path(options["data_dir"])
    folder = root / ("container_file" if kind == "file" else "container_dbm") / session_id[:1] / session_id[:2]
    paths = sorted(folder.glob(f"{session_id}.cache" if kind == "file" else f"{session_id}.dbm*"))
    if paths:
        try:
            yield session_id, paths, max(p.stat().st_mtime for p in paths)
        except FileNotFoundError:       # removed meanwhile
            return


def purge_expired(options: dict, older_than: float, now: float | None = None) -> int:
    """Delete the sessions not used for ``older_than`` seconds; how many were deleted.

    ``now`` (a ``time.time()`` value) lets a test pretend it is later. Stores that expire records
    themselves (Redis, memcached: a TTL on each record) and the memory store (inside the app's own
    process) have nothing to purge from here: 0. MongoDB: the query below is Beaker's own clean-up,
    and it matches nothing, because Beaker writes ``expiration: None`` on every session: 0 as well.
    """
    now = time.time() if now is None else now
    cutoff = now - older_than
    kind = options["type"]
    if kind == "ext:database":
        import sqlalchemy as sa
        engine, table = sql_table(options)
        if table is None:
            return 0
        with engine.begin() as conn:
            # `accessed` is datetime.now() (local time, no time zone), as Beaker writes it;
            # `expires` (epoch seconds) is when the record's time to live runs out
            old = sa.or_(table.c.accessed < datetime.fromtimestamp(cutoff),
                         sa.and_(table.c.expires.is_not(None), table.c.expires <= now))
            result = conn.execute(table.delete().where(old))
            return result.rowcount
    if kind in ("file", "dbm"):
        count = 0
        for _, paths, mtime in list(session_files(options)):
            if mtime < cutoff:
                for path in paths:
                    path.unlink(missing_ok=True)
                count += 1
        return count
    if kind == "ext:mongodb":
        import pymongo
        client = pymongo.MongoClient(hardened(options)["url"])
        try:
            result = client.get_default_database().backer_cache.delete_many(   # sic: Beaker's spelling
                {"expiration": {"$ne": None, "$lte": now}})
            return result.deleted_count
        finally:
            client.close()
    return 0


# ---------------------------------------------------------------- a look inside

def _decode(record) -> object:
    """A session record as the course's backends write it (JSON text) as data; never unpickled."""
    if record is None:
        return None
    if not isinstance(record, (str, bytes, bytearray, memoryview)):     # SQLite: an INTEGER or REAL column value
        return {"(stored)": f"a {type(record).__name__}, not a record (the session loads as a new one)"}
    try:
        data = json.loads(bytes(record).decode("utf-8") if not isinstance(record, str) else record)
    except Exception:
        return {"(stored)": f"{len(record)} bytes, not JSON (never unpickled just to show it)"}
    return data


def peek(options: dict, session_id: str | None) -> dict | None:
    """What the store holds under ``session_id``: where, the data, and any expiry; None if nothing.

    Store errors propagate (as ``StoreUnavailable`` where the driver's error says so).
    """
    if not session_id or not re.fullmatch(r"[0-9a-f]{32}", session_id):
        return None
    kind = options["type"]
    try:
        if kind == "ext:redis":
            client = redis_client(options["url"])
            key = f"beaker_cache:{session_id}:session"
            import redis
            try:
                raw = client.get(key)
            except redis.ResponseError as exc:
                if not str(exc).startswith("WRONGTYPE"):
                    raise
                kind_held = client.type(key).decode()
                return {"where": f"Redis key {key}", "ttl_seconds": client.ttl(key),
                        "data": {"(stored)": f"a Redis {kind_held}, not a record (the session loads as a new one)"}}
            if raw is None:
                return None
            return {"where": f"Redis key {key}", "ttl_seconds": client.ttl(key), "data": _decode(raw)}
        if kind == "ext:database":
            engine, table = sql_table(options)
            if table is None:
                return None
            with engine.connect() as conn:
                row = conn.execute(table.select().where(table.c.namespace == session_id)).first()
            if row is None:
                return None
            found = {"where": f"row of table {table.name}", "created": str(row.created),
                     "accessed": str(row.accessed), "data": _decode(row.data)}
            if row.expires is not None:
                found["expires_in_seconds"] = round(row.expires - time.time())
            return found
        if kind in ("file", "dbm"):
            # Straight to the session's own files (Beaker's layout), never a walk of every session.
            for _, paths, mtime in _files_of(options, session_id):
                if kind == "file":
                    with open(paths[0], "rb") as fh:
                        data = fh.read()
                else:
                    base = str(paths[0]).split(".dbm")[0] + ".dbm"
                    try:
                        with dbm.open(base, "r") as db:
                            data = db[b"session"] if b"session" in db else None
                    except Exception as exc:       # dbm.dumb's index, rewritten: see beaker_backends.DbmJson
                        if isinstance(exc, OSError) and exc.errno != errno.EINVAL:
                            raise                  # the disk failing
                        data = {"(stored)": f"dbm files that are not a dbm ({type(exc).__name__})"}
                        return {"where": str(paths[0]), "data": data}
                if data is None:
                    return None
                return {"where": str(paths[0]), "written": datetime.fromtimestamp(mtime).isoformat(" ", "seconds"),
                        "data": _decode(data)}
            return None
        if kind == "ext:memcached":
            namespace = _namespace_class(kind, None, None)(session_id, url=options["url"])
            value = namespace._load()
            return None if value is None else {"where": f"memcached key {session_id}_session",
                                               "data": _decode(value)}
    except (StoreUnavailable, SessionTooLarge):
        raise
    except Exception as exc:
        if is_store_down(exc):
            raise StoreUnavailable(f"the session store is unavailable ({type(exc).__name__})") from exc
        raise
    return None
