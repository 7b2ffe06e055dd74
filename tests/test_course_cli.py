"""The student's commands: check, list, hint, diff, watch, as a student types them.

Each test works on a copy of lesson 01 of its own (``--target``, a folder of lessons), built from
the course now, so the tests neither read nor touch the real lessons/ folder, and hint counters go
to a file of the test's own (``COURSE_HINTS_FILE``).

(``run``'s errors, a taken port and an unknown lesson, are tested in test_course_integrity.py.)
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from course import ROOT
from course.__main__ import main
from course.lesson import manifest
from course.tools.term import Progress, Style, tidy_message
from tests.fixtures import submissions as build

SLUG = "01_raw_cookies"
LESSON = manifest.lesson("01")


def course(*args, env=None, timeout=120):
    environment = {**os.environ, "NO_COLOR": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "course", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=environment)


@pytest.fixture
def hints(tmp_path):
    return {"COURSE_HINTS_FILE": str(tmp_path / "hints.json")}


# ---------------------------------------------------------------- check

def test_check_on_a_solved_copy_says_complete(tmp_path):
    build.solved(tmp_path, SLUG)
    proc = course("check", "01", "--target", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lesson 01 is complete" in proc.stdout
    assert f"{LESSON.max_points} of {LESSON.max_points} points" in proc.stdout
    assert "-m course diff 01" in proc.stdout
    assert "\033[" not in proc.stdout, "no colour when the output is not a terminal"


def test_check_on_the_starter_names_the_first_exercise_and_its_first_hint(tmp_path):
    build.starter(tmp_path, SLUG)
    proc = course("check", "01", "--target", tmp_path)
    assert proc.returncode == 1
    first = LESSON.exercises[0]
    assert f"Next: exercise {first.id}, {first.title}" in proc.stdout
    assert "Not started" in proc.stdout and f'todo("{first.id}")' in proc.stdout
    out = " ".join(proc.stdout.split())                 # hints are wrapped to the terminal's width
    assert " ".join(first.hints[0].split()) in out and " ".join(first.hints[1].split()) not in out
    assert f"0 of {len(LESSON.exercises)} exercises done" in proc.stdout
    for ex in LESSON.exercises:
        assert f"todo    {ex.id}" in proc.stdout


def test_check_shows_the_failing_check_what_was_expected_and_what_came_back(tmp_path):
    app = build.solved(tmp_path, SLUG)
    app.write_text(app.read_text().replace("value.isascii() and value.isdigit()", "value.isdigit()"))
    proc = course("check", "01", "--target", tmp_path)
    assert proc.returncode == 1
    assert "fail    01.1" in proc.stdout and "done    01.2" in proc.stdout
    assert "test_read_count_treats_anything_else_as_zero[arabic-indic]" in proc.stdout
    assert "read_count('٣') should be 0" in proc.stdout and "assert 3 == 0" in proc.stdout
    assert " at 0x" not in proc.stdout and "+  where" not in proc.stdout


def test_check_of_code_that_does_not_import_says_so_once(tmp_path):
    build.patched(tmp_path, SLUG, append="def broken(:\n    pass")
    proc = course("check", "01", "--target", tmp_path)
    assert proc.returncode == 1
    assert "does not load" in proc.stdout and "SyntaxError" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_check_stops_an_endless_loop_and_skips_the_rest_of_that_exercise(tmp_path):
    build.patched(tmp_path, SLUG, function="forget", body="while True:\n    pass")
    started = time.monotonic()
    proc = course("check", "01", "--target", tmp_path, "--test-timeout", "1")
    assert proc.returncode == 1
    assert "timeout 01.3" in proc.stdout and "timed out" in proc.stdout
    assert "done    01.4" in proc.stdout, "the loop in /forget must not cost the other exercises"
    assert time.monotonic() - started < 30


def test_check_exits_even_when_the_code_leaves_a_thread_running(tmp_path):
    build.patched(tmp_path, SLUG, append="""
        import threading, time
        threading.Thread(target=time.sleep, args=(600,), name="never-ends").start()
    """)
    proc = course("check", "01", "--target", tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "never-ends" in proc.stderr and "daemon=True" in proc.stderr


def test_check_of_an_unknown_lesson_lists_the_lessons_and_make_fails():
    proc = course("check", "99")
    assert proc.returncode == 2 and "There is no lesson '99'" in proc.stderr and "01 (01_raw_cookies)" in proc.stderr
    made = subprocess.run(["make", "--no-print-directory", "check", "LESSON=99"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode != 0, "make check LESSON=99 must not look like an answer (it exited 0)"


def test_a_time_limit_that_is_not_above_zero_is_one_line():
    proc = course("check", "01", "--test-timeout", "0")
    assert proc.returncode == 2 and "a time limit is a number of seconds above 0" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- hint

def test_each_hint_call_shows_one_more_then_stays_on_the_last(hints, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_HINTS_FILE", hints["COURSE_HINTS_FILE"])

    def hint(*args):
        assert main(["hint", *args]) == 0
        return capsys.readouterr().out

    ex = manifest.exercise("01.2")
    seen = [hint("01.2") for _ in range(len(ex.hints) + 1)]
    for count, text in enumerate(seen[:len(ex.hints)], start=1):
        shown = [h for h in ex.hints if h in text]
        assert shown == list(ex.hints[:count]), f"call {count} should show hints 1..{count}"
    assert "again for hint 2 of" in seen[0]
    assert "last hint" in seen[-1] and seen[-1] == seen[-2]
    assert manifest.exercise("01.3").hints[1] not in hint("01.3"), "each exercise counts its own hints"
    hint("1.2", "--reset")
    assert ex.hints[1] not in hint("01.2"), "--reset starts again at hint 1"
    assert all(h in hint("01.2", "--all") for h in ex.hints)


def test_hint_for_a_lesson_picks_its_first_exercise_not_done(tmp_path, hints):
    build.partly(tmp_path, SLUG, done={"01.1", "01.2"})
    proc = course("hint", "01", "--target", tmp_path, env=hints)
    assert proc.returncode == 0
    assert "Exercise 01.3" in proc.stdout and manifest.exercise("01.3").hints[0] in proc.stdout


def test_hint_of_an_unknown_exercise_lists_them(hints, monkeypatch):
    monkeypatch.setenv("COURSE_HINTS_FILE", hints["COURSE_HINTS_FILE"])
    with pytest.raises(SystemExit) as stopped:
        main(["hint", "01.9"])
    assert "There is no exercise '01.9'" in str(stopped.value) and "01.1" in str(stopped.value)


# ---------------------------------------------------------------- list

def test_list_shows_each_lesson_and_exercise_with_its_state(tmp_path):
    build.partly(tmp_path, SLUG, done={"01.1", "01.2"})
    proc = course("list", "--target", tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "01 A cookie is just a header" in out and "2/4 exercises" in out and "<- you are here" in out
    assert "done    01.1" in out and "done    01.2" in out and "todo    01.3" in out and "todo    01.4" in out
    for lesson in manifest.lessons():
        assert f"{lesson.id} {lesson.title}" in out
    assert "Next: make check LESSON=01" in out


def test_list_runs_the_started_lessons_in_two_processes_and_shows_them_all(tmp_path):
    # Two lessons started: one of them is checked in list's second process; both report as check does.
    build.solved(tmp_path, "01_raw_cookies")
    build.partly(tmp_path, "02_signed_cookies", done={"02.1"})
    proc = course("list", "--target", tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "4/4 exercises" in out and "1/4 exercises" in out, out
    for ex in manifest.lesson("01").exercises:
        assert f"done    {ex.id}" in out
    assert "done    02.1" in out and "todo    02.2" in out
    assert f"5 of {sum(len(each.exercises) for each in manifest.lessons())} exercises done" in out


def test_list_of_an_untouched_clone_says_todo_everywhere_without_running_a_check(tmp_path, monkeypatch):
    from course.tools import cli

    for lesson in manifest.lessons():
        build.starter(tmp_path, lesson.slug)
    monkeypatch.setattr(cli, "run_checks", lambda *args, **kwargs: pytest.fail("a check ran"))
    records = cli.run_checks_split(list(manifest.lessons()), str(tmp_path), exercises_only=True)
    states = {ex.exercise.id: ex.state for lesson in manifest.lessons()
              for ex in cli.states(lesson, [r for r in records if r["exercise"] in {e.id for e in lesson.exercises}],
                                   str(tmp_path))}
    assert set(states.values()) == {"todo"} and len(states) == sum(len(each.exercises) for each in manifest.lessons())


def test_an_untouched_lesson_that_does_not_import_or_is_started_is_checked_as_usual(tmp_path):
    from course.tools.cli import untouched_records

    lesson = manifest.lesson("02")
    build.starter(tmp_path, lesson.slug)
    assert [r["exercise"] for r in untouched_records(lesson, str(tmp_path))] == [ex.id for ex in lesson.exercises]
    app = tmp_path / lesson.slug / "app.py"
    app.write_text(app.read_text(encoding="utf-8") + "\nimport no_such_module_here\n", encoding="utf-8")
    assert untouched_records(lesson, str(tmp_path)) is None, "its checks run, and say it does not load"
    build.partly(tmp_path, lesson.slug, done={"02.1"})
    assert untouched_records(lesson, str(tmp_path)) is None, "02.1 is started: its checks run"


# ---------------------------------------------------------------- diff

def test_diff_refuses_until_the_lesson_passes(tmp_path):
    build.partly(tmp_path, SLUG, done={"01.1", "01.2"})
    proc = course("diff", "01", "--target", tmp_path)
    assert proc.returncode == 1
    assert "Not yet" in proc.stdout and "Still to do: 01.3, 01.4" in proc.stdout
    assert "reference" in proc.stdout and "@@" not in proc.stdout


def test_diff_shows_your_code_beside_the_reference_once_it_passes(tmp_path):
    app = build.solved(tmp_path, SLUG)
    app.write_text(app.read_text().replace('return text("Forgot your visits: the next one counts as the first")',
                                           'return text("Forgotten.")'))
    proc = course("diff", "01", "--target", tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert '-        return text("Forgotten.")' in proc.stdout
    assert '+        return text("Forgot your visits: the next one counts as the first")' in proc.stdout
    assert "yours:" in proc.stdout and "reference: solutions/01_raw_cookies/app.py" in proc.stdout
    side = course("diff", "01", "--target", tmp_path, "--side-by-side", env={"COLUMNS": "200"})
    line = next(line for line in side.stdout.splitlines() if "Forgotten." in line)
    assert " ≠ " in line and "Forgot your visits" in line


def test_diff_of_the_reference_itself_says_they_are_the_same(tmp_path):
    build.solved(tmp_path, SLUG)
    proc = course("diff", "01", "--target", tmp_path)
    assert proc.returncode == 0 and "the same as the reference" in proc.stdout


# ---------------------------------------------------------------- watch

def test_watch_checks_again_on_save_and_stops_cleanly_on_ctrl_c(tmp_path):
    build.starter(tmp_path, SLUG)
    proc = subprocess.Popen([sys.executable, "-m", "course", "watch", "01", "--target", str(tmp_path),
                             "--interval", "0.1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "NO_COLOR": "1"})
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()

    def wait_for(text, times=1, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if "".join(output).count(text) >= times:
                return
            assert proc.poll() is None, "".join(output)
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {seconds} s:\n" + "".join(output))

    try:
        wait_for("Watching")
        assert "Next: exercise 01.1" in "".join(output)
        time.sleep(0.3)                          # a new mtime, even on a coarse file system
        build.solved(tmp_path, SLUG)
        wait_for("Lesson 01 is complete")
        wait_for("Watching", times=2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    text = "".join(output)
    assert "Stopped watching." in text and "Traceback" not in text
    assert text.count("checking lesson 01") == 2, "one check at the start, one after the save"


# ---------------------------------------------------------------- the terminal

class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert Style(FakeTerminal()).green("done") == "\033[32mdone\033[0m"
    assert Style(io.StringIO()).green("done") == "done"
    monkeypatch.setenv("NO_COLOR", "1")
    assert Style(FakeTerminal()).green("done") == "done"


def test_progress_redraws_on_a_terminal_and_prints_lines_elsewhere():
    terminal, log = FakeTerminal(), io.StringIO()
    for stream in (terminal, log):
        bar = Progress(2, "grading", stream)
        bar.start("ann")
        bar.finish("ann", "9/9 points")
        bar.close()
    assert "\r" in terminal.getvalue() and "[#" in terminal.getvalue()
    assert log.getvalue() == "[1/2] ann: 9/9 points\n"


def test_failure_messages_lose_pytest_noise():
    raw = ("AssertionError: read_count('x') should be 0\nassert 3 == 0\n +  where 3 = <function read_count at "
           "0x7f31cfb28b80>('x')")
    assert tidy_message(raw) == ["read_count('x') should be 0", "assert 3 == 0"]
    assert tidy_message("boom at /tmp/course-grade-1/lessons/x", {"/tmp/course-grade-1/lessons": "lessons"}) == \
        ["boom at lessons/x"]


def test_check_leaves_out_the_maintainers_checks_of_a_lesson_text(tmp_path):
    # `check` is the student's loop: the slow checks of the README's own claims (marked maintainers:
    # a load balancer, a failover, the full-size figures) run in `make test`, not there.
    from types import SimpleNamespace

    from course.tools.cli import run_checks
    tests = tmp_path / "test_fake_lesson.py"
    tests.write_text("import pytest\n\n"
                     "def test_a_ready_made_part():\n    pass\n\n"
                     "@pytest.mark.maintainers\ndef test_a_claim_of_the_text():\n    raise AssertionError('ran')\n",
                     encoding="utf-8")
    records = run_checks([SimpleNamespace(test_file=tests)], target=str(tmp_path)).records
    assert [r["nodeid"].split("::")[-1] for r in records] == ["test_a_ready_made_part"]


SPLIT_TESTS = """
import os, pathlib

HERE = pathlib.Path(os.environ["SPLIT_DIR"])

def ran():
    with open(HERE / "pids", "a") as pids:
        pids.write(f"{os.getpid()}\\n")

def test_0():
    ran()

def test_that_ends_its_process_once():      # the second test: the child's first
    ran()
    flag = HERE / "ended-once"
    if not flag.exists():
        flag.write_text("")
        os._exit(3)

"""  + "".join(f"def test_{n}():\n    ran()\n\n" for n in range(1, 20))


def _checked_in_a_process_of_its_own(tmp_path, tests, split: bool) -> list[dict]:
    # A process of its own: this one has threads (pytest-xdist's), and a process with threads does not fork.
    script = ("import json, sys; from pathlib import Path; from types import SimpleNamespace; "
              "from course.tools.cli import run_checks; "
              "records = run_checks([SimpleNamespace(test_file=Path(sys.argv[1]))], target=sys.argv[2], "
              "split_cores=sys.argv[3] == '1').records; print(json.dumps(records))")
    done = subprocess.run([sys.executable, "-c", script, str(tests), str(tmp_path), "1" if split else "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SPLIT_DIR": str(tmp_path), "COURSE_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stdout + done.stderr
    import json
    return json.loads(done.stdout.splitlines()[-1])


def test_check_runs_the_tests_in_forked_children_that_share_them_out_and_reports_them_all(tmp_path):
    tests = tmp_path / "test_split_lesson.py"
    tests.write_text(SPLIT_TESTS.replace("def test_that_ends_its_process_once", "def _not_a_test")
                     .replace("    ran()\n", "    ran()\n    __import__('time').sleep(0.05)\n"), encoding="utf-8")
    records = _checked_in_a_process_of_its_own(tmp_path, tests, split=True)
    pids = (tmp_path / "pids").read_text().split()
    assert len(records) == 20 and {r["outcome"] for r in records} == {"passed"}, records
    assert len(pids) == 20 and len(set(pids)) == 2, "each test once, in two processes"
    assert min(pids.count(pid) for pid in set(pids)) >= 6, "each takes the next test when it is free: about half each"
    assert str(os.getpid()) not in pids
    import json
    timed = json.loads((tmp_path / "cache" / "durations.json").read_text())
    assert {r["nodeid"] for r in records} <= set(timed), "each test's time is kept, to balance the next run"
    (tmp_path / "pids").unlink()
    (tmp_path / "cache" / "durations.json").write_text(json.dumps({r["nodeid"]: 0.5 for r in records}))
    _checked_in_a_process_of_its_own(tmp_path, tests, split=True)
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == 20 and len(set(pids)) == 4, "10 s last time: waits, in four processes"
    (tmp_path / "pids").unlink()
    alone = _checked_in_a_process_of_its_own(tmp_path, tests, split=False)
    assert len(set((tmp_path / "pids").read_text().split())) == 1, "split_cores=False: one process"
    assert sorted(r["nodeid"] for r in alone) == sorted(r["nodeid"] for r in records)


def test_the_child_that_is_free_takes_the_next_test_whatever_the_last_runs_times_said(tmp_path):
    # Parts fixed from the last run's times ended seconds apart when those times were wrong (a run on
    # a loaded machine): here one test now takes 1.5 s, though it took none last time.
    tests = tmp_path / "test_split_lesson.py"
    tests.write_text("import os, pathlib, time\n\nHERE = pathlib.Path(os.environ['SPLIT_DIR'])\n\n"
                     "def test_slow_now():\n    time.sleep(1.5)\n    (HERE / 'slow').write_text(str(os.getpid()))\n\n"
                     + "".join(f"def test_{n}():\n    time.sleep(0.1)\n"
                               f"    with open(HERE / 'pids', 'a') as f:\n        f.write(f'{{os.getpid()}}\\n')\n\n"
                               for n in range(20)), encoding="utf-8")
    (tmp_path / "cache").mkdir()
    import json
    (tmp_path / "cache" / "durations.json").write_text(json.dumps(
        {f"{tests.as_posix()}::test_{n}": 0.1 for n in range(20)}))
    started = time.monotonic()
    _checked_in_a_process_of_its_own(tmp_path, tests, split=True)
    took = time.monotonic() - started
    slow, pids = (tmp_path / "slow").read_text(), (tmp_path / "pids").read_text().split()
    assert pids.count(slow) <= 6 < pids.count(next(pid for pid in pids if pid != slow)), (
        "while one child waited on the slow test, the other took the short ones", pids.count(slow))
    assert took < 10, took


@pytest.mark.parametrize("phase", ["its own imports", "the lesson's import"])
def test_ctrl_c_while_the_command_is_still_starting_says_stopped_without_a_traceback(tmp_path, phase):
    # While it imports (its first few tenths of a second), check once printed KeyboardInterrupt's
    # traceback. Before that, Python itself is starting: a Ctrl-C then is Python's own, so the Ctrl-C
    # waits for the phase it is about, not for a time (under load, Python's start took over 0.2 s).
    # -X importtime prints each import as it ends: once the command's first own module has been
    # imported, its Ctrl-C handler is in place. The lesson writes a file when its import begins.
    started = tmp_path / "importing"
    build.patched(tmp_path, SLUG, prepend=f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(3)")
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "course", "check", "01", "--target",
                             str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    err_lines, own_module_imported = [], threading.Event()

    def read_stderr():                   # all of it (a full pipe would stop the command)
        for line in proc.stderr:
            err_lines.append(line)
            if line.rstrip().endswith("course.lesson.server"):
                own_module_imported.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    waited = time.monotonic()
    while not (own_module_imported.is_set() if phase == "its own imports" else started.exists()):
        assert time.monotonic() - waited < 30 and proc.poll() is None, ("never reached", phase, err_lines[-5:])
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.stdout.read()
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(line for line in err_lines if not line.startswith("import time:"))
    assert proc.returncode == 130 and "Stopped." in err, (proc.returncode, out, err)
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in err, err


def test_ctrl_c_during_list_says_stopped_and_no_process_prints_a_traceback(tmp_path):
    # list runs every other started lesson in a second interpreter, which gets the Ctrl-C too.
    for lesson in manifest.lessons():          # 01-04 run (slowly, so list is still running), the rest untouched
        if lesson.id <= "04":
            build.patched(tmp_path, lesson.slug, prepend="import time\ntime.sleep(2)")
        else:
            build.starter(tmp_path, lesson.slug)
    proc = subprocess.Popen([sys.executable, "-m", "course", "list", "--target", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Stopped." in err, (proc.returncode, out, err)
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in err, err


def test_another_child_of_checks_process_ending_meanwhile_is_not_taken_for_a_part(tmp_path):
    # list runs some lessons in a second interpreter, its own child: waiting for "any child" reaped it,
    # took it for a part, and the parent went on while its parts still ran (INTERNALERROR in them).
    tests = tmp_path / "test_split_lesson.py"
    tests.write_text("import time\n\n" + "".join(f"def test_{n}():\n    time.sleep(0.05)\n\n" for n in range(20)),
                     encoding="utf-8")
    script = ("import json, subprocess, sys; from pathlib import Path; from types import SimpleNamespace; "
              "from course.tools.cli import run_checks; other = subprocess.Popen(['sleep', '0.2']); "
              "records = run_checks([SimpleNamespace(test_file=Path(sys.argv[1]))], target=sys.argv[2]).records; "
              "other.wait(); print(json.dumps(records))")
    done = subprocess.run([sys.executable, "-c", script, str(tests), str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COURSE_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 0 and "INTERNALERROR" not in done.stderr, done.stderr[-3000:]
    import json
    records = json.loads(done.stdout.splitlines()[-1])
    assert len(records) == 20 and {r["outcome"] for r in records} == {"passed"}, records


def test_the_children_end_with_their_parent(tmp_path):
    # check's own process killed (by the student's code, or by the terminal) must not leave a child
    # running its part (starting browsers and servers) after the prompt is back.
    tests = tmp_path / "test_split_lesson.py"
    tests.write_text("import os, pathlib, signal, time\n\nHERE = pathlib.Path(os.environ['SPLIT_DIR'])\n\n"
                     "def test_0():\n    time.sleep(0.5)\n    os.kill(os.getppid(), signal.SIGKILL)\n\n"
                     + "".join(f"def test_{n}():\n    (HERE / 'child').write_text(str(os.getpid()))\n"
                               f"    time.sleep(3)\n\n" for n in range(1, 20)), encoding="utf-8")
    script = ("import sys; from pathlib import Path; from types import SimpleNamespace; "
              "from course.tools.cli import run_checks; "
              "run_checks([SimpleNamespace(test_file=Path(sys.argv[1]))], target=sys.argv[2])")
    subprocess.run([sys.executable, "-c", script, str(tests), str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120,      # no pipe: the child would hold it open
                   env={**os.environ, "SPLIT_DIR": str(tmp_path), "COURSE_CACHE_DIR": str(tmp_path)})
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 2              # its tests would run for half a minute
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.05)
    assert not _running(child), "a child went on after check's process ended"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"      # a zombie has ended
    except OSError:
        return False


def test_the_groups_come_longest_first_by_the_last_runs_times_and_keep_the_browser_tests_together():
    from types import SimpleNamespace

    from course.tools.plugins import UNKNOWN_SECONDS, grouped

    items = [SimpleNamespace(nodeid=f"t{n}", fixturenames=["url"]) for n in range(6)]
    items += [SimpleNamespace(nodeid=f"browser{n}", fixturenames=["open_page", "url"]) for n in range(2)]
    groups = grouped(items, {"t0": 3.0, "t3": 0.5, "browser0": 1.0, "browser1": 0.5})
    names = [[i.nodeid for i in group] for group in groups]
    assert names[:3] == [["t0"], ["browser0", "browser1"], ["t3"]], names
    assert sorted(i.nodeid for group in groups for i in group) == sorted(i.nodeid for i in items), "each test once"
    assert UNKNOWN_SECONDS > 0 and all(len(group) == 1 for group in groups[3:]), "the others one at a time"


def test_only_the_times_of_checks_that_ran_are_kept(tmp_path, monkeypatch):
    # An untouched lesson's checks are skipped at once: kept, their times would make a slow lesson look
    # short after the student reverts a file, and split it in two where it needs four.
    from course.tools.cli import read_durations, write_durations

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    write_durations([{"nodeid": "t::ran", "outcome": "failed", "duration": 2.5}])
    write_durations([{"nodeid": "t::ran", "outcome": "skipped", "duration": 0.0},
                     {"nodeid": "t::other", "outcome": "passed", "duration": 0.25}])
    assert read_durations() == {"t::ran": 2.5, "t::other": 0.25}


def test_a_fast_failure_does_not_make_a_slow_check_look_short_but_a_pass_sets_its_time(tmp_path, monkeypatch):
    # The browser checks of lesson 06 fail at their first request while the login is not done
    # (0.01 s): kept as their time, the browser would be started last, after everything else.
    from course.tools.cli import read_durations, write_durations

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    write_durations([{"nodeid": "t::browser", "outcome": "passed", "duration": 1.5}])
    write_durations([{"nodeid": "t::browser", "outcome": "failed", "duration": 0.01}])
    assert read_durations() == {"t::browser": 1.5}
    write_durations([{"nodeid": "t::browser", "outcome": "failed", "duration": 2.0}])
    assert read_durations() == {"t::browser": 2.0}
    write_durations([{"nodeid": "t::browser", "outcome": "passed", "duration": 0.75}])
    assert read_durations() == {"t::browser": 0.75}


def test_the_browser_group_comes_first_when_no_run_has_timed_it_yet():
    from types import SimpleNamespace

    from course.tools.plugins import TOGETHER_SECONDS, grouped

    items = [SimpleNamespace(nodeid=f"t{n}", fixturenames=["url"]) for n in range(30)]
    items += [SimpleNamespace(nodeid=f"browser{n}", fixturenames=["open_page", "url"]) for n in range(2)]
    for durations in ({}, {"browser0": 0.01, "browser1": 0.01, "t0": TOGETHER_SECONDS / 2}):
        first = [i.nodeid for i in grouped(items, durations)[0]]
        assert first == ["browser0", "browser1"], (durations, first)


def test_a_test_that_ends_its_process_is_reported_and_the_rest_of_its_part_still_runs(tmp_path):
    tests = tmp_path / "test_split_lesson.py"
    tests.write_text(SPLIT_TESTS, encoding="utf-8")
    records = _checked_in_a_process_of_its_own(tmp_path, tests, split=True)
    assert (tmp_path / "ended-once").exists(), "a child ended itself"
    by_outcome = {}
    for record in records:
        by_outcome.setdefault(record["outcome"], []).append(record["nodeid"].rsplit("::", 1)[-1])
    assert by_outcome.pop("error") == ["test_that_ends_its_process_once"], by_outcome
    assert len(by_outcome.pop("passed")) == 20 and not by_outcome, "every other test ran, once"
    ended = next(r for r in records if r["outcome"] == "error")
    assert "ended during it: the code under test called os._exit(3)" in ended["message"], ended


def test_an_exercise_test_marked_maintainers_is_refused(tmp_path):
    # `check` runs "not maintainers", `list` and the grader "exercise": such a test would count in two
    # of the three verdicts only, so collecting it is an error (the author sees it in `make test`).
    tests = tmp_path / "test_fake_lesson.py"
    tests.write_text("import pytest\n\n"
                     "@pytest.mark.maintainers\n@pytest.mark.exercise('01.1')\ndef test_a_claim():\n    pass\n",
                     encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT),
                           str(tests), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "an exercise test cannot be a maintainers check" in done.stderr, done.stderr
