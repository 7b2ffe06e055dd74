"""Lesson 09: two tabs, one session.

A session is loaded whole when a request starts and written back whole when it ends. Two
requests of one session at the same time (two tabs, a double-click, two workers behind a load
balancer) both start from the same record, and the one that saves last wipes out the other's
change: a lost update. This lesson measures it on every store and closes it four ways: a lock per
session in one process, a lock in Redis for several processes, a counter kept outside the session,
and a save that writes only what the request changed.

Run it:  .venv/bin/python lessons/09_concurrency/app.py --store redis://127.0.0.1:6379/0 [--no-lock] [--window 0.05]
         then open http://127.0.0.1:8080/ in two tabs   (without --store: SQLite in .sessions/)
Several workers: gunicorn -w 2 'lessons.09_concurrency.app:app' does not import (the folder name
         starts with a digit): use .venv/bin/python -m course bench 09 --workers 2, which serves it under gunicorn.
Check it: make check LESSON=09
"""
import contextlib
import json
import os
import re
import secrets
import sys
import threading
import time

from bottle import request, response

from course.kit import concurrency, storedown, stores_beaker
from course.kit.beaker_backends import JsonSession
from course.kit.beakerkit import (
    RAW_COOKIE_KEY,
    HardenedSessions,
    StrictSession,
    get_session,
    session_config,
    session_id_from_cookie,
)
from course.kit.cookies import cookie_header
from course.kit.forms import read_fields
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import ExerciseNotDone, guard, new_app, text, todo

TITLE = "Two tabs, one session"
DEFAULT_STORE = "sqlite:///.sessions/sessions.db"
DEFAULT_LOCK_REDIS = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
SESSION_TIMEOUT = 30 * 60      # seconds without a visit before a session is dead
LOCK_TTL = 10.0                # seconds: a Redis lock whose holder died frees itself after this
LOCK_WAIT = 10.0               # seconds a request waits for its session's lock before a 503
COUNTER_TTL = SESSION_TIMEOUT + 120   # a counter kept outside the session lives as long as it
SWEEP_EVERY = 60.0             # seconds between two deletions of the counters whose session ended
MAX_CART = 500                 # items: a session is not a warehouse
TAB_NAME = re.compile(r"[a-z0-9]{1,16}")


class LockBusy(Exception):
    """The session's lock could not be taken in time (its holder is slow, or died holding it)."""


# ---------------------------------------------------------------- 09.1 a lock per session, one process

class ProcessLocks:
    """Exercise 09.1: one ``threading.Lock`` per session ID, for the threads of this process.

    ``with locks.hold(session_id):`` waits until no other request of that session holds it.
    Locks of sessions nobody is using are dropped, so the dict does not grow with every visitor.
    """

    def __init__(self):
        self.guard = threading.Lock()          # protects self.locks itself
        self.locks = {}                        # session ID -> [its lock, how many requests want it]

    @contextlib.contextmanager
    def hold(self, session_id):
        # TODO(09.1): every request of one session must wait on the SAME threading.Lock.
        #   - under self.guard, find or make the entry [lock, users] of session_id in self.locks
        #     and count yourself in (users + 1): two requests must never each make a lock;
        #   - acquire the lock (outside self.guard: waiting there would block every session);
        #   - yield (the request runs), and in a finally: release it, then, under self.guard,
        #     count yourself out and delete the entry when nobody uses it any more.
        raise todo("09.1")
        yield


def locked(sessions_app, locks, config):
    """Exercise 09.1: a WSGI app that runs ``sessions_app`` holding the lock of the request's session.

    ``sessions_app`` is the session middleware: it loads the record while the route runs and
    writes it after the route returns, so the lock must be taken before it starts and released
    after it has returned. A request without a valid session cookie starts a new session that no
    other request knows: it needs no lock.
    """

    def app(environ, start_response):
        # TODO(09.1): session_id_from_cookie(cookie_header(environ), config["session.key"],
        #   config["session.secret"]) is the ID of a session this server signed, or None. None: call
        #   sessions_app as it is. Otherwise call it inside `with locks.hold(session_id):` and return
        #   what it returns (it has saved the session by then). A LockBusy from hold() is answered
        #   storedown.respond(start_response, "503 Service Unavailable", "This session is busy ...").
        raise todo("09.1")

    return app


# ---------------------------------------------------------------- 09.2 a lock across processes: Redis

def lock_key(session_id):
    return f"lock:session:{session_id}"


# Delete the key only if it still holds our token: GET and DEL in one step, inside Redis.
RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
           "else return 0 end")


class RedisLocks:
    """Exercise 09.2: a lock per session in Redis, seen by every process that uses the same Redis.

    ``hold`` takes the lock with ``SET key token NX PX ttl``: only if nobody holds it, with a
    random token of its own, and an expiry, so a holder that dies frees it after ``ttl`` seconds.
    It tries again every few milliseconds for up to ``wait`` seconds, then raises :class:`LockBusy`.
    Releasing deletes the key only if it still holds this holder's token (:data:`RELEASE`): a
    holder whose lock expired must not delete the lock somebody else has taken since.
    """

    def __init__(self, url, ttl=LOCK_TTL, wait=LOCK_WAIT):
        self.redis = concurrency.redis_for_locks(url)
        self.ttl, self.wait = ttl, wait

    @contextlib.contextmanager
    def hold(self, session_id):
        # TODO(09.2): key = lock_key(session_id); a token of this holder's own:
        #   f"{os.getpid()}:{secrets.token_hex(16)}". Take the lock with
        #   self.redis.command("SET", key, token, "NX", "PX", str(int(self.ttl * 1000))): it returns
        #   a true value only when the key did not exist. Until it does, sleep a little (start at
        #   1 ms, double up to 20 ms) and try again; after self.wait seconds raise LockBusy.
        #   Then yield, and in a finally release it with
        #   self.redis.command("EVAL", RELEASE, "1", key, token): never a plain DEL.
        raise todo("09.2")
        yield


# ---------------------------------------------------------------- 09.3 an atomic counter outside the session

class Counter:
    """Ready-made: where the visit counters live, next to the sessions, and how to read one."""

    def __init__(self, store_url, options, ttl=COUNTER_TTL, clock=time.time):
        self.kind = ("redis" if options["type"] == "ext:redis"
                     else "sql" if options["type"] == "ext:database" else "memory")
        self.store_url, self.options = store_url, options
        self.counts, self.lock = {}, threading.Lock()          # the memory store's counters
        self.seen = {}                                          # memory: each counter's last visit
        self.ttl, self.clock = ttl, clock
        self._next_sweep = clock() + SWEEP_EVERY
        self._sql = None

    @property
    def redis(self):
        return concurrency.redis_for_locks(self.store_url)

    @property
    def sql(self):
        if self._sql is None:
            if not self.options["url"].startswith(("sqlite", "postgresql")):
                raise ValueError("the lesson's SQL counter speaks SQLite and PostgreSQL (UPDATE ... RETURNING)")
            self._sql = concurrency.counter_table(self.options)
        return self._sql                        # (sql_store, table, placeholder)

    def read(self, key):
        """The counter's value now (0 when it does not exist)."""
        if self.kind == "redis":
            return int(self.redis.command("GET", key) or 0)
        if self.kind == "sql":
            store, table, q = self.sql
            return store.run(f"SELECT n FROM {table} WHERE name = {q}", (key,), fetch=True) or 0
        with self.lock:
            return self.counts.get(key, 0)

    def visited(self, key):
        """Note that ``key`` was counted now; now and then, forget the counters not visited for ``ttl``
        seconds (their session has ended). Redis forgets them by itself: add_one gives each an EXPIRE.
        Without this, a bot's cookieless visits would leave a counter each in SQL or memory for ever."""
        now = self.clock()
        if self.kind == "sql":
            store, table, q = self.sql
            store.run(f"UPDATE {table} SET seen = {q} WHERE name = {q}", (now, key))
        elif self.kind == "memory":
            with self.lock:
                self.seen[key] = now
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            self.forget_expired(now)

    def forget_expired(self, now):
        """Delete the counters last visited more than ``ttl`` seconds before ``now``."""
        if self.kind == "sql":
            store, table, q = self.sql
            store.run(f"DELETE FROM {table} WHERE seen < {q}", (now - self.ttl,))
        elif self.kind == "memory":
            with self.lock:
                for key in [key for key, seen in self.seen.items() if seen < now - self.ttl]:
                    del self.seen[key]
                    self.counts.pop(key, None)


def add_one(counter, key):
    """Exercise 09.3: add 1 to the counter ``key`` in one atomic step of the store; the new value."""
    # TODO(09.3): never read, add and write back: let the store add, and return what it says.
    #   - counter.kind == "redis": counter.redis.command("INCR", key) returns the new value;
    #     then counter.redis.command("EXPIRE", key, str(COUNTER_TTL));
    #   - "sql": store, table, q = counter.sql (q is the driver's placeholder, ? or %s). Make sure
    #     the row exists (INSERT ... VALUES ({q}, 0) ON CONFLICT (name) DO NOTHING), then
    #     UPDATE {table} SET n = n + 1 WHERE name = {q} RETURNING n with store.run(sql, (key,), fetch=True);
    #   - "memory": counter.counts is a dict; hold counter.lock while you add to it.
    raise todo("09.3")


# ---------------------------------------------------------------- 09.4 merge on save

def merge_changes(stored, loaded, mine):
    """Exercise 09.4: the record to write when saving only what this request changed.

    ``stored``: the record in the store now (other requests may have saved since this one loaded);
    ``loaded``: the record as this request loaded it; ``mine``: the session as this request leaves
    it. A key this request set or changed takes its value from ``mine``; a key it deleted goes;
    every other key keeps what the store holds now.
    """
    # TODO(09.4): start from a copy of stored; for each key of mine that is new or differs from
    #   loaded, take mine's value; drop each key of loaded that mine no longer has. Return it.
    raise todo("09.4")


# ---------------------------------------------------------------- the app

def pause(seconds):
    """The work a real route does between reading the session and changing it (a query, an API call)."""
    if seconds:
        time.sleep(seconds)


def make_locks(kind, store_url, options, lock_url, lock_ttl, lock_wait):
    """Ready-made: where the session locks live. ``auto``: memory in this process (09.1); SQLite and
    files on this machine (``concurrency.FileLocks``); Redis and the other shared stores in Redis (09.2)."""
    if kind == "auto":
        kind = ("process" if options["type"] == "memory"
                else "file" if options["type"] in ("file", "dbm") or store_url.startswith("sqlite")
                else "redis")
    if kind == "process":
        return kind, ProcessLocks()
    if kind == "file":                         # next to the database file, or in the files' folder
        folder = options.get("data_dir") or os.path.dirname(store_url.split("?")[0][len("sqlite:///"):])
        return kind, concurrency.FileLocks(os.path.join(folder or ".", "locks"))
    if kind == "redis":
        if lock_url is None:
            lock_url = store_url if store_url.startswith(("redis://", "redis+sentinel://")) else DEFAULT_LOCK_REDIS
        return kind, RedisLocks(lock_url, ttl=lock_ttl, wait=lock_wait)
    raise ValueError(f"locks must be auto, process, file or redis, not {kind!r}")


def create_app(store_url=DEFAULT_STORE, secret=None, lock=True, merge=False, resave=False, window=0.0,
               locks="auto", lock_url=None, lock_ttl=LOCK_TTL, lock_wait=LOCK_WAIT, timeout=SESSION_TIMEOUT):
    """Build the lesson's app with its sessions in the store at ``store_url``.

    ``lock``: hold the session's lock for the whole request (``False`` shows the race);
    ``merge``: save only the keys a request changed (09.4), under a lock held for the save only;
    ``resave``: write the record back after a request that only read it (Beaker's default);
    ``window``: seconds each request spends between reading and changing the session, and again
    before its record is written (makes the race show every time; see the README);
    ``locks``: where locks live (``auto``, ``process``, ``file``, ``redis``), ``lock_url`` the Redis
    for them; ``lock_ttl``, ``lock_wait``: a Redis lock's expiry and how long a request waits.
    """
    options = concurrency.store_config(store_url)
    lock_kind, session_locks = make_locks(locks, store_url, options, lock_url, lock_ttl, lock_wait)
    base = options.get("session_class", StrictSession if options["type"] == "memory" else JsonSession)
    options["session_class"] = concurrency.session_class(
        base, resave=resave, write_delay=window, merge=merge_changes if merge else None,
        save_lock=session_locks.hold if merge else None)
    config = session_config(secret=secret, timeout=timeout, **options)
    counter = Counter(store_url, options)
    settings = {"pid": os.getpid(), "store": concurrency.describe(store_url, options),
                "store url": stores_beaker.redact(store_url), "lock": lock_kind if lock else "none",
                "merge": bool(merge), "resave": bool(resave), "window": window}
    app = new_app()
    app.install(storedown.plugin_with(store_error_answer))

    @app.get("/")
    def index():
        return render(
            lesson_id="09", title=TITLE,
            intro=(f"Sessions live in {settings['store']}; lock: {settings['lock']}, merge on save: "
                   f"{settings['merge']}, resave: {settings['resave']}. Open this page in two tabs."),
            routes=[Route("GET", "/visits", "count a visit in the session (read, work, write)"),
                    Route("GET", "/hits", "count a visit with an atomic counter outside the session"),
                    Route("POST", "/cart/add", "put an item in the cart (a list in the session)", ("item",)),
                    Route("GET", "/cart", "the cart, as JSON (only reads the session)"),
                    Route("POST", "/tab", "count in a key of the session of this tab's own", ("tab=a",)),
                    Route("GET", "/session", "the session's keys, as JSON"),
                    Route("GET", "/store/stats", "this process, its store and its locks, as JSON")],
            cookie_header=request.environ.get(RAW_COOKIE_KEY) or cookie_header(request.environ),
            session=settings, session_label="How this app process handles sessions")

    @app.get("/visits")
    def visits():
        session = get_session()
        count = session.get("visits", 0)       # read...
        pause(window)                          # ...work (another tab's request can run now)...
        session["visits"] = count + 1          # ...write what was read, plus one
        session.save()
        return text(f"You have visited {session['visits']} times")

    @app.get("/hits")
    def hits():
        session = get_session()
        if session.is_new:
            session.save()                     # the counter's name is the session's ID: keep the cookie
        count = add_one(counter, f"visits:{session.id}")
        counter.visited(f"visits:{session.id}")
        pause(window)
        return text(f"You have visited {count} times (counted outside the session)")

    @app.post("/cart/add")
    def cart_add():
        item = read_fields(("item",))["item"].strip()[:100]
        if not item:
            return text("Name an item: POST /cart/add with item=...", 400)
        session = get_session()
        cart = list(session.get("cart", []))
        pause(window)
        if len(cart) >= MAX_CART:
            return text(f"The cart is full ({MAX_CART} items)", 400)
        session["cart"] = cart + [item]
        session.save()
        return text(f"{len(cart) + 1} items in your cart")

    @app.get("/cart")
    def cart():
        response.content_type = "application/json"
        return json.dumps(get_session().get("cart", []))

    @app.post("/tab")
    def tab():
        name = read_fields(("tab",))["tab"]
        if not TAB_NAME.fullmatch(name):
            return text("tab is 1 to 16 lower-case letters or digits", 400)
        session = get_session()
        key = f"tab {name}"
        if key not in session and sum(k.startswith("tab ") for k in session) >= 16:
            return text("At most 16 tabs per session", 400)
        count = session.get(key, 0)
        pause(window)
        session[key] = count + 1
        session.save()
        return text(f"Tab {name}: {count + 1}")

    @app.get("/session")
    def session_keys():
        response.content_type = "application/json"
        return json.dumps({k: v for k, v in get_session().items() if not k.startswith("_")})

    @app.get("/store/stats")
    def stats():
        response.content_type = "application/json"
        store = config.get("session.store")
        return json.dumps({**settings, "store stats": store.stats() if store is not None else None})

    sessions = HardenedSessions(app, config, on_save_error=lambda exc, environ: store_error_answer(exc))
    if lock:
        return guard(locked(sessions, session_locks, config))
    return guard(sessions)


def store_error_answer(exc):
    """A store error while loading or saving: 503 (lesson 08); an unfinished exercise: its 501."""
    if isinstance(exc, ExerciseNotDone):
        return "501 Not Implemented", str(exc)
    if isinstance(exc, LockBusy):
        return "503 Service Unavailable", "This session is busy with another request: try again"
    return "503 Service Unavailable", storedown.MESSAGE


app = create_app()


# ---------------------------------------------------------------- the command line

def main(argv=None):
    def add_arguments(parser):
        parser.add_argument("--store", metavar="URL", default=DEFAULT_STORE,
                            help=f"where the sessions live (default {DEFAULT_STORE})")
        parser.add_argument("--no-lock", action="store_true", help="no session lock: see the race")
        parser.add_argument("--merge", action="store_true", help="save only the keys a request changed")
        parser.add_argument("--resave", action="store_true", help="write back sessions that were only read")
        parser.add_argument("--window", type=float, default=0.0, metavar="SECONDS",
                            help="time each request spends between reading and writing its session")

    lesson_main(create_app, argv, title=f"Lesson 09: {TITLE}", add_arguments=add_arguments,
                options=lambda args: {"store_url": args.store, "lock": not args.no_lock, "merge": args.merge,
                                      "resave": args.resave, "window": args.window})


if __name__ == "__main__":
    sys.exit(main())
