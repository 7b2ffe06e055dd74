"""course.kit.stores_beaker on its own: store URLs, hardened options, purge and peek.

The SQL and file stores run for real here (SQLite in tmp_path, Beaker's folders); the server stores'
records are tests/test_store_contract.py's.
"""
import os
import time
import uuid

import pytest

from course.kit import beaker_backends, stores_beaker
from course.kit.beaker_backends import JsonSession
from course.kit.stores_beaker import (
    ACCEPTED_FORMS,
    DEFAULT_TABLE,
    beaker_options,
    describe,
    hardened,
    max_session_bytes,
    peek,
    purge_expired,
    redact,
    session_files,
)


@pytest.mark.parametrize("url, options", [
    ("memory:", {"type": "memory"}),
    ("memory://", {"type": "memory"}),
    (" MEMORY: ", {"type": "memory"}),
    ("file:.sessions/file", {"type": "file", "data_dir": ".sessions/file"}),
    ("file:///abs/dir", {"type": "file", "data_dir": "/abs/dir"}),
    ("dbm:d", {"type": "dbm", "data_dir": "d"}),
    ("sqlite:///s.db", {"type": "ext:database", "url": "sqlite:///s.db", "table_name": DEFAULT_TABLE}),
    ("sqlite:////abs/s.db?table=t1", {"type": "ext:database", "url": "sqlite:////abs/s.db", "table_name": "t1"}),
    ("sqlite:///s.db?table=t1&timeout=5", {"type": "ext:database", "url": "sqlite:///s.db?timeout=5",
                                           "table_name": "t1"}),
    ("postgresql://postgres@127.0.0.1/test", {"type": "ext:database", "table_name": "beaker_cache",
                                              "url": "postgresql+psycopg://postgres@127.0.0.1/test"}),
    ("postgres://u:p@h:5433/db?table=x", {"type": "ext:database", "url": "postgresql+psycopg://u:p@h:5433/db",
                                          "table_name": "x"}),
    ("postgresql+psycopg://h/db", {"type": "ext:database", "url": "postgresql+psycopg://h/db",
                                   "table_name": "beaker_cache"}),
    ("mysql://root@127.0.0.1/test", {"type": "ext:database", "url": "mysql+pymysql://root@127.0.0.1/test",
                                     "table_name": "beaker_cache"}),
    ("mariadb://root@h/test", {"type": "ext:database", "url": "mysql+pymysql://root@h/test",
                               "table_name": "beaker_cache"}),
    ("mysql+pymysql://h/db", {"type": "ext:database", "url": "mysql+pymysql://h/db", "table_name": "beaker_cache"}),
    ("redis://127.0.0.1:6379/0", {"type": "ext:redis", "url": "redis://127.0.0.1:6379/0"}),
    ("redis://h", {"type": "ext:redis", "url": "redis://h"}),
    ("rediss://:pw@h:6380/2", {"type": "ext:redis", "url": "rediss://:pw@h:6380/2"}),
    ("memcached://127.0.0.1:11211", {"type": "ext:memcached", "url": "127.0.0.1:11211"}),
    ("memcached://a:1, b:2", {"type": "ext:memcached", "url": "a:1;b:2"}),
    ("memcached://a", {"type": "ext:memcached", "url": "a"}),
    ("mongodb://h:27017/sessions", {"type": "ext:mongodb", "url": "mongodb://h:27017/sessions"}),
    ("mongodb+srv://u:p@cluster/db", {"type": "ext:mongodb", "url": "mongodb+srv://u:p@cluster/db"}),
])
def test_each_accepted_url_gives_its_beaker_options(url, options):
    assert beaker_options(url) == options


@pytest.mark.parametrize("url, why", [
    ("", "it is empty"), ("   ", "it is empty"), (None, "it is empty"), (42, "it is empty"),
    ("redis", "it has no scheme"),
    ("memory:x", "memory: takes nothing after the colon"),
    ("file:", "file: needs a folder"), ("dbm://", "dbm: needs a folder"),
    ("sqlite:///", "sqlite needs a file"), ("sqlite://", "sqlite needs a file"), ("sqlite:s.db", "sqlite needs a file"),
    ("sqlite:///s.db?table=1bad", "'1bad' is not a table name"),
    ("sqlite:///s.db?table=a;drop", "is not a table name"),
    ("sqlite:///s.db?table=" + "a" * 64, "is not a table name"),
    ("postgresql:///test", "it needs a host and a database"),
    ("postgresql://host", "it needs a host and a database"),
    ("postgresql://host/", "it needs a host and a database"),
    ("mysql://h/db?table=x-y", "is not a table name"),
    ("redis://", "it needs a host"), ("redis:///0", "it needs a host"),
    ("redis://h/zero", "the Redis database is a number"),
    ("memcached://", "it needs a server"), ("memcached://h:port", "'h:port' is not HOST:PORT"),
    ("memcached://:11211", "is not HOST:PORT"),
    ("mongodb://h", "it needs a host and a database"), ("mongodb:///db", "it needs a host and a database"),
    ("bogus://host/db", "there is no session store called 'bogus'"),
    ("mongo://h/db", "there is no session store called 'mongo'"),
])
def test_a_bad_url_is_a_value_error_naming_it_and_listing_the_forms(url, why):
    with pytest.raises(ValueError) as refused:
        beaker_options(url)
    message = str(refused.value)
    assert message.startswith(f"Bad session store URL {url!r}: ") and why in message
    assert all(form in message for form in ACCEPTED_FORMS), "every accepted form is listed"


def test_a_table_name_of_63_characters_is_accepted():
    assert beaker_options("sqlite:///s.db?table=_" + "a" * 62)["table_name"] == "_" + "a" * 62


@pytest.mark.parametrize("url, shown", [
    ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
    ("postgresql://user:pw@h/db", "postgresql://user:***@h/db"),
    ("Mysql+PyMySQL://root:p@ss@h/db", "Mysql+PyMySQL://root:***@h/db"),
    ("postgresql://user@h/db", "postgresql://user@h/db"),
    ("sqlite:///s.db", "sqlite:///s.db"),
])
def test_redact_hides_the_password(url, shown):
    assert redact(url) == shown


@pytest.mark.parametrize("options, line", [
    ({"type": "memory"}, "memory (inside this process: lost on restart, not shared between processes)"),
    ({"type": "file", "data_dir": "d"}, "file files under d"),
    ({"type": "dbm", "data_dir": "d"}, "dbm files under d"),
    ({"type": "ext:database", "url": "postgresql+psycopg://h/db", "table_name": "t"},
     "SQL (postgresql+psycopg via SQLAlchemy), table t"),
    ({"type": "ext:database", "url": "sqlite:///x"}, "SQL (sqlite via SQLAlchemy), table beaker_cache"),
    ({"type": "ext:redis", "url": "redis://h"}, "Redis (redis-py)"),
    ({"type": "ext:memcached"}, "memcached (python-memcached)"),
    ({"type": "ext:mongodb"}, "MongoDB (pymongo)"),
    ({"type": "other"}, "other"),
])
def test_describe_says_which_store_through_which_driver(options, line):
    assert describe(options) == line


def test_the_size_limits_are_mariadbs_blob_and_memcacheds_item():
    assert max_session_bytes(beaker_options("mysql://h/db")) == 65_535
    assert max_session_bytes(beaker_options("memcached://h:1")) == 1_000_000
    assert max_session_bytes(beaker_options("postgresql://h/db")) is None
    assert max_session_bytes(beaker_options("sqlite:///x.db")) is None
    assert max_session_bytes(beaker_options("redis://h")) is None


def test_hardened_adds_the_json_backends_and_the_timeouts():
    assert hardened({"type": "memory"}) == {"type": "memory"}
    pg = hardened(beaker_options("postgresql://h/db"))
    assert pg["url"] == "postgresql+psycopg://h/db?connect_timeout=2"
    assert pg["session_class"] is JsonSession and issubclass(pg["namespace_class"], beaker_backends.SqlJson)
    assert pg["namespace_class"].store_name == "the SQL store" and pg["namespace_class"].limit is None
    my = hardened(beaker_options("mysql://h/db?connect_timeout=9"))
    assert my["url"] == "mysql+pymysql://h/db?connect_timeout=9&read_timeout=5&write_timeout=5"
    assert my["namespace_class"].limit == 65_535
    assert my["namespace_class"].store_name == "MariaDB/MySQL (a BLOB column)"
    assert hardened(beaker_options("sqlite:///x.db"))["url"] == "sqlite:///x.db"
    redis_options = hardened(beaker_options("redis://127.0.0.1:1/0"))
    assert redis_options["url"] is beaker_backends.redis_store("redis://127.0.0.1:1/0")
    assert redis_options["namespace_class"].store_name == "Redis"
    mc = hardened(beaker_options("memcached://h:1"))
    assert mc["namespace_class"].limit == 1_000_000 and mc["namespace_class"].store_name == "memcached"
    mongo = hardened(beaker_options("mongodb://h/db?w=1"))
    assert mongo["url"] == "mongodb://h/db?w=1&serverSelectionTimeoutMS=500&connectTimeoutMS=500"
    files = hardened(beaker_options("file:d"))
    assert files["namespace_class"].store_name == "the file store" and files["data_dir"] == "d"
    assert hardened(beaker_options("dbm:d"))["namespace_class"].store_name == "the dbm store"
    assert hardened(beaker_options("file:d"))["namespace_class"] is files["namespace_class"], "made once"


def test_the_guarded_class_turns_a_dead_store_into_store_unavailable():
    from course.kit.storedown import StoreUnavailable
    from course.kit.stores_beaker import _guard

    class Probe:
        @_guard
        def down(self):
            raise ConnectionRefusedError("refused")

        @_guard
        def bug(self):
            raise KeyError("k")

        @_guard
        def empty(self):
            raise TimeoutError()

    with pytest.raises(StoreUnavailable, match=r"unavailable \(ConnectionRefusedError: refused\)") as caught:
        Probe().down()
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    with pytest.raises(KeyError):
        Probe().bug()
    with pytest.raises(StoreUnavailable, match=r"\(TimeoutError: \)"):
        Probe().empty()


# ---------------------------------------------------------------- purge and peek, for real on SQLite and files

def sqlite_options(tmp_path, table=None):
    return beaker_options(f"sqlite:///{tmp_path}/s/{uuid.uuid4().hex[:8]}.db?table={table or 't'}")


def write(options, sid, value='{"visits":1}', timeout=600):
    namespace = hardened(options)["namespace_class"](sid, data_dir=options.get("data_dir"), digest_filenames=False,
                                                     timeout=timeout, url=hardened(options).get("url"),
                                                     table_name=options.get("table_name"))
    namespace.acquire_write_lock()
    try:
        namespace["session"] = value
    finally:
        namespace.release_write_lock()


@pytest.mark.parametrize("url", ["memory:", "redis://127.0.0.1:1/0", "memcached://127.0.0.1:1"])
def test_stores_that_expire_by_themselves_have_nothing_to_purge(url):
    assert purge_expired(beaker_options(url), older_than=0) == 0


def test_purging_a_store_where_nothing_was_ever_written_is_zero(tmp_path):
    assert purge_expired(sqlite_options(tmp_path), older_than=0) == 0
    assert purge_expired(beaker_options(f"file:{tmp_path}/never"), older_than=0) == 0
    assert purge_expired(beaker_options(f"dbm:{tmp_path}/never"), older_than=0) == 0


def test_the_sql_purge_deletes_rows_idle_too_long_or_past_their_ttl(tmp_path):
    options = sqlite_options(tmp_path)
    old, fresh, dead = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    for sid in (old, fresh):
        write(options, sid)
    write(options, dead, timeout=1)
    assert purge_expired(options, older_than=3600) == 0, "nothing idle for an hour, nothing expired yet"
    assert purge_expired(options, older_than=3600, now=time.time() + 1.5) == 1, "the 1 s TTL ran out"
    assert purge_expired(options, older_than=60, now=time.time() + 30) == 0
    assert purge_expired(options, older_than=60, now=time.time() + 61) == 2, "idle for longer than 60 s"
    assert peek(options, old) is None and peek(options, fresh) is None


def test_the_file_purge_deletes_the_files_of_sessions_idle_too_long(tmp_path):
    for kind in ("file", "dbm"):
        options = beaker_options(f"{kind}:{tmp_path}/{kind}")
        old, fresh = uuid.uuid4().hex, uuid.uuid4().hex
        write(options, old)
        write(options, fresh)
        [(_, paths, _)] = [found for found in session_files(options) if found[0] == old]
        past = time.time() - 1000
        for path in paths:
            os.utime(path, (past, past))
        assert sorted(sid for sid, _, _ in session_files(options)) == sorted([old, fresh])
        assert purge_expired(options, older_than=500) == 1, kind
        assert all(not path.exists() for path in paths), f"{kind}: every file of the session, its lock too"
        assert [sid for sid, _, _ in session_files(options)] == [fresh]
        assert purge_expired(options, older_than=500, now=time.time() + 1000) == 1


def test_session_files_lists_nothing_before_the_first_session(tmp_path):
    assert list(session_files(beaker_options(f"file:{tmp_path}/none"))) == []


def test_peek_shows_an_sql_row_with_its_expiry(tmp_path):
    options = sqlite_options(tmp_path)
    assert peek(options, uuid.uuid4().hex) is None, "no table yet"
    sid = uuid.uuid4().hex
    write(options, sid, timeout=600)
    found = peek(options, sid)
    assert found["where"] == "row of table t" and found["data"] == {"visits": 1}
    assert 595 <= found["expires_in_seconds"] <= 600
    assert set(found) == {"where", "created", "accessed", "data", "expires_in_seconds"}
    assert peek(options, uuid.uuid4().hex) is None
    write(options, sid, timeout=None)
    assert "expires_in_seconds" not in peek(options, sid)


def test_peek_shows_a_file_or_dbm_record(tmp_path):
    for kind in ("file", "dbm"):
        options = beaker_options(f"{kind}:{tmp_path}/{kind}")
        sid = uuid.uuid4().hex
        assert peek(options, sid) is None
        write(options, sid)
        found = peek(options, sid)
        assert found["data"] == {"visits": 1} and sid in found["where"], kind
        assert len(found["written"]) == len("2026-01-01 00:00:00")


@pytest.mark.parametrize("sid", [None, "", "A" * 32, "a" * 31, "../etc/passwd", "g" * 32])
def test_peek_refuses_what_is_not_a_session_id(tmp_path, sid):
    assert peek(beaker_options(f"file:{tmp_path}/f"), sid) is None
    assert peek({"type": "memory"}, sid) is None


def test_peek_shows_what_is_not_json_without_unpickling_it(tmp_path):
    options = beaker_options(f"file:{tmp_path}/f")
    sid = uuid.uuid4().hex
    write(options, sid, value=b"\x80\x04not json")
    assert peek(options, sid)["data"] == {"(stored)": "10 bytes, not JSON (never unpickled just to show it)"}
    assert stores_beaker._decode(None) is None
    assert stores_beaker._decode('{"a":1}') == {"a": 1}


def test_sql_engine_is_one_per_url_and_refuses_other_stores(tmp_path):
    options = sqlite_options(tmp_path)
    assert stores_beaker.sql_engine(options) is stores_beaker.sql_engine(dict(options))
    with pytest.raises(ValueError, match="is not an SQL store"):
        stores_beaker.sql_engine({"type": "file", "data_dir": "d"})
    assert os.path.isdir(f"{tmp_path}/s"), "the SQLite file's folder is made"


def test_redis_client_is_one_per_url():
    assert stores_beaker.redis_client("redis://127.0.0.1:1/0") is stores_beaker.redis_client("redis://127.0.0.1:1/0")


def test_the_file_purge_takes_the_lock_file_along(tmp_path):
    options = beaker_options(f"file:{tmp_path}/locked")
    sid = uuid.uuid4().hex
    write(options, sid)
    [(_, paths, _)] = list(session_files(options))
    lock = [path for path in paths if path.suffix == ".lock"]
    assert len(lock) == 1 and lock[0].parent.parent.parent.name == "container_file_lock", paths
    assert purge_expired(options, older_than=0, now=time.time() + 10) == 1
    assert not lock[0].exists()


def test_a_file_written_exactly_at_the_cutoff_is_kept(tmp_path):
    options = beaker_options(f"file:{tmp_path}/edge")
    sid = uuid.uuid4().hex
    write(options, sid)
    [(_, paths, _)] = list(session_files(options))
    for path in paths:
        os.utime(path, (1_700_000_000, 1_700_000_000))
    assert purge_expired(options, older_than=500, now=1_700_000_500) == 0, "idle for exactly older_than: kept"
    assert purge_expired(options, older_than=500, now=1_700_000_500.5) == 1


def test_the_sql_purge_boundaries_are_exact(tmp_path):
    from datetime import datetime
    options = sqlite_options(tmp_path)
    write(options, uuid.uuid4().hex)                     # creates the table
    engine, table = stores_beaker.sql_table(options)
    moment = 1_700_000_000.5
    stamp = datetime.fromtimestamp(moment).isoformat(" ", "microseconds")
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert().values(namespace="idle", created=stamp, accessed=stamp, data=b"{}", expires=None))
        conn.execute(table.insert().values(namespace="ttl", created="9999-01-01 00:00:00.000000",
                                           accessed="9999-01-01 00:00:00.000000", data=b"{}", expires=moment + 200))
    assert purge_expired(options, older_than=100, now=moment + 100) == 0, "accessed exactly at the cutoff: kept"
    assert purge_expired(options, older_than=10 ** 9, now=moment + 200) == 1, "expires exactly now: gone"
    assert purge_expired(options, older_than=100, now=moment + 100.5) == 1, "idle a moment past the cutoff: gone"


def test_peek_shows_a_redis_key_with_its_ttl_and_a_memcached_item():
    from course.tools import services
    for kind, url in (("redis", services.require("redis")), ("memcached", services.require("memcached"))):
        options = beaker_options(url)
        sid = uuid.uuid4().hex
        assert peek(options, sid) is None, kind
        write(options, sid, timeout=600)
        found = peek(options, sid)
        assert found["data"] == {"visits": 1}, kind
        if kind == "redis":
            assert found["where"] == f"Redis key beaker_cache:{sid}:session"
            assert 590 <= found["ttl_seconds"] <= 600
            stores_beaker.redis_client(url).delete(f"beaker_cache:{sid}:session")
        else:
            assert found["where"] == f"memcached key {sid}_session"


def test_the_tools_redis_client_has_short_timeouts_and_one_retry():
    client = stores_beaker.redis_client("redis://127.0.0.1:2/0")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (1, 2)
    assert kwargs["retry"]._retries == 1


def test_the_sql_engine_pings_its_pool_and_makes_the_folder_of_a_url_with_a_query(tmp_path):
    options = beaker_options(f"sqlite:///{tmp_path}/q/x.db?timeout=5")
    engine = stores_beaker.sql_engine(options)
    assert engine.pool._pre_ping is True
    assert os.path.isdir(f"{tmp_path}/q")


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/test"])
def test_peek_at_a_store_that_is_down_is_store_unavailable(url):
    from course.kit.storedown import StoreUnavailable
    with pytest.raises(StoreUnavailable, match="unavailable"):
        peek(beaker_options(url), uuid.uuid4().hex)


def test_peek_lets_a_bug_through_as_it_is(tmp_path, monkeypatch):
    options = beaker_options(f"file:{tmp_path}/bug")
    monkeypatch.setattr(stores_beaker, "_files_of", lambda options, sid: (_ for _ in ()).throw(KeyError("bug")))
    with pytest.raises(KeyError):
        peek(options, uuid.uuid4().hex)


# ---------------------------------------------------------------- what the first mutation run showed

def test_the_accepted_forms_are_listed_one_per_line():
    with pytest.raises(ValueError) as refused:
        beaker_options("bogus://h/db")
    assert str(refused.value).endswith("\nAccepted forms:\n  " + "\n  ".join(ACCEPTED_FORMS))


@pytest.mark.parametrize("url, why", [("sqlite:///s.db?table=", "'' is not a table name"),
                                      ("mongodb://h/", "needs a host and a database")])
def test_an_empty_table_or_database_is_refused(url, why):
    with pytest.raises(ValueError, match=why):
        beaker_options(url)


def test_a_one_character_sqlite_file_name_is_a_file():
    assert beaker_options("sqlite:///x")["url"] == "sqlite:///x"


def test_blank_query_values_are_kept():
    assert beaker_options("sqlite:///s.db?table=t&cache=")["url"] == "sqlite:///s.db?cache="
    assert hardened(beaker_options("mysql://h/db?charset="))["url"] == \
        "mysql+pymysql://h/db?charset=&connect_timeout=2&read_timeout=5&write_timeout=5"


def test_describe_an_sql_store_without_a_url():
    assert describe({"type": "ext:database"}) == "SQL ( via SQLAlchemy), table beaker_cache"


def test_the_guarded_classes_are_made_once_and_turn_a_dead_store_into_store_unavailable():
    from course.kit.storedown import StoreUnavailable
    stores_beaker._namespace_class.cache_clear()
    options = hardened(beaker_options("redis://127.0.0.1:1/0"))
    cls = options["namespace_class"]
    assert cls.__name__ == "GuardedRedisJson" and cls.store_name == "Redis" and cls.limit is None
    assert hardened(beaker_options("redis://127.0.0.1:1/0"))["namespace_class"] is cls
    with pytest.raises(StoreUnavailable, match="ConnectionError"):
        cls(uuid.uuid4().hex, url=options["url"])["session"]
    mongo = hardened(beaker_options("mongodb://127.0.0.1:1/db"))["namespace_class"]
    assert mongo.store_name == "MongoDB" and mongo.__name__ == "GuardedMongoJson"


def test_the_sql_engine_makes_only_an_sqlite_files_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stores_beaker.sql_engine(beaker_options("postgresql://u@h.invalid/db"))
    stores_beaker.sql_engine(beaker_options("sqlite:///here.db"))
    stores_beaker.sql_engine(beaker_options(f"sqlite:///{tmp_path}/q2/x.db?mode=a/b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q2"], "no folder for a server URL, none for here.db"
    assert list((tmp_path / "q2").iterdir()) == [], "the folder of the file, not of the file plus its query"


def test_the_dbm_purge_takes_the_lock_file_along(tmp_path):
    options = beaker_options(f"dbm:{tmp_path}/locked")
    write(options, uuid.uuid4().hex)
    [(_, paths, _)] = list(session_files(options))
    lock = [path for path in paths if path.suffix == ".lock"]
    assert len(lock) == 1 and lock[0].parent.parent.parent.name == "container_dbm_lock", paths
    assert purge_expired(options, older_than=0, now=time.time() + 10) == 1 and not lock[0].exists()


def test_peek_never_looks_up_what_is_not_a_session_id(tmp_path):
    options = sqlite_options(tmp_path)
    write(options, "not-a-session-id")
    assert peek(options, "not-a-session-id") is None
    assert peek({"type": "memory"}, uuid.uuid4().hex) is None


def test_peek_at_memcached_that_is_down_is_store_unavailable():
    from course.kit.storedown import StoreUnavailable
    with pytest.raises(StoreUnavailable, match="memcached"):
        peek(beaker_options("memcached://127.0.0.1:1"), uuid.uuid4().hex)
