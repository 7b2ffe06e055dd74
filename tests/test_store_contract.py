"""The store contract of the kit's Beaker backends (course/kit/beaker_backends.py), on every real store.

Lessons 05-08 keep their sessions through ``stores_beaker.hardened()``. Whatever the store, a record
is JSON and nothing on a load path unpickles: a pickle planted under a live session's key (what
somebody who can write to the store would do) must never run. The payload here creates a marker
file when it is unpickled; the app must treat the session as corrupt (a log line, a new session,
no 500) and the marker must never appear. Stock Beaker unpickles such a record on the next load.

Also checked on the real servers: one round trip to the store per load and per save (Redis, SQL),
and records that expire by themselves (Redis ``EX``, memcached's TTL, the SQL ``expires`` column).
Restart, two processes and outages are lesson 08's tests (tests/test_08_store_backends.py).
"""
import dbm
import json
import logging
import pickle
import socket
import time
import uuid

import bottle
import pytest
import requests

from course.kit import beaker_backends, storedown, stores_beaker
from course.kit.beaker_backends import SessionTooLarge
from course.kit.beakerkit import HardenedSessions, destroy_session, get_session, session_config
from course.tools import services

SECRET = "store-contract-secret-0123456789abcdef"
KINDS = ["file", "dbm", "sqlite", "redis", "postgres", "mysql", "memcached"]


class Planted:
    """Unpickling this creates the file ``path`` (a stand-in for any code an attacker would run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def store_url(tmp_path):
    """``store_url(kind)``: a store URL of that kind for this test alone; SQL tables dropped after."""
    tables = []

    def make(kind):
        name = f"sc_{uuid.uuid4().hex[:10]}"
        if kind in ("file", "dbm"):
            return f"{kind}:{tmp_path / name}"
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / name}/sessions.db"
        if kind in ("postgres", "mysql"):
            base = services.require(kind)
            tables.append((base, name))
            return f"{base}?table={name}"
        return services.require(kind)

    yield make
    import sqlalchemy as sa
    for base, table in tables:
        try:
            with stores_beaker.sql_engine(stores_beaker.beaker_options(base)).begin() as conn:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        except Exception:  # cleanup only: never hide the test's own result
            pass


def visits_app():
    """The smallest app on the kit: /visits counts in the session, /logout destroys it, a store error is a 503."""
    app = bottle.Bottle()
    app.install(storedown.plugin)

    @app.get("/visits")
    def visits():
        session = get_session()
        session["visits"] = session.get("visits", 0) + 1
        session.save()
        return f"visits={session['visits']}"

    @app.get("/logout")
    def logout():
        destroy_session(get_session())
        return "logged out"

    return app


def make_app(url, timeout=600):
    options = stores_beaker.hardened(stores_beaker.beaker_options(url))
    return HardenedSessions(visits_app(), session_config(secret=SECRET, timeout=timeout, **options)), options


def plant(url, sid, payload):
    """Write ``payload`` (bytes) into the store under session ``sid``'s key, as an attacker would."""
    options = stores_beaker.beaker_options(url)
    kind = options["type"]
    if kind == "ext:redis":
        stores_beaker.redis_client(options["url"]).set(f"beaker_cache:{sid}:session", payload, ex=600)
    elif kind == "ext:database":
        engine, table = stores_beaker.sql_table(options)
        with engine.begin() as conn:
            assert conn.execute(table.update().where(table.c.namespace == sid).values(data=payload)).rowcount == 1
    elif kind == "ext:memcached":
        host, _, port = options["url"].partition(":")
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            # flags 1 is python-memcached's "this item is a pickle": its get() would unpickle it
            sock.sendall(f"set {sid}_session 1 600 {len(payload)}\r\n".encode() + payload + b"\r\n")
            assert sock.recv(100).startswith(b"STORED")
    elif kind == "file":
        [(_, paths, _)] = [found for found in stores_beaker.session_files(options) if found[0] == sid]
        paths[0].write_bytes(payload)
    elif kind == "dbm":
        [(_, paths, _)] = [found for found in stores_beaker.session_files(options) if found[0] == sid]
        with dbm.open(str(paths[0]).split(".dbm")[0] + ".dbm", "w") as db:
            db[b"session"] = payload
    else:
        raise AssertionError(kind)


def test_the_planted_payload_really_runs_code_when_unpickled(tmp_path):
    # The check below has teeth only if unpickling this payload does create the marker.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Planted(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_pickle_planted_under_a_live_session_is_never_unpickled(kind, store_url, serve_app, tmp_path, caplog):
    url = store_url(kind)
    wsgi, _ = make_app(url)
    base = serve_app(wsgi)
    browser = requests.Session()
    assert [browser.get(base + "/visits", timeout=10).text for _ in range(2)] == ["visits=1", "visits=2"]
    sid = browser.cookies["sid"][40:]
    marker = tmp_path / f"unpickled-{kind}"
    plant(url, sid, pickle.dumps(Planted(marker)))
    with caplog.at_level(logging.WARNING):
        resp = browser.get(base + "/visits", timeout=10)
    assert not marker.exists(), f"{kind}: a record planted in the store was unpickled (it ran code)"
    assert resp.status_code == 200, f"{kind}: a corrupt record must not be a {resp.status_code}: {resp.text[:200]}"
    assert resp.text == "visits=1", f"{kind}: the corrupt record is treated as unknown: a new session"
    assert browser.cookies["sid"][40:] != sid, f"{kind}: the new session gets a new ID, never the planted one"
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("course.kit")]
    assert any("pickle" in line or "corrupt" in line for line in logged), \
        f"{kind}: a corrupt record deserves a clear log line, got {logged}"
    assert browser.get(base + "/visits", timeout=10).text == "visits=2", "and the new session goes on"


def test_records_are_json_in_every_store(store_url, serve_app):
    for kind in KINDS:
        url = store_url(kind)
        wsgi, options = make_app(url)
        browser = requests.Session()
        browser.get(serve_app(wsgi) + "/visits", timeout=10)
        record = stores_beaker.peek(stores_beaker.beaker_options(url), browser.cookies["sid"][40:])
        assert record and record["data"].get("visits") == 1, (kind, record)


def test_one_round_trip_per_load_and_per_save_on_redis(store_url, serve_app):
    """Counted by Redis itself: MONITOR shows every command the server runs, and which connection sent it."""
    import redis
    url = store_url("redis")
    wsgi, _ = make_app(url)
    base = serve_app(wsgi)
    requests.get(base + "/visits", timeout=10)        # another visitor first: the app's connection is open
    watcher, mark = redis.Redis.from_url(url, socket_timeout=10), uuid.uuid4().hex
    browser, seen = requests.Session(), []
    with watcher.monitor() as monitor:
        browser.get(base + "/visits", timeout=10)    # a new session: nothing to load, one save
        watcher.echo(f"{mark}:1")
        assert browser.get(base + "/visits", timeout=10).text == "visits=2"
        watcher.echo(f"{mark}:2")
        while not seen or seen[-1]["command"] != f"ECHO {mark}:2":
            seen.append(monitor.next_command())
    watcher.close()
    key = f"beaker_cache:{browser.cookies['sid'][40:]}:session"
    app = {(c["client_address"], c["client_port"]) for c in seen if key in c["command"]}
    split = [c["command"] for c in seen].index(f"ECHO {mark}:1")
    sent = [[c["command"].split()[0] for c in part if (c["client_address"], c["client_port"]) in app]
            for part in (seen[:split], seen[split:])]
    assert sent[0] == ["SET"], f"a new session: one command to save it, and nothing else: {sent[0]}"
    assert sent[1] == ["GET", "SET"], f"one command to load, one to save (with its EX): {sent[1]}"
    assert any(c["command"].startswith(f"SET {key} ") and c["command"].endswith(" EX 720") for c in seen), \
        "the record's time to live is the session timeout (600 s) + 120 s"


def test_a_pooled_redis_connection_that_died_costs_no_request(store_url):
    """Redis restarted, a proxy dropped the connection: the next command reconnects and goes through."""
    import redis
    url = store_url("redis")
    store, key = beaker_backends.redis_store(url), f"sc_{uuid.uuid4().hex}"
    store.command("SET", key, b"kept", "EX", 60)
    own_id = store.command("CLIENT", "ID")          # the connection this process will reuse next
    with redis.Redis.from_url(url, socket_timeout=5) as admin:
        assert admin.client_kill_filter(_id=own_id) == 1, "the server closed the store's connection"
    assert store.command("GET", key) == b"kept", "one quick retry on a new connection, no error"
    assert store.command("CLIENT", "ID") != own_id, "and that was a new connection"


def test_a_rediss_url_speaks_tls(store_url):
    """``rediss://`` is TLS (redis-py's SSLConnection): on the plain-text port it cannot even connect."""
    url = store_url("redis")
    assert beaker_backends.redis_store(url).command("GET", f"sc_{uuid.uuid4().hex}") is None
    started = time.monotonic()
    with pytest.raises(Exception) as failed:
        beaker_backends.redis_store("rediss://" + url.split("://", 1)[1]).command("GET", "anything")
    assert storedown.is_store_down(failed.value), f"a TLS failure is the store being down: {failed.value!r}"
    assert time.monotonic() - started < 6, "and it fails within the short timeouts"


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_one_statement_per_load_and_per_save_in_sql(kind, store_url, serve_app, monkeypatch):
    url = store_url(kind)
    wsgi, options = make_app(url)
    base, browser = serve_app(wsgi), requests.Session()
    browser.get(base + "/visits", timeout=10)
    store = beaker_backends.sql_store(options["url"], options["table_name"])
    statements = []
    real = store.run
    monkeypatch.setattr(store, "run", lambda sql, *a, **kw: statements.append(sql.split()[0]) or real(sql, *a, **kw))
    monkeypatch.setattr(store, "_next_purge", time.time() + 3600)   # the periodic purge is not per request
    assert browser.get(base + "/visits", timeout=10).text == "visits=2"
    assert statements == ["SELECT", "INSERT"], f"one SELECT to load, one upsert to save: {statements}"


def test_records_expire_by_themselves(store_url):
    """Redis, memcached and SQL records get a time to live; after it they are gone (SQL: unloadable, then purged)."""
    made = []
    for kind in ["redis", "memcached", "sqlite", "postgres", "mysql"]:
        options = stores_beaker.hardened(stores_beaker.beaker_options(store_url(kind)))
        sid = uuid.uuid4().hex
        manager = options["namespace_class"](sid, url=options["url"], table_name=options.get("table_name"),
                                             timeout=1)
        manager["session"] = '{"visits": 1}'
        assert manager._load() == b'{"visits": 1}', kind
        made.append((kind, options, manager))
    time.sleep(2.2)
    for kind, options, manager in made:
        assert manager._load() is None, f"{kind}: the record should have expired by itself after 1 s"
        if kind in ("sqlite", "postgres", "mysql"):
            purged = stores_beaker.purge_expired(options, older_than=3600)
            assert purged == 1, f"{kind}: the purge deletes the expired row ({purged})"


# ---------------------------------------------------------------- the record contract, once for every store
#
# What lessons 05-08 ask of a store, through the namespace class Beaker is given (``hardened()``'s, or
# beakerkit's CountingNamespace for ``memory``), called as Beaker calls it (locks around each access):
# a record reads back exactly, is replaced, destroyed (an unknown one too, quietly), expires on its TTL
# where the store has one, holds a large session (or refuses it, before writing, where the store cannot),
# survives concurrent writers, and a store that is down raises StoreUnavailable, then works again.
# (length / clear / all are the kit's Store interface, which only the memory stores offer:
# tests/test_kit_stores.py.)

ALL_KINDS = ["memory"] + KINDS
SERVERS = {"redis": 6379, "postgres": 5432, "mysql": 3306, "memcached": 11211}


def namespace_options(kind, store_url):
    """The options whose ``namespace_class`` Beaker would use for ``kind``."""
    if kind == "memory":
        config = session_config(secret=SECRET)
        return {"type": "memory", "namespace_class": config["session.namespace_class"],
                "store": config["session.store"]}
    return stores_beaker.hardened(stores_beaker.beaker_options(store_url(kind)))


def record(options, sid, timeout=None):
    """The namespace Beaker makes for session ``sid`` (as beaker.session.Session.load does)."""
    args = {name: options[name] for name in ("url", "table_name", "store") if name in options}
    return options["namespace_class"](sid, data_dir=options.get("data_dir"), digest_filenames=False,
                                      timeout=timeout, **args)


def save(namespace, value, expiretime=None):
    namespace.acquire_write_lock()
    try:
        namespace.set_value("session", value, expiretime)
    finally:
        namespace.release_write_lock()


def load(namespace):
    """The record as bytes, or None: what Beaker would find."""
    namespace.acquire_write_lock()
    try:
        if "session" not in namespace:
            return None
        value = namespace["session"]
    except KeyError:
        return None
    finally:
        namespace.release_write_lock()
    return None if value is None else beaker_backends._encode(value)


def destroy(namespace):
    namespace.acquire_write_lock()
    try:
        if "session" in namespace:
            del namespace["session"]
    finally:
        namespace.release_write_lock()


def new_sid():
    return uuid.uuid4().hex


@pytest.fixture
def contract(store_url):
    """``contract(kind)``: ``(options, ns)`` where ``ns(sid, timeout=None)`` is a record of that store."""
    def make(kind):
        options = namespace_options(kind, store_url)
        return options, lambda sid, timeout=600: record(options, sid, timeout)
    return make


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_record_reads_back_exactly_and_is_replaced(kind, contract):
    _, ns = contract(kind)
    sid = new_sid()
    save(ns(sid), '{"visits":1,"name":"\u00e9\u4e2d"}')
    assert load(ns(sid)) == '{"visits":1,"name":"\u00e9\u4e2d"}'.encode(), f"{kind}: what was written"
    save(ns(sid), '{"visits":2}')
    assert load(ns(sid)) == b'{"visits":2}', f"{kind}: a save replaces the record"
    assert load(ns(new_sid())) is None, f"{kind}: another ID holds nothing"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_an_unknown_id_is_nothing_and_destroying_it_is_no_error(kind, contract):
    _, ns = contract(kind)
    sid = new_sid()
    assert load(ns(sid)) is None
    destroy(ns(sid))
    assert load(ns(sid)) is None
    if kind not in ("file", "dbm"):              # (Beaker's file namespaces remove through their locks)
        ns(sid).do_remove()
        assert load(ns(sid)) is None


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_destroyed_record_is_gone_and_the_others_stay(kind, contract):
    _, ns = contract(kind)
    gone, kept = new_sid(), new_sid()
    save(ns(gone), '{"a":1}')
    save(ns(kept), '{"b":2}')
    destroy(ns(gone))
    assert load(ns(gone)) is None, f"{kind}: destroyed"
    assert load(ns(kept)) == b'{"b":2}', f"{kind}: destroying one session never touches another"
    save(ns(gone), '{"again":1}')
    assert load(ns(gone)) == b'{"again":1}', f"{kind}: the ID can be written again"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_large_session_is_stored_whole_or_refused_before_anything_is_written(kind, contract):
    _, ns = contract(kind)
    sid = new_sid()
    save(ns(sid), '{"small":1}')
    large = '{"note":"' + "x" * 60_000 + '"}'
    save(ns(sid), large)
    assert load(ns(sid)) == large.encode(), f"{kind}: 60 KB fits every store"
    limit = {"mysql": 65_535, "memcached": 1_000_000}.get(kind)
    too_big = '{"note":"' + "y" * ((limit or 2_000_000) + 1) + '"}'
    if limit is None:
        save(ns(sid), too_big)
        assert load(ns(sid)) == too_big.encode(), f"{kind}: 2 MB is stored whole"
        return
    with pytest.raises(SessionTooLarge) as refused:
        save(ns(sid), too_big)
    assert refused.value.limit == limit and refused.value.size == len(too_big)
    assert f"at most {limit} bytes" in str(refused.value), "the error says what the store holds"
    assert load(ns(sid)) == large.encode(), f"{kind}: nothing was written, the old record stays"


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_concurrent_writers_never_corrupt_a_record(kind, contract):
    import threading
    _, ns = contract(kind)
    shared, own = new_sid(), [new_sid() for _ in range(4)]
    written, errors = {f'{{"writer":{n},"i":{i}}}' for n in range(4) for i in range(10)}, []

    def writer(n):
        try:
            for i in range(10):
                save(ns(shared), f'{{"writer":{n},"i":{i}}}')
                save(ns(own[n]), f'{{"i":{i}}}')
        except Exception as exc:      # reported below, with the store's name
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], f"{kind}: {errors[:1]}"
    assert load(ns(shared)).decode() in written, f"{kind}: the last write whole, never a mix"
    assert [load(ns(sid)) for sid in own] == [b'{"i":9}'] * 4, f"{kind}: every writer's last record"


def test_every_store_but_files_gives_records_a_time_to_live(contract):
    """Memory, Redis, memcached and SQL expire a record on its own TTL (files and dbm: the purge)."""
    made = []
    for kind in ["memory", "redis", "memcached", "sqlite", "postgres", "mysql"]:
        _, ns = contract(kind)
        sid = new_sid()
        save(ns(sid, timeout=1), '{"short":1}', expiretime=1)
        long_sid = new_sid()
        save(ns(long_sid), '{"long":1}', expiretime=60)
        made.append((kind, ns, sid, long_sid))
    time.sleep(2.1)
    for kind, ns, sid, long_sid in made:
        assert load(ns(sid)) is None, f"{kind}: a record with a 1 s TTL is gone after 2 s"
        assert load(ns(long_sid)) == b'{"long":1}', f"{kind}: one with 60 s is still there"


@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql", "memcached"])
def test_a_store_that_is_down_raises_store_unavailable_then_works_again(kind, store_url):
    from course.tools.faults import Relay
    url = store_url(kind)
    with Relay.for_url(url, SERVERS[kind]) as relay:
        options = stores_beaker.hardened(stores_beaker.beaker_options(relay.url_for(url)))
        sid = new_sid()
        save(record(options, sid), '{"kept":1}')
        relay.cut()
        started = time.monotonic()
        for attempt in (lambda: load(record(options, sid)), lambda: save(record(options, sid), '{"lost":1}')):
            with pytest.raises(storedown.StoreUnavailable):
                attempt()
        assert time.monotonic() - started < 8, f"{kind}: a dead store fails fast"
        relay.restore()
        deadline = time.monotonic() + 3
        while True:                                  # memcached retries a dead server after 1 s
            try:
                assert load(record(options, sid)) == b'{"kept":1}', f"{kind}: the data is back with the store"
                break
            except storedown.StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.mark.parametrize("kind", ["file", "dbm", "sqlite"])
def test_a_local_store_that_cannot_write_raises_store_unavailable(kind, tmp_path):
    blocker = tmp_path / "a-file-not-a-folder"
    blocker.write_text("x")
    url = {"file": f"file:{blocker}/sessions", "dbm": f"dbm:{blocker}/sessions",
           "sqlite": f"sqlite:///{blocker}/sessions.db"}[kind]
    options = stores_beaker.hardened(stores_beaker.beaker_options(url))
    with pytest.raises(storedown.StoreUnavailable):
        save(record(options, new_sid()), '{"a":1}')


def test_the_memory_store_that_is_down_raises_store_unavailable(contract):
    options, ns = contract("memory")
    sid = new_sid()
    save(ns(sid), '{"kept":1}')
    with options["store"].failing():
        with pytest.raises(storedown.StoreUnavailable):
            load(ns(sid))
        with pytest.raises(storedown.StoreUnavailable):
            save(ns(sid), '{"lost":1}')
    assert load(ns(sid)) == b'{"kept":1}'


# ---------------------------------------------------------------- the middleware contract, once for every store

def visit(wsgi, path, cookie=None):
    from course.tools.testing import wsgi_request
    status, headers, body = wsgi_request(wsgi, path, headers={"Cookie": cookie} if cookie else {})
    cookies = [v.strip().split(";")[0] for n, v in headers if n == "Set-Cookie"]
    return status, (cookies[0] if cookies else None), body.decode()


def contract_app(kind, store_url):
    if kind == "memory":
        store = beakerkit_store()
        return make_memory_app(store), store
    wsgi, _ = make_app(store_url(kind))
    return wsgi, None


def beakerkit_store():
    from course.kit.stores import CountingStore
    return CountingStore()


def make_memory_app(store):
    return HardenedSessions(visits_app(), session_config(secret=SECRET, timeout=600, store=store))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_middleware_keeps_a_session_and_never_adopts_an_unknown_id(kind, store_url):
    wsgi, _ = contract_app(kind, store_url)
    status, cookie, body = visit(wsgi, "/visits")
    assert (status, body) == ("200 OK", "visits=1") and cookie.startswith("sid=")
    assert visit(wsgi, "/visits", cookie)[2] == "visits=2", f"{kind}: the session is kept"
    assert visit(wsgi, "/visits", cookie)[1] is None, f"{kind}: an existing session's cookie is not re-sent"
    forged = "sid=" + cookie[4:44] + "0" * 32
    status, fresh, body = visit(wsgi, "/visits", forged)
    assert body == "visits=1" and fresh != forged, f"{kind}: an ID with a bad signature is a new session"
    planted = uuid.uuid4().hex
    status, fresh, body = visit(wsgi, "/visits", f"sid={beakerkit_signed(planted)}")
    assert body == "visits=1" and planted not in fresh, f"{kind}: a signed ID the store does not hold is not adopted"


def beakerkit_signed(session_id):
    import hmac
    from hashlib import sha1
    return hmac.new(SECRET.encode(), session_id.encode(), sha1).hexdigest() + session_id


@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql"])
def test_a_pooled_connection_that_died_costs_no_request(kind, store_url):
    """The store restarted while a connection sat idle in the pool: the next load retries once, at once."""
    from course.tools.faults import Relay
    url = store_url(kind)
    with Relay.for_url(url, SERVERS[kind]) as relay:
        options = stores_beaker.hardened(stores_beaker.beaker_options(relay.url_for(url)))
        sid = new_sid()
        save(record(options, sid), '{"kept":1}')          # its connection now waits in the pool
        relay.cut()                                         # ... and is reset by the "restart"
        relay.restore()
        assert load(record(options, sid)) == b'{"kept":1}', f"{kind}: the first request after the restart works"
        save(record(options, sid), '{"kept":2}')
        assert load(record(options, sid)) == b'{"kept":2}'


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_the_middleware_destroys_a_session_for_good(kind, store_url):
    wsgi, _ = contract_app(kind, store_url)
    _, cookie, _ = visit(wsgi, "/visits")
    assert visit(wsgi, "/visits", cookie)[2] == "visits=2"
    status, cleared, body = visit(wsgi, "/logout", cookie)
    assert (status, body) == ("200 OK", "logged out") and cleared.startswith("sid=")
    status, fresh, body = visit(wsgi, "/visits", cookie)
    assert body == "visits=1" and fresh != cookie, f"{kind}: replaying the old cookie gives a new, empty session"


# ---------------------------------------------------------------- records that decode but that Beaker cannot use

BAD_TIMES = ["x", None, [], {}, True, float("nan"), float("inf")]


@pytest.mark.parametrize("kind", KINDS)
def test_a_record_whose_bookkeeping_times_are_not_numbers_is_corrupt(kind, store_url, caplog):
    """``_accessed_time: "x"`` was a 500 on every request with that cookie (Beaker's ``now - "x"``)."""
    url = store_url(kind)
    wsgi, options = make_app(url)
    now = time.time()
    for key in ("_accessed_time", "_creation_time"):
        for bad in BAD_TIMES:
            _, cookie, _ = visit(wsgi, "/visits")
            sid = cookie[4 + 40:]
            good = {"visits": 5, "_creation_time": now, "_accessed_time": now}
            save(record(options, sid), json.dumps({**good, key: bad}))
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                status, fresh, body = visit(wsgi, "/visits", cookie)
            what = f"{kind}: {key} = {bad!r}"
            assert (status, body) == ("200 OK", "visits=1"), f"{what}: a corrupt record, a new session: {status} {body}"
            assert fresh and sid not in fresh, f"{what}: the new session has a new ID"
            logged = [r.getMessage() for r in caplog.records if r.name.startswith("course.kit")]
            assert len(logged) == 1 and "corrupt" in logged[0] and key in logged[0], f"{what}: one log line: {logged}"
