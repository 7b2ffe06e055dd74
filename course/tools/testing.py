"""Small helpers the tests share: reading raw ``Set-Cookie`` lines, calling a WSGI app in-process.

``requests`` folds a response's ``Set-Cookie`` headers into one comma-joined string, and commas
also appear inside ``Expires=`` dates, so tests read the raw lines from urllib3 instead.
"""
from __future__ import annotations

import ast
import hmac
import logging
import secrets
import threading


def set_cookie_lines(resp, name: str | None = None) -> list[str]:
    """The raw ``Set-Cookie`` lines of a ``requests`` response (of one cookie name, if given)."""
    headers = resp.raw.headers
    lines = headers.getlist("Set-Cookie") if hasattr(headers, "getlist") else []
    return [line for line in lines if name is None or line.split("=", 1)[0].strip() == name]


def cookie_attributes(line: str) -> dict[str, str]:
    """``{"path": "/", "secure": "", ...}``: a Set-Cookie line's attributes, names lower-cased."""
    found = {}
    for part in line.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        found[key.strip().lower()] = value.strip()
    return found


def compare_digest_calls(monkeypatch, module=None, function: str | None = None) -> list:
    """Record every ``hmac.compare_digest`` call (``secrets.compare_digest`` and a module's own
    ``from hmac import compare_digest`` too) for the rest of the test: the calls' argument pairs.

    An exercise that compares secrets with ``==`` leaks, by its timing, how much of a guess is
    right; a test asserts the list is not empty.

    When the grader runs the module in a sandbox, the spy is the sandbox host's own (a named probe,
    course.tools.grading.host): the list fills from there each time it is read. A copy could answer
    that probe itself, so the grader also reads the copy's source, outside the sandbox: unless
    ``function`` (or a function of the module it calls) calls compare_digest, the list stays empty.
    """
    if getattr(module, "course_sandboxed", False):
        if function is not None and not calls_compare_digest(module.course_source(), function):
            return []
        return _sandboxed_digest_calls(monkeypatch, module)
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(secrets, "compare_digest", spy)
    if module is not None and hasattr(module, "compare_digest"):
        monkeypatch.setattr(module, "compare_digest", spy)
    return calls


def wsgi_request(app, path: str = "/", method: str = "GET", headers: dict | None = None,
                 body: bytes = b"", scheme: str = "http") -> tuple[str, list[tuple[str, str]], bytes]:
    """Call a WSGI app in this process: ``(status line, headers, body)``. For the kit's unit tests,
    which need milliseconds, not a server (the lesson tests talk HTTP to a real one)."""
    import io
    from wsgiref.util import setup_testing_defaults

    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "wsgi.url_scheme": scheme,
               "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)) if body else ""}
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    setup_testing_defaults(environ)
    from course.kit.sessions import run_buffered  # the middleware's own way of running an app to the end
    status, response_headers, chunks, _ = run_buffered(app, environ)
    return status, response_headers, b"".join(chunks)


def expired(line: str) -> bool:
    """Whether a ``Set-Cookie`` line tells the browser to drop the cookie now (``Max-Age=0`` or a past
    ``Expires``, in either of the date forms servers write: ``01 Dec 2025`` or Beaker's ``01-Dec-2025``)."""
    import time
    from email.utils import mktime_tz, parsedate_tz

    attributes = cookie_attributes(line)
    if attributes.get("max-age", "").strip() in ("0", "-1"):
        return True
    when = parsedate_tz(attributes.get("expires", "").replace("-", " "))
    return when is not None and mktime_tz(when) <= time.time()
def calls_compare_digest(source: str, function: str) -> bool:
    """Does ``function`` in ``source`` (a module's text) call ``compare_digest`` of ``hmac`` or ``secrets``,
    itself or through a function of the same module it calls? Read from the syntax tree: nothing
    of the module runs."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    modules, names = {"hmac", "secrets"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name in ("hmac", "secrets")}
        elif isinstance(node, ast.ImportFrom) and node.module in ("hmac", "secrets"):
            names |= {a.asname or a.name for a in node.names if a.name == "compare_digest"}
    defined = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    seen, todo = set(), [function]
    while todo:
        name = todo.pop()
        if name in seen or name not in defined:
            continue
        seen.add(name)
        for call in (n for n in ast.walk(defined[name]) if isinstance(n, ast.Call)):
            func = call.func
            if isinstance(func, ast.Name) and func.id in names:
                return True
            if isinstance(func, ast.Attribute) and func.attr == "compare_digest" and \
                    isinstance(func.value, ast.Name) and func.value.id in modules:
                return True
            if isinstance(func, ast.Name):
                todo.append(func.id)
    return False


class _SandboxedCalls:
    """The host's record of compare_digest calls, read afresh at each use; the spy goes at the test's end."""

    def __init__(self, module):
        self.module, self.on = module, False

    def _calls(self) -> list:
        return self.module.course_probe("compare_digest_calls")

    def __len__(self):
        return len(self._calls())

    def __bool__(self):
        return bool(self._calls())

    def __iter__(self):
        return iter(self._calls())

    def __getitem__(self, index):
        return self._calls()[index]

    def __repr__(self):
        return repr(self._calls())

    @property
    def installed(self) -> bool:
        return self.on

    @installed.setter
    def installed(self, on: bool) -> None:
        self.module.course_probe("compare_digest_spy" if on else "compare_digest_off")
        self.on = on


def _sandboxed_digest_calls(monkeypatch, module) -> _SandboxedCalls:
    calls = _SandboxedCalls(module)
    monkeypatch.setattr(calls, "installed", True)      # monkeypatch's undo at the test's end removes the spy
    return calls


QUICK_COST = {"n": 2 ** 4, "r": 1, "p": 1}
"""A scrypt cost for tests only, where hashing is not what they check: about 0.02 ms a hash instead of 30 ms."""


def quick_users(path) -> str:
    """The demo users' SQLite file at ``path``, their passwords hashed at QUICK_COST; the path.

    For the tests of lessons whose users table is the kit's (07, 10): an app opening this file
    checks each login against the cost stored in the hash, so a login costs no scrypt time, while
    the app's own hashing (a new password, the dummy hash of an unknown user) keeps its real cost.
    """
    import functools
    import os

    from course.kit.passwords import hash_password
    from course.kit.users import UserDB

    UserDB(path, hasher=functools.partial(hash_password, **QUICK_COST)).find("alice")
    # The app writes to this file too (lesson 10 keeps its other tables there), and under the grader it
    # runs as a user of its own, not as the test that made the file.
    os.chmod(path, 0o666)
    return str(path)


class AppLog:
    """The messages a lesson's logger (``name`` and its children) logs during one test, at INFO and up.

    In the test's process they are pytest's ``caplog`` records; when the grader runs the lesson in a
    sandbox, the sandbox host keeps them (a probe, course.tools.grading.host) and each read asks it.
    A copy could log lines of its own making there, but only the lines its exercise has to log.
    """

    def __init__(self, caplog, module, name: str):
        self.caplog, self.module, self.name, self.on = caplog, module, name, False
        caplog.set_level(logging.INFO, logger=name)

    def messages(self) -> list[str]:
        if getattr(self.module, "course_sandboxed", False):
            return self.module.course_probe("log_messages", self.name)
        return [record.getMessage() for record in self.caplog.records
                if record.name == self.name or record.name.startswith(self.name + ".")]

    @property
    def installed(self) -> bool:
        return self.on

    @installed.setter
    def installed(self, on: bool) -> None:
        self.module.course_probe("log_capture" if on else "log_release", self.name)
        self.on = on


def app_log(monkeypatch, caplog, module, name: str) -> AppLog:
    """Start recording what the logger ``name`` of the lesson ``module`` logs (see AppLog)."""
    log = AppLog(caplog, module, name)
    if getattr(module, "course_sandboxed", False):
        monkeypatch.setattr(log, "installed", True)       # monkeypatch's undo at the test's end removes it
    return log


def seed_random(module, seed: int) -> None:
    """``random.seed(seed)`` here, and in the module's sandbox when the grader runs it in one."""
    import random
    random.seed(seed)
    if getattr(module, "course_sandboxed", False):
        module.course_probe("seed_random", seed)


def login_required_app(module, store, secret: str):
    """A tiny app of the test's own guarding two routes with lesson 06's ``login_required``: ``/as/N``
    plants what a login leaves in the session (user N) without a login, ``/hello/NAME`` is guarded."""
    from course.kit import beakerkit
    from course.lesson.web import new_app, text

    app = new_app()

    @app.get("/as/<user_id:int>")
    def plant(user_id):
        session = beakerkit.get_session()
        session[module.USER_KEY] = user_id
        session.save()
        return text("planted")

    @app.get("/hello/<name>")
    @module.login_required
    def hello(name):
        return text(f"hello {name}, user {module.current_user_id()}")

    return beakerkit.HardenedSessions(app, beakerkit.session_config(secret=secret, store=store))


def beaker_session(module, session_id=None):
    """Beaker's own Session on its memory store, where a save writes at once (lesson 10's start_session
    is handed one); with ``session_id``, the session stored under that ID."""
    from beaker.session import Session

    return Session({}, id=session_id, type="memory", key="sid")


def stored_beaker_session(module, session_id) -> dict:
    """What Beaker's memory store holds under ``session_id``, as a plain dict."""
    return dict(beaker_session(module, session_id))


def counting(module, url: str):
    """``add(key)``: lesson 09's ``add_one`` on a ``Counter`` of the store at ``url``, both from a fresh
    import of the lesson's app.py, as a second process of the app has them: module globals of its own
    (a count kept in one of them is not the other app's)."""
    import functools
    from pathlib import Path

    from course.kit import concurrency
    from course.tools.loader import load_app_module

    path = Path(module.__file__)
    fresh = load_app_module(path.parent.parent, path.parent.name)
    return functools.partial(fresh.add_one, fresh.Counter(url, concurrency.store_config(url)))


class OwnedLock:
    """A lock that knows which thread holds it (``owner``), for checking that code holds it."""

    def __init__(self):
        import threading

        self._lock, self.owner = threading.Lock(), None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        import threading

        taken = self._lock.acquire(blocking, timeout)
        if taken:
            self.owner = threading.get_ident()
        return taken

    def release(self) -> None:
        self.owner = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class GuardedCounts(dict):
    """A dict that counts every read or write made without holding ``lock`` (an OwnedLock) in ``unguarded``."""

    def __init__(self, lock: OwnedLock):
        super().__init__()
        self.lock, self.unguarded = lock, 0

    def _check(self) -> None:
        import threading

        if self.lock.owner != threading.get_ident():
            self.unguarded += 1

    def get(self, key, default=None):
        self._check()
        return super().get(key, default)

    def __getitem__(self, key):
        self._check()
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        self._check()
        super().__setitem__(key, value)

    def setdefault(self, key, default=None):
        self._check()
        return super().setdefault(key, default)

    def __contains__(self, key):
        self._check()
        return super().__contains__(key)


def in_threads(function, items: list) -> list:
    """``[function(item) for item in items]``, each call in a daemon thread of its own, all at once;
    the first exception is raised again here once every call has ended.

    Not a ThreadPoolExecutor: leaving its ``with`` waits for every call, and a call stuck in the
    student's endless loop never ends (a check hung for good); its threads are not daemons, so
    ``check`` would blame the student for threads the check left. When the test's time limit
    interrupts the wait, the limit stops these threads (pytest_plugin.TimeLimit).
    """
    results: list = [None] * len(items)
    errors: list[BaseException] = []

    def call(index: int, item) -> None:
        try:
            results[index] = function(item)
        except BaseException as exc:     # noqa: B036 (kept for the caller, whatever it is)
            errors.append(exc)

    started = [threading.Thread(target=call, args=pair, daemon=True, name=f"in-threads-{pair[0]}")
               for pair in enumerate(items)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    if errors:
        raise errors[0]
    return results


def count_from_threads(module, threads: int, each: int) -> tuple[list[int], int]:
    """Every number lesson 09's ``add_one`` returns when ``threads`` threads add ``each`` times to one
    memory counter, with Python switching threads every microsecond (its default, 5 ms, almost never
    splits a read-add-write), and how often it read or wrote the counts without holding
    ``counter.lock``: a race that does not happen in one run is still caught by that count. It runs
    where the lesson runs: in a sandbox the threads are its own."""
    import sys

    from course.kit import concurrency

    counter = module.Counter("memory:", concurrency.store_config("memory:"))
    counter.lock = OwnedLock()
    counter.counts = GuardedCounts(counter.lock)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        batches = in_threads(lambda _: [module.add_one(counter, "visits:tabs") for _ in range(each)],
                             list(range(threads)))
    finally:
        sys.setswitchinterval(switch)
    return [n for batch in batches for n in batch], counter.counts.unguarded


BUILDERS = {each.__name__: each for each in (login_required_app, beaker_session, stored_beaker_session, counting,
                                              count_from_threads)}
"""The apps a test builds around a lesson's code, by name: in a sandbox they are built there (in_lesson)."""


def in_lesson(module, builder, *args):
    """``builder(module, *args)`` where the module lives: here, or inside its sandbox when the grader
    runs it in one (the host builds it from BUILDERS, so the student's code never runs out here)."""
    if getattr(module, "course_sandboxed", False):
        return module.course_probe("build", builder.__name__, *args)
    return builder(module, *args)


class WatchedLock:
    """A lock for the double-checked set-ups of the kit (a store's table, a database's schema): it counts
    how often it is taken (``taken``) and says when a thread is about to wait for it (``waiting``), so a
    test can hold it, start a thread, and know the thread stands between the two checks."""

    def __init__(self):
        import threading

        self.lock, self.taken, self.waiting = threading.Lock(), 0, threading.Event()

    def __enter__(self):
        self.waiting.set()
        self.lock.acquire()
        self.taken += 1

    def __exit__(self, *exc):
        self.lock.release()
