"""The student's loop: edit, save, the server reloads, ``check`` answers in seconds and says why.

A crash in the student's code is shown as a crash (the exception, their own line, the request);
a failing check shows the hint written for it; an exercise still at the starter's code is todo
without running anything; ``run`` restarts on save and passes a lesson's options; every failure of
a command is one line saying what to do, never a traceback. Each test works on a copy of its own
(``--target``), built from the course now (tests/fixtures/submissions.py); none touches lessons/.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from course import ROOT
from course.lesson import manifest
from course.tools.results import not_started
from tests.fixtures import submissions as build

SLUG = "01_raw_cookies"
CRASHING_VISITS = """
    sent = request.get_cookie("visits")
    counts = {"1": 1}
    count = counts[sent] + 1 if sent else 1
    response.set_cookie("visits", str(count), path="/", max_age=ONE_YEAR, httponly=True)
    return text(f"You have visited {count} times")
"""


def course(*args, env=None, timeout=120, **kwargs):
    environment = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "course", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=environment, **kwargs)


def flat(text: str) -> str:
    """Text with every run of whitespace as one space: wrapped lines compare as one."""
    return " ".join(text.split())


def exercise_rows(out: str, lesson: str) -> dict[str, tuple[str, str]]:
    """check's table of lesson ``lesson``: exercise id -> (state, "passed/checks")."""
    rows = {}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("  ") and len(words) > 2 and words[1].startswith(f"{lesson}.") and words[-1] == "checks":
            rows[words[1]] = (words[0], words[-2])
    return rows


def line_of(path, needle: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


# ---------------------------------------------------------------- a crash is a crash

def test_a_crash_in_a_route_shows_the_exception_the_students_line_and_the_request(tmp_path):
    app = build.patched(tmp_path, SLUG, function="visits", body=CRASHING_VISITS)
    proc = course("check", "01", "--target", tmp_path)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "Crashed:   KeyError: 'abc'" in out, out
    assert f"{app}, line {line_of(app, 'counts[sent]')}, in visits" in out
    assert "count = counts[sent] + 1 if sent else 1" in out, "the student's own line is shown"
    assert "while answering GET /visits  (Cookie: visits=abc)" in out, "the request that crashed"
    assert "frames of the course and its libraries folded" in out and "bottle.py" not in out
    assert out.index("Crashed:") < out.index("Check:") < out.index("Expected:") < out.index("Hint ")
    assert "Traceback" not in out + proc.stderr
    assert f"Edit:      {app}, route GET /visits" in out, "the file to edit is the one checked (--target)"


def test_a_crash_names_the_students_module_as_its_file_not_the_loaders_name_for_it(tmp_path):
    build.patched(tmp_path, SLUG, function="visits", body="""
        import sys
        return sys.modules[__name__].no_such_thing
    """)
    out = course("check", "01", "--target", tmp_path).stdout
    assert f"AttributeError: module '{SLUG}/app.py' has no attribute 'no_such_thing'" in out, out
    assert "course_target_" not in out


def test_a_crash_in_a_function_the_check_calls_shows_its_line(tmp_path):
    app = build.patched(tmp_path, SLUG, function="read_count", body="""
        if value and value.isascii() and value.isdigit():
            return int(value) if int(value) <= MAX_VISITS else 0
        return 0
    """)
    proc = course("check", "01", "--target", tmp_path)
    out = proc.stdout
    assert "fail    01.1" in out, out
    assert "Crashed:   ValueError: Exceeds the limit (4300 digits)" in out
    assert "in a function the check called directly" in out
    assert f"{app}, line {line_of(app, 'return int(value) if')}, in read_count" in out
    assert "[4301 digits]" in out


@pytest.mark.parametrize("ending, how", [
    ("os._exit(0)", "the code under test called os._exit(0)"),
    ("os.kill(os.getpid(), signal.SIGKILL)", "it was killed by signal 9 (SIGKILL)"),
    ("os.abort()", "it was killed by signal 6 (SIGABRT)"),
])
def test_code_that_ends_the_checks_process_is_reported_and_the_other_checks_still_run(tmp_path, ending, how):
    # Once, check printed nothing at all and exited 0: the student's os._exit ended the process that
    # prints the verdict. The checks run in forked children; the one that ends is reported by its parent.
    app = build.patched(tmp_path, SLUG, function="visits", body=f"""
        import os, signal
        {ending}
    """)
    proc = course("check", "01", "--target", tmp_path)
    out = flat(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"The process running this check ended during it: {how}" in out, proc.stdout
    assert "done 01.1" in out and "Next: exercise 01.2" in out, "the checks that do not reach it still pass"
    crashed = {"os._exit(0)": "os._exit(0) ended the process", "os.abort()": "Fatal Python error: Aborted"}
    if ending in crashed:                        # the student's line, shown as a crash (a SIGKILL has none)
        assert f"Crashed: {crashed[ending]}" in out, proc.stdout
        assert f"{app}, line {line_of(app, ending)}, in visits" in out
    if ending.startswith("os._exit"):
        assert "while answering GET /visits" in out
    if ending == "os.abort()":                   # the request died with the process; that it was one did not
        assert "while answering a request (which one went with the process that ended)" in out, proc.stdout
    assert "called directly" not in out, "it was a route, not a function the check called"
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Fatal Python error" not in proc.stderr, "faulthandler's dump of every thread is not for the student"


@pytest.mark.parametrize("function", ["visits", "read_count"])        # a route; a function the check calls
def test_sys_exit_in_the_students_code_is_a_crash_with_its_line(tmp_path, function):
    app = build.patched(tmp_path, SLUG, function=function, body="""
        import sys
        sys.exit(3)
    """)
    out = flat(course("check", "01", "--target", tmp_path).stdout)
    assert "Crashed: SystemExit: 3" in out and f"{app}, line {line_of(app, 'sys.exit(3)')}, in {function}" in out, out


@pytest.mark.parametrize("slug, mistake, error, line", [
    ("03_session_ids", ("self.store.get(sid)", "self.stor.get(sid)"),
     "AttributeError: 'SessionMiddleware' object has no attribute 'stor'", "data = self.stor.get(sid)"),
    ("04_session_options", ("return self.rolling or (", "return self.send_cookie(session) or ("),
     "RecursionError: maximum recursion depth exceeded", "return self.send_cookie(session) or ("),
])
def test_a_bug_in_the_students_session_code_is_a_crash_never_the_store_being_down(tmp_path, slug, mistake,
                                                                                  error, line):
    app = build.solved(tmp_path, slug)
    app.write_text(app.read_text().replace(*mistake, 1))
    proc = course("check", slug[:2], "--target", tmp_path)
    out = proc.stdout
    assert f"Crashed:   {error}" in out, out
    assert line in out, "the student's own line is shown"
    if error.startswith("RecursionError"):          # hundreds of the student's own frames: not the course's
        assert "more calls of your code before these: a function that calls itself without end?" in out, out
        folded = int(out.split(" frames of the course and its libraries folded")[0].rsplit("(", 1)[1])
        assert folded < 20, out
    assert "Session store unavailable" not in out + proc.stderr and "session store error" not in out + proc.stderr


def test_an_endless_loop_is_the_timeout_of_the_exercise_it_is_in_and_the_checks_reaching_it_stop_soon(tmp_path):
    # Every login of lesson 10 asks 10.3's login_wait; the first check to reach the loop is a ready-made
    # one. Each later check would wait out its own limit (four minutes in all), and blame its own exercise:
    # after the first, a check still running after a second is not run to the end (a skip).
    app = build.patched(tmp_path, "10_capstone", function="login_wait", body="""
        while True:
            pass
    """)
    proc = course("check", "10", "--target", tmp_path, "--test-timeout", "3")
    out = proc.stdout
    rows = {exercise: state for exercise, (state, _) in exercise_rows(out, "10").items()}
    assert rows.pop("10.3") == "timeout", out
    assert set(rows.values()) <= {"skip", "done"} and "skip" in rows.values(), (
        f"the checks that reach the loop again are not run to the end, and no other exercise is a timeout: {rows}")
    assert "Next: exercise 10.3" in out and "Stuck:     still running after 3 s" in out, out
    assert f"{app}, line {line_of(app, 'while True:')}, in login_wait" in out, "where the code is stuck"
    assert "while answering POST /login" in out, "the request that never got its answer"
    assert "Traceback" not in out + proc.stderr and "Exception occurred" not in proc.stderr, proc.stderr[-2000:]


def test_a_loop_reached_by_another_exercises_checks_is_only_its_own_exercises_timeout(tmp_path):
    # 02.4's checks visit 02.3's /visits too. Each of check's processes meets the loop on its own, and
    # most checks' requests give up after 5 s, before the 10 s limit: those were failures that did not
    # stop the spinning thread, and check took over three minutes, with 02.4 shown as a timeout.
    build.patched(tmp_path, "02_signed_cookies", function="visits", body="""
        while True:
            pass
    """)
    started = time.monotonic()
    proc = course("check", "02", "--target", tmp_path)
    took = time.monotonic() - started
    out = proc.stdout
    assert "timeout 02.3" in out and "Next: exercise 02.3" in out, out
    assert "done    02.1" in out and "done    02.2" in out, out
    assert "timeout 02.4" not in out and "skip    02.4" in out, "02.4 reached 02.3's loop: not run to the end"
    assert "Stuck:" in out and "while True:" in out, out
    assert took < 60, f"check took {took:.0f} s"


def _running_with(text: str) -> list[str]:
    """The command lines of the processes running now that contain ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                line = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.isdigit() and text in line and int(entry) != os.getpid():
            found.append(line)
    return found


def test_a_loop_in_the_code_every_check_reaches_ends_soon_and_leaves_no_process(tmp_path):
    # Every check of lesson 08 reaches store_options, and some start app processes (forks) that loop
    # in it too: check took 75-130 s, every exercise was a timeout, and those processes spun on for ever.
    build.patched(tmp_path, "08_store_backends", function="store_options", body="""
        while url:
            pass
    """)
    started = time.monotonic()
    proc = course("check", "08", "--target", tmp_path, "--test-timeout", "3")
    took = time.monotonic() - started
    rows = {exercise: state for exercise, (state, _) in exercise_rows(proc.stdout, "08").items()}
    assert rows.pop("08.1") == "timeout" and set(rows.values()) == {"skip"}, proc.stdout
    assert took < 40, f"check took {took:.0f} s"
    time.sleep(0.5)
    assert not _running_with(str(tmp_path)), "a process of the check's is still running"


def test_an_endless_loop_in_code_the_checks_run_in_threads_ends_in_a_timeout(tmp_path):
    # 09.3's check calls add_one from eight threads: leaving its thread pool waited for them, for ever.
    build.patched(tmp_path, "09_concurrency", function="add_one", body="""
        while key:
            pass
    """)
    proc = course("check", "09", "--target", tmp_path, "--test-timeout", "3", timeout=120)
    assert proc.returncode == 1 and "timeout 09.3" in proc.stdout, proc.stdout


def test_a_loop_in_one_exercises_function_is_that_exercises_timeout_whichever_check_met_it(tmp_path):
    # A loop in 05.2's refuse_unknown_id, first met by a check of 05.1: 05.1 was shown as the timeout.
    app = build.patched(tmp_path, "05_beaker", function="refuse_unknown_id", body="""
        while session:
            pass
    """)
    proc = course("check", "05", "--target", tmp_path, "--test-timeout", "3")
    out = proc.stdout
    assert "timeout 05.2" in out and "Next: exercise 05.2" in out, out
    assert "timeout 05.1" not in out and f"Edit:      {app}, function refuse_unknown_id" in out, out


def test_a_process_the_students_code_starts_and_leaves_is_ended_with_the_check(tmp_path):
    build.patched(tmp_path, SLUG, function="forget", body="""
        import subprocess
        subprocess.Popen(["sleep", "317.25"])
        response.set_cookie("visits", "", path="/", max_age=0, expires=0)
        return text("Forgotten.")
    """)
    course("check", "01", "--target", tmp_path)
    time.sleep(0.5)
    assert not _running_with("sleep 317.25"), "the check left the student's process running"


def test_a_loop_the_time_limit_cannot_interrupt_is_ended_by_checks_parent_and_shown(tmp_path):
    # A loop inside C code holds the interpreter: the limit's signal handler never runs, and check
    # waited for ever, printing nothing.
    app = build.patched(tmp_path, SLUG, function="read_count", body="""
        if value == "abc":
            sum(range(10 ** 18))
        return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else 0
    """)
    proc = course("check", "01", "--target", tmp_path, "--test-timeout", "2", timeout=90)
    out = flat(proc.stdout)
    assert proc.returncode == 1 and "past the check's own time limit, which could not stop it" in out, proc.stdout
    assert f"{app}, line {line_of(app, 'sum(range(10 ** 18))')}, in read_count" in out, "where it was stuck"
    assert "done 01.4" in out and "Fatal Python error" not in proc.stderr


def test_a_check_whose_result_is_lost_is_still_reported(tmp_path):
    # Code that closes every file number it finds closed the check's own files: 11 checks vanished,
    # and an exercise with no record left made check print an IndexError traceback.
    build.patched(tmp_path, SLUG, function="read_count", body="""
        import os
        if value == "abc":
            for fd in range(3, 21):
                try:
                    os.close(fd)
                except OSError:
                    pass
        return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else 0
    """)
    proc = course("check", "01", "--target", tmp_path)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    counts = {exercise: checks for exercise, (_, checks) in exercise_rows(proc.stdout, "01").items()}
    assert counts["01.1"].endswith("/18") and counts["01.2"].endswith("/16"), f"every check has a verdict: {counts}"


def test_a_keyboardinterrupt_the_students_code_raises_is_a_crash_not_a_ctrl_c(tmp_path):
    # It was taken for the student's Ctrl-C: "Stopped.", and no verdict at all.
    app = build.patched(tmp_path, SLUG, function="read_count", body="""
        if value == "abc":
            raise KeyboardInterrupt
        return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else 0
    """)
    proc = course("check", "01", "--target", tmp_path)
    out = flat(proc.stdout)
    assert proc.returncode == 1 and "Stopped." not in proc.stderr, proc.stdout + proc.stderr
    assert "the code under test raised KeyboardInterrupt" in out and "Crashed: KeyboardInterrupt" in out, out
    assert f"{app}, line {line_of(app, 'raise KeyboardInterrupt')}, in read_count" in out
    assert "done 01.4" in out, "the other checks still run"


def test_sys_exit_at_import_is_an_app_py_that_does_not_load(tmp_path):
    build.patched(tmp_path, SLUG, prepend="import sys\nsys.exit('bye')")
    out = course("check", "01", "--target", tmp_path).stdout
    assert "Your app.py does not load" in out and "SystemExit: bye" in out, out


def test_os_exit_at_import_is_reported_as_the_import_not_as_a_function_the_check_called(tmp_path):
    app = build.patched(tmp_path, SLUG, prepend="import os\nos._exit(4)")
    out = flat(course("check", "01", "--target", tmp_path).stdout)
    assert "Your app.py does not load" in out and "Crashed: os._exit(4) ended the process" in out, out
    assert f"{app}, line {line_of(app, 'os._exit(4)')}, in <module>" in out, out
    assert "called directly" not in out, out


def test_a_crash_without_a_request_says_where_it_was_when_its_stack_tells():
    from course.tools.crashes import from_entries

    app = str(ROOT / "lessons" / SLUG / "app.py")
    at_import = from_entries([("/usr/lib/python3/runpy.py", 1, "run"), (app, 2, "<module>")], ROOT / "lessons", "x")
    assert at_import.lines()[1] == "while the lesson's app.py was being imported"
    in_a_route = from_entries([(str(ROOT / "course/tools/crashes.py"), 250, "__call__"), (app, 40, "visits")],
                              ROOT / "lessons", "Fatal Python error: Aborted")
    assert in_a_route.lines()[1] == "while answering a request (which one went with the process that ended)"
    called = from_entries([(str(ROOT / "tests/test_01_raw_cookies.py"), 9, "test_x"), (app, 30, "read_count")],
                          ROOT / "lessons", "x")
    assert called.lines()[1] == "in a function the check called directly"


def test_plain_pytest_shows_the_crash_under_the_failure_too(tmp_path):
    build.patched(tmp_path, SLUG, function="visits", body=CRASHING_VISITS)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist",
                           "tests/test_01_raw_cookies.py", "--target", str(tmp_path), "-x",
                           "-k", "garbage_visits_cookie"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    section = proc.stdout.split("crash in the code under test", 1)[1]
    assert "KeyError: 'abc'" in section and "count = counts[sent] + 1 if sent else 1" in section


def test_a_check_that_fails_without_a_crash_shows_no_crash(tmp_path):
    app = build.solved(tmp_path, SLUG)
    app.write_text(app.read_text().replace("max_age=ONE_YEAR, httponly=True", "max_age=ONE_YEAR"))
    proc = course("check", "01", "--target", tmp_path)
    assert "Happened:" in proc.stdout and "Crashed:" not in proc.stdout


# ---------------------------------------------------------------- the hint written for the check

def test_a_failing_check_shows_the_hint_written_for_it(tmp_path):
    app = build.solved(tmp_path, SLUG)
    app.write_text(app.read_text().replace("max_age=ONE_YEAR, httponly=True", "max_age=ONE_YEAR"))
    proc = course("check", "01", "--target", tmp_path)
    ex = manifest.exercise("01.2")
    number = ex.hint_for("tests/test_01_raw_cookies.py::test_visits_cookie_has_path_max_age_and_httponly")
    assert number == 2
    assert "Check:     test_visits_cookie_has_path_max_age_and_httponly" in proc.stdout
    assert f"Hint 2/{len(ex.hints)}:" in proc.stdout and flat(ex.hints[1]) in flat(proc.stdout)
    assert flat(ex.hints[0]) not in flat(proc.stdout), "not hint 1 whatever failed"


def test_another_failing_check_of_the_same_exercise_shows_another_hint(tmp_path):
    build.patched(tmp_path, SLUG, function="forget", body="""
        response.delete_cookie("visits", path="/forget")
        return text("Forgot your visits")
    """)
    proc = course("check", "01", "--target", tmp_path)
    ex = manifest.exercise("01.3")
    assert "fail    01.3" in proc.stdout
    assert "Check:     test_forget" in proc.stdout
    shown = [number for number, hint in enumerate(ex.hints, start=1) if flat(hint) in flat(proc.stdout)]
    assert len(shown) == 1
    failing = proc.stdout.split("Check:     ", 1)[1].split()[0]
    assert shown[0] == ex.hint_for(failing)


# ---------------------------------------------------------------- not started: todo at once

def test_an_exercise_still_at_the_starters_code_is_not_started_and_a_changed_one_is():
    starter = build.starter_text("03_session_ids")
    every = {ex.id for ex in manifest.lesson("03").exercises}
    assert not_started(starter, starter) == every
    reformatted = starter.replace('raise todo("03.4")', "raise todo(  '03.4'  )  # not yet")
    assert "03.4" in not_started(reformatted, starter), "layout and comments do not count"
    one_method = build.with_body(starter, "touch", "return None")
    assert "03.1" not in not_started(one_method, starter), "one of 03.1's seven methods is changed"
    assert not_started(build.solution_text("03_session_ids"), starter) == set()
    assert not_started("def broken(:", starter) == set()
    twice = starter + "\n\ndef new_session_id():\n    return 'x'\n"
    assert "03.2" not in not_started(twice, starter), "a function defined again is not the starter's"


def test_lesson_08s_untouched_starter_is_todo_in_seconds_without_a_timeout(tmp_path):
    build.starter(tmp_path, "08_store_backends")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = course("check", "08", "--target", tmp_path)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for ex in manifest.lesson("08").exercises:
        assert f"todo    {ex.id}" in proc.stdout
    assert "timeout" not in proc.stdout
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 8, f"check 08 on the starter took {cpu:.1f} s of CPU: no server should start"


RECORDS_OF_CHECK = """
import json, sys
from course.lesson import manifest
from course.tools.cli import run_checks
records = run_checks(manifest.lesson(sys.argv[1]), sys.argv[2]).records
print(json.dumps([[r["exercise"], r["outcome"], r.get("message") or ""] for r in records]))
"""


def records_of_check(lesson_id: str, target) -> list[list]:
    proc = subprocess.run([sys.executable, "-c", RECORDS_OF_CHECK, lesson_id, str(target)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_ready_made_checks_wait_until_every_exercise_is_started(tmp_path):
    # check shows the ready-made parts' results only once every exercise passes, and many of them
    # need the exercises: while one is still the starter's they are not run (lesson 10's took 2 s).
    ids = [ex.id for ex in manifest.lesson("05").exercises]
    build.partly(tmp_path / "partly", "05_beaker", done=ids[:-1])
    waiting = records_of_check("05", tmp_path / "partly")
    ready_made = [r for r in waiting if r[0] is None]
    assert ready_made and all(r[1] == "skipped" and ids[-1] in r[2] for r in ready_made), ready_made
    assert all(r[1] != "skipped" for r in waiting if r[0] in ids[:-1]), "the started exercises are checked"
    build.solved(tmp_path / "solved", "05_beaker")
    done = [r for r in records_of_check("05", tmp_path / "solved") if r[0] is None]
    assert len(done) == len(ready_made) and all(r[1] == "passed" for r in done), done


def test_an_app_py_that_never_finishes_importing_shows_the_line_it_is_stuck_on(tmp_path):
    app = build.patched(tmp_path, SLUG, prepend="""
        import time
        while True:
            time.sleep(0.1)
    """)
    proc = course("check", "01", "--target", tmp_path, "--test-timeout", "2")
    out = proc.stdout
    assert proc.returncode == 1 and "Your app.py does not load" in out and "Importing app.py did not finish" in out
    assert "Stuck:     still running after 2 s" in out, out
    assert f"{app}, line 3, in <module>" in out and "time.sleep(0.1)" in out, out


def test_a_starter_that_does_not_import_still_says_so(tmp_path):
    app = build.starter(tmp_path, SLUG)
    app.write_text(app.read_text() + "\nraise RuntimeError('a line outside the exercises')\n")
    proc = course("check", "01", "--target", tmp_path)
    assert "does not load" in proc.stdout and "a line outside the exercises" in proc.stdout


def test_list_on_untouched_starters_is_todo_everywhere_and_quick(tmp_path):
    for lesson in manifest.lessons():
        build.starter(tmp_path, lesson.slug)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    without_secret = {key: value for key, value in os.environ.items() if key != "SESSION_SECRET"}
    proc = subprocess.run([sys.executable, "-m", "course", "list", "--target", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**without_secret, "NO_COLOR": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr
    for lesson in manifest.lessons():
        for ex in lesson.exercises:
            assert f"todo    {ex.id}" in proc.stdout
    # A student has no SESSION_SECRET: the lessons' deployment warning, printed at their import, is not
    # for a check (list printed it five times, once for each untouched lesson from 06 on).
    assert "Warning" not in proc.stderr, proc.stderr
    # CPU seconds, not wall time: the same on a loaded machine. Untouched starters start no server
    # and run no check body (about 2-4 s of CPU, mostly pytest collecting the test files).
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 12, f"course list on untouched starters took {cpu:.1f} s of CPU: a check ran that need not"


# ---------------------------------------------------------------- run: reload on save, options

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    """``python -m course run ...`` in the background, its output collected."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "course", "run", *map(str, args)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "NO_COLOR": "1"}, start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                       daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, times: int = 1, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while self.output.count(text) < times:
            assert time.monotonic() < deadline, f"no {text!r} within {seconds} s:\n{self.output}"
            assert self.proc.poll() is None or self.output.count(text) >= times, self.output
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)        # Ctrl-C reaches the whole group
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode


def test_run_restarts_the_server_when_the_lesson_is_saved(tmp_path):
    build.starter(tmp_path, SLUG)
    port = free_port()
    running = Running("01", "--target", tmp_path, "--port", port)
    try:
        running.wait_for("Reloading on save")
        running.wait_for("serving on")
        assert requests.get(f"http://127.0.0.1:{port}/visits", timeout=10).status_code == 501
        time.sleep(0.3)                                     # a new mtime, even on a coarse file system
        build.solved(tmp_path, SLUG)
        running.wait_for("changed: restarting the server")
        running.wait_for("serving on", times=2)
        resp = requests.get(f"http://127.0.0.1:{port}/visits", timeout=10)
        assert resp.status_code == 200 and "You have visited 1 times" in resp.text
    finally:
        code = running.stop()
    assert code == 0 and "Traceback" not in running.output, running.output


def test_run_stopped_with_kill_takes_its_server_with_it(tmp_path):
    build.solved(tmp_path, SLUG)
    port = free_port()
    running = Running("01", "--target", tmp_path, "--port", port)
    try:
        running.wait_for("serving on")
        assert requests.get(f"http://127.0.0.1:{port}/visits", timeout=10).status_code == 200
        running.proc.send_signal(signal.SIGTERM)          # the reloader only, not its process group
        running.proc.wait(timeout=20)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/visits", timeout=10)
    finally:
        code = running.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.proc.pid, signal.SIGKILL)  # a server left behind by a failure above
    assert code == 128 + signal.SIGTERM and "Traceback" not in running.output, running.output


def test_run_waits_for_a_fix_when_the_code_does_not_start(tmp_path):
    app = build.patched(tmp_path, SLUG, append="raise KeyError('oops')")
    port = free_port()
    running = Running("01", "--target", tmp_path, "--port", port)
    try:
        running.wait_for("Waiting for you to save a fix")
        assert "does not import: KeyError: 'oops'" in running.output
        time.sleep(0.3)
        app.write_text(build.solution_text(SLUG))
        running.wait_for("serving on")
        assert requests.get(f"http://127.0.0.1:{port}/visits", timeout=10).status_code == 200
    finally:
        running.stop()
    assert "Traceback" not in running.output, running.output


@pytest.mark.parametrize("status", [7, 3])       # 3: the code a start that cannot import exits with
def test_run_says_so_when_the_code_ends_the_server_and_waits_for_a_fix(tmp_path, status):
    # Once, `make run` went quiet and the prompt came back: os._exit in a route had ended the server.
    app = build.patched(tmp_path, SLUG, function="visits", body=f"import os\nos._exit({status})")
    port = free_port()
    running = Running("01", "--target", tmp_path, "--port", port)
    try:
        running.wait_for("serving on")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/visits", timeout=10)
        running.wait_for("Waiting for you to save a fix")
        assert f"The server stopped while serving (exit code {status}): the lesson's code ended its process" \
            in running.output, running.output
        time.sleep(0.3)
        app.write_text(build.solution_text(SLUG))
        running.wait_for("serving on", times=2)
        assert requests.get(f"http://127.0.0.1:{port}/visits", timeout=10).status_code == 200
    finally:
        code = running.stop()
    assert code == 0 and "Traceback" not in running.output, running.output


@pytest.mark.parametrize("writes", [
    "(_P(__file__).parent / 'generated.py').write_text('X = 1\\n')",                        # the same bytes
    "import time as _t\n(_P(__file__).parent / 'generated.py').write_text(f'AT = {_t.time()}\\n')",  # new ones
    "import os as _os\n_p = _P(__file__).parent / 'notes.py'\n_p.exists() or _os.mkfifo(_p)",    # a FIFO
], ids=["same bytes", "changing bytes", "a fifo"])
def test_run_restarts_for_the_students_saves_not_for_files_the_lessons_code_writes_as_it_starts(tmp_path, writes):
    # An app.py that wrote a .py file of its folder as it imported restarted the server for ever; one
    # that made a FIFO there hung the reloader in reading it, and it ignored every save after.
    app = build.patched(tmp_path, SLUG, append="from pathlib import Path as _P\n" + writes + "\n")
    port = free_port()
    running = Running("01", "--target", tmp_path, "--port", port)
    try:
        running.wait_for("serving on")
        time.sleep(1.5)                                     # five polls of the folder
        assert "restarting the server" not in running.output, running.output
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        app.write_text(app.read_text() + "\n# a save\n")
        running.wait_for("changed: restarting the server")
        running.wait_for("serving on", times=2)
    finally:
        running.stop()
    assert "Traceback" not in running.output, running.output


def test_run_passes_a_lessons_options_to_create_app(tmp_path):
    build.solved(tmp_path, "04_session_options")
    port = free_port()
    running = Running("04", "--target", tmp_path, "--port", port, "--no-reload",
                      "--option", "max_age=60", "--option", "rolling=true")
    try:
        running.wait_for("serving on")
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=10).text
        assert "rolling=True, max_age=60" in page
        with requests.Session() as browser:
            browser.get(f"http://127.0.0.1:{port}/visits", timeout=10)
            resp = browser.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert "What the store holds for this session" in resp.text and "visits" in resp.text.split(
            "What the store holds", 1)[1], "lesson 04's page shows the stored session"
    finally:
        running.stop()


def test_an_option_create_app_does_not_take_is_one_line(tmp_path):
    build.solved(tmp_path, "04_session_options")
    proc = course("run", "04", "--target", tmp_path, "--no-reload", "--option", "rollin=true", timeout=60)
    assert proc.returncode == 2
    assert "create_app has no option rollin; its options are: resave, save_uninitialized, rolling" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_option_of_the_wrong_kind_is_one_line_not_a_lesson_that_starts(tmp_path):
    build.solved(tmp_path, "04_session_options")
    proc = course("run", "04", "--target", tmp_path, "--no-reload", "--option", "rolling=ture", timeout=60)
    assert proc.returncode == 2 and "rolling='ture': rolling is true or false" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- one line, never a traceback

def test_a_port_out_of_range_is_one_line():
    proc = course("run", "01", "--port", "99999", timeout=60)
    assert proc.returncode == 2 and "99999 is not a port" in proc.stderr and "Traceback" not in proc.stderr


def test_store_on_an_unfinished_lesson_08_says_which_exercise(tmp_path):
    build.starter(tmp_path, "08_store_backends")
    proc = course("run", "08", "--target", tmp_path, "--no-reload", "--port", free_port(),
                  "--store", "sqlite:///x.db", timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "exercise 08.2 (function store_url_argument), which still raises todo" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_diff_into_a_pipe_that_closes_early_is_not_an_error(tmp_path):
    build.solved(tmp_path, SLUG)
    app = tmp_path / SLUG / "app.py"
    app.write_text(app.read_text().replace("Forgot your visits", "Forgotten") + "\n# mine\n" * 400)
    command = [sys.executable, "-m", "course", "diff", "01", "--target", str(tmp_path)]
    diff = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    diff.stdout.readline()
    diff.stdout.close()                                     # `| head -1`: the reader stops
    stderr = diff.stderr.read().decode()
    assert diff.wait(timeout=60) == 0 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_a_python_without_the_courses_dependencies_is_told_to_use_the_venv():
    # -S: no site-packages, as with a system Python that never had `make venv`'s packages.
    proc = subprocess.run([sys.executable, "-S", "-m", "course", "check", "02"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "does not have the course's dependencies" in proc.stderr and ".venv/bin/python -m course" in proc.stderr
    assert "app.py" not in proc.stderr and "Traceback" not in proc.stderr


def test_advice_printed_by_check_names_a_python_that_has_the_course():
    if os.path.realpath(sys.prefix) != os.path.realpath(ROOT / ".venv"):
        pytest.skip("the suite runs outside the course's .venv: the advice names that Python instead")
    proc = course("hint", "01.1", env={"COURSE_HINTS_FILE": os.devnull})
    assert ".venv/bin/python -m course hint 01.1" in proc.stdout


def test_the_advice_in_a_501_works_as_printed(serve_app, tmp_path):
    # The starter's unfinished route names the command to run for a hint; run it as printed. The
    # shipped starter's, not lessons/'s: on a student's solved copy that route is done.
    from course.tools.loader import load_app_module
    build.starter(tmp_path / "copy", "01_raw_cookies")
    url = serve_app(load_app_module(tmp_path / "copy", "01_raw_cookies").create_app())
    resp = requests.get(url + "/visits", timeout=10)
    body = resp.text
    assert resp.status_code == 501, body
    advice = body.split("Stuck? ", 1)[1].strip()
    assert advice == "make hint EXERCISE=01.2", body
    proc = subprocess.run(["make", "-s", *advice.split()[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COURSE_HINTS_FILE": str(tmp_path / "hints.json")})
    assert proc.returncode == 0 and "Hint 1 of" in proc.stdout, proc.stdout + proc.stderr
