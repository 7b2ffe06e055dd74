"""pytest plugins that ``check`` and the grader's worker add to the run, in-process (``plugins=[...]``).

They are not in course.tools.pytest_plugin because a plain ``pytest`` of the course (``make test``)
wants none of them: it shows every test's own outcome and pytest's full tracebacks.
"""
from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import re
import signal
import sys
import threading
import time

from course.lesson.server import killed_by
from course.tools.results import (
    NOT_STARTED_SIGN,
    READY_MADE_WAITS,
    STUCK_SIGN,
    TIMED_OUT_SIGN,
    lesson_slug,
    not_started_in,
)

REAL_EXIT = os._exit
"""``os._exit`` itself: in a child, ``os._exit`` first records where it was called (``_record_os_exit``)."""


class SkipAfterTimeout:
    """Once a test of an exercise timed out, the exercise's other tests are skipped.

    They would most likely hang the same way, one time limit each: in ``check`` the student would
    wait for nothing, and in the grader one endless loop could use up the whole submission's time
    and cost the lessons after it. What the exercise earns is what its tests earned before.

    With ``whole_lesson`` (the student's ``check``), every later test of the lesson runs with a short
    limit (pytest_plugin.AFTER_A_TIMEOUT_SECONDS) and is skipped, not failed, if it runs past it: the
    code that never returned may be any exercise's (lesson 10's logins all go through 10.3's
    ``login_wait``), and each check that reaches it would wait out the whole limit (one loop there
    made ``check 10`` take four minutes); a check that does not reach it still gives its verdict.
    The grader keeps to the exercise: with fair credit, the other exercises' checks run on the
    reference's code for this one.
    """

    def __init__(self, whole_lesson: bool = False):
        self.whole_lesson = whole_lesson
        self.stuck: dict[str, str] = {}          # exercise id, or a lesson's test file -> the exercise that timed out

    @staticmethod
    def _file(nodeid: str) -> str:
        return nodeid.split("::", 1)[0]

    def pytest_runtest_protocol(self, item, nextitem):
        if self.whole_lesson and self._file(item.nodeid) in self.stuck:
            from course.tools.pytest_plugin import AFTER_A_TIMEOUT
            item.stash[AFTER_A_TIMEOUT] = f"{STUCK_SIGN} {self.stuck[self._file(item.nodeid)]} timed out"

    def pytest_runtest_setup(self, item):
        import pytest

        exercise = dict(item.user_properties).get("exercise")
        if exercise in self.stuck:
            pytest.skip(f"not run: {STUCK_SIGN} {exercise} timed out")

    def pytest_runtest_logreport(self, report):
        if report.failed and TIMED_OUT_SIGN in str(report.longrepr):
            exercise = dict(report.user_properties).get("exercise")
            if exercise:
                self.stuck[exercise] = exercise
            self.stuck.setdefault(self._file(report.nodeid), exercise or "a ready-made check")


class NativeTracebacks:
    """Short native tracebacks: the records keep the same message, and pytest's long tracebacks of
    every failing test cost more than half the time of a run against a starter."""

    def pytest_configure(self, config):
        config.option.tbstyle = "native"


class CollectErrors:
    """Keeps the collection errors, for a run whose own output is off (``-p no:terminal``)."""

    def __init__(self):
        self.errors: list[str] = []

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(str(report.longrepr))


class SkipNotStarted:
    """The checks of an exercise whose code is still the starter's are skipped, as not started.

    They could only fail (results.not_started says why), and some would start servers, app
    processes or a browser to find that out: lesson 08's, on an untouched starter, took most of a
    minute on a busy machine and could end in a time limit instead of ``todo``. ``check`` and
    ``list`` add this plugin; the grader and ``make test`` do not, and run every test.

    Only a lesson whose app.py imports is skipped this way: the first time a lesson comes up, its
    module is loaded (course.tools.pytest_plugin.lesson_module, the one the tests then use, under
    the time limit), so an app.py that does not import still fails every check with its message.

    While any exercise of a lesson is not started, its ready-made checks (tests of no exercise)
    are skipped too: ``check`` shows them only once every exercise passes, and many of them need
    the exercises (a login to check a page behind it). Lesson 10's 46 took 2 s on an untouched starter.
    """

    def __init__(self, target):
        self.target = target
        self.found: dict[str, set[str]] = {}

    def _not_started(self, item) -> set[str]:
        from course.tools.loader import LessonLoadError, app_path
        from course.tools.pytest_plugin import lesson_module

        slug = lesson_slug(item.nodeid)
        if slug is None:
            return set()
        if slug not in self.found:
            found = not_started_in(app_path(self.target, slug), slug)
            if found:
                try:
                    lesson_module(item.config, self.target, slug)
                except LessonLoadError:
                    found = set()
            self.found[slug] = found
        return self.found[slug]

    def pytest_runtest_setup(self, item):
        import pytest

        exercise = dict(item.user_properties).get("exercise")
        waiting = self._not_started(item)
        if exercise and exercise in waiting:
            pytest.skip(f'{NOT_STARTED_SIGN} {exercise} is the starter\'s, which raises todo("{exercise}")')
        if not exercise and waiting:
            pytest.skip(f"{READY_MADE_WAITS} {', '.join(sorted(waiting))}")


class SplitAcrossCores:
    """``check`` of a lesson in forked children, on two cores: once the tests are collected, this
    process forks one child per part of the tests and runs none itself; it waits, and keeps each
    child's records.

    Why children, even for one part: the code under test can end the process it runs in
    (``os._exit``, ``os.kill(os.getpid(), ...)``, a crash in C). In the process that prints the
    verdict, ``check`` would then end with no word at all, and exit 0. Here a child ends, and this
    process sees it: the test that was running (the first of the child's part with no record in the
    child's stream) gets a record saying what ended the process (``os._exit(N)`` and the student's
    line where it was called, or the signal), and the rest of that part runs in a new child.

    Why several: a lesson's checks are many small HTTP exchanges with servers in the same process, so
    they use one core. Forked after collection, a child needs no imports and no collecting of its own
    (a second interpreter would spend about a second on them). Two children, or four for a lesson
    whose checks took more than ``WAITING_SECONDS`` in all last time (lesson 09's races and gunicorn
    workers wait on the clock far more than they compute, so four processes overlap their waits);
    one when there are few tests or one core. Each child takes the next group of tests from a queue
    whenever it is free (``grouped``: longest first, by the last run's time of each test,
    ``durations``): parts fixed in advance from those times ended a second apart in lesson 09.

    Not done when a thread is already running (a fork copies only the thread that forks): then the
    tests run in this process, as with ``check``'s ``split_cores=False``.
    """

    MIN_TESTS = 16
    WAITING_SECONDS = 6.0
    stopped: list = []
    """Not empty once Ctrl-C came (cli.noticing_ctrl_c): a child then exits as interrupted."""

    def __init__(self, durations: dict[str, float] | None = None, stall: float = 0.0):
        self.durations = durations or {}
        self.stall = stall                   # seconds without a step after which a child is stuck for good
        self.progress: dict[int, tuple] = {}  # pid -> (its stream's size, since when, when it was aborted)
        self.children: dict[int, tuple[list, str]] = {}   # pid -> (its tests, its report)
        self.in_child = False
        self.order: dict[str, int] = {}      # test id -> its place in collection order, every part's
        self.exit_status = 0
        self.interrupted = False             # a child was stopped by Ctrl-C
        self.records: list[dict] = []        # the children's, and those of the tests that ended a child
        self.started = 0                     # children started, for their reports' names
        self.left_threads: list[str] = []    # threads the code under test left running in a child
        self.groups: list[list] = []         # the tests, in groups that run in one process, longest first
        self.queue = -1                      # a pipe of group numbers: each child takes the next when free
        self.first: list = []                # in a child: the tests it runs before it takes from the queue
        self.report = self.target = ""       # in a child: its report, and the code under test
        self.raised_interrupt = False        # in a child: the code under test raised KeyboardInterrupt

    def pytest_collection_finish(self, session):
        """After collection and ``-m``'s deselection, before the first test."""

        config, items = session.config, session.items
        report = config.getoption("--course-report")
        factory = getattr(config, "_tmp_path_factory", None)     # pytest's tmp_path_factory
        if not items or threading.active_count() > 1 or not report or factory is None or not hasattr(os, "fork"):
            return
        factory.getbasetemp()            # one temporary folder for all, made before the forks
        self.order = {item.nodeid: index for index, item in enumerate(items)}
        expected = sum(self.durations.get(item.nodeid, UNKNOWN_SECONDS) for item in items)
        count = 1 if len(items) < self.MIN_TESTS or (os.cpu_count() or 1) < 2 else \
            4 if expected > self.WAITING_SECONDS else 2
        self.groups = grouped(items, self.durations)
        self.queue = _queue_of(len(self.groups))
        parent = os.getpid()
        adopted = _adopt_orphans()       # what the children leave running is this process's to end
        collected = list(items)
        items[:] = []                    # this process runs nothing (its children run from the queue): it waits
        try:
            for _ in range(count):
                if self._fork(config, [], parent):
                    return               # a child: pytest_runtestloop takes its tests
        except KeyboardInterrupt:        # Ctrl-C between two forks: the children started so far end too
            if not self.in_child:
                self._end_children()
                _end_orphans(adopted)
            raise
        while self.children:
            try:
                pid, status = self._next_to_end()
            except KeyboardInterrupt:    # Ctrl-C reached every child too: they write what they have and end
                self._end_children()
                _end_orphans(adopted)
                raise
            first, child_report = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            self.interrupted |= code == 2                                   # pytest.ExitCode.INTERRUPTED
            found = _read_json(child_report)
            for name in _read_json(child_report + ".threads") or []:
                self.left_threads += [name] if name not in self.left_threads else []
            if found is not None:
                self.records += found["tests"]
                continue
            # The child ended before its report: its stream says what it took and what it finished.
            lines = [json.loads(line) for line in _lines(child_report + ".stream")]
            done = [line for line in lines if "outcome" in line]
            self.records += done
            ran = {record["nodeid"] for record in done}
            taken = first + [item for line in lines if "took" in line for item in self.groups[line["took"]]]
            rest = [item for item in taken if item.nodeid not in ran]
            if self.interrupted or self.stopped:
                continue
            if rest:
                self.records.append(_ended_record(rest[0], code, _read_json(child_report + ".ended"),
                                                  _text(child_report + ".fault"), config.getoption("--target")))
            if (rest[1:] or _queued(self.queue)) and self._fork(config, rest[1:], parent):
                return
        os.close(self.queue)
        _end_orphans(adopted)
        if not (self.interrupted or self.stopped):       # every test has a record, even one whose result was lost
            recorded = {record["nodeid"] for record in self.records}
            self.records += [_lost_record(item) for item in collected if item.nodeid not in recorded]

    def pytest_runtestloop(self, session):
        """In a child: the tests it was started with, then a group of tests at a time from the queue,
        until it is empty (pytest's own loop, called after this one, finds no items left)."""
        if not self.in_child:
            return None

        def tests():
            yield from self.first
            while (index := _take(self.queue)) is not None:
                with open(session.config.getoption("--course-stream"), "a", encoding="utf-8") as stream:
                    stream.write(json.dumps({"took": index}) + "\n")      # the parent's to know, if this ends
                yield from self.groups[index]

        order = tests()
        item = next(order, None)
        while item is not None:
            following = next(order, None)        # taken before this test runs: its fixtures' teardown knows
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
            item = following
        return True

    def _next_to_end(self) -> tuple[int, int]:
        """(pid, wait status) of the next of the children to end. Not ``os.wait()``: that reaps any child
        of this process (``list``'s second interpreter, a server a test started), which is not ours.

        A child whose stream has not grown for ``stall`` seconds is stuck where its own time limit
        cannot reach (a loop inside C code, ``sum(range(10**18))``, holds the interpreter: the alarm's
        handler never runs; or the student's code turned SIGALRM off): it gets SIGABRT, so that
        faulthandler writes where it is, then SIGKILL. Its test is reported, the others go on."""

        looked = 0.0
        while True:
            for pid in self.children:
                ended, status = os.waitpid(pid, os.WNOHANG)
                if ended:
                    self.progress.pop(pid, None)
                    return pid, status
            now = time.monotonic()
            if self.stall and now - looked > 0.25:
                looked = now
                for pid, (_, child_report) in self.children.items():
                    size, since, aborted = self.progress.get(pid, (-1, now, 0.0))
                    grown = _size(child_report + ".stream")
                    if grown != size:
                        self.progress[pid] = (grown, now, 0.0)
                    elif not aborted and now - since > self.stall:
                        _write_ending(child_report + ".ended", f"it was still running {now - since:.0f} s after "
                                      "its last step, past the check's own time limit, which could not stop it (a "
                                      "loop inside C code, or code that turned the limit off): the check ended it",
                                      None)
                        os.kill(pid, signal.SIGABRT)
                        self.progress[pid] = (size, since, now)
                    elif aborted and now - aborted > 2:
                        os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def _end_children(self, grace: float = 3.0) -> None:
        """Wait up to ``grace`` seconds for the children to end, then kill those left: the caller is
        about to remove the folder they write their reports in."""

        deadline = time.monotonic() + grace
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    del self.children[pid]
            time.sleep(0.02)
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.children = {}

    def _fork(self, config, first: list, parent: int) -> bool:
        """Start a child that runs ``first``, then tests from the queue: True in the child, False here."""
        self.started += 1
        child_report = f"{config.getoption('--course-report')}.split{self.started}"
        # A Ctrl-C during the fork waits until each side is ready for it: without this, it came while
        # the child ran the hooks of os.register_at_fork (logging's), whose KeyboardInterrupt Python
        # can only print ("Exception ignored in: <function _releaseLock>", a traceback, to the student).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            raise
        if pid == 0:
            try:
                return self._child(config, first, parent, child_report)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # a Ctrl-C that came: now, here
        self.children[pid] = (first, child_report)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return False

    def _child(self, config, first: list, parent: int, child_report: str) -> bool:
        """The child's side of a fork: its own report, streams and fault file; True (it runs tests)."""
        die_with(parent)
        self.in_child, self.children, self.first = True, {}, first
        self.report, self.target = child_report, config.getoption("--target")
        config.option.course_report = child_report
        config.option.course_stream = child_report + ".stream"
        _record_os_exit(child_report + ".ended", config.getoption("--target"))
        # A fatal signal's stacks (os.abort(), a crash in C) go to the parent, not to the terminal.
        self.fault_file = open(child_report + ".fault", "w", encoding="utf-8")     # open until the child ends
        faulthandler.enable(self.fault_file, all_threads=True)
        return True

    def pytest_keyboard_interrupt(self, excinfo):
        """In a child, a KeyboardInterrupt that no Ctrl-C sent was raised by the code under test: pytest
        stops at it all the same, so the child ends as if that code had ended it (the parent reports
        the test and runs the others)."""
        if not self.in_child or self.stopped:
            return
        from course.tools.crashes import from_traceback
        from course.tools.loader import resolve_target

        crash = from_traceback(excinfo.value, excinfo.tb, resolve_target(self.target))
        _write_ending(self.report + ".ended", "the code under test raised KeyboardInterrupt", crash)
        self.raised_interrupt = True

    def pytest_sessionfinish(self, session, exitstatus):
        self.exit_status = 2 if self.stopped else int(exitstatus)        # 2: pytest.ExitCode.INTERRUPTED

    def pytest_unconfigure(self, config):
        if self.in_child:                # the report is written (pytest_sessionfinish): this process is done

            left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
            if left:                     # the parent says so, once (this exit does not wait for them)
                with open(config.getoption("--course-report") + ".threads", "w", encoding="utf-8") as file:
                    json.dump(left, file)
            sys.stdout.flush()
            sys.stderr.flush()
            if self.raised_interrupt:    # no verdict for the tests it did not run: the parent runs them
                os.remove(self.report)
                REAL_EXIT(3)
            REAL_EXIT(self.exit_status)   # 2: interrupted (pytest.ExitCode), which the parent must know
        elif self.left_threads:
            print(left_threads_note(self.left_threads), file=sys.stderr)

    def child_records(self) -> list[dict]:
        """The children's records, and one for each test during which a child's process ended."""
        return self.records


def left_threads_note(names: list[str]) -> str:
    """What to say when the code under test left threads running that are not daemons."""
    return (f"note: the code under test left {len(names)} thread(s) running ({', '.join(names[:3])}); a real "
            "server could not stop either. Start threads with daemon=True, or stop them.")


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return ""


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as file:
            return [line for line in file if line.strip()]
    except OSError:
        return []


def _record_os_exit(path: str, target: str) -> None:
    """In a child: ``os._exit`` first writes where it was called from to ``path`` (as a Crash). Not in
    a process the child forks in turn (multiprocessing's workers end with ``os._exit``)."""
    child = os.getpid()

    def recorded_exit(status):
        if os.getpid() != child:
            REAL_EXIT(status)
        try:
            from course.tools.crashes import called_from
            from course.tools.loader import resolve_target

            crash = called_from(sys._getframe(1), resolve_target(target), f"os._exit({status!r}) ended the process")
            _write_ending(path, f"the code under test called os._exit({status!r})", crash)
        finally:
            REAL_EXIT(status if isinstance(status, int) else 1)

    os._exit = recorded_exit


def _write_ending(path: str, how: str, crash) -> None:
    """What ended a child's test, for the parent (``_ended_record``): how, and the Crash, if any."""
    with open(path, "w", encoding="utf-8") as file:
        json.dump({"how": how, "crash": crash.as_dict() if crash is not None else None}, file)


FATAL = re.compile(r'^Fatal Python error: (.*)$', re.M)
FAULT_FRAME = re.compile(r'^  File "(.*)", line (\d+) in (.*)$')


def _fatal_error(dump: str, target: str, error: str = ""):
    """A Crash from faulthandler's dump of a process that died of a fatal signal (``os.abort()``, a
    crash in C code, or the parent's SIGABRT to a child stuck for good): the error it names, or
    ``error``, and the student's frames of the thread that crashed."""
    from course.tools.crashes import from_entries
    from course.tools.loader import resolve_target

    found = FATAL.search(dump)
    if found is None:
        return None
    section = dump[found.end():].split("\nThread 0x", 1)[0]          # the crashing thread is first
    frames = [match.groups() for line in section.splitlines() if (match := FAULT_FRAME.match(line))]
    crash = from_entries([(file, int(line), function) for file, line, function in reversed(frames)],
                         resolve_target(target), error or f"Fatal Python error: {found.group(1).strip()} "
                         "(os.abort(), or a crash in C code: ctypes?)")
    crash.stuck = bool(error)
    return crash


def _ended_record(item, code: int, ending: dict | None, dump: str = "", target: str = "lessons") -> dict:
    """The record of a test during which the code under test ended the process running it: ``ending``
    is what the child wrote before it ended (``_write_ending``), ``dump`` faulthandler's output."""

    crash = (ending or {}).get("crash")
    if ending and ending.get("how"):
        how = ending["how"]
        if crash is None and dump:       # stopped by the parent (``_next_to_end``): where it was stuck
            stuck = _fatal_error(dump, target, "still running: it never returned (an endless loop in C code?)")
            crash = stuck.as_dict() if stuck is not None else None
    elif code < 0:
        how = killed_by(-code)
        fatal = _fatal_error(dump, target) if dump else None
        crash = fatal.as_dict() if fatal is not None else None
    else:
        how = f"it exited with status {code} (sys.exit or os._exit in the code under test?)"
    return _error_record(item, f"The process running this check ended during it: {how}." + (
        "" if how.endswith("the check ended it") else
        " A server's code must not end its process: every other visitor's requests would end with it."),
        crash=crash or None, ended=True)


def _error_record(item, message: str, **more) -> dict:
    """A record of ``item`` (as CourseReport writes them) that this process makes: an ``error``."""
    props = dict(item.user_properties)
    return {"nodeid": item.nodeid, "exercise": props.get("exercise"), "weight": props.get("weight", 1),
            "outcome": "error", "crash": None, "duration": 0.0, "message": message, **more}


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    if int(stat.read().rpartition(")")[2].split()[1]) == pid:
                        found.add(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _adopt_orphans() -> set[int] | None:
    """Linux: make this process the one that the processes its children leave behind are handed to
    (PR_SET_CHILD_SUBREAPER), instead of PID 1; its children now (``list``'s second interpreter) are
    not of those. None where that cannot be done."""

    try:
        if ctypes.CDLL(None, use_errno=True).prctl(36, 1) != 0:     # PR_SET_CHILD_SUBREAPER
            return None
    except (OSError, AttributeError):
        return None
    return _children_of(os.getpid())


def _end_orphans(before: set[int] | None) -> None:
    """Kill what the children left running and this process was handed (``_adopt_orphans``): a
    ``subprocess.Popen`` in a route, an app process stuck in the student's loop. Once the last
    child has ended, nothing of the check's is meant to run."""

    if before is None:
        return
    quiet = 0
    for _ in range(2000):                # what an orphan left is handed over in turn once it is killed; a chain
        left = _children_of(os.getpid()) - before        # that forks anew every millisecond shows up between scans
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        quiet = 0 if left else quiet + 1
        if quiet >= 3:
            break
        time.sleep(0.002)
    ctypes.CDLL(None, use_errno=True).prctl(36, 0)


def _lost_record(item) -> dict:
    """The record of a test that ran in a child, whose result never reached this process."""
    return _error_record(item, "This check's result was lost on its way back from the process that ran it: did "
                         "the code under test close or write over files it did not open (os.close on a range of "
                         "numbers)?")


def die_with(parent: int) -> None:
    """Linux: this process is killed when ``parent`` ends (a test of the parent's that ends its process
    must not leave the child running the rest, starting browsers and servers after the prompt is back)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:           # it ended before the line above
        os._exit(1)


TOGETHER = ("chromium", "open_page")
"""Fixtures that start something costly once per process (a browser; lesson 06's ``open_page``
starts it): the tests that use any of them are one group (``grouped``), run by one child, so it starts once."""
UNKNOWN_SECONDS = 0.05
"""What a test not timed before is expected to take."""
TOGETHER_SECONDS = 1.0
"""What a TOGETHER group costs at least: a browser's start and close (about 0.8 s of the headless
shell's, with Playwright's driver). A fresh clone has no times yet, and a run where the browser
tests failed at once (the login not done yet) timed them at 0.01 s: taken last from the queue, the
browser would start after everything else was done, and the check would wait for it alone."""


def grouped(items: list, durations: dict[str, float]) -> list[list]:
    """``items`` in groups, longest first by the last run's times: the tests that share a TOGETHER
    fixture in one group (each of them in collection order), each other test alone. Taken longest
    first from a queue by whichever process is free, they end at about the same time, however
    wrong the times are (a run on a loaded machine, a test that is slower now)."""
    groups: dict[object, list] = {}
    for index, item in enumerate(items):
        key = "together" if set(TOGETHER) & set(getattr(item, "fixturenames", ())) else index
        groups.setdefault(key, []).append(item)

    def cost(key: object) -> float:
        timed = sum(durations.get(item.nodeid, UNKNOWN_SECONDS) for item in groups[key])
        return max(timed, TOGETHER_SECONDS) if key == "together" else timed

    return [groups[key] for key in sorted(groups, key=cost, reverse=True)]


def _queue_of(count: int) -> int:
    """The read end of a pipe holding the numbers 0 to ``count - 1`` (four bytes each) and closed
    for writing: the children each read one number at a time (a pipe's read of four bytes that are
    there is whole), until it is empty."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"".join(number.to_bytes(4, "big") for number in range(count)))  # a pipe holds 64 KiB
    os.close(write_end)
    return read_end


def _take(queue: int) -> int | None:
    chunk = os.read(queue, 4)
    return int.from_bytes(chunk, "big") if len(chunk) == 4 else None


def _queued(queue: int) -> int:
    """How many group numbers are still in the queue."""
    import fcntl
    import termios

    return int.from_bytes(fcntl.ioctl(queue, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder) // 4
