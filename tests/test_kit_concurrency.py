"""course.kit.concurrency on its own: the session class's knobs, file locks, Sentinel URLs, the counter table."""
import fcntl
import json
import os
import shutil
import subprocess
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
from course.tools import services
from course.tools.faults import free_port


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


# ---------------------------------------------------------------- the session class: which path each save takes

class Lock:
    """A save_lock that records each time it is taken (for one session ID) and released."""
    held: list = []

    def __init__(self, sid):
        self.sid = sid

    def __enter__(self):
        Lock.held.append(self.sid)

    def __exit__(self, *exc):
        Lock.held.append("released")


@pytest.fixture
def held():
    Lock.held = []
    return Lock.held


def keep_mine(stored, loaded, mine):
    out = dict(stored)
    out.update({key: value for key, value in mine.items() if loaded.get(key) != value})
    return out


def test_a_save_without_write_delay_does_not_sleep(records, monkeypatch):
    slept = []
    monkeypatch.setattr(concurrency.time, "sleep", slept.append)
    session = make(base())
    session["n"] = 1
    session.save()
    again = make(base(), session.id)
    again["n"] = 2
    again.save()
    assert slept == [] and json.loads(records[session.id])["n"] == 2


def test_without_merge_a_change_is_written_as_it_is(records):
    session = make(base())
    session["a"] = 1
    session.save()
    tab1, tab2 = make(base(), session.id), make(base(), session.id)
    tab1["b"] = 2
    tab1.save()
    tab2["c"] = 3
    tab2.save()
    stored = json.loads(records[session.id])
    assert stored["c"] == 3 and "b" not in stored, "the last save wins: the lost update the lesson shows"


def test_a_resaving_read_only_request_writes_what_it_loaded_even_with_merge(records, held):
    cls = session_class(beaker_backends.JsonSession, resave=True, merge=keep_mine, save_lock=Lock)
    first = make(cls)
    first["n"] = 1
    first.save()
    reader = make(cls, first.id)
    records[first.id] = records[first.id].replace(b'"n":1', b'"n":7')
    reader.save(accessed_only=True)
    assert json.loads(records[first.id])["n"] == 1 and held == [], "no merge, no lock: the data as loaded"


def test_a_new_or_invalidated_session_is_saved_without_the_lock(records, held):
    cls = session_class(beaker_backends.JsonSession, merge=keep_mine, save_lock=Lock)
    first = make(cls)
    first["a"] = 1
    first.save()
    tab = make(cls, first.id)
    tab.invalidate()
    tab["b"] = 2
    tab.save()
    assert held == [] and json.loads(records[tab.id])["b"] == 2 and tab.id != first.id


def test_the_merge_decides_every_key_written_even_a_removed_one(records, held):
    def drop_a(stored, loaded, mine):
        return {key: value for key, value in {**stored, **mine}.items() if key != "a"}

    cls = session_class(beaker_backends.JsonSession, merge=drop_a, save_lock=Lock)
    first = make(cls)
    first["a"], first["b"] = 1, 2
    first.save()
    tab = make(cls, first.id)
    tab["c"] = 3
    tab.save()
    stored = json.loads(records[first.id])
    assert "a" not in stored and (stored["b"], stored["c"]) == (2, 3) and held == [first.id, "released"]


def test_after_a_new_id_the_merge_starts_from_nothing_stored(records, held):
    seen = []

    def merge(stored, loaded, mine):
        seen.append(stored)
        return mine

    cls = session_class(beaker_backends.JsonSession, merge=merge, save_lock=Lock)
    first = make(cls)
    first["a"] = 1
    first.save()
    tab = make(cls, first.id)
    tab.regenerate_id()
    tab["b"] = 2
    tab.save()
    assert seen == [{}], "the old ID's record is not the new one's"
    assert json.loads(records[tab.id])["b"] == 2 and held == [tab.id, "released"]


def test_merge_rereads_the_record_from_a_counting_store():
    from course.kit.beakerkit import CountingNamespace
    from course.kit.stores import CountingStore

    store = CountingStore()
    cls = session_class(beaker_backends.JsonSession, merge=keep_mine, save_lock=lambda sid: threading.Lock())

    def open_session(sid=None):
        return cls({}, id=sid, namespace_class=CountingNamespace, store=store, data_serializer="json")

    first = open_session()
    first["a"] = 1
    first.save()
    tab1, tab2 = open_session(first.id), open_session(first.id)
    tab1["b"] = 2
    tab1.save()
    tab2["c"] = 3
    tab2.save()
    again = open_session(first.id)
    assert (again["a"], again["b"], again["c"]) == (1, 2, 3)


def test_a_cookie_session_is_saved_as_it_is_even_with_merge(held):
    """A CookieSession is never loaded from a store (nothing to re-read): merge-on-save leaves it alone."""
    from beaker.session import CookieSession

    cls = session_class(CookieSession, merge=keep_mine, save_lock=Lock)
    first = cls({}, validate_key="k" * 32)
    first["x"] = 1
    first.save()
    again = cls({"cookie": first.request["cookie_out"].split(";")[0]}, validate_key="k" * 32)
    assert again["x"] == 1 and not again.is_new
    again["y"] = 2
    again.save()
    assert held == [] and "beaker.session.id=" in again.request["cookie_out"]


class AnswersNone(Dict):
    """A namespace that answers None for a missing record (Beaker's load allows it: memcached does)."""

    def __getitem__(self, key):
        data = self._load()
        return None if data is None else data


def test_a_record_read_as_none_is_a_record_that_vanished(records):
    seen = []
    cls = session_class(beaker_backends.JsonSession, merge=lambda stored, loaded, mine: seen.append(stored) or mine,
                        save_lock=lambda sid: threading.Lock())
    first = cls({}, namespace_class=AnswersNone, data_serializer="json")
    first["a"] = 1
    first.save()
    tab = cls({}, id=first.id, namespace_class=AnswersNone, data_serializer="json")
    records.clear()
    tab.save()
    assert seen == [{}] and json.loads(records[first.id])["a"] == 1


# ---------------------------------------------------------------- file locks

def test_file_locks_make_their_folder_and_its_parents(tmp_path):
    locks = FileLocks(tmp_path / "a" / "b")
    with locks.hold("s"):
        pass
    assert len(list((tmp_path / "a" / "b").iterdir())) == 1


def test_leaving_hold_releases_the_lock_even_if_the_file_is_open_elsewhere(tmp_path):
    """A worker forked while holding would keep the file open: the lock must not stay with it."""
    locks = FileLocks(tmp_path)
    with locks.hold("s"):
        (path,) = tmp_path.iterdir()
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")
               if os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve())]
        inherited = os.dup(fds[0])
    try:
        with open(path, "a") as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)      # BlockingIOError if still held
            fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(inherited)


# ---------------------------------------------------------------- Redis behind Sentinel, for real

@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    """A Redis primary and one Sentinel watching it (as "kitB"), on free ports, stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        pytest.fail(message) if services.required() else pytest.skip(message)
    folder = tmp_path_factory.mktemp("sentinel")
    ports = [free_port(), free_port()]
    conf = folder / "sentinel.conf"
    conf.write_text(f"port {ports[1]}\nbind 127.0.0.1\ndir {folder}\nsentinel monitor kitB 127.0.0.1 {ports[0]} 1\n")
    started = [subprocess.Popen([binary, "--port", str(ports[0]), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", str(folder)], stdout=subprocess.DEVNULL, start_new_session=True),
               subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, start_new_session=True)]
    try:
        import redis
        probe = redis.Redis(port=ports[1], socket_timeout=1, socket_connect_timeout=1)
        for _ in range(200):
            try:
                if probe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "kitB"):
                    break
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        yield ports[0], f"redis+sentinel://127.0.0.1:{ports[1]}/kitB/0"
    finally:
        for proc in started:
            proc.kill()
            proc.wait(10)


def test_a_sentinel_url_reaches_the_primary_the_sentinel_names(sentinel):
    import redis
    primary_port, url = sentinel
    key = f"lock_{uuid.uuid4().hex}"
    locks = redis_for_locks(url)
    assert locks.command("SET", key, b"1", "NX", "PX", 5000), "redis-py answers True where the kit's client says OK"
    assert locks.command("SET", key, b"2", "NX", "PX", 5000) is None
    assert redis.Redis(port=primary_port).get(key) == b"1", "the lock is on the primary"
    lazy = store_config(url)["url"]
    assert lazy.command("GET", key) == b"1" and lazy.pttl(key) > 0, "commands and redis-py's methods alike"
    assert concurrency.sentinel_client(url) is concurrency.sentinel_client(url), "one client per URL"


def test_the_sentinel_client_has_short_timeouts_and_one_retry():
    client = concurrency.sentinel_client("redis+sentinel://127.0.0.1:1,127.0.0.1:2/svc/3")
    options = client.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"], options["db"]) == (1, 1, 3)
    assert options["retry"]._retries == 1
    sentinels = client.connection_pool.sentinel_manager.sentinels
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"],
             s.connection_pool.connection_kwargs["socket_timeout"],
             s.connection_pool.connection_kwargs["socket_connect_timeout"]) for s in sentinels] == \
        [("127.0.0.1", 1, 0.5, 0.5), ("127.0.0.1", 2, 0.5, 0.5)]
    assert client.connection_pool.service_name == "svc"


# ---------------------------------------------------------------- the counter table elsewhere

def test_the_counter_table_defaults_to_beakers_table_name(tmp_path):
    store, table, q = counter_table({"url": f"sqlite:///{tmp_path}/e.db"})
    assert (table, q, store.table) == ("beaker_cache_counters", "?", "beaker_cache")
    assert counter_table(beaker_options(f"sqlite:///{tmp_path}/f.db?table=sess"))[0].table == "sess"


def test_the_counter_table_on_postgres_uses_its_placeholder():
    options = hardened(beaker_options(services.require("postgres")))
    table_name = f"kit_counts_{uuid.uuid4().hex[:8]}"
    store, table, q = counter_table({**options, "table_name": table_name})
    try:
        assert (table, q) == (table_name + "_counters", "%s")
        store.run(f"INSERT INTO {table} (name, n) VALUES ({q}, {q})", ("visits", 1))
        assert store.run(f"SELECT n FROM {table} WHERE name = {q}", ("visits",), fetch=True) == 1
    finally:
        store.run(f"DROP TABLE IF EXISTS {table}", ())
