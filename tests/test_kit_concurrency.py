"""course.kit.concurrency on its own: the session class's knobs, file locks, Sentinel URLs, the counter table."""
import json
import threading
import time
import uuid

import pytest

from course.kit import beaker_backends, concurrency
from course.kit.beakerkit import StrictSession
from course.kit.concurrency import (
    SENTINEL_SCHEME,
    FileLocks,
    counter_table,
    describe,
    parse_sentinel_url,
    redis_for_locks,
    session_class,
    store_config,
)
from course.kit.stores_beaker import beaker_options, hardened


class Dict(beaker_backends._JsonNamespace):
    records: dict = {}

    def _load(self):
        return self.records.get(self.namespace)

    def _save(self, data, ttl):
        self.records[self.namespace] = data

    def _delete(self):
        self.records.pop(self.namespace, None)


@pytest.fixture(autouse=True)
def records():
    Dict.records = {}
    return Dict.records


def make(cls, sid=None):
    return cls({}, id=sid, namespace_class=Dict, data_serializer="json")


def base():
    return session_class(beaker_backends.JsonSession)


def test_session_class_is_a_subclass_with_the_knobs():
    cls = session_class(StrictSession, resave=1, write_delay="0.5")
    assert issubclass(cls, StrictSession) and cls.__name__ == "ConcurrentStrictSession"
    assert cls.resave is True and cls.write_delay == 0.5 and cls.merge is None and cls.save_lock is None


def test_merge_needs_a_lock():
    with pytest.raises(ValueError, match="save_lock"):
        session_class(StrictSession, merge=lambda stored, loaded, mine: mine)


def test_a_read_only_request_writes_nothing_unless_resave(records):
    session = make(base())
    session["n"] = 1
    session.save()
    sid, before = session.id, dict(records)
    reader = make(base(), sid)
    assert reader.save(accessed_only=True) is None and records == before
    resaving = make(session_class(beaker_backends.JsonSession, resave=True), sid)
    records[sid] = records[sid].replace(b'"n":1', b'"n":7')
    resaving.save(accessed_only=True)
    assert json.loads(records[sid])["n"] == 1, "resave writes the data as it was loaded back"


def test_load_keeps_a_deep_copy_of_what_the_request_started_from(records):
    session = make(base())
    session["cart"] = ["a"]
    session.save()
    again = make(base(), session.id)
    again["cart"].append("b")
    assert again.loaded["cart"] == ["a"]


def test_write_delay_sleeps_before_writing(records, monkeypatch):
    slept = []
    monkeypatch.setattr(concurrency.time, "sleep", slept.append)
    session = make(session_class(beaker_backends.JsonSession, write_delay=0.25))
    session["n"] = 1
    session.save()
    assert slept == [0.25]


def test_merge_rereads_the_record_under_the_lock_and_writes_the_merge(records):
    held = []

    class Lock:
        def __init__(self, sid):
            self.sid = sid

        def __enter__(self):
            held.append(self.sid)

        def __exit__(self, *exc):
            held.append("released")

    def merge(stored, loaded, mine):
        out = dict(stored)
        for key, value in mine.items():
            if loaded.get(key) != value:
                out[key] = value
        return out

    cls = session_class(beaker_backends.JsonSession, merge=merge, save_lock=Lock)
    first = make(cls)
    first["a"] = 1
    first.save()
    sid = first.id
    tab1, tab2 = make(cls, sid), make(cls, sid)
    tab1["b"] = 2
    tab1.save()
    tab2["c"] = 3
    tab2.save()
    stored = json.loads(records[sid])
    assert (stored["a"], stored["b"], stored["c"]) == (1, 2, 3), "neither tab's change is lost"
    assert held[-2:] == [sid, "released"]


def test_merge_of_a_record_that_vanished_starts_from_nothing(records):
    cls = session_class(beaker_backends.JsonSession, merge=lambda stored, loaded, mine: {**stored, "seen": stored},
                        save_lock=lambda sid: threading.Lock())
    first = make(cls)
    first["a"] = 1
    first.save()
    tab = make(cls, first.id)
    records.clear()
    tab.save()
    assert json.loads(records[first.id])["seen"] == {}


def test_file_locks_exclude_each_other_per_session(tmp_path):
    locks = FileLocks(tmp_path / "locks")
    order = []

    def second():
        with locks.hold("s"):
            order.append("second")

    with locks.hold("s"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.1)
        order.append("first")
        with locks.hold("other"):
            order.append("other session: no wait")
    thread.join()
    assert order == ["first", "other session: no wait", "second"]
    assert len(list((tmp_path / "locks").iterdir())) == 2
    assert all(len(p.name) == 37 and p.name.endswith(".lock") for p in (tmp_path / "locks").iterdir())


@pytest.mark.parametrize("url, parsed", [
    ("redis+sentinel://127.0.0.1:26379/mymaster", ([("127.0.0.1", 26379)], "mymaster", 0)),
    ("redis+sentinel://a:1, b:2/svc/3", ([("a", 1), ("b", 2)], "svc", 3)),
])
def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db(url, parsed):
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize("url, why", [
    ("redis+sentinel://a/svc", "is not HOST:PORT"), ("redis+sentinel://a:x/svc", "is not HOST:PORT"),
    ("redis+sentinel://:1/svc", "is not HOST:PORT"), ("redis+sentinel://a:1", "service name"),
    ("redis+sentinel://a:1/svc/db", "service name"), ("redis+sentinel://a:1/s/1/2", "service name"),
])
def test_a_bad_sentinel_url_says_what_is_wrong(url, why):
    with pytest.raises(ValueError, match=why):
        parse_sentinel_url(url)


def test_store_config_takes_sentinel_urls_and_every_kit_url(tmp_path):
    options = store_config("redis+sentinel://127.0.0.1:1/svc")
    assert options["type"] == "ext:redis" and options["session_class"] is beaker_backends.JsonSession
    assert options["namespace_class"].store_name == "Redis (Sentinel)"
    assert isinstance(options["url"], concurrency._LazySentinel), "nothing is connected until first use"
    assert store_config("REDIS+SENTINEL://127.0.0.1:1/svc")["type"] == "ext:redis"
    sqlite = f"sqlite:///{tmp_path}/s.db"
    assert store_config(sqlite) == hardened(beaker_options(sqlite))
    with pytest.raises(ValueError):
        store_config("redis+sentinel://nope")
    assert SENTINEL_SCHEME == "redis+sentinel"


def test_describe_names_sentinel_or_the_store():
    assert describe("redis+sentinel://a:1/s", {}).startswith("Redis behind Sentinel")
    assert describe("sqlite:///x.db", {}) == "SQL (sqlite via SQLAlchemy), table beaker_cache"


def test_locks_talk_to_redis_through_the_kit_client():
    from course.tools import services
    url = services.require("redis")
    client = redis_for_locks(url)
    assert client is beaker_backends.redis_store(url)
    key = f"lock_{uuid.uuid4().hex}"
    assert client.command("SET", key, b"1", "NX", "PX", 1000) == b"OK"
    assert client.command("SET", key, b"2", "NX", "PX", 1000) is None
    client.command("DEL", key)
    wrapped = concurrency._RedisPyCommands(type("C", (), {"execute_command": lambda self, *a: a})())
    assert wrapped.command("GET", "k") == ("GET", "k")


def test_the_counter_table_sits_next_to_the_session_table(tmp_path):
    options = beaker_options(f"sqlite:///{tmp_path}/c.db?table=sess")
    store, table, q = counter_table(options)
    assert (table, q) == ("sess_counters", "?")
    store.run(f"INSERT INTO {table} (name, n) VALUES (?, ?)", ("visits", 1))
    assert store.run(f"SELECT n FROM {table} WHERE name = ?", ("visits",), fetch=True) == 1
    assert counter_table(beaker_options(f"sqlite:///{tmp_path}/d.db"))[1] == "beaker_cache_counters"
