"""Lesson 08: where the sessions live.

Lesson 05's app kept its sessions in its own memory: restart it and every visitor is a stranger;
start a second copy and the two never agree. Here one flag, ``--store URL``, puts the sessions
in a real store: files, dbm, SQLite, Redis, PostgreSQL, MariaDB, memcached or MongoDB. Beaker
has a backend for each; this lesson maps a URL to it, then meets what real stores do: outlive
the app, serve two apps at once, pile up dead sessions, go down, and refuse what is too big.

Run it:  make run LESSON=08 STORE=redis://127.0.0.1:6379/0
         then open http://127.0.0.1:8080/      (without STORE=: SQLite in .sessions/)
Purge:   .venv/bin/python lessons/08_store_backends/app.py purge --store sqlite:///.sessions/sessions.db
Check it: make check LESSON=08
"""
import argparse
import json
import sys
import time  # for 08.3
from datetime import datetime  # for 08.3
from urllib.parse import parse_qsl, urlsplit  # for 08.1

from bottle import request

from course.kit import storedown, stores_beaker
from course.kit.beakerkit import (
    RAW_COOKIE_KEY,
    HardenedSessions,
    destroy_session,
    get_session,
    session_config,
    session_id_from_cookie,
)
from course.kit.cookies import cookie_header
from course.kit.forms import read_fields
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import ExerciseNotDone, guard, new_app, text

TITLE = "Where the sessions live"
DEFAULT_STORE = "sqlite:///.sessions/sessions.db"   # a file next to where you run the app
SESSION_TIMEOUT = 30 * 60        # seconds without a visit before a session is dead (and purgeable)
SQL_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}

MAX_NOTE_BODY = 2 * 1024 * 1024   # bytes: room for a note too big for some stores (08.5 answers 413)


# ---------------------------------------------------------------- 08.1 a URL for each store

def store_options(url):
    """Exercise 08.1: the Beaker options for a store URL; ``ValueError`` for a bad one.

    No connection is made here: this runs when the app starts, so a typo fails at once.
    """
    scheme, _, rest = url.partition(":")
    if scheme == "memory" and rest == "":
        return {"type": "memory"}
    if scheme in ("file", "dbm") and rest:
        return {"type": scheme, "data_dir": rest}          # a folder: Beaker makes one file per session
    if scheme in SQL_DRIVERS:
        parts = urlsplit(url)
        if scheme == "sqlite":
            complete = rest.startswith("///") and len(rest.split("?")[0]) > 3   # a file
        else:
            complete = parts.hostname and parts.path.strip("/")                # a host and a database
        if complete:
            # Beaker's ext:database speaks SQLAlchemy, which wants the driver in the URL;
            # ?table=NAME picks the table (Beaker's default: beaker_cache).
            table = dict(parse_qsl(parts.query)).get("table", "beaker_cache")
            return {"type": "ext:database", "url": SQL_DRIVERS[scheme] + ":" + rest.split("?")[0],
                    "table_name": table}
    if scheme == "redis" and urlsplit(url).hostname:
        return {"type": "ext:redis", "url": url}
    if scheme == "memcached" and urlsplit(url).netloc:
        return {"type": "ext:memcached", "url": urlsplit(url).netloc.replace(",", ";")}
    if scheme == "mongodb" and urlsplit(url).hostname and urlsplit(url).path.strip("/"):
        return {"type": "ext:mongodb", "url": url}
    accepted = "\n  ".join(stores_beaker.ACCEPTED_FORMS)
    raise ValueError(f"Bad session store URL {url!r}.\nAccepted forms:\n  {accepted}")


# ---------------------------------------------------------------- 08.2 --store on the command line

def store_url_argument(url):
    """Exercise 08.2: check ``--store URL`` as the app starts (argparse calls this).

    A bad URL must stop the app with one clear message and no traceback; a good one is returned.
    """
    try:
        store_options(url)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None   # argparse prints it, exits with 2
    return url


# ---------------------------------------------------------------- 08.3 purge

def purge_expired(store_url, older_than=SESSION_TIMEOUT, now=None):
    """Exercise 08.3: delete the sessions not used for ``older_than`` seconds; how many.

    Beaker never deletes a session record: every visitor who ever came leaves a row or a file
    behind. ``now`` (a ``time.time()`` value) lets a test pretend it is later.
    """
    options = store_options(store_url)
    cutoff = (time.time() if now is None else now) - older_than
    if options["type"] == "ext:database":
        engine, table = stores_beaker.sql_table(options)
        if table is None:                                  # no session was ever stored
            return 0
        with engine.begin() as conn:
            # Beaker stamps `accessed` with datetime.now() (local time) on every save.
            old = table.c.accessed < datetime.fromtimestamp(cutoff)
            return conn.execute(table.delete().where(old)).rowcount
    if options["type"] in ("file", "dbm"):
        purged = 0
        for _session_id, paths, last_written in list(stores_beaker.session_files(options)):
            if last_written < cutoff:
                for path in paths:
                    path.unlink(missing_ok=True)
                purged += 1
        return purged
    # Redis and memcached drop a record when its TTL runs out; memory lives in the app's process.
    return 0


# ---------------------------------------------------------------- 08.4 and 08.5 store errors

def store_error_answer(exc):
    """Exercises 08.4 and 08.5: the ``(status line, message)`` for an error from the session store."""
    if isinstance(exc, stores_beaker.SessionTooLarge):
        # 08.5: the request asked for more than the store can keep; nothing was written.
        return "413 Content Too Large", str(exc)
    # 08.4: the store cannot be reached. Not a 500 (nothing is broken here), and never carry on
    # with a new, empty session: the visitor's data is safe in the store, it will be back.
    return "503 Service Unavailable", storedown.MESSAGE


# ---------------------------------------------------------------- the app

def create_app(store_url=DEFAULT_STORE, secret=None, timeout=SESSION_TIMEOUT):
    """Build the lesson's app with its sessions in the store at ``store_url``.

    ``secret``: the signing secret (None: ``SESSION_SECRET``); ``timeout``: seconds of inactivity
    after which a session is dead. Nothing connects to the store before the first request.
    """
    try:
        options = store_options(store_url)   # a bad URL fails here, as the app starts
    except ExerciseNotDone:                  # (until 08.1 is done, sessions stay in this process)
        options = {"type": "memory"}
    app = new_app()
    # Ready-made: a store error inside a route (loading the session) is answered by store_error_answer.
    app.install(storedown.plugin_with(store_error_answer, also=(stores_beaker.SessionTooLarge,)))
    # beakerkit (lesson 05) gives safe cookie settings; stores_beaker the fixes each backend needs.
    config = session_config(secret=secret, timeout=timeout, **stores_beaker.hardened(options))

    @app.get("/")
    def index():
        # Never loads the session: the inspector reads the store directly.
        session_id = session_id_from_cookie(cookie_header(request.environ), config["session.key"],
                                            config["session.secret"])
        return render(
            lesson_id="08", title=TITLE,
            intro=f"Sessions live in: {stores_beaker.describe(options)}. Store URL: {stores_beaker.redact(store_url)}",
            routes=[Route("GET", "/visits", "count your visits in the session (writes to the store)"),
                    Route("GET", "/peek", "read the count"),
                    Route("POST", "/notes", "keep a note in the session (try a very long one)", ("note",)),
                    Route("POST", "/reset", "destroy the session: record and cookie")],
            cookie_header=request.environ.get(RAW_COOKIE_KEY) or cookie_header(request.environ),
            session=look_inside(config, options, session_id),
            session_label="What the store holds for this session",
        )

    @app.get("/visits")
    def visits():
        session = get_session()
        session["visits"] = session.get("visits", 0) + 1
        session.save()
        return text(f"You have visited {session['visits']} times")

    @app.get("/peek")
    def peek():
        return text(f"Visits so far: {get_session().get('visits', 0)}")

    @app.post("/notes")
    def notes():
        # The kit reads the body (a bad Content-Length or non-UTF-8 bytes: a 400, never a 500).
        note = read_fields((), optional=("note",), max_body=MAX_NOTE_BODY)["note"] or ""
        session = get_session()
        session["note"] = note
        session.save()
        return text(f"Kept a note of {len(note)} characters in your session")

    @app.post("/reset")
    def reset():
        destroy_session(get_session())
        return text("Session destroyed: the store holds nothing under the old ID")

    sessions = HardenedSessions(app, config,
                                on_save_error=lambda exc, environ: store_error_answer(exc))
    return guard(sessions)


def look_inside(config, options, session_id):
    """What the store holds under the browser's session ID, for the inspector."""
    if not session_id:
        return {"store": stores_beaker.describe(options), "record": "(no session cookie yet)"}
    if options["type"] == "memory":
        record = config["session.store"].peek(session_id)
    else:
        record = stores_beaker.peek(options, session_id)
    shown = {"store": stores_beaker.describe(options), "session id": session_id,
             "record": record if record is not None else "(nothing stored under this ID)"}
    # The page is readable by any script of this origin, and the full ID (with the development
    # secret) rebuilds the HttpOnly cookie: show only its first characters, wherever it appears.
    return json.loads(json.dumps(shown, default=str).replace(session_id, session_id[:8] + "..."))


app = create_app()


# ---------------------------------------------------------------- the command line

def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["purge"]:
        return purge_command(argv[1:])
    lesson_main(create_app, argv, title=f"Lesson 08: {TITLE}",
                add_arguments=lambda parser: parser.add_argument(
                    "--store", type=store_url_argument, metavar="URL",
                    help=f"where the sessions live (default {DEFAULT_STORE})"),
                options=lambda args: {"store_url": args.store} if args.store else {})


def purge_command(argv):
    """``python app.py purge --store URL [--older-than SECONDS]`` (ready-made; run it from cron)."""
    parser = argparse.ArgumentParser(prog="app.py purge", description="delete expired sessions")
    parser.add_argument("--store", type=store_url_argument, default=DEFAULT_STORE, metavar="URL")
    parser.add_argument("--older-than", type=float, default=SESSION_TIMEOUT, metavar="SECONDS",
                        help=f"idle for longer than this (default {SESSION_TIMEOUT})")
    args = parser.parse_args(argv)
    purged = purge_expired(args.store, args.older_than)
    print(f"Purged {purged} expired sessions from {stores_beaker.redact(args.store)} "
          f"(idle for more than {args.older_than:g} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
