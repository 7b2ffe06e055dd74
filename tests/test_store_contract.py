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
import logging
import pickle
import socket
import time
import uuid

import bottle
import pytest
import requests

from course.kit import beaker_backends, storedown, stores_beaker
from course.kit.beakerkit import HardenedSessions, get_session, session_config
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


def make_app(url, timeout=600):
    """The smallest app on the kit: /visits counts in the session, a store error is a 503."""
    options = stores_beaker.hardened(stores_beaker.beaker_options(url))
    app = bottle.Bottle()
    app.install(storedown.plugin)

    @app.get("/visits")
    def visits():
        session = get_session()
        session["visits"] = session.get("visits", 0) + 1
        session.save()
        return f"visits={session['visits']}"

    return HardenedSessions(app, session_config(secret=SECRET, timeout=timeout, **options)), options


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
