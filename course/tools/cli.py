"""The commands behind ``python -m course``. Each takes the parsed arguments, returns an exit code.

Progress is never stored: ``list``, ``check``, ``hint NN`` and ``diff`` run the course's tests
against your code each time (in this process, in about a second a lesson). The only thing kept is
how many hints of each exercise you have asked for, so that ``hint`` can tell you one more each time.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from course import ROOT
from course.lesson import manifest
from course.lesson.server import RELOAD_WAIT, run_reloading, snapshot
from course.tools import plugins, teeth
from course.tools.crashes import Crash, from_traceback
from course.tools.loader import LessonLoadError, app_path, display, load_app_module, resolve_target
from course.tools.plugins import CollectErrors, NativeTracebacks, SkipAfterTimeout, SkipNotStarted, SplitAcrossCores
from course.tools.results import (
    PYTEST_QUIET,
    STUCK_SIGN,
    TIMED_OUT_SIGN,
    ExerciseState,
    lesson_slug,
    load_problem,
    merge,
    outcome,
    states,
)
from course.tools.term import Style, bar, course_command, python_command, tidy_message, unfinished, width

DEFAULT_TEST_TIMEOUT = 10.0
IMPORT_HANG = ("Importing app.py did not finish: does it start a server or loop when imported? Code that "
               'serves belongs under if __name__ == "__main__":')


def _lesson(key: str) -> manifest.Lesson:
    try:
        return manifest.lesson(key)
    except manifest.UnknownLesson as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None       # a usage error (make check counts 1, failing checks, as its own answer)


def _where(target: str, lesson: manifest.Lesson) -> str:
    return display(resolve_target(target) / lesson.slug / "app.py")


# ---------------------------------------------------------------- run

def run(args) -> int:
    """Serve a lesson; unless ``--no-reload``, in a child process started again on every save."""
    lesson = _lesson(args.lesson)
    target = "solutions" if args.solution else args.target
    if args.no_reload:
        return serve_lesson(lesson, target, _serve_argv(args), lambda port, host=None: _make_run(args, port, host))
    folder = resolve_target(target) / lesson.slug
    command = [sys.executable, "-m", "course", "run", lesson.id, "--no-reload", "--target", str(target),
               *_serve_argv(args)]
    return run_reloading(command, folder, display(folder))


def _serve_argv(args) -> list[str]:
    argv = ["--host", args.host, "--port", str(args.port)]
    if args.store:
        argv += ["--store", args.store]
    for option in args.option or []:
        argv += ["--option", option]
    return argv


def _make_run(args, port: int, host: str | None = None) -> str:
    """The ``make run`` command of ``args`` (LESSON, SOLUTION, STORE, OPTIONS kept), on another port or host."""
    words = ["make run", f"LESSON={_lesson(args.lesson).id}",
             "SOLUTION=1" if args.solution or args.target == "solutions" else "",
             f"HOST={host}" if host else (f"HOST={args.host}" if args.host != "127.0.0.1" else ""), f"PORT={port}",
             f"STORE={shlex.quote(args.store)}" if args.store else "",
             f"OPTIONS={shlex.quote(' '.join(args.option))}" if args.option else ""]
    return " ".join(word for word in words if word)


def serve_lesson(lesson: manifest.Lesson, target: str, argv: list[str], make_run=None) -> int:
    """Serve the lesson in this process until Ctrl-C; a problem with the student's code is one message.

    Returns RELOAD_WAIT when the code cannot start (the reloader then waits for a save). ``make_run``
    gives the student's command on another port (``PortInUse``'s advice).
    """
    from course.lesson.server import PortInUse
    from course.lesson.web import ExerciseNotDone

    path = resolve_target(target) / lesson.slug / "app.py"
    try:
        module = load_app_module(target, lesson.slug)
    except LessonLoadError as exc:
        print(f"Cannot serve lesson {lesson.id}: {exc}", file=sys.stderr, flush=True)
        return RELOAD_WAIT
    print(f"Lesson {lesson.id} ({'reference solution' if target == 'solutions' else 'your code'}: "
          f"{display(path)})", flush=True)
    try:
        module.main(argv)
    except PortInUse as exc:
        if make_run is None:
            raise
        raise SystemExit(exc.with_command(make_run(exc.port, exc.host))) from None
    except ExerciseNotDone as exc:
        try:
            where = manifest.exercise(exc.exercise_id).function
        except LookupError:
            where = "its code"
        option = " with --store (STORE=...)" if "--store" in argv else ""
        print(f"Cannot start lesson {lesson.id}: starting it{option} runs exercise {exc.exercise_id} ({where}), "
              f"which still raises todo(\"{exc.exercise_id}\"). Finish it and save (the server then starts), "
              f"or start without that option for now.", file=sys.stderr, flush=True)
        return RELOAD_WAIT
    except Exception as exc:                      # the student's create_app or main crashed
        crash = from_traceback(exc, exc.__traceback__, path.parent)
        lines = crash.lines()
        print(f"Your app.py crashed while starting: {lines[0]}", file=sys.stderr)
        for line in lines[2:]:
            print("  " + line, file=sys.stderr)
        sys.stderr.flush()
        return RELOAD_WAIT
    return 0


# ---------------------------------------------------------------- running the checks

@dataclass
class Checked:
    records: list[dict]
    collect_errors: list[str]


def run_checks(lessons, target: str = "lessons", exercises_only: bool = False,
               test_timeout: float = DEFAULT_TEST_TIMEOUT, split_cores: bool = True) -> Checked:
    """Run lessons' tests in this process against ``target``, pytest's own output off; one record per test.

    The checks of an exercise whose code is still the starter's are not run (plugins.SkipNotStarted):
    they are reported as todo at once. With ``split_cores``, the tests run in two or four children
    forked after collection, each taking the next test when it is free (plugins.SplitAcrossCores):
    a test that ends its process is reported as such, and the others still run.
    """
    import pytest

    if isinstance(lessons, manifest.Lesson):
        lessons = [lessons]
    files = [str(lesson.test_file) for lesson in lessons if lesson.test_file.exists()]
    if not files:
        return Checked([], [])
    collected = CollectErrors()
    with tempfile.TemporaryDirectory(prefix="course-check-", ignore_cleanup_errors=True) as tmp:
        report = Path(tmp) / "report.json"
        args = ["-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), *files, "--target", str(target),
                "--course-report", str(report), "--course-timeout", f"{test_timeout:g}", *PYTEST_QUIET,
                "-p", "no:terminal", "-p", "no:faulthandler"]     # each child keeps its own (SplitAcrossCores)
        args += ["-m", "exercise" if exercises_only else "not maintainers"]
        # A child with no step for three limits (setup, call, teardown) and a margin is stuck for good.
        split = SplitAcrossCores(read_durations(), stall=3 * test_timeout + 5) if split_cores else None
        me = os.getpid()
        with noticing_ctrl_c() as stopped:
            try:
                code = pytest.main(args, plugins=[collected, SkipAfterTimeout(whole_lesson=True), NativeTracebacks(),
                                                  SkipNotStarted(target), *([split] if split else [])])
            finally:
                if os.getpid() != me:    # a forked child never comes back here (a Ctrl-C just after its fork)
                    plugins.REAL_EXIT(2 if stopped else 1)
            records = json.loads(report.read_text(encoding="utf-8"))["tests"] if report.exists() else []
            theirs = split.child_records() if split else []
    if stopped or code == pytest.ExitCode.INTERRUPTED or (split is not None and split.interrupted):
        raise KeyboardInterrupt          # Ctrl-C: what ran is not a verdict (the caller says "Stopped.")
    records = list(merge(records + theirs).values())
    if split is not None and split.order:       # as if one process ran them: the first failure is the first
        records.sort(key=lambda record: split.order.get(record["nodeid"], len(split.order)))
    write_durations(records)
    return Checked(records, collected.errors)


@contextlib.contextmanager
def noticing_ctrl_c():
    """A list that is not empty once Ctrl-C came, whatever the code under test did with the
    KeyboardInterrupt (a browser driver takes it as its connection closing, and a test fails instead).
    A forked child inherits it and exits as interrupted (plugins.SplitAcrossCores)."""
    stopped: list[bool] = []
    previous = signal.getsignal(signal.SIGINT)

    def on_ctrl_c(signum, frame):
        stopped.append(True)
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_ctrl_c)
    except ValueError:                   # not the main thread: nothing to notice here
        yield stopped
        return
    SplitAcrossCores.stopped = stopped
    try:
        yield stopped
    finally:
        signal.signal(signal.SIGINT, previous)


def run_checks_split(lessons, target: str = "lessons", exercises_only: bool = False,
                     test_timeout: float = DEFAULT_TEST_TIMEOUT) -> list[dict]:
    """``run_checks`` of many lessons on two cores: of the lessons with an exercise started, every
    other one (from the last, the slowest) in a second process; the rest in this one. The records
    of both. Lessons not started at all are not run (``untouched_records``)."""
    untouched = {lesson.id: found for lesson in lessons if (found := untouched_records(lesson, target)) is not None}
    lessons = sorted((lesson for lesson in lessons if lesson.id not in untouched), key=lambda lesson: lesson.id,
                     reverse=True)
    records = [record for found in untouched.values() for record in found]
    if not lessons:
        return records
    there = lessons[1::2]
    if not there:          # one lesson started: its tests on both cores
        return records + run_checks(lessons, target, exercises_only, test_timeout).records
    return records + _in_two_processes(lessons, there, target, exercises_only, test_timeout)


def untouched_records(lesson: manifest.Lesson, target: str) -> list[dict] | None:
    """A record per exercise saying it is not started, for a lesson whose every exercise is still the
    starter's and whose app.py imports: its tests need not run (or even be collected) to know that.
    None otherwise: then its tests run, and say what they find (an app.py that does not import too)."""
    from course.tools.loader import LessonLoadError, app_path, load_app_module, use_a_throwaway_secret
    from course.tools.results import NOT_STARTED_SIGN, not_started_in

    if not {ex.id for ex in lesson.exercises} <= not_started_in(app_path(target, lesson.slug), lesson.slug):
        return None
    use_a_throwaway_secret()             # as the checks would have (pytest_plugin): no deployment warning
    try:
        load_app_module(target, lesson.slug)
    except LessonLoadError:
        return None
    test_file = lesson.test_file.relative_to(ROOT).as_posix()
    return [{"nodeid": f"{test_file}::{ex.id}", "exercise": ex.id, "weight": 1, "outcome": "skipped",
             "message": f'{NOT_STARTED_SIGN} {ex.id} is the starter\'s, which raises todo("{ex.id}")',
             "duration": 0.0, "crash": None} for ex in lesson.exercises]


def _in_two_processes(lessons, there, target, exercises_only, test_timeout) -> list[dict]:
    """The records of ``lessons``: those of ``there`` from a second process, the others' from this one."""
    here = [lesson for lesson in lessons if lesson not in there]
    with tempfile.TemporaryDirectory(prefix="course-list-") as tmp:
        out = Path(tmp) / "records.json"
        child = subprocess.Popen([sys.executable, "-c", "import sys; from course.tools.cli import _records_to; "
                                  "_records_to(sys.argv[1:])", str(out), str(target), f"{test_timeout:g}",
                                  "1" if exercises_only else "0", *(lesson.id for lesson in there)],
                                 stdout=subprocess.DEVNULL)
        try:
            records = run_checks(here, target, exercises_only, test_timeout).records
        finally:
            child.wait()
        if out.exists():
            return records + json.loads(out.read_text(encoding="utf-8"))
    # The second process failed (it said why on stderr): its lessons are run here instead.
    return records + run_checks(there, target, exercises_only, test_timeout, split_cores=False).records


def _records_to(argv: list[str]) -> None:
    """The second process of ``run_checks_split``: ``OUT TARGET TIMEOUT EXERCISES_ONLY LESSON...``."""
    out, target, timeout, exercises_only, *ids = argv
    try:
        checked = run_checks([manifest.lesson(key) for key in ids], target, exercises_only == "1", float(timeout))
    except KeyboardInterrupt:           # the terminal's Ctrl-C reached this process too: the parent says "Stopped."
        raise SystemExit(130) from None
    Path(out).write_text(json.dumps(checked.records), encoding="utf-8")


STATE_STYLE = {"done": "green", "todo": "yellow", "fail": "red", "timeout": "red", "error": "red",
               "skip": "yellow", "none": "dim"}


def _points(found: list[ExerciseState]) -> int:
    return sum(s.exercise.points for s in found if s.state == "done")


# ---------------------------------------------------------------- check

def check(args) -> int:
    lesson = _lesson(args.lesson)
    style = Style(sys.stdout)
    if not lesson.test_file.exists():
        print(f"Lesson {lesson.id} has no checks yet (tests/{lesson.test_file.name} is missing).")
        return 2
    started = time.monotonic()
    checked = run_checks(lesson, args.target, test_timeout=args.test_timeout)
    records = checked.records
    print(style.bold(f"Lesson {lesson.id}: {lesson.title}") + f"   ({_where(args.target, lesson)})")
    if not records:
        return _nothing_ran(lesson, checked, args.target)
    problem = load_problem(records)
    if problem:
        return _does_not_load(problem, style, records)
    found = states(lesson, owned_timeouts(records), args.target)
    # A check that timed out comes first: the lesson's later checks ran with a short limit after it
    # (SkipAfterTimeout), and the exercise to fix is the one whose code never returned, whichever check reached it.
    timed_out = next((r for r in records if outcome(r) == "timeout"), None)
    owner = stuck_in(Crash.from_dict(timed_out["crash"])) if timed_out and timed_out.get("crash") else None
    blocking_id = owner.id if owner else timed_out and timed_out["exercise"]     # the owner first: its code loops
    blocking = next((s for s in found if s.exercise.id == blocking_id), None)
    print()
    title_width = max(len(s.exercise.title) for s in found)
    for s in found:
        state = "timeout" if s is blocking else s.state
        label = style.paint(f"{state:<7}", STATE_STYLE[state])
        print(f"  {label} {s.exercise.id} {s.exercise.title:<{title_width}}  "
              f"{s.passed}/{len(s.records)} checks")
    first = blocking or next((s for s in found if s.state != "done"), None)
    done = sum(s.state == "done" for s in found)
    summary = (f"{done} of {len(found)} exercises done, {_points(found)} of "
               f"{lesson.max_points} points ({time.monotonic() - started:.1f} s).")
    if first is not None:
        explain(first, style, timed_out, target=args.target)
        print("\n" + summary)
        return 1
    # A ready-made check skipped (no MongoDB server here, say) is not one that fails.
    other = [r for r in records if r["exercise"] is None and r["outcome"] in ("failed", "error")]
    if other:
        return _ready_made_parts_fail(other, style)
    _complete(lesson, summary, style)
    return 0


def _nothing_ran(lesson: manifest.Lesson, checked: Checked, target: str) -> int:
    print(f"\nNo checks ran for lesson {lesson.id}.")
    for error in checked.collect_errors[:1]:
        print("\n".join(error.splitlines()[-15:]))
    print(f"See pytest's own report: {python_command()} -m pytest {display(lesson.test_file)} --target {target}")
    return 2


def _does_not_load(problem: str, style: Style, records: list[dict]) -> int:
    print("\n" + style.red("Your app.py does not load, so nothing could be checked:"))
    for line in tidy_message(problem, max_lines=8):
        print("  " + line)
    if TIMED_OUT_SIGN in problem:
        print("  " + IMPORT_HANG)
    crash = next((Crash.from_dict(r["crash"]) for r in records if r.get("crash")), None)
    if crash is not None:                # where the import was when the time ran out, or when it ended
        lines = crash.lines()
        print(f"  {'Stuck:' if crash.stuck else 'Crashed:':<10} {lines[0]}")
        for line in lines[2:]:           # not the "while ..." line: it was the import
            print(f"             {line}")
    return 1


def _ready_made_parts_fail(other: list[dict], style: Style) -> int:
    print("\n" + style.yellow(f"Every exercise passes, but {len(other)} check(s) of the lesson's ready-made "
                              "parts fail (did you change code outside the exercises?):"))
    for record in other[:3]:
        print(f"  {record['nodeid'].split('::', 1)[-1]}: {tidy_message(record['message'])[0]}")
    return 1


def _complete(lesson: manifest.Lesson, summary: str, style: Style) -> None:
    print("\n" + style.green(f"Lesson {lesson.id} is complete.") + f" {summary}")
    print(f"Compare your code with the reference: {course_command('diff ' + lesson.id)}")
    following = [each for each in manifest.lessons() if each.id > lesson.id]
    if following:
        print(f"Next: lesson {following[0].id}, {following[0].title} (make check LESSON={following[0].id})")


def explain(state: ExerciseState, style: Style, record: dict | None = None, target: str = "lessons") -> None:
    """What to do next: the exercise, where (in ``target``'s app.py); the crash, if the code crashed;
    the check (``record``, or the exercise's first failing one); its hint."""
    ex = state.exercise
    room = max(40, width() - 14)
    print("\n" + style.bold(f"Next: exercise {ex.id}, {ex.title}"))
    print(f"  Edit:      {display(app_path(target, ex.lesson_slug))}, {ex.function}")
    failing = state.failing
    record = record or next((r for r in failing if r.get("crash")), failing[0] if failing else None)
    if record is None:                   # no check of it ran (a lesson whose tests were all lost, say)
        print("  No check of this exercise gave a result.")
        return
    number = 1
    if state.state == "todo" and record in failing:
        print(f"  Not started: the code still raises todo(\"{ex.id}\"); replace that line with your solution.")
    else:
        crash = Crash.from_dict(record["crash"]) if record.get("crash") else None
        if crash is not None:
            lines = crash.lines()
            print(f"  {'Stuck:' if crash.stuck else 'Crashed:':<11}{style.red(lines[0])}")
            for line in lines[1:]:
                print(f"             {line}")
        print(f"  Check:     {record['nodeid'].split('::', 1)[-1]}")
        lines = tidy_message(record["message"] or record["outcome"], max_lines=4, max_width=1200, wrap=room)
        # A crash says what happened; the check's message, what it wanted. But a function the check
        # called that raised has no other message than the crash's own, and a process that ended
        # or code that never returned wanted nothing: their message says what happened.
        if crash is not None and tidy_message(crash.error, max_lines=4, max_width=1200, wrap=room) == lines:
            lines = []
        expected = crash is not None and not crash.stuck and not record.get("ended")
        if lines:
            print(f"  {'Expected:' if expected else 'Happened:'}  {lines[0] if expected else style.red(lines[0])}")
        for line in lines[1:]:
            note = ""
            if "501" in line and line.lstrip().startswith("assert"):
                note = style.dim("   (501: a route that still raises todo(...))")
            print(f"             {line}{note}")
        number = ex.hint_for(record["nodeid"])
    if ex.hints:
        label = f"Hint {number}/{len(ex.hints)}:"
        text = textwrap.wrap(ex.hints[number - 1], room) or [""]
        print(f"  {label:<11}{text[0]}")
        for line in text[1:]:
            print(f"             {line}")
        if len(ex.hints) > 1:
            print(style.dim(f"             {'the hint for this check; ' if number > 1 else ''}"
                            f"all of them, one at a time: {course_command('hint ' + ex.id)}"))


def owned_timeouts(records: list[dict]) -> list[dict]:
    """``records``, where a check that timed out stuck in another exercise's code counts as not run to
    the end (a skip) for its own exercise: the timeout is the other's (``stuck_in``).

    A loop in 02.3's route is reached by 02.4's checks too, and the checks run in two to four
    processes, each of which waits out the time limit on its own: 02.4, correct, would show
    ``timeout`` beside 02.3.

    A timeout with no stuck line of the student's (the loop was in an app process the check started)
    is the known owner's too, when one timeout has one: the loop is most likely the same.
    """
    owners = {id(record): stuck_in(Crash.from_dict(record["crash"])) for record in records
              if outcome(record) == "timeout" and record.get("crash")}
    known = next((owner for owner in owners.values() if owner is not None), None)
    owned = []
    for record in records:
        owner = owners.get(id(record)) or (known if outcome(record) == "timeout" and not record.get("crash") else None)
        if owner is not None and owner.id != record["exercise"]:
            record = {**record, "outcome": "skipped",
                      "message": f"not run to the end: {STUCK_SIGN} {owner.id} timed out (this check reached its code)"}
        owned.append(record)
    return owned


def stuck_in(crash: Crash) -> manifest.Exercise | None:
    """The exercise that owns the function a stuck crash's innermost frame is in, when one does."""
    if not crash.stuck or not crash.frames:
        return None
    frame = crash.frames[-1]
    slug = Path(frame.file).parent.name                     # .../10_capstone/app.py
    owners = [ex for lesson in manifest.lessons() if lesson.slug == slug
              for ex in lesson.exercises if any(name.rsplit(".", 1)[-1] == frame.function for name in ex.names)]
    return owners[0] if len(owners) == 1 else None


# ---------------------------------------------------------------- list

def list_(args) -> int:
    style = Style(sys.stdout)
    lessons = list(manifest.lessons())
    started = time.monotonic()
    records = run_checks_split([each for each in lessons if each.test_file.exists()], args.target,
                               exercises_only=True, test_timeout=args.test_timeout)
    where = display(resolve_target(args.target))
    print(style.bold("The lessons, checked just now against your code") + f" ({where}/)\n")
    current = None
    total_done = total_ex = 0
    title_width = max(len(lesson.title) for lesson in lessons)
    for lesson in lessons:
        mine = [r for r in records if lesson_slug(r["nodeid"]) == lesson.slug]
        found = states(lesson, owned_timeouts(mine), args.target)
        done = sum(s.state == "done" for s in found)
        total_done += done
        total_ex += len(found)
        here = lesson.test_file.exists() and current is None and done < len(found)
        current = lesson if here else current
        _list_lesson(lesson, found, load_problem(mine), title_width, here, style)
    print(f"\n{total_done} of {total_ex} exercises done ({time.monotonic() - started:.1f} s).")
    if current:
        print(f"Next: make check LESSON={current.id}   (or, to check on every save: make watch LESSON={current.id})")
    return 0


def _list_lesson(lesson: manifest.Lesson, found: list[ExerciseState], problem: str, title_width: int,
                 here: bool, style: Style) -> None:
    """The lesson's line (with "you are here" on the first not complete), then its exercises or its problem."""
    done = sum(s.state == "done" for s in found)
    line = (f"{lesson.id} {lesson.title:<{title_width}} {bar(done, len(found), 10)} {done}/{len(found)} "
            f"exercises  {_points(found)}/{lesson.max_points} points")
    if not lesson.test_file.exists():
        line = f"{lesson.id} {lesson.title:<{title_width}} (no checks yet)"
    if here:
        line += "  " + style.cyan("<- you are here")
    print(style.bold(line) if here else line)
    if problem:
        print("     " + style.red(tidy_message(problem)[0]))
        return
    for s in found:
        print(f"     {style.paint(f'{s.state:<7}', STATE_STYLE[s.state])} {s.exercise.id} {s.exercise.title}")


# ---------------------------------------------------------------- hint

def cache_file(name: str) -> Path:
    """A file of the student's that is not progress (how far the hints have gone, how long each check
    took last time): in the venv (``make clean`` resets it with the venv), else the user's cache;
    in ``COURSE_CACHE_DIR`` when that is set (the course's own tests)."""
    if os.environ.get("COURSE_CACHE_DIR"):
        return Path(os.environ["COURSE_CACHE_DIR"]) / name
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / f"course-{name}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "web-sessions-course" / name


def hints_file() -> Path:
    """Where the hint counters live: not progress, just how far each exercise's hints have gone."""
    if os.environ.get("COURSE_HINTS_FILE"):
        return Path(os.environ["COURSE_HINTS_FILE"])
    return cache_file("hints.json")


def read_durations() -> dict[str, float]:
    """Each check's time in its last run (test id -> seconds), to balance the next split; {} if none."""
    try:
        data = json.loads(cache_file("durations.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, (int, float))} \
        if isinstance(data, dict) else {}


def write_durations(records: list[dict]) -> None:
    """Remember the records' times (best effort: a read-only venv keeps none). Only of tests that ran:
    a check skipped as not started takes no time, and would make the lesson look short next time.
    A failure's time only ever raises the one kept: a check that fails at its first request (work
    not done yet) says nothing of what it costs once it passes."""
    durations = read_durations()
    for record in records:           # a timeout's time is the limit's, not its own
        seconds, known = record.get("duration"), durations.get(record["nodeid"], 0.0)
        if outcome(record) == "timeout" or not isinstance(seconds, (int, float)):
            continue
        if record.get("outcome") == "passed":
            durations[record["nodeid"]] = seconds
        elif record.get("outcome") == "failed":
            durations[record["nodeid"]] = max(seconds, known)
    path = cache_file("durations.json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(durations), encoding="utf-8")
        os.replace(partial, path)              # two checks at once: one of them wins, whole
    except OSError:
        pass


def _read_counters(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def hint(args) -> int:
    style = Style(sys.stdout)
    ex = _exercise_to_hint(args)
    if ex is None:
        return 0
    path = hints_file()
    counters = _read_counters(path)
    if args.reset:
        counters.pop(ex.id, None)
        print(f"Hints of {ex.id} start again from the first.")
        _write_counters(path, counters)
        return 0
    shown = len(ex.hints) if args.all else min(int(counters.get(ex.id, 0)) + 1, len(ex.hints))
    counters[ex.id] = max(shown, int(counters.get(ex.id, 0)))
    _write_counters(path, counters)
    print(style.bold(f"Exercise {ex.id}: {ex.title}"))
    print(f"Edit {ex.app_path}, {ex.function}.\n")
    for number, text in enumerate(ex.hints[:shown], start=1):
        print(f"Hint {number} of {len(ex.hints)}: {text}\n")
    if shown < len(ex.hints):
        print(style.dim(f"Run `{course_command('hint ' + ex.id)}` again for hint {shown + 1} of {len(ex.hints)}."))
    else:
        diff = course_command("diff " + ex.id.split(".")[0])
        print(style.dim(f"That was the last hint. After the lesson passes, `{diff}` shows the reference "
                        "beside your code."))
    return 0


def _exercise_to_hint(args) -> manifest.Exercise | None:
    """``NN.K``, or for a lesson ``NN`` its first exercise not done (None: the lesson is complete)."""
    if "." in args.exercise:
        try:
            return manifest.exercise(args.exercise)
        except LookupError as exc:
            raise SystemExit(str(exc)) from None
    lesson = _lesson(args.exercise)
    records = run_checks(lesson, args.target, exercises_only=True, test_timeout=args.test_timeout).records
    pending = next((s for s in states(lesson, records, args.target) if s.state != "done"), None)
    if records and pending is None:
        print(f"Lesson {lesson.id} is complete: no hint needed. "
              f"Compare with the reference: {course_command('diff ' + lesson.id)}")
        return None
    return pending.exercise if pending else lesson.exercises[0]


def _write_counters(path: Path, counters: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(counters, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except OSError:
        pass                                                # read-only: every call shows the first hint


# ---------------------------------------------------------------- diff

def diff(args) -> int:
    style = Style(sys.stdout)
    lesson = _lesson(args.lesson)
    mine = resolve_target(args.target) / lesson.slug / "app.py"
    reference = ROOT / "solutions" / lesson.slug / "app.py"
    if not mine.exists():
        print(f"{display(mine)} does not exist.")
        return 2
    records = run_checks(lesson, args.target, exercises_only=True, test_timeout=args.test_timeout).records
    to_go = [s.exercise.id for s in states(lesson, records, args.target) if s.state != "done"]
    if not records or to_go:
        print(f"Not yet: the reference for lesson {lesson.id} is shown once your code passes every exercise, "
              f"so it cannot give away what you are still working out.")
        if to_go:
            print(f"Still to do: {', '.join(to_go)}. Run make check LESSON={lesson.id} to see the next step.")
        return 1
    ours = mine.read_text(encoding="utf-8").splitlines()
    theirs = reference.read_text(encoding="utf-8").splitlines()
    if ours == theirs:
        print(f"Your {display(mine)} is the same as the reference, line for line.")
        return 0
    print(style.bold(f"Lesson {lesson.id} passes. Your code beside the reference (both work; "
                     "read how they differ):") + "\n")
    if args.side_by_side:
        lines = side_by_side(ours, theirs, display(mine), display(reference), width(), style)
    else:
        lines = unified(ours, theirs, display(mine), display(reference), style)
    for line in lines:
        print(line)
    return 0


def unified(ours, theirs, left_name, right_name, style):
    """A unified diff (yours, then the reference), coloured on a terminal."""
    for line in difflib.unified_diff(ours, theirs, f"yours: {left_name}", f"reference: {right_name}",
                                     lineterm="", n=3):
        if line.startswith(("+++", "---")):
            yield style.bold(line)
        elif line.startswith("@@"):
            yield style.cyan(line)
        elif line.startswith("+"):
            yield style.green(line)
        elif line.startswith("-"):
            yield style.red(line)
        else:
            yield line


def side_by_side(ours, theirs, left_name, right_name, total_width, style, context=2):
    """Changed blocks in two columns (yours | reference), with a little context around each."""
    column = (total_width - 3) // 2

    def cell(text):
        text = text.expandtabs(4)
        return text[:column - 1] + "…" if len(text) > column else text.ljust(column)

    yield style.bold(cell(f"yours: {left_name}") + " | " + cell(f"reference: {right_name}"))
    matcher = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        yield style.cyan(f"@@ yours line {group[0][1] + 1}, reference line {group[0][3] + 1}")
        for tag, i1, i2, j1, j2 in group:
            left, right = ours[i1:i2], theirs[j1:j2]
            for k in range(max(len(left), len(right))):
                a = left[k] if k < len(left) else ""
                b = right[k] if k < len(right) else ""
                mark = " | " if tag == "equal" else " < " if not b else " > " if not a else " ≠ "
                if tag == "equal":
                    yield cell(a) + mark + b[:column]
                else:
                    yield style.red(cell(a)) + mark + style.green(b[:column])


# ---------------------------------------------------------------- watch

def watch(args) -> int:
    style = Style(sys.stdout)
    lesson = _lesson(args.lesson) if args.lesson else _lesson_with_todo(args.target)
    if lesson is None:
        return 0
    folder = resolve_target(args.target) / lesson.slug
    command = [sys.executable, "-m", "course", "check", lesson.id, "--target", str(args.target),
               "--test-timeout", f"{args.test_timeout:g}"]
    clear = sys.stdout.isatty()
    child = None
    runs = 0

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)          # stopped from outside: still stop the check it runs
    try:
        while True:
            before = snapshot(folder, "*")
            if clear:
                sys.stdout.write("\033[2J\033[H")
            print(style.dim(f"[{time.strftime('%H:%M:%S')}] checking lesson {lesson.id}..."), flush=True)
            child = subprocess.Popen(command, start_new_session=True)
            child.wait()
            child = None
            runs += 1
            print(style.dim(f"\nWatching {display(folder)}/ for saved changes (polling every {args.interval:g} s, "
                            "so it works on any file system). Ctrl-C to stop."), flush=True)
            if args.max_runs and runs >= args.max_runs:
                return 0
            _wait_for_change(folder, before, args.interval)
    except KeyboardInterrupt:
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            child.wait()
        print("\nStopped watching.")
        return 0


def _lesson_with_todo(target: str) -> manifest.Lesson | None:
    """The lesson being worked on: the first whose app.py still has a todo (None, with a note: none has)."""
    ready = [each for each in manifest.lessons() if each.test_file.exists()]
    lesson = next((each for each in ready if unfinished(resolve_target(target) / each.slug / "app.py")), None)
    if lesson is None:
        print("No lesson has a todo(...) left. Watch one anyway: make watch LESSON=NN")
    else:
        print(f"Watching lesson {lesson.id}, the first with a todo(...) left (another: make watch LESSON=NN).")
    return lesson


def _wait_for_change(folder: Path, before: dict, interval: float) -> None:
    """Poll every ``interval`` seconds until a file in ``folder`` changes (its time or size)."""
    time.sleep(interval)
    while snapshot(folder, "*") == before:
        time.sleep(interval)
    time.sleep(min(interval, 0.2))               # let an editor finish writing


# ---------------------------------------------------------------- grade

def grade(args) -> int:
    from course.tools.grading import batch, report

    started = time.monotonic()
    lessons = [part for item in (args.lessons or []) for part in item.split(",") if part.strip()]
    try:
        students = batch.grade(args.submissions, Path(args.out), jobs=args.jobs, timeout=args.timeout,
                               test_timeout=args.test_timeout, lessons=lessons or None,
                               progress=not args.no_progress, merge=args.merge,
                               fair_credit=not args.no_fair_credit, unsafe=args.unsafe_no_sandbox,
                               trust_services=args.trust_services)
    except batch.GradeError as exc:
        raise SystemExit(f"grade: {exc}") from None
    except KeyboardInterrupt:
        print("\nStopped: every running submission was killed; nothing was written.", file=sys.stderr)
        return 130
    report.print_totals(students, Path(args.out), started)
    failed = [s.name for s in students if s.run.status == "grader error"]
    if failed:
        print(f"grade: the grader itself failed on {len(failed)} submission(s) ({', '.join(failed)}): their grades "
              "are not valid. The traceback is in logs/NAME.log; grade them again with --merge once it is fixed.",
              file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- freeze

def freeze(args) -> int:
    lock = teeth.freeze()
    print(f"Recorded {len(lock)} starters in {display(teeth.STARTERS_LOCK)}.")
    return 0


# ---------------------------------------------------------------- bench

def bench_arguments(parser) -> None:
    from course.tools import bench as bench_module
    bench_module.add_arguments(parser)


def bench(args) -> int:
    """``python -m course bench LESSON --store URL``: course/tools/bench.py does the work."""
    from course.tools import bench as bench_module
    return bench_module.command(args)


# ---------------------------------------------------------------- mutate

def mutate_arguments(parser) -> None:
    from course.tools import mutate as mutate_module
    mutate_module.add_arguments(parser)


def mutate(args) -> int:
    """``python -m course mutate --lesson NN | --kit MODULE``: course/tools/mutate.py does the work."""
    from course.tools import mutate as mutate_module
    return mutate_module.command(args)
