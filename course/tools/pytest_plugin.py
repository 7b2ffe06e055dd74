"""The course's pytest plugin: which code is under test, the exercise marker, and the fixtures.

``--target`` picks the code: ``solutions`` (the default, so a plain ``pytest`` checks the course
itself), ``lessons`` (a student's own work), or the path of a student's copy (the grader).

Each exercise test carries ``@pytest.mark.exercise("03.2")``. An exercise is worth the points
the manifest gives it; its tests share them equally unless one says ``weight=2``. The marker's
id must exist in the manifest (a typo fails the run instead of losing points silently).

``--course-report PATH`` writes one JSON record per test (exercise, weight, outcome, message,
and the crash, when the code under test raised): what ``python -m course check``, the grader and
the teeth check read. A test that fails after the app crashed shows the crash (course.tools.crashes)
in a section of its own, under pytest's own report too.

``--course-timeout SECONDS`` fails a test whose setup, call or teardown takes longer (an endless
loop in a route, a request that never gets an answer) instead of hanging the run; 0, the default,
sets no limit. ``--course-stream PATH`` appends one JSON line per collected test, then one per
record as each test ends, so a run that is stopped from outside still shows what it did (the
grader reads it when it had to kill a submission).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from course.lesson import manifest
from course.lesson.server import serve
from course.tools.crashes import Crash, CrashRecorder, StoppedByTheCheck, called_directly, stuck
from course.tools.loader import LessonLoadError, load_app_module, readable_names, resolve_target, use_a_throwaway_secret
from course.tools.results import TIMED_OUT_SIGN
from course.tools.results import lesson_slug as slug_of

CRASHES = pytest.StashKey[list]()
"""The crashes the app under test had during one test (``serve_app``'s servers record them)."""
AFTER_A_TIMEOUT = pytest.StashKey[str]()
"""Set on a test (plugins.SkipAfterTimeout, in ``check``) that runs after another test of its lesson timed
out: why it gets a short limit, and why it is skipped, not failed, if it runs past it."""
AFTER_A_TIMEOUT_SECONDS = 1.0
CRASH_SECTION = "crash in the code under test"
WALL_FACTOR = 5
"""In a sandbox, a test phase that spends no CPU (it waits) is stopped after this many times its limit."""
HOSTS = pytest.StashKey[object]()
"""The grader's sandboxes (course.tools.grading.sandbox.Hosts), when ``--course-sandbox`` is given."""


def pytest_addoption(parser):
    group = parser.getgroup("course")
    group.addoption("--target", default=os.environ.get("COURSE_TARGET", "solutions"),
                    help="code under test: solutions (default), lessons, or a folder of NN_slug/app.py "
                         "folders (a student's copy)")
    group.addoption("--course-report", default=None, metavar="PATH",
                    help="write a JSON record per test: exercise, weight, outcome, message")
    group.addoption("--course-timeout", type=float, metavar="SECONDS",
                    default=float(os.environ.get("COURSE_TEST_TIMEOUT") or 0),
                    help="fail a test whose setup, call or teardown takes longer than SECONDS "
                         "(default 0: no limit; POSIX only)")
    group.addoption("--course-stream", default=None, metavar="PATH",
                    help="append a JSON line per collected test, then per record as each test ends")
    group.addoption("--course-sandbox", default=None, metavar="FILE",
                    help="(the grader's) serve and call the target's lessons from sandboxes, as FILE says "
                         "(course.tools.grading.sandbox.Config); nothing of the target runs in this process")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "exercise(id, weight=1): the test checks exercise ID of the manifest (e.g. '03.2')")
    config.addinivalue_line(
        "markers", "maintainers: a check of the lesson text's own claims on real infrastructure (a load "
        "balancer, a failover, the README's full-size figures), slow: `make test` runs it, a student's "
        "`check` leaves it out")
    config.pluginmanager.register(CourseReport(config), "course-report")
    use_a_throwaway_secret()
    hosts = None
    if config.getoption("--course-sandbox"):
        from course.tools.grading import sandbox
        hosts = config.stash[HOSTS] = sandbox.Hosts(sandbox.Config.read(config.getoption("--course-sandbox")))
        sandbox.share_temporary_folders(hosts.config)
        sandbox.ACTIVE[:] = [hosts]
    seconds = config.getoption("--course-timeout") or 0
    if seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        config.pluginmanager.register(TimeLimit(seconds, hosts), "course-timeout")


def pytest_unconfigure(config):
    hosts = config.stash.get(HOSTS, None)
    if hosts is not None:
        hosts.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """In the grader, a lesson's sandbox ends with its last test (its module's fixtures are done)."""
    try:
        return (yield)
    finally:
        hosts = item.config.stash.get(HOSTS, None)
        slug = slug_of(str(item.path))
        if hosts is not None and slug and (nextitem is None or slug_of(str(nextitem.path)) != slug):
            hosts.close_lesson(slug)


def pytest_collection_modifyitems(config, items):
    known = {ex.id for lesson in manifest.lessons() for ex in lesson.exercises}
    for item in items:
        marker = item.get_closest_marker("exercise")
        if marker is None:
            continue
        exercise_id = marker.args[0] if marker.args else marker.kwargs.get("id")
        if exercise_id not in known:
            raise pytest.UsageError(f"{item.nodeid}: exercise {exercise_id!r} is not in course/lesson/manifest.toml")
        if item.get_closest_marker("maintainers") is not None:      # `check` leaves it out, the grader and `list` not
            raise pytest.UsageError(f"{item.nodeid}: an exercise test cannot be a maintainers check: `check` would "
                                    "leave it out, while `list` and the grader count it")
        item.user_properties.append(("exercise", exercise_id))
        item.user_properties.append(("weight", marker.kwargs.get("weight", 1)))
    first = set(filter(None, os.environ.get("COURSE_RUN_FIRST", "").split(",")))
    if first:       # the teeth check: the tests of the exercises a decoy changed, before the others
        items.sort(key=lambda item: dict(item.user_properties).get("exercise") not in first)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed phase carries the first crash of the code under test: the app's, or the call's own."""
    report = yield
    hosts = item.config.stash.get(HOSTS, None)
    ended = hosts.ended(0.05 if report.failed and _may_be_a_death(call.excinfo) else 0) if hosts is not None else []
    if report.failed and ended:                  # the sandbox died under the test: say so first
        report.longrepr = "\n".join(ended) + "\n" + _message(report)
    if report.failed:
        crashes = item.stash.get(CRASHES, [])
        crash = crashes[0] if crashes else None
        if crash is None and call.excinfo is not None:
            crash = called_directly(call.excinfo, resolve_target(item.config.getoption("--target")))
        if crash is not None:
            report.course_crash = crash.as_dict()
            more = f"\n(and {len(crashes) - 1} more crash(es) in this test)" if len(crashes) > 1 else ""
            report.sections.append((CRASH_SECTION, crash.text() + more))
    return report


def _may_be_a_death(excinfo) -> bool:
    """Could this failure be a sandbox's host dying under the test? Then its death may take a moment
    to show (``Hosts.ended``'s grace). A host that dies ends its connections: the test sees an
    OSError (requests' errors are OSErrors too) or the wire's HostGone, perhaps as the cause of
    another error. A plain failed assertion is not worth the wait (312 of them cost a half-solved
    copy 16 s)."""
    error = excinfo.value if excinfo is not None else None
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) or type(error).__name__ == "HostGone":
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return readable_names(crash.message)
    if isinstance(report.longrepr, tuple):       # a skip: (file, line, reason)
        return str(report.longrepr[2])
    return readable_names(str(report.longrepr or ""))


class CourseReport:
    """Collects one record per test, and writes them where ``--course-report`` says."""

    def __init__(self, config):
        self.config = config
        self.records: list[dict] = []

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        if report.when == "call":
            outcome = report.outcome
        elif report.when == "setup" and not report.passed:
            outcome = "skipped" if report.skipped else "error"
        elif report.when == "teardown" and report.failed:
            outcome = "error"
        else:
            return
        self.records.append({
            "nodeid": report.nodeid, "exercise": props.get("exercise"), "weight": props.get("weight", 1),
            "outcome": outcome, "message": "" if report.passed else _message(report)[:2000],
            "duration": round(report.duration, 4), "crash": getattr(report, "course_crash", None),
            **({"cpu": props["cpu"]} if "cpu" in props else {}),
        })
        self._stream([self.records[-1]])

    def pytest_collection_finish(self, session):
        self._stream([{"collected": item.nodeid, "exercise": dict(item.user_properties).get("exercise"),
                       "weight": dict(item.user_properties).get("weight", 1)} for item in session.items])

    def _stream(self, lines):
        path = self.config.getoption("--course-stream")
        if path and not hasattr(self.config, "workerinput"):
            with open(path, "a", encoding="utf-8") as stream:
                stream.writelines(json.dumps(line) + "\n" for line in lines)

    def pytest_sessionfinish(self, session):
        path = self.config.getoption("--course-report")
        if path and not hasattr(self.config, "workerinput"):   # under xdist only the controller writes
            Path(path).write_text(json.dumps({
                "target": str(resolve_target(self.config.getoption("--target"))),
                "tests": self.records,
            }, indent=1), encoding="utf-8")


class TimeLimit:
    """``--course-timeout``: SIGALRM interrupts a phase that runs too long, and fails the test.

    When the code under test runs in sandboxes (the grader), the limit is in CPU seconds, one budget
    for the whole test (setup, call and teardown together): everything the test made run, the
    sandboxes and the test process that talks to them (a copy can make the tests' own side work,
    with an answer that is slow to read), counted by the test process's cgroup where the grader made
    one (course.tools.grading.cpuacct). It is checked four times a second once it could have been
    spent, so a loaded machine gives the same outcomes; a phase that waits without spending CPU (a
    route that sleeps) is stopped after ``WALL_FACTOR`` times the limit of wall time. After a test
    that ran over, the sandboxes are killed: the next test gets fresh ones.

    The test's main thread is interrupted wherever it waits (a request to a route stuck in a loop).
    After a test that timed out, the threads it started and left running (the server thread stuck
    in the loop) get a ``SystemExit`` (crashes.StoppedByTheCheck) raised in them, so a spinning loop
    does not slow every later test down by fighting for the GIL; a thread blocked in C code stays, as
    a daemon, until exit.
    """

    REUSE_READING = 0.05
    """Seconds a reading of the CPU is reused for the start of the next test: a walk of /proc (where
    there is no cgroup) costs a few ms, and tests follow each other at once. The reused reading is
    older, so the test is charged a little more, never less."""

    def __init__(self, seconds: float, hosts=None):
        self.seconds = seconds
        self.hosts = hosts
        self.before: set[threading.Thread] = set()
        self.timed_out = False
        self.reading = (-1.0, 0.0)          # (when, CPU seconds) of the last look
        self.test_started = 0.0             # the CPU reading when this test's setup began

    def _cpu(self, reuse: bool = False) -> float:
        when, value = self.reading
        if not (reuse and time.monotonic() - when < self.REUSE_READING):
            self.reading = (time.monotonic(), self.hosts.cpu_seconds())
        return self.reading[1]

    def _limit(self, when: str, item=None):
        if self.hosts and when == "setup":
            self.test_started = self._cpu(reuse=True)
        started = time.monotonic()

        def on_alarm(signum, frame):
            if self.hosts:
                spent = self._cpu() - self.test_started
                if spent <= self.seconds and time.monotonic() - started <= WALL_FACTOR * self.seconds:
                    signal.setitimer(signal.ITIMER_REAL, 0.25)      # one shot each time: never nested
                    return
                self.timed_out = True
                pytest.fail(f"{TIMED_OUT_SIGN} {when} took it past {self.seconds:g} s of CPU ({spent:.1f} s spent "
                            "by the code under test and the checks talking to it, setup, call and teardown "
                            "together; an endless loop, or a request that never gets an answer?)", pytrace=False)
            self._ran_out(item, frame, f"{when} took longer than {self.seconds:g} s", self.seconds)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        if self.hosts:          # N cores spend at most N CPU seconds a second: no need to look earlier
            left = self.seconds - (self._cpu(reuse=True) - self.test_started)
            signal.setitimer(signal.ITIMER_REAL, max(0.1, left / (os.cpu_count() or 1)))
        elif item is not None and item.stash.get(AFTER_A_TIMEOUT, None) is not None:
            signal.setitimer(signal.ITIMER_REAL, min(self.seconds, AFTER_A_TIMEOUT_SECONDS))
        else:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            return (yield)
        except requests.Timeout:
            # A check's own request timed out first (most say timeout=5): where the limit is wall
            # time, that is the same endless loop, and it must end the same way (a shorter limit for
            # the lesson's later checks, the spinning thread stopped, the stuck line shown). Under
            # the limit of 10 s, each check reaching a loop took 5 s and left its thread spinning:
            # a loop in lesson 02's /visits made check take over three minutes.
            if self.hosts:
                raise
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._ran_out(item, None, f"{when} sent a request that got no answer in time",
                          round(time.monotonic() - started))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if self.hosts and when == "call":       # what the test cost so far (its record says ``cpu``)
                item.user_properties.append(("cpu", round(self._cpu() - self.test_started, 3)))

    def _ran_out(self, item, frame, what: str, seconds: float):
        """Fail (or, after another test's timeout, skip) the test that ran out of time, with where the
        student's code was stuck as its crash; ``frame`` is the main thread's, when it was interrupted."""
        self.timed_out = True
        after = item.stash.get(AFTER_A_TIMEOUT, None) if item is not None else None
        if after is not None:       # plugins.SkipAfterTimeout: an earlier test got stuck; this one reached it too?
            pytest.skip(f"not run to the end: {after}, and this one was still running after "
                        f"{AFTER_A_TIMEOUT_SECONDS:g} s (it reaches the same code?)")
        if item is not None:        # where the student's code is stuck, shown as its crash
            threads = sys._current_frames()
            tops = [*([frame] if frame is not None else []),
                    *(threads[t.ident] for t in set(threading.enumerate()) - self.before if t.ident in threads)]
            found = stuck(tops, resolve_target(item.config.getoption("--target")), seconds)
            if found is not None:
                item.stash.setdefault(CRASHES, []).insert(0, found)
        pytest.fail(f"{TIMED_OUT_SIGN} {what} (an endless loop, or a request that never gets an answer?)",
                    pytrace=False)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):
        self.before, self.timed_out = set(threading.enumerate()), False
        return (yield from self._limit("setup", item))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        return (yield from self._limit("call", item))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item):
        try:
            return (yield from self._limit("teardown", item))
        finally:
            if self.timed_out:
                if self.hosts:
                    self.hosts.reset()
                for thread in set(threading.enumerate()) - self.before:
                    _raise_in_thread(thread, StoppedByTheCheck)


def _raise_in_thread(thread: threading.Thread, exc_type) -> None:
    """Raise ``exc_type`` in another thread at its next bytecode (CPython only; a no-op elsewhere)."""
    if thread is threading.main_thread() or not thread.is_alive() or thread.ident is None:
        return
    try:
        import ctypes
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))
    except (ImportError, AttributeError):
        pass


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def course_target(pytestconfig) -> Path:
    """The folder of lessons under test (``--target``)."""
    return resolve_target(pytestconfig.getoption("--target"))


@pytest.fixture(scope="module")
def lesson_slug(request) -> str:
    """``01_raw_cookies`` for tests/test_01_raw_cookies.py."""
    slug = slug_of(str(request.path))
    if slug is None:
        raise pytest.UsageError(f"{request.path}: lesson test files are named test_NN_slug.py")
    return slug


LOADED = pytest.StashKey[dict]()


def lesson_module(config, target, slug):
    """The lesson's app.py from ``target``, imported once per run (the ``app_module`` fixture's)."""
    loaded = config.stash.setdefault(LOADED, {})
    key = (str(resolve_target(target)), slug)
    if key not in loaded:
        loaded[key] = load_app_module(target, slug)
    return loaded[key]


@pytest.fixture(scope="module")
def app_module(request, course_target, lesson_slug):
    """The lesson's app.py from the target, imported under a name of its own.

    For the grader (``--course-sandbox``) it is a stand-in that asks the lesson's sandbox
    (course.tools.grading.sandbox.ModuleProxy): the app.py is imported there, never here.
    """
    hosts = request.config.stash.get(HOSTS, None)
    if hosts is not None:
        from course.tools.grading.sandbox import ModuleProxy
        proxy = ModuleProxy(hosts, lesson_slug)
        try:
            proxy.load()
        except Exception as exc:
            pytest.fail(str(exc), pytrace=False)
        return proxy
    try:
        return lesson_module(request.config, course_target, lesson_slug)
    except LessonLoadError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def serve_app(request, course_target):
    """``url = serve_app(wsgi_app)``: serve any WSGI app on a free port until the test ends.

    What the app raises while it answers is recorded for the test's report (CrashRecorder).
    ``url_scheme="https"`` serves it as a server that speaks TLS itself would (``wsgi.url_scheme``).
    An app of a lesson's sandbox (the grader's ``app_module.create_app(...)``) is served there.
    """
    contexts, relays = [], []
    crashes: list[Crash] = request.node.stash.setdefault(CRASHES, [])

    def start(app, url_scheme: str | None = None) -> str:
        owner = getattr(getattr(app, "_wire_handle", (None,))[0], "host", None)
        if owner is not None:                      # an app of a sandbox's (the grader): served there
            relay = owner.serve(app, url_scheme)
            relays.append(relay)
            return relay.url
        if url_scheme:
            from course.tools.grading.host import with_url_scheme
            app = with_url_scheme(app, url_scheme)
        context = serve(CrashRecorder(app, course_target, crashes))
        url = context.__enter__()
        contexts.append(context)
        return url

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)
    for relay in relays:
        relay.close()


@pytest.fixture
def server(app_module, serve_app):
    """``url = server(**options)``: the lesson's ``create_app(**options)`` on a free port."""

    def start(**options) -> str:
        return serve_app(app_module.create_app(**options))

    return start


@pytest.fixture
def base_url(server) -> str:
    """The lesson's app with its default options, served on a free port."""
    return server()


@pytest.fixture
def client():
    """A ``requests.Session``: one browser with its own cookie jar."""
    with requests.Session() as session:
        yield session
