"""course.kit.beaker_backends on its own: the JSON record, each backend's one round trip, no pickle.

Every store's record contract is tests/test_store_contract.py; this file pins the pieces: what
JsonSession writes and refuses, the namespace base, RedisStore's connection handling on the real
Redis (unique keys, never a flush), SqlStore on SQLite (table, upgrade, purge), memcached's refusals.
"""
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid

import pytest

from course.kit import beaker_backends
from course.kit.beaker_backends import (
    PURGE_EVERY,
    JsonSession,
    MemcachedJson,
    SessionTooLarge,
    _encode,
    _JsonNamespace,
    _RefuseToUnpickle,
    redis_store,
    sql_store,
)
from course.kit.beakerkit import CorruptSession
from course.kit.storedown import StoreUnavailable
from course.tools import services
from course.tools.testing import WatchedLock

SECRET = "s" * 32


def counting_sessions(options: dict):
    """A WSGI app counting visits in a kit session on the store ``options`` name (hardened), and its secret."""
    from course.kit import stores_beaker
    from course.kit.beakerkit import HardenedSessions, session_config

    def app(environ, start_response):
        session = environ["beaker.session"]
        session["visits"] = session.get("visits", 0) + 1
        session.save()
        start_response("200 OK", [])
        return [str(session["visits"]).encode()]

    return HardenedSessions(app, session_config(secret=SECRET, timeout=600, **stores_beaker.hardened(options)))


def signed_cookie(session_id: str) -> str:
    """The ``sid`` cookie Beaker would send for ``session_id`` (an HMAC-SHA1 of the ID, then the ID)."""
    import hmac
    from hashlib import sha1

    return "sid=" + hmac.new(SECRET.encode(), session_id.encode(), sha1).hexdigest() + session_id


def test_session_too_large_says_how_big_and_what_the_store_holds():
    error = SessionTooLarge(70_000, 65_535, "MariaDB")
    assert (error.size, error.limit, error.store) == (70_000, 65_535, "MariaDB")
    assert str(error) == ("Session too large for the store: it is 70000 bytes once encoded, and MariaDB holds "
                          "at most 65535 bytes per session")


def test_encode_gives_utf8_bytes():
    assert _encode("é") == b"\xc3\xa9" and _encode(b"x") == b"x" and _encode(bytearray(b"y")) == b"y"
    assert _encode(memoryview(b"z")) == b"z"


class Dict(_JsonNamespace):
    """The namespace base over a dict, to pin what it does around _load/_save/_delete."""

    records: dict = {}

    def _load(self):
        return self.records.get(self.namespace, (None,))[0]

    def _save(self, data, ttl):
        self.records[self.namespace] = (data, ttl)

    def _delete(self):
        self.records.pop(self.namespace, None)


@pytest.fixture
def records():
    Dict.records = {}
    return Dict.records


def test_the_namespace_base_loads_saves_and_deletes_one_record(records):
    ns = Dict("abc", timeout="600")
    assert ns.ttl == 600 and Dict("x").ttl is None and Dict("x", timeout=0).ttl is None
    assert "session" not in ns and ns.keys() == [] and not ns.has_key("session")
    with pytest.raises(KeyError):
        ns["session"]
    ns["session"] = '{"a":1}'
    assert records["abc"] == (b'{"a":1}', 600), "str is written as UTF-8 bytes, with the namespace's ttl"
    assert ns["session"] == b'{"a":1}' and "session" in ns and ns.keys() == ["session"] and ns.has_key("s")
    ns.set_value("session", b"{}", expiretime=30.9)
    assert records["abc"] == (b"{}", 30), "Beaker's expiretime wins, as whole seconds"
    del ns["session"]
    assert "abc" not in records
    ns["session"] = "{}"
    ns.do_remove()
    assert "abc" not in records


def test_a_record_over_the_limit_is_refused_before_it_is_written(records):
    class Limited(Dict):
        limit = 10
        store_name = "the tiny store"

    ns = Limited("abc")
    ns["session"] = "x" * 10
    with pytest.raises(SessionTooLarge, match="the tiny store holds at most 10 bytes") as refused:
        ns["session"] = "é" * 6
    assert refused.value.size == 12, "bytes, not characters"
    assert records["abc"] == (b"x" * 10, None), "the old record stays"


def test_the_creation_lock_is_a_null_one():
    lock = Dict("a").get_creation_lock("session")
    assert lock.acquire_write_lock() and lock.release_write_lock() is None


# ---------------------------------------------------------------- JsonSession

def json_session(records, **options):
    from beaker.session import Session
    assert issubclass(JsonSession, Session)
    return JsonSession({}, namespace_class=Dict, **options)


def test_the_record_is_the_session_as_compact_json(records):
    session = json_session(records)
    session["visits"] = 3
    assert json.loads(session._encrypt_data()) == dict(session)
    assert session._encrypt_data({"a": [1, 2]}) == '{"a":[1,2]}'
    assert session._decrypt_data(b'{"a":1}') == {"a": 1}
    assert session._decrypt_data('{"a":"\u00e9"}') == {"a": "é"}
    assert session._decrypt_data(bytearray(b'{"b":2}')) == {"b": 2}


@pytest.mark.parametrize("stored, why", [(b"\x80\x04\x95pickle", "is not JSON"), (b"{bad", "is not JSON"),
                                         (b"[1, 2]", "is not a JSON object"), (b'"text"', "is not a JSON object"),
                                         (b"\xff\xfe", "is not JSON")])
def test_a_record_that_is_not_a_json_object_is_corrupt(records, stored, why):
    session = json_session(records)
    with pytest.raises(CorruptSession, match=why):
        session._decrypt_data(stored)


@pytest.mark.parametrize("key", JsonSession.TIME_KEYS)
@pytest.mark.parametrize("bad", ["x", None, [1], {"a": 1}, True, float("nan"), float("-inf")])
def test_a_record_whose_bookkeeping_time_is_not_a_number_is_corrupt(records, key, bad):
    session = json_session(records)
    with pytest.raises(CorruptSession, match=f"has a {key} that is not a time"):
        session._decrypt_data(json.dumps({"visits": 1, key: bad}).encode())


def test_bookkeeping_times_that_are_numbers_or_missing_are_fine(records):
    session = json_session(records)
    for data in ({}, {"visits": 1}, {"_creation_time": 1, "_accessed_time": 1.5e9}):
        assert session._decrypt_data(json.dumps(data)) == data


def test_a_corrupt_record_is_logged_and_a_new_session_with_a_new_id_starts(records, caplog):
    session = json_session(records)
    session["visits"] = 5
    session.save()
    old = session.id
    records[old] = (b"\x80\x04pickled", None)
    with caplog.at_level(logging.WARNING, logger="course.kit.beaker_backends"):
        reloaded = JsonSession({}, id=old, namespace_class=Dict)
    assert reloaded.id != old and reloaded.is_new and "visits" not in reloaded
    assert reloaded["_creation_time"] == reloaded["_accessed_time"] and reloaded["_creation_time"] > time.time() - 5
    assert any("corrupt session record ignored" in r.getMessage() for r in caplog.records)


def test_an_encrypted_session_uses_beakers_own_encoding(records):
    session = json_session(records, encrypt_key="k" * 32, validate_key="v" * 32)
    session["secret"] = "data"
    encrypted = session._encrypt_data()
    assert "data" not in str(encrypted)
    assert session._decrypt_data(encrypted)["secret"] == "data"


# ---------------------------------------------------------------- Redis (the real server; unique keys)

@pytest.fixture
def redis_url():
    return services.require("redis")


def test_redis_json_is_get_set_ex_and_del_on_beakers_key(redis_url):
    store = redis_store(redis_url)
    sid = uuid.uuid4().hex
    ns = beaker_backends.RedisJson(sid, url=store, timeout=60)
    assert ns.key == f"beaker_cache:{sid}:session" and ns.ttl == 60
    assert ns._load() is None
    ns["session"] = '{"a":1}'
    assert store.command("GET", ns.key) == b'{"a":1}' and 55 <= store.command("TTL", ns.key) <= 60
    beaker_backends.RedisJson(sid, url=store)._save(b"{}", None)
    assert store.command("TTL", ns.key) == -1, "no ttl: no EX"
    ns._delete()
    assert store.command("EXISTS", ns.key) == 0


@pytest.mark.parametrize("make_wrong", [lambda store, key: store.command("RPUSH", key, b"x"),
                                        lambda store, key: store.command("HSET", key, b"f", b"v")])
def test_a_redis_key_of_another_type_is_a_corrupt_record_not_an_outage(redis_url, make_wrong, caplog):
    """GET on a LIST or a HASH is ``-WRONGTYPE``: it was "store unavailable", a 503 for that cookie for
    as long as the key lived (a 503 sends no new cookie), and the inspector's peek a 500."""
    from course.kit import stores_beaker
    from course.tools.testing import wsgi_request

    sid = uuid.uuid4().hex
    wsgi = counting_sessions(stores_beaker.beaker_options(redis_url))
    options = stores_beaker.hardened(stores_beaker.beaker_options(redis_url))       # the test's own store
    store, key = options["url"], f"beaker_cache:{sid}:session"
    make_wrong(store, key)
    store.command("EXPIRE", key, 60)
    try:
        cookie = signed_cookie(sid)
        with caplog.at_level(logging.WARNING):
            status, headers, body = wsgi_request(wsgi, "/", headers={"Cookie": cookie})
        assert (status, body) == ("200 OK", b"1"), f"a new session, not a 503: {status} {body[:200]}"
        fresh = dict(headers)["Set-Cookie"].split(";")[0].strip()
        assert sid not in fresh, "with a new ID"
        assert [r for r in caplog.records if "corrupt" in r.getMessage() and "WRONGTYPE" in r.getMessage()]
        assert wsgi_request(wsgi, "/", headers={"Cookie": fresh})[2] == b"2", "and the new session goes on"
        shown = stores_beaker.peek(stores_beaker.beaker_options(redis_url), sid)
        assert "(stored)" in shown["data"], f"the inspector shows what the key holds: {shown}"
        with pytest.raises(StoreUnavailable):     # any other error reply is still Redis refusing to work
            store.command("EXPIRE", key, b"not a number")
    finally:
        store.command("DEL", key)


def test_redis_store_is_one_per_url_and_reuses_its_connections(redis_url):
    store = redis_store(redis_url)
    assert redis_store(redis_url) is store
    store.command("PING")
    first = store.command("CLIENT", "ID")
    assert store.command("CLIENT", "ID") == first, "the idle connection is reused"


def test_an_error_reply_is_store_unavailable_and_keeps_the_connection(redis_url):
    store = beaker_backends.RedisStore(redis_url)
    own = store.command("CLIENT", "ID")
    with pytest.raises(StoreUnavailable, match="Redis refused NOSUCHCOMMAND"):
        store.command("NOSUCHCOMMAND")
    assert store.command("CLIENT", "ID") == own


def test_at_most_16_idle_connections_are_kept(redis_url):
    store = beaker_backends.RedisStore(redis_url)
    barrier = threading.Barrier(20)

    def hold():
        barrier.wait()
        store.command("PING")

    threads = [threading.Thread(target=hold) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(store._idle) <= 16


def test_a_redis_that_is_not_there_fails_at_once_without_a_retry():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = beaker_backends.RedisStore(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(Exception) as failed:
        store.command("GET", "x")
    from course.kit.storedown import is_store_down
    assert is_store_down(failed.value) and time.monotonic() - started < 2
    assert store._idle == []


def test_after_a_fork_the_child_never_reuses_the_parents_connections(redis_url, monkeypatch):
    store = beaker_backends.RedisStore(redis_url)
    parent = store.command("CLIENT", "ID")
    monkeypatch.setattr(beaker_backends.os, "getpid", lambda: -1)
    assert store.command("CLIENT", "ID") != parent


# ---------------------------------------------------------------- dbm

@pytest.mark.parametrize("index", [b"this is not a python literal\n", b"(" * 300 + b")" * 300 + b"\n",
                                   b"'session', (-5, 3)\n", b"'session'\n", b"1, 2\n", b"name\n"])
def test_a_rewritten_dbm_index_is_a_corrupt_record(index, tmp_path, caplog):
    """dbm.dumb reads its ``.dir`` index with ``ast.literal_eval``: a rewritten one was a 500, and an offset
    that points nowhere a 503 for as long as the file stayed (an OSError looks like the disk failing)."""
    from course.kit import stores_beaker
    from course.tools.testing import wsgi_request

    options = stores_beaker.beaker_options(f"dbm:{tmp_path}/dbm")
    wsgi = counting_sessions(options)
    status, headers, body = wsgi_request(wsgi, "/")
    cookie = dict(headers)["Set-Cookie"].split(";")[0].strip()
    sid = cookie[4 + 40:]
    [(_, paths, _)] = [found for found in stores_beaker.session_files(options) if found[0] == sid]
    [index_file] = [path for path in paths if path.name.endswith(".dir")]
    index_file.write_bytes(index)
    with caplog.at_level(logging.WARNING):
        status, headers, body = wsgi_request(wsgi, "/", headers={"Cookie": cookie})
    assert (status, body) == ("200 OK", b"1"), f"a new session: {status} {body[:300]}"
    fresh = dict(headers)["Set-Cookie"].split(";")[0].strip()
    assert sid not in fresh, "with a new ID"
    assert [r for r in caplog.records if "corrupt" in r.getMessage()], "and a log line"
    assert wsgi_request(wsgi, "/", headers={"Cookie": fresh})[2] == b"2", "the new session goes on"
    stores_beaker.peek(options, sid)               # and the inspector shows it, without a 500


# ---------------------------------------------------------------- SQL, on SQLite

@pytest.fixture
def sqlite_store(tmp_path):
    return sql_store(f"sqlite:///{tmp_path}/deep/s.db", "t_" + uuid.uuid4().hex[:8])


def test_the_sql_store_is_one_per_url_and_table(tmp_path):
    url = f"sqlite:///{tmp_path}/one.db"
    assert sql_store(url, "a") is sql_store(url, "a") and sql_store(url, "a") is not sql_store(url, "b")


def test_a_row_is_saved_loaded_until_it_expires_and_deleted(sqlite_store):
    now = time.time()
    sqlite_store.save("s1", b'{"a":1}', 60)
    sqlite_store.save("s2", b'{"b":2}', None)
    assert sqlite_store.load("s1", now) == b'{"a":1}'
    assert sqlite_store.load("s1", now + 61) is None, "an expired row is never loaded"
    assert sqlite_store.load("s2", now + 10 ** 6) == b'{"b":2}', "no ttl: never expires"
    sqlite_store.save("s1", b'{"a":2}', 60)
    assert sqlite_store.load("s1", now) == b'{"a":2}', "the upsert replaces the row"
    sqlite_store.delete("s1")
    assert sqlite_store.load("s1", now) is None and sqlite_store.load("nobody", now) is None


def test_the_purge_deletes_expired_rows_only(sqlite_store):
    sqlite_store.save("dead", b"{}", 1)
    sqlite_store.save("alive", b"{}", 600)
    sqlite_store.save("forever", b"{}", None)
    assert sqlite_store.purge(time.time() + 2) == 1
    assert sqlite_store.purge() == 0
    assert sqlite_store.run(f"SELECT COUNT(*) FROM {sqlite_store.table}", (), fetch=True) == 2


def test_a_save_purges_at_most_every_five_minutes(sqlite_store, monkeypatch):
    assert PURGE_EVERY == 300
    purged = []
    monkeypatch.setattr(sqlite_store, "purge", lambda moment: purged.append(moment))
    sqlite_store.save("a", b"{}", 60)
    sqlite_store.save("b", b"{}", 60)
    assert len(purged) == 1 and sqlite_store._next_purge == pytest.approx(purged[0] + 300)
    sqlite_store._next_purge = time.time() - 1
    sqlite_store.save("c", b"{}", 60)
    assert len(purged) == 2


def test_the_table_has_beakers_columns_the_expires_index_and_wal(sqlite_store):
    sqlite_store.save("a", b"{}", 60)
    path = sqlite_store._cargs[0]
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({sqlite_store.table})")]
    indexes = [row[1] for row in conn.execute(f"PRAGMA index_list({sqlite_store.table})")]
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    created, accessed = conn.execute(f"SELECT created, accessed FROM {sqlite_store.table}").fetchone()
    conn.close()
    assert columns == ["namespace", "created", "accessed", "data", "expires"]
    assert f"{sqlite_store.table}_expires" in indexes and mode == "wal"
    assert len(created) == len("2026-01-01 00:00:00.000000") and created == accessed


def test_a_stock_beaker_table_gets_the_expires_column(tmp_path):
    path, table = tmp_path / "old.db", "old_" + uuid.uuid4().hex[:6]
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (namespace VARCHAR(255) PRIMARY KEY, created TIMESTAMP NOT NULL, "
                 "accessed TIMESTAMP NOT NULL, data BLOB NOT NULL)")
    conn.execute(f"INSERT INTO {table} VALUES ('old', '2020-01-01', '2020-01-01', x'80')")
    conn.commit()
    conn.close()
    store = sql_store(f"sqlite:///{path}", table)
    assert store.load("old", time.time()) == b"\x80", "the old row is still there (and JsonSession refuses it)"
    store.save("new", b"{}", 60)
    assert store.load("new", time.time()) == b"{}"


def test_a_failing_statement_on_sqlite_is_store_unavailable_and_not_retried(sqlite_store):
    sqlite_store.save("a", b"{}", None)
    with pytest.raises(StoreUnavailable, match="the SQL session store is unavailable"):
        sqlite_store.run("SELECT * FROM no_such_table", ())
    assert sqlite_store.load("a", time.time()) == b"{}", "the store still works after"


def test_sql_json_round_trips_through_the_store(tmp_path):
    url, table = f"sqlite:///{tmp_path}/j.db", "j"
    ns = beaker_backends.SqlJson("sid1", url=url, table_name=table, timeout=60)
    assert ns._load() is None
    ns["session"] = '{"a":1}'
    assert beaker_backends.SqlJson("sid1", url=url, table_name=table)._load() == b'{"a":1}'
    ns._delete()
    assert ns._load() is None


@pytest.mark.parametrize("stored", [-1, 10**15, 50_000_000, 1.5, "not json"])
def test_a_sqlite_data_column_that_is_not_bytes_is_a_corrupt_record(stored, tmp_path, caplog):
    """SQLite's dynamic typing lets any value into the BLOB column: ``bytes(-1)`` was a 500, ``bytes(10**15)``
    a MemoryError, ``bytes(50_000_000)`` 48 MB per request (and the inspector's ``len(int)`` a 500)."""
    import tracemalloc

    from course.kit import stores_beaker
    from course.kit.beakerkit import HardenedSessions, session_config
    from course.tools.testing import wsgi_request
    url = f"sqlite:///{tmp_path}/typed.db"
    options = stores_beaker.hardened(stores_beaker.beaker_options(url))
    sid = uuid.uuid4().hex
    beaker_backends.SqlJson(sid, url=options["url"], table_name=options["table_name"], timeout=600)["session"] = (
        json.dumps({"visits": 5, "_creation_time": time.time(), "_accessed_time": time.time()}))
    with sqlite3.connect(f"{tmp_path}/typed.db") as db:
        update = f"UPDATE {options['table_name']} SET data = ? WHERE namespace = ?"
        assert db.execute(update, (stored, sid)).rowcount == 1
    db.close()

    def app(environ, start_response):
        visits = environ["beaker.session"].get("visits", 0)
        start_response("200 OK", [])
        return [str(visits).encode()]

    wsgi = HardenedSessions(app, session_config(secret=SECRET, timeout=600, **options))
    cookie = signed_cookie(sid)
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING):
            status, headers, body = wsgi_request(wsgi, "/", headers={"Cookie": cookie})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, body) == ("200 OK", b"0"), f"{stored!r}: a new, empty session: {status} {body[:200]}"
    assert peak < 5_000_000, f"{stored!r}: nothing is converted to bytes: {peak} bytes allocated"
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("course.kit")]
    assert len(logged) == 1 and "corrupt" in logged[0], logged
    shown = stores_beaker.peek(stores_beaker.beaker_options(url), sid)
    assert shown is not None and "(stored)" in shown["data"], f"the inspector shows it as not a record: {shown}"


# ---------------------------------------------------------------- memcached

def test_a_pickled_memcached_item_is_refused_never_loaded(caplog):
    import io
    with caplog.at_level(logging.WARNING, logger="course.kit.beaker_backends"):
        with pytest.raises(ValueError, match="refused"):
            _RefuseToUnpickle(io.BytesIO(b"anything")).load()
    assert any("never unpickled" in r.getMessage() for r in caplog.records)


def test_memcached_json_sets_with_the_ttl_and_reads_bytes():
    url = services.require("memcached").split("://", 1)[1]
    sid = uuid.uuid4().hex
    ns = MemcachedJson(sid, url=url, timeout=60)
    assert ns.key == f"{sid}_session" and ns.limit == 1_000_000 and ns["session"] is None
    ns["session"] = '{"a":1}'
    assert ns._load() == b'{"a":1}' and ns["session"] == b'{"a":1}'
    ns.mc.set(ns.key, "text")
    assert ns._load() is None, "a str item (flags 16) is not what the kit writes: refused"
    ns._delete()
    assert ns._load() is None


def plant_memcached_item(url, key, flags, payload):
    import socket
    host, _, port = url.partition(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(f"set {key} {flags} 600 {len(payload)}\r\n".encode() + payload + b"\r\n")
        assert sock.recv(100).startswith(b"STORED")


@pytest.mark.parametrize("flags, payload", [
    (2, b"abc"), (2, b"-1"), (2, b"1000000000000000"), (2, b"50000000"), (4, b"abc"),
    (8, b"not zlib"), (8, __import__("zlib").compress(b"\0" * 50_000_000, 9)), (16, b"\xff\xfe"),
    (16, b'{"visits":5}'), (1, b"\x80\x04pickled"), (32, b"{}"), (8 | 16, b"x")])
def test_a_memcached_item_not_flagged_as_the_kits_bytes_is_never_decoded(flags, payload, caplog):
    """python-memcached decodes items by their flags (int(), zlib, UTF-8, pickle): 500s, a MemoryError,
    50 MB from the text "50000000", 200 MB from a zlib bomb. Only flags 0, what the kit writes, is a record."""
    import tracemalloc
    url = services.require("memcached").split("://", 1)[1]
    ns = MemcachedJson(uuid.uuid4().hex, url=url, timeout=60)
    plant_memcached_item(url, ns.key, flags, payload)
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="course.kit.beaker_backends"):
            assert ns._load() is None, "the session is unknown"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"nothing was decompressed or converted ({peak} bytes allocated)"
    assert [r.getMessage() for r in caplog.records if f"flags {flags} " in r.getMessage()], "one log line"
    ns["session"] = b'{"a":1}'
    assert ns._load() == b'{"a":1}', "the connection is still in step, and the kit's own record loads"
    ns._delete()


def test_a_session_id_too_long_for_a_memcached_key_is_an_unknown_session():
    from course.kit import stores_beaker
    from course.tools.testing import wsgi_request
    url = services.require("memcached")
    ns = MemcachedJson("a" * 300, url=url.split("://", 1)[1], timeout=60)
    assert ns._load() is None and "session" not in ns
    ns._delete()                                   # nothing to delete, and no error

    wsgi = counting_sessions(stores_beaker.beaker_options(url))
    long_id = "f" * 300
    cookie = signed_cookie(long_id)
    status, headers, body = wsgi_request(wsgi, "/", headers={"Cookie": cookie})
    assert (status, body) == ("200 OK", b"1"), f"a new session, not a 500: {status} {body[:200]}"
    assert long_id not in dict(headers).get("Set-Cookie", ""), "with a new ID"


def test_a_memcached_that_is_down_raises_instead_of_answering_none():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ns = MemcachedJson(uuid.uuid4().hex, url=f"127.0.0.1:{port}", timeout=60)
    for call in (ns._load, lambda: ns._save(b"{}", 60), ns._delete):
        with pytest.raises(StoreUnavailable, match="memcached"):
            call()


def test_with_two_memcached_servers_a_session_on_the_one_that_is_down_gets_503_not_a_new_session():
    # python-memcached moves a key whose server is down to the next live one, where the session is
    # not: the visitor was logged out in silence. The key's own server, or "the store is down".
    import socket
    live = services.require("memcached").split("://", 1)[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    url = f"{live};{dead}"
    on_live = on_dead = None
    while on_live is None or on_dead is None:
        ns = MemcachedJson(uuid.uuid4().hex, url=url, timeout=60)
        server = beaker_backends._memcached_client(url).buckets[
            __import__("memcache").serverHashFunction(ns.key.encode()) % 2]
        if server.address[1] == int(live.rsplit(":", 1)[1]):
            on_live = on_live or ns
        else:
            on_dead = on_dead or ns
    on_live._save(b'{"visits": 1}', 60)
    assert on_live._load() == b'{"visits": 1}', "a session on the live server loads"
    for call in (on_dead._load, lambda: on_dead._save(b"{}", 60), on_dead._delete):
        with pytest.raises(StoreUnavailable, match="memcached"):
            call()
    on_live._delete()


def test_the_mongo_class_is_made_on_first_use():
    cls = beaker_backends.MongoJson
    from beaker.ext.mongodb import MongoNamespaceManager
    assert issubclass(cls, MongoNamespaceManager)
    with pytest.raises(AttributeError):
        beaker_backends.__getattr__("NoSuchThing")


def test_sqlite_connections_are_wal_normal_sync_and_wait_for_a_lock(sqlite_store):
    sqlite_store.save("a", b"{}", None)
    [conn] = sqlite_store._idle
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,), "NORMAL"
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    assert conn.isolation_level is None, "autocommit"


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_server_connections_are_in_autocommit_mode(kind):
    from course.kit.stores_beaker import beaker_options, hardened
    options = hardened(beaker_options(services.require(kind) + f"?table=bb_{uuid.uuid4().hex[:8]}"))
    store = sql_store(options["url"], options["table_name"])
    try:
        store.save("a", b"{}", 60)
        [conn] = store._idle
        if kind == "postgres":
            assert conn.autocommit is True
            assert store.run("SHOW synchronous_commit", (), fetch=True) == "off"
        else:
            assert conn.get_autocommit() is True
        assert store.load("a", time.time()) == b"{}"
    finally:
        store.run(f"DROP TABLE IF EXISTS {options['table_name']}", ())


def test_redis_connections_have_short_timeouts_and_no_retries_of_their_own():
    store = beaker_backends.RedisStore("redis://127.0.0.1:2/0")
    kwargs = store.pool.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (1, 2)
    assert kwargs["retry"]._retries == 0, "the one retry is RedisStore's own, on a pooled connection only"


def test_the_memcached_client_retries_a_dead_server_after_a_second_and_never_unpickles():
    client = beaker_backends._memcached_client("127.0.0.1:3;127.0.0.1:4")
    assert beaker_backends._memcached_client("127.0.0.1:3;127.0.0.1:4") is client
    assert [s.address[1] for s in client.servers] == [3, 4]
    assert client.socket_timeout == 1 and all(s.dead_retry == 1 for s in client.servers)
    assert client.unpickler is _RefuseToUnpickle


def test_a_stock_beaker_mariadb_table_gets_the_expires_column_and_its_index():
    from course.kit.stores_beaker import beaker_options, hardened
    table = f"bb_old_{uuid.uuid4().hex[:8]}"
    options = hardened(beaker_options(services.require("mysql") + f"?table={table}"))
    store = sql_store(options["url"], table)
    store._ready = True                              # make the stock table first, as Beaker would
    store.run(f"CREATE TABLE {table} (namespace VARCHAR(255) NOT NULL PRIMARY KEY, created DATETIME(6) NOT NULL, "
              "accessed DATETIME(6) NOT NULL, data BLOB NOT NULL)", ())
    try:
        fresh = beaker_backends.SqlStore(options["url"], table)
        fresh.save("a", b"{}", 60)
        assert fresh.load("a", time.time()) == b"{}"
        assert fresh.run("SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
                         "AND table_name = %s AND index_name = %s", (table, f"{table}_expires"), fetch=True) >= 1
        again = beaker_backends.SqlStore(options["url"], table)
        again.save("b", b"{}", 60)                   # a table that has the column is left as it is
        assert again.load("b", time.time()) == b"{}"
    finally:
        store.run(f"DROP TABLE IF EXISTS {table}", ())


def test_a_new_process_finds_the_table_ready_and_leaves_it_as_it_is(sqlite_store):
    sqlite_store.save("a", b'{"a":1}', None)
    other = beaker_backends.SqlStore(sqlite_store.url, sqlite_store.table)     # another process's view
    assert other.load("a", time.time()) == b'{"a":1}'
    other.save("b", b"{}", 60)
    assert other._ready is True


# ---------------------------------------------------------------- the pools' bounds and retries

def test_redis_keeps_at_most_16_idle_connections_and_closes_the_others(redis_url):
    store = beaker_backends.RedisStore(redis_url)
    made = [store.pool.make_connection() for _ in range(18)]
    for conn in made:
        conn.connect()
        store._checkin(conn)
    assert store._idle == made[:16]
    assert [conn._sock is None for conn in made] == [False] * 16 + [True] * 2, "the two over are closed"
    for conn in made:
        conn.disconnect()


def test_sql_keeps_at_most_16_idle_connections_and_closes_the_others(sqlite_store):
    made = [sqlite_store._connect() for _ in range(18)]
    for conn in made:
        sqlite_store._checkin(conn)
    assert sqlite_store._idle == made[:16]
    closed = []
    for conn in made:
        try:
            conn.execute("SELECT 1")
            closed.append(False)
        except sqlite3.ProgrammingError:
            closed.append(True)
    assert closed == [False] * 16 + [True] * 2


def test_a_record_is_utf8_json_and_nothing_else(records):
    session = json_session(records)
    assert session._decrypt_data(memoryview(b'{"a":1}')) == {"a": 1}
    with pytest.raises(CorruptSession, match="is not JSON"):
        session._decrypt_data('{"a":1}'.encode("utf-16"))     # json.loads would guess UTF-16 from bytes


def test_a_corrupt_reload_leaves_nothing_of_the_old_session_to_revert_to(records):
    session = json_session(records)
    session["visits"] = 5
    session.save()
    loaded = JsonSession({}, id=session.id, namespace_class=Dict)
    assert loaded["visits"] == 5
    records[loaded.id] = (b"\x80\x04pickled", None)
    loaded.load()
    loaded.revert()
    assert "visits" not in loaded and loaded.id != session.id


def test_the_redis_store_keeps_its_url(redis_url):
    assert beaker_backends.RedisStore(redis_url).url == redis_url


def counting(obj, name):
    """Count the calls of ``obj.name`` (the real method still runs)."""
    calls = []
    real = getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


def closed_port():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_new_redis_connection_that_fails_is_not_retried():
    import redis
    store = beaker_backends.RedisStore(f"redis://127.0.0.1:{closed_port()}/0")
    made = counting(store.pool, "make_connection")
    with pytest.raises(redis.ConnectionError):
        store.command("GET", "x")
    assert len(made) == 1


def test_a_redis_timeout_is_not_retried_even_on_a_pooled_connection(redis_url):
    import redis
    store = beaker_backends.RedisStore(redis_url)
    store.pool.connection_kwargs["socket_timeout"] = 0.2
    store.command("PING")                                  # a pooled connection
    made = counting(store.pool, "make_connection")
    with pytest.raises(redis.TimeoutError):
        store.command("BLPOP", f"bb_{uuid.uuid4().hex}", 0)  # Redis is there, but the reply never comes
    assert made == [] and store._idle == []


def test_after_a_redis_restart_every_pooled_connection_is_dead_and_the_request_still_works(redis_url):
    from course.tools.faults import Relay
    with Relay.for_url(redis_url, 6379) as relay:
        store = beaker_backends.RedisStore(relay.url_for(redis_url))
        pooled = [store.pool.make_connection() for _ in range(3)]
        for conn in pooled:
            conn.send_command("PING")                          # through the relay, both ways
            assert conn.read_response() == b"PONG"
            store._checkin(conn)
        relay.cut()
        relay.restore()
        key = f"bb_{uuid.uuid4().hex}"
        try:
            assert store.command("SET", key, b"1", "EX", 60) == b"OK"
            assert relay.connections == 4, "one pooled connection found dead, then a new one"
        finally:
            store.command("DEL", key)


def test_a_reply_that_is_not_redis_is_raised_and_the_connection_dropped():
    import socket

    import redis
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_garbage():
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"?garbage\r\n")
            conn.settimeout(5)
            try:
                while conn.recv(1024):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    store = beaker_backends.RedisStore(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(redis.exceptions.InvalidResponse):
            store.command("GET", "x")
        assert store._idle == []
    finally:
        thread.join(10)
        server.close()



@pytest.mark.parametrize("kind", ["redis", "sql"])
def test_a_store_once_made_is_found_without_the_lock(kind, tmp_path, monkeypatch):
    make, url = ((redis_store, "redis://127.0.0.1:1/0") if kind == "redis"
                 else (lambda u: sql_store(u, "t"), f"sqlite:///{tmp_path}/s.db"))
    first = make(url)
    gate = WatchedLock()
    monkeypatch.setattr(beaker_backends, "_REDIS_LOCK" if kind == "redis" else "_SQL_LOCK", gate)
    assert make(url) is first and gate.taken == 0


@pytest.mark.parametrize("kind", ["redis", "sql"])
def test_a_thread_that_waited_for_the_lock_takes_the_store_another_made(kind, tmp_path, monkeypatch):
    if kind == "redis":
        url = f"redis://u{uuid.uuid4().hex}@127.0.0.1:1/0"
        make, stores, key, lock = redis_store, beaker_backends._REDIS_STORES, url, "_REDIS_LOCK"
    else:
        url = f"sqlite:///{tmp_path}/s.db"
        make, stores, key, lock = (lambda u: sql_store(u, "t")), beaker_backends._SQL_STORES, (url, "t"), "_SQL_LOCK"
    gate = WatchedLock()
    monkeypatch.setattr(beaker_backends, lock, gate)
    found = []
    gate.lock.acquire()                                    # another thread is making the store
    waiter = threading.Thread(target=lambda: found.append(make(url)))
    waiter.start()
    assert gate.waiting.wait(10)
    other = stores[key] = object()                         # ... and has made it
    gate.lock.release()
    waiter.join()
    stores.pop(key)
    assert found == [other]


def test_a_thread_that_waited_to_make_the_table_finds_it_made(sqlite_store):
    sqlite_store.save("a", b"{}", None)
    store = beaker_backends.SqlStore(sqlite_store.url, sqlite_store.table)
    store._init_lock = gate = WatchedLock()
    created = counting(store, "_create_table")
    gate.lock.acquire()                                    # another thread is making the table
    found = []
    waiter = threading.Thread(target=lambda: found.append(store.load("a", time.time())))
    waiter.start()
    assert gate.waiting.wait(10)
    store._ready = True                                    # ... and has made it
    gate.lock.release()
    waiter.join()
    assert found == [b"{}"] and created == []
    store._connect().close()
    assert gate.taken == 1, "once the table is there, a new connection takes no lock"


def test_a_pooled_sqlite_connection_that_fails_is_closed_and_not_retried(sqlite_store):
    sqlite_store.save("a", b"{}", None)
    [pooled] = sqlite_store._idle
    connects = counting(sqlite_store, "_connect")
    with pytest.raises(StoreUnavailable, match=r"\(OperationalError: no such table: no_such_table\)"):
        sqlite_store.run("SELECT * FROM no_such_table", ())
    assert connects == [] and sqlite_store._idle == []
    with pytest.raises(sqlite3.ProgrammingError):
        pooled.execute("SELECT 1")


def test_a_statement_that_is_wrong_is_raised_as_it_is_and_its_connection_closed(sqlite_store):
    sqlite_store.save("a", b"{}", None)
    [pooled] = sqlite_store._idle
    with pytest.raises(sqlite3.ProgrammingError, match="bindings"):
        sqlite_store.run("SELECT ?", ())
    assert sqlite_store._idle == []
    with pytest.raises(sqlite3.ProgrammingError):
        pooled.execute("SELECT 1")


def test_run_fetches_the_first_column_of_the_first_row_or_counts_rows(sqlite_store):
    sqlite_store.save("a", b"{}", None)
    sqlite_store.save("b", b"{}", None)
    assert sqlite_store.run("SELECT 1, 2", (), fetch=True) == 1
    assert sqlite_store.run("SELECT 1 WHERE 0", (), fetch=True) is None
    assert sqlite_store.run(f"DELETE FROM {sqlite_store.table}", ()) == 2


def test_an_in_memory_sqlite_store_makes_no_folder():
    store = beaker_backends.SqlStore("sqlite://", "m")
    store.save("a", b"{}", None)
    assert store.load("a", time.time()) == b"{}"


def test_sqlite_stamps_always_have_microseconds_and_a_due_purge_runs(sqlite_store, monkeypatch):
    monkeypatch.setattr(beaker_backends.time, "time", lambda: 1_800_000_000.0)
    purged = counting(sqlite_store, "purge")
    sqlite_store._next_purge = 1_800_000_000.0
    sqlite_store.save("a", b"{}", 60)
    assert len(purged) == 1, "the purge is due at its very moment"
    created = sqlite_store.run(f"SELECT created FROM {sqlite_store.table}", (), fetch=True)
    assert created.endswith(".000000"), "as SQLAlchemy writes it, even on a whole second"


def test_retry_locked_waits_out_a_locked_database_and_nothing_else(monkeypatch):
    from course.kit.beaker_backends import _retry_locked
    slept, calls = [], []
    monkeypatch.setattr(beaker_backends.time, "sleep", slept.append)

    def locked(times):
        def statement():
            calls.append(1)
            if len(calls) <= times:
                raise sqlite3.OperationalError("database is locked")
            return "done"
        return statement

    assert _retry_locked(locked(2)) == "done" and len(calls) == 3 and slept == [0.02, 0.02]
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _retry_locked(locked(10 ** 6))
    assert len(calls) == 50, "50 tries, then the error"
    calls.clear()

    def broken():
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk"):
        _retry_locked(broken)
    assert len(calls) == 1


def test_the_file_record_is_written_on_a_write_close_only(tmp_path):
    import os

    from course.kit.beaker_backends import FileJson
    ns = FileJson("sid1", data_dir=str(tmp_path), digest_filenames=False)
    ns.do_open("c", False)
    ns["session"] = '{"a":1}'
    ns.do_close()
    assert open(ns.file, "rb").read() == b'{"a":1}' and "session" not in ns, "written, and not kept in memory"
    written = os.stat(ns.file).st_ino
    ns.do_open("r", False)
    assert ns["session"] == b'{"a":1}'
    ns.do_close()
    assert os.stat(ns.file).st_ino == written, "a read does not write the file again"
    ns.do_open("c", True)
    assert "session" not in ns, "replace: the old record is not read"
    ns.do_close()
    assert not os.path.exists(ns.file)
    ns.do_open("w", False)
    ns["session"] = "{}"
    ns.do_close()
    ns.do_close()
    assert open(ns.file, "rb").read() == b"{}", "a second close leaves the record alone"


def test_a_record_whose_write_failed_is_not_read_back_from_memory(tmp_path):
    import os
    import shutil

    from course.kit.beaker_backends import FileJson
    ns = FileJson("sid1", data_dir=str(tmp_path), digest_filenames=False)
    os.makedirs(os.path.join(ns.file, "in-the-way"))    # the write fails, as on a full disk
    ns.acquire_write_lock(replace=True)                  # as Beaker's Session.save opens it
    ns["session"] = '{"a":1}'
    with pytest.raises(OSError):
        ns.release_write_lock()
    shutil.rmtree(ns.file)
    ns.acquire_read_lock()
    try:
        assert "session" not in ns, "a record that never reached the disk is not loaded from memory"
    finally:
        ns.release_read_lock()


@pytest.fixture
def postgres_store():
    from course.kit.stores_beaker import beaker_options, hardened

    def make(url=None):
        url = url or services.require("postgres")
        options = hardened(beaker_options(url + f"?table={table}"))
        return sql_store(options["url"], table)

    table = f"bb_{uuid.uuid4().hex[:8]}"
    yield make
    make().run(f"DROP TABLE IF EXISTS {table}", ())


def test_a_statement_that_fails_on_a_new_server_connection_is_not_retried(postgres_store):
    store = postgres_store()
    connects = counting(store, "_connect")
    with pytest.raises(StoreUnavailable):
        store.run("SELECT pg_terminate_backend(pg_backend_pid())", ())
    assert len(connects) == 1
    store.save("a", b"{}", 60)
    connects.clear()
    with pytest.raises(StoreUnavailable):
        store.run("SELECT pg_terminate_backend(pg_backend_pid())", ())
    assert len(connects) == 1, "on a pooled one: once more on a new connection, then the error"


def test_after_a_server_restart_every_pooled_sql_connection_is_dead_and_the_request_still_works(postgres_store):
    from course.tools.faults import Relay
    url = services.require("postgres")
    with Relay.for_url(url, 5432) as relay:
        store = postgres_store(relay.url_for(url))
        for conn in [store._connect() for _ in range(3)]:
            store._checkin(conn)
        relay.cut()
        relay.restore()
        store.save("a", b'{"kept":1}', 60)
        assert store.load("a", time.time()) == b'{"kept":1}'
        assert relay.connections == 4, "one pooled connection found dead, then a new one"


def test_store_unavailable_names_the_error_and_its_first_line_only():
    unavailable = beaker_backends.SqlStore._unavailable
    assert str(unavailable(sqlite3.OperationalError("server closed the connection\nDETAIL: more"))) == (
        "the SQL session store is unavailable (OperationalError: server closed the connection)")
    assert str(unavailable(sqlite3.InterfaceError())) == "the SQL session store is unavailable (InterfaceError: )"


def test_closing_the_idle_connections_closes_every_pooled_one_and_the_store_goes_on(tmp_path):
    # Run at exit (atexit): a driver warns on the terminal about every connection left open.
    store = beaker_backends.SqlStore(f"sqlite:///{tmp_path}/s.db", "t_close")
    assert store.run("SELECT 1", (), fetch=True) == 1
    pooled = list(store._idle)
    assert pooled, "the connection went back to the pool"
    store.close_idle()
    assert store._idle == []
    for conn in pooled:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert store.run("SELECT 1", (), fetch=True) == 1, "a new connection afterwards"


def test_at_exit_every_sql_store_of_the_process_lets_go_of_its_pooled_connections(tmp_path):
    store = beaker_backends.sql_store(f"sqlite:///{tmp_path}/exit.db", "t_exit")
    store.run("SELECT 1", (), fetch=True)
    assert store._idle
    beaker_backends._close_sql_stores()          # what atexit runs
    assert store._idle == []


# ---------------------------------------------------------------- SQL after a fork

SERVER_CONNECTION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


@pytest.fixture
def forkable_sql_store(tmp_path):
    """``make(kind)``: a new SqlStore on a table of this test alone (dropped after)."""
    from course.kit.stores_beaker import beaker_options, hardened
    made = []

    def make(kind):
        table = f"bbf_{uuid.uuid4().hex[:8]}"
        base = f"sqlite:///{tmp_path}/fork.db" if kind == "sqlite" else services.require(kind)
        options = hardened(beaker_options(base + ("" if kind == "sqlite" else f"?table={table}")))
        store = beaker_backends.SqlStore(options["url"], table)
        made.append(store)
        return store

    yield make
    for store in made:
        with contextlib.suppress(Exception):        # cleanup only: never hide the test's own result
            store.run(f"DROP TABLE IF EXISTS {store.table}", ())
        store.close_idle()


def fork_and_run(child_work, parent_work):
    """Fork; the child runs ``child_work()`` and the parent ``parent_work()`` until the child is done.

    Each returns a list of what went wrong; the child's comes back over a pipe (and its exit code)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: never returns into pytest
        os.close(reader)
        try:
            wrong = child_work()
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            wrong = [f"{type(exc).__name__}: {exc}"]
        os.write(writer, repr(wrong[:5]).encode()[:60000] if wrong else b"")
        os._exit(1 if wrong else 0)
    os.close(writer)
    wrong_here = []
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        wrong_here += parent_work()
    with os.fdopen(reader, "rb") as pipe:
        report = pipe.read().decode()
    return report, wrong_here


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_after_a_fork_each_process_uses_its_own_sql_connections_and_gets_its_own_data(kind, forkable_sql_store):
    # On a socket both processes share, each reads replies meant for the other: one visitor's session
    # handed to another, then saved under the wrong ID (and "the last operation didn't produce records").
    store = forkable_sql_store(kind)
    store.save("parent", b'{"who":"parent"}', 600)
    store.save("child", b'{"who":"child"}', 600)
    inherited = list(store._idle)
    assert inherited, "the parent has a pooled connection when it forks"
    ask_id = SERVER_CONNECTION_ID.get(store.dialect)
    parent_id = store.run(ask_id, (), fetch=True) if ask_id else None

    def uses(who, times):
        wrong = []
        for _ in range(times):
            got = store.load(who, time.time())
            if got != f'{{"who":"{who}"}}'.encode():
                wrong.append(got)
            store.save(who, f'{{"who":"{who}"}}'.encode(), 600)
        return wrong

    def child():
        wrong = uses("child", 300)
        if any(conn is pooled for conn in store._idle for pooled in inherited):
            wrong.append("the child pooled a connection of its parent")
        if ask_id and store.run(ask_id, (), fetch=True) == parent_id:
            wrong.append("the child talks to the server on its parent's connection")
        return wrong

    report, wrong_here = fork_and_run(child, lambda: uses("parent", 5))
    assert report == "", f"the child got somebody else's data or connection: {report}"
    assert not wrong_here, f"the parent got somebody else's data: {wrong_here[:3]}"
    if ask_id:
        assert store.run(ask_id, (), fetch=True) == parent_id, "the parent's connection is still its own and open"
    assert store.load("parent", time.time()) == b'{"who":"parent"}'
    assert store.load("child", time.time()) == b'{"who":"child"}'


def test_a_forked_child_that_exits_leaves_its_parents_sql_connections_open(forkable_sql_store):
    # At exit every store closes its pool (atexit); in a child that never used the store, that pool is
    # its parent's, and closing it would end the parent's server connections (PostgreSQL's Terminate).
    store = forkable_sql_store("postgres")
    parent_id = store.run("SELECT pg_backend_pid()", (), fetch=True)
    report, _ = fork_and_run(lambda: store.close_idle() or [], lambda: time.sleep(0.01) or [])
    assert report == ""
    assert store.run("SELECT pg_backend_pid()", (), fetch=True) == parent_id, "the pooled connection still works"


def test_mariadb_matches_session_ids_byte_for_byte():
    """The kit's MariaDB table compares IDs exactly (VARBINARY): its default collation is case-insensitive,
    so a signed upper-case copy of an ID (or one with a trailing space) loaded that visitor's session."""
    from course.kit.stores_beaker import beaker_options, hardened
    table = f"bb_case_{uuid.uuid4().hex[:8]}"
    options = hardened(beaker_options(services.require("mysql") + f"?table={table}"))
    store = sql_store(options["url"], table)
    try:
        sid = "abcdef" + uuid.uuid4().hex[6:]
        store.save(sid, b'{"who":"victim"}', 600)
        assert store.load(sid, time.time()) == b'{"who":"victim"}'
        for other in (sid.upper(), sid[:-1] + sid[-1].upper(), sid + " ", "ABCDEF" + sid[6:]):
            if other != sid:
                assert store.load(other, time.time()) is None, f"{other!r} is another ID"
        store.save(sid.upper(), b'{"who":"other"}', 600)
        assert store.load(sid, time.time()) == b'{"who":"victim"}', "and saving it is another row"
    finally:
        store.run(f"DROP TABLE IF EXISTS {table}", ())
