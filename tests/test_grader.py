"""Golden tests of the grader: a small class, built now from the course itself, graded on lesson 01.

Every kind of submission an instructor meets is in it: solved, the shipped starter, half solved, a
syntax error, an endless loop in one route, a server and a child process left running, a server
started at import, a flood of output, a crash in the middle, and an empty folder. The expected
grades follow from the manifest's points; one class run takes seconds (tests are limited to 5 s).
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from course import ROOT
from course.lesson import manifest
from course.tools.grading.plan import collect
from course.tools.results import GRADE_TEST_TIMEOUT
from tests.fixtures import attacks
from tests.fixtures import submissions as build

SLUG = "01_raw_cookies"
LESSON = manifest.lesson("01")
POINTS = {ex.id: ex.points for ex in LESSON.exercises}
IDS = list(POINTS)
TEST_TIMEOUT = 5          # per test: the endless loop and the server at import each cost one


def _all(status):
    return {ex: (POINTS[ex] if status == "pass" else 0, status) for ex in IDS}


def _but(base, **changes):
    grades = _all(base)
    for key, value in changes.items():
        grades[key.replace("_", ".").lstrip("e")] = value
    return grades


EXPECTED = {
    "a_solved": _all("pass"),
    "b_starter": _all("todo"),
    "c_half": _but("pass", e01_3=(0, "todo"), e01_4=(0, "todo")),
    "d_syntax_error": _all("error"),
    "e_endless_loop": _but("pass", e01_3=(0, "timeout")),
    "f_left_running": _all("pass"),
    "g_server_at_import": _all("timeout"),
    "h_flood": _all("pass"),
    "i_crash": _but("pass", e01_4=(0, "fail")),
    "j_empty": _all("error"),
}


MARKER = "left-running-" + hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
"""In the command line of every process a submission leaves running: none may be alive after grading."""


def marked_processes(marker: str) -> list[int]:
    """The live processes (not zombies) whose command line holds ``marker``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes() and "\nState:\tZ" not in (cmdline.parent / "status").read_text():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def build_class(root: Path) -> Path:
    """The class: one folder per student, laid out as clones or as bare folders of lessons."""

    # a clone, with hostile tests/ and course/ of its own: the grader must use neither
    build.solved(root / "a_solved" / "lessons", SLUG)
    (root / "a_solved" / "tests").mkdir()
    (root / "a_solved" / "tests" / "conftest.py").write_text("raise RuntimeError('student conftest ran')\n")
    (root / "a_solved" / "tests" / f"test_{SLUG}.py").write_text("def test_x():\n    assert False\n")
    (root / "a_solved" / "course").mkdir()
    (root / "a_solved" / "course" / "__init__.py").write_text("raise RuntimeError('student course ran')\n")

    build.starter(root / "b_starter" / "lessons", SLUG)
    build.partly(root / "c_half", SLUG, done={"01.1", "01.2"})          # a bare folder of lessons
    build.patched(root / "d_syntax_error" / "lessons", SLUG, append="def broken(:\n    pass")
    build.patched(root / "e_endless_loop" / "lessons", SLUG, function="forget", body="while True:\n    pass")
    build.patched(root / "f_left_running" / "lessons", SLUG, append=f"""
        import subprocess as _sp, sys as _sys, threading as _th
        from wsgiref.simple_server import make_server as _make_server
        _child = _sp.Popen([_sys.executable, "-c", "import time; time.sleep(600)", {MARKER!r}])
        _server = _make_server("127.0.0.1", 0, app)
        _th.Thread(target=_server.serve_forever, name="left-running").start()   # not a daemon
    """)
    build.patched(root / "g_server_at_import" / "lessons", SLUG, append='main(["--port", "0"])')
    build.patched(root / "h_flood" / "lessons", SLUG, append='print("x" * 12_000_000)',
                  function="read_count", body="""
        print("read_count", repr(value) * 1000)
        if value and value.isascii() and value.isdigit() and len(value) <= len(str(MAX_VISITS)):
            return int(value)
        return 0
    """)
    build.patched(root / "i_crash" / "lessons", SLUG, function="theme", body="import os\nos._exit(3)")
    (root / "j_empty").mkdir()
    (root / "j_empty" / "README.md").write_text("I forgot to hand in my code.\n")
    return root


def grade_command(paths, out, *extra):
    return [sys.executable, "-m", "course", "grade", *map(str, paths), "--out", str(out), "--lessons", "01",
            "--jobs", "2", "--test-timeout", str(TEST_TIMEOUT), "--timeout", "60", *extra]


def _grade_the_class(where: Path) -> dict:
    klass = build_class(where / "class")
    out = where / "grades"
    students = sorted(p for p in klass.iterdir() if p.is_dir())
    proc = subprocess.run(grade_command(students, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    return {"class": str(klass), "out": str(out), "returncode": proc.returncode, "stdout": proc.stdout,
            "stderr": proc.stderr}


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> dict:
    """The class graded once per test run, even when xdist runs this module's tests in two workers."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        run = _grade_the_class(tmp_path_factory.mktemp("golden"))
    else:
        shared = tmp_path_factory.getbasetemp().parent / "golden-grades"     # the run's, shared by workers
        with open(f"{shared}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = shared / "run.json"
            if not done.exists():
                shared.mkdir(exist_ok=True)
                done.write_text(json.dumps(_grade_the_class(shared)))
            run = json.loads(done.read_text())
    assert run["returncode"] == 0, run["stdout"] + run["stderr"]
    return run


@pytest.fixture(scope="module")
def graded(golden):
    return Path(golden["out"]), SimpleNamespace(stdout=golden["stdout"], stderr=golden["stderr"])


@pytest.fixture(scope="module")
def klass(golden):
    return Path(golden["class"])


def rows(out: Path) -> dict[str, dict[str, tuple]]:
    with open(out / "grades.csv", newline="", encoding="utf-8") as file:
        table = {}
        for row in csv.DictReader(file):
            assert row["lesson"] == "01"
            table.setdefault(row["student"], {})[row["exercise"]] = (float(row["points"]), row["status"])
        return table


def test_every_student_gets_the_expected_grade(graded):
    out, _ = graded
    got = rows(out)
    assert sorted(got) == sorted(EXPECTED)
    wrong = {name: got[name] for name in EXPECTED if got[name] != EXPECTED[name]}
    assert not wrong, f"grades differ from the golden ones: {json.dumps(wrong, indent=1)}"


def test_grades_csv_has_one_row_per_student_and_exercise(graded):
    out, _ = graded
    lines = (out / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "student,lesson,exercise,points,max_points,passed,total,status"
    assert len(lines) == 1 + len(EXPECTED) * len(IDS)
    forget_tests = sum(1 for test in collect([LESSON]) if test.exercise == "01.3")
    assert f"e_endless_loop,01,01.3,0,1,0,{forget_tests},timeout" in lines


def load(out, name):
    return json.loads((out / "json" / f"{name}.json").read_text(encoding="utf-8"))


def test_a_broken_submission_costs_only_itself(graded):
    out, proc = graded
    assert load(out, "a_solved")["points"] == LESSON.max_points, "the student's own tests/ or course/ were used"
    syntax = load(out, "d_syntax_error")["lessons"][0]["problem"]
    assert "SyntaxError" in syntax and "does not import" in syntax, syntax
    assert "/tmp/" not in syntax and "course-grade-" not in syntax, "messages name the student's file, not ours"
    at_import = load(out, "g_server_at_import")
    assert "timed out" in at_import["lessons"][0]["problem"]
    assert at_import["duration_s"] < 30, "a server started at import should cost one test's time limit"
    crash = load(out, "i_crash")            # it ends its sandbox, not the grader's tests: it costs the tests it is in
    theme = crash["lessons"][0]["exercises"][3]
    assert all(t["outcome"] == "failed" and "ended (exit code 3)" in t["message"] for t in theme["tests"])
    empty = load(out, "j_empty")["lessons"][0]["problem"]
    assert "does not exist" in empty and "lessons/01_raw_cookies/app.py" in empty


def test_an_endless_loop_costs_only_its_exercise_and_one_time_limit(graded):
    out, _ = graded
    loop = load(out, "e_endless_loop")
    assert loop["status"] == "ok" and loop["points"] == LESSON.max_points - POINTS["01.3"]
    assert loop["duration_s"] < 40, "the stuck threads must not slow the rest of the run to a crawl"
    forget = loop["lessons"][0]["exercises"][2]
    assert [t["outcome"] for t in forget["tests"]] == ["timeout"] + ["skipped"] * (len(forget["tests"]) - 1), \
        "after a timeout, the rest is skipped"


def test_what_a_submission_leaves_running_is_stopped(graded, klass):
    out, _ = graded
    left = load(out, "f_left_running")
    assert left["status"] == "ok" and left["duration_s"] < 30, "a thread left running must not hold the grader"
    assert not marked_processes(MARKER), "the child process the submission started is still running"


def test_a_flood_of_output_is_counted_not_kept(graded):
    out, _ = graded
    flood = load(out, "h_flood")
    assert flood["output_bytes"] > 12_000_000
    assert (out / "logs" / "h_flood.log").stat().st_size < 200_000
    assert "printed" in (out / "feedback" / "h_flood.md").read_text(encoding="utf-8")


def test_junit_xml_counts_failures_per_student(graded):
    out, _ = graded
    loop = ET.parse(out / "junit" / "e_endless_loop.xml").getroot()
    assert loop.get("tests") == str(sum(1 for _ in loop.iter("testcase")))
    forget_tests = sum(1 for test in collect([LESSON]) if test.exercise == "01.3")
    assert loop.get("failures") == "1" and loop.get("skipped") == str(forget_tests - 1) and loop.get("errors") == "0"
    solved = ET.parse(out / "junit" / "a_solved.xml").getroot()
    assert solved.get("failures") == "0" and solved.get("errors") == "0"
    empty = ET.parse(out / "junit" / "j_empty.xml").getroot()
    assert int(empty.get("errors")) == int(empty.get("tests")) > 0


def test_feedback_says_what_failed_and_the_first_hint_never_the_solution(graded):
    out, _ = graded
    solution_lines = {line.strip() for line in build.solution_text(SLUG).splitlines()}
    starter_lines = {line.strip() for line in build.starter_text(SLUG).splitlines()}
    giveaways = [line for line in solution_lines - starter_lines if len(line) > 25]
    for name in EXPECTED:
        text = (out / "feedback" / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# Feedback for {name}")
        for ex in LESSON.exercises:
            for later in ex.hints[1:]:
                assert later not in text, f"{name}'s feedback gives away a later hint of {ex.id}"
        leaked = [line for line in giveaways if line in text]
        assert not leaked, f"{name}'s feedback quotes the solution: {leaked}"
    half = (out / "feedback" / "c_half.md").read_text(encoding="utf-8")
    assert f"{POINTS['01.1'] + POINTS['01.2']} of {LESSON.max_points} points" in half
    assert manifest.exercise("01.3").hints[0] in half
    loop = (out / "feedback" / "e_endless_loop.md").read_text(encoding="utf-8")
    assert "test_forget_deletes_the_cookie_and_counting_restarts" in loop and "timed out" in loop


def test_summary_has_the_class_table_and_the_most_failed_exercises(graded):
    out, _ = graded
    text = (out / "summary.md").read_text(encoding="utf-8")
    complete = sum(all(status == "pass" for _, status in g.values()) for g in EXPECTED.values())
    assert f"| 01 {LESSON.title} | {LESSON.max_points} |" in text
    assert f"({complete}/{len(EXPECTED)}) |" in text
    assert "## Most-failed exercises" in text and "01.3 Forget the visitor" in text
    assert "timed out" in text
    for name in EXPECTED:
        assert f"| {name} |" in text


def test_progress_is_shown_on_stderr_one_line_each_when_not_a_terminal(graded):
    _, proc = graded
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == len(EXPECTED) and f"[{len(EXPECTED)}/{len(EXPECTED)}]" in lines[-1]
    assert "\r" not in proc.stderr and "\033[" not in proc.stderr
    assert "a_solved" in proc.stdout and "Graded 10 submission(s)" in proc.stdout


def test_grading_again_gives_the_same_grades(graded, klass, tmp_path):
    out, _ = graded
    again = ["a_solved", "b_starter", "c_half"]
    proc = subprocess.run(grade_command([klass / name for name in again], tmp_path, "--no-progress"),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    before = [line for line in (out / "grades.csv").read_text().splitlines() if line.split(",")[0] in again]
    assert (tmp_path / "grades.csv").read_text().splitlines()[1:] == before
    assert not [line for line in proc.stderr.splitlines() if line.startswith("[")], "--no-progress shows no progress"


def _graded_alone(tmp_path, name, *limits) -> dict:
    """The json record of the copy ``tmp_path/name``, graded on lesson 01 alone, without fair credit."""
    command = [sys.executable, "-m", "course", "grade", str(tmp_path / name), "--out", str(tmp_path / "out"),
               "--lessons", "01", *limits, "--no-fair-credit", "--no-progress"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return load(tmp_path / "out", name)


def _test_cpus(record) -> list[float]:
    return [t["cpu"] for lesson in record["lessons"] for ex in lesson["exercises"] for t in ex["tests"] if "cpu" in t]


SPIN_IN_EVERY_EXERCISE = """
def _spin():
    while True:
        pass

_create_app = create_app

def create_app(**options):
    app = _create_app(**options)

    def spinning(environ, start_response):
        if environ.get("PATH_INFO") in ("/forget", "/theme") or "abc" in environ.get("HTTP_COOKIE", ""):
            _spin()
        return app(environ, start_response)
    return spinning
"""


def test_cpu_spent_in_sandboxes_stopped_after_a_time_limit_still_counts_for_the_copy(tmp_path):
    # Each exercise's first check spins until its time limit, and each timeout stops the sandboxes.
    # Their CPU used to vanish with them (bwrap does not reap the sandbox's init): four limits of
    # 2 s were spent against a budget of 5 s, and the copy was never stopped.
    build.patched(tmp_path / "hog" / "lessons", SLUG, function="read_count", append=SPIN_IN_EVERY_EXERCISE,
                  body="if value == '41':\n    _spin()\nreturn int(value) if value and value.isdigit() else 0")
    record = _graded_alone(tmp_path, "hog", "--test-timeout", "2", "--timeout", "5")
    assert record["status"] == "timeout", f"stopped after 5 s of the copy's CPU, not {record['status']!r}"
    spent = _test_cpus(record)
    assert min(spent) >= 0, f"a test's CPU came out negative: {min(spent)}"


HIDE_CPU_IN_DISCARDED_CHILDREN = """
import ctypes as _ctypes
import signal as _signal

# SIGCHLD ignored (through libc: the app is not imported in the main thread): the kernel discards each
# child as it exits, CPU and all
_ctypes.CDLL(None).signal(int(_signal.SIGCHLD), _ctypes.c_void_p(int(_signal.SIG_IGN)))
_read_count = read_count


def _spend_out_of_sight(seconds):
    if os.fork() == 0:
        ends = time.process_time() + seconds
        while time.process_time() < ends:
            pass
        os._exit(0)
    try:
        os.waitpid(-1, 0)            # with SIGCHLD ignored: returns once every child has ended (ECHILD)
    except ChildProcessError:
        pass


def read_count(value):
    _spend_out_of_sight(0.2)
    return _read_count(value)
"""


def test_cpu_of_children_the_kernel_discarded_still_counts_for_the_copy(tmp_path):
    # A copy that ignores SIGCHLD has its children reaped by the kernel as they exit, and no walk of
    # /proc sees what they spent: 0.2 s of CPU in a child for each read of a count, about 10 s in all,
    # went by unseen against a budget of 5 s, and the copy (whose answers are right) was graded "ok".
    build.patched(tmp_path / "hider" / "lessons", SLUG, prepend="import os\nimport time",
                  append=HIDE_CPU_IN_DISCARDED_CHILDREN)
    record = _graded_alone(tmp_path, "hider", "--test-timeout", "2", "--timeout", "5")
    assert record["status"] == "timeout", f"stopped after 5 s of the copy's CPU, not {record['status']!r}"
    spent = _test_cpus(record)
    assert spent and min(spent) >= 0.2, f"a test was not charged its child's 0.2 s of CPU: {min(spent)} s"


SPEND_IN_DISCARDED_CHILDREN = """
import os, signal, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for _ in range(3):
    if os.fork() == 0:
        ends = time.process_time() + 0.3
        while time.process_time() < ends:
            pass
        os._exit(0)
try:
    os.waitpid(-1, 0)
except ChildProcessError:
    pass
print(sum(os.times()[:4]))
"""


@pytest.mark.parametrize("kind", ["v2", "v1"])
def test_a_cgroup_counts_the_cpu_of_children_the_kernel_discarded_and_is_removed_after(kind):
    from course.tools.grading import cpuacct

    account = cpuacct.Account.create((kind,))
    if account is None:
        pytest.skip(f"this machine has no writable cgroup {kind} hierarchy")
    try:
        proc = subprocess.run(account.command([sys.executable, "-c", SPEND_IN_DISCARDED_CHILDREN]),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout) < 0.5, "the process's own accounting was meant to miss its children"
        assert account.seconds() >= 0.85, f"the cgroup saw {account.seconds():.2f} s of the 0.9 s spent"
        leftover = subprocess.Popen(account.command(["sleep", "60"]))
        time.sleep(0.2)
    finally:
        account.close()
    assert leftover.wait(timeout=5) == -signal.SIGKILL, "close() kills what is left in the cgroup"
    assert not os.path.exists(account.folder), "close() removes the cgroup"


def test_code_the_grader_cannot_parse_costs_only_that_copy_and_the_class_is_graded(tmp_path):
    # The grader reads each copy's code in its own process (untouched exercises, fair credit, kit
    # imports, identical copies). A line the parser runs out of memory on (MemoryError) and a
    # working return of 900 nested minus signs (RecursionError when compared) each ended the whole
    # class's grading with a traceback, and no gradebook was written.
    klass = tmp_path / "class"
    build.patched(klass / "memory" / "lessons", SLUG, append="a " * 3000)
    solved = build.solution_text(SLUG)
    build.write(klass / "deep" / "lessons", SLUG, solved.replace("    return 0", "    return " + "-" * 900 + "0", 1))
    build.solved(klass / "solved" / "lessons", SLUG)
    proc = subprocess.run(grade_command(sorted(klass.iterdir()), tmp_path / "out", "--no-progress"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert load(tmp_path / "out", "solved")["points"] == LESSON.max_points
    assert load(tmp_path / "out", "deep")["points"] == LESSON.max_points, "its code works: it earns its points"
    assert load(tmp_path / "out", "memory")["points"] == 0
    rows = (tmp_path / "out" / "gradebook.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4, rows


def test_odd_names_deep_folders_and_heaps_of_files_cost_only_that_copy_and_the_class_is_graded(tmp_path):
    # Each of these ended the class's grading with a traceback and no gradebook: a symlink whose name
    # is not UTF-8 (its name went into the feedback), a student folder whose name is not UTF-8, and
    # folders 1,100 deep in a lesson (the copying recursed; it no longer does, and stops at
    # LESSON_DEPTH). 50,000 empty files cost the grader 9 s; it copies LESSON_FILES at most.
    klass = tmp_path / "class"
    for name in ("honest", "badlink", "deep", "heap"):
        build.solved(klass / name / "lessons", SLUG)
    os.symlink(b"app.py", os.path.join(os.fsencode(klass / "badlink" / "lessons" / SLUG), b"\xff\xfe"))
    odd = os.path.join(os.fsencode(klass), b"st\xffu")
    build.solved(Path(os.fsdecode(odd)) / "lessons", SLUG)
    (klass / "deep" / "lessons" / SLUG / ("d/" * 50)).mkdir(parents=True)     # copied no deeper than LESSON_DEPTH
    for number in range(1500):             # names that sort before app.py: it is still copied, and first
        (klass / "heap" / "lessons" / SLUG / f"Frame_{number}.png").touch()
    proc = subprocess.run(grade_command([klass], tmp_path / "out", "--no-progress", "--no-fair-credit"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "gradebook.csv").read_text(encoding="utf-8"))))
    assert sorted(row["student"] for row in rows) == ["badlink", "deep", "heap", "honest", "st\ufffdu"]
    assert {row["student"]: float(row["total"]) for row in rows} == dict.fromkeys(
        ["badlink", "deep", "heap", "honest", "st\ufffdu"], float(LESSON.max_points)), "every app.py is solved"
    for name in ("deep", "heap"):
        assert "not copied in full" in (tmp_path / "out" / "feedback" / f"{name}.md").read_text(encoding="utf-8")


def test_a_hybrid_keeps_the_tokenizers_lines_and_the_students_declared_encoding():
    from course.tools.grading import hybrid, same

    reference = build.solution_text(SLUG)
    first, rest = reference.split("\n", 1)
    for separator in ("\x0c", "\u2028", "\x85", "\x1c"):     # str.splitlines() splits there, Python does not
        student = f"{first}\n# page{separator} break\n{rest}"
        assert same.parse(hybrid.hybrid(student, reference, "01.2")) is not None, repr(separator)
    ascii_only = "# -*- coding: ascii -*-\n" + reference        # the reference's docstrings are not ASCII:
    written = hybrid.encoded(hybrid.hybrid(ascii_only, reference, "01.2"))   # UTF-8, and the line says so
    assert written.startswith(b"# -*- coding: utf-8 -*-\n") and written.decode("utf-8").count("\n") == \
        hybrid.hybrid(ascii_only, reference, "01.2").count("\n"), "same lines, the coding line mended"
    latin = "# -*- coding: latin-1 -*-\n# caf\u00e9\n" + reference.encode("latin-1", "replace").decode("latin-1")
    assert hybrid.encoded(latin).startswith(b"# -*- coding: latin-1 -*-\n# caf\xe9\n")


def test_the_reference_stands_in_for_what_is_not_started_except_a_definition_a_started_exercise_shares():
    from course.tools.grading import hybrid

    slug = "08_store_backends"
    student = build.starter_text(slug).replace('raise todo("08.5")', 'raise todo("08.5")  # 08.4 done here')
    student = build.with_body(student, "store_error_answer", 'return None\nraise todo("08.5")')
    text, taken = hybrid.with_reference_for(student, build.solution_text(slug), slug, {"08.1", "08.2", "08.3", "08.5"})
    assert taken == {"08.1", "08.2", "08.3"}, "08.5 shares store_error_answer with 08.4, started: it stays"
    assert 'raise todo("08.1")' not in text and 'raise todo("08.5")' in text


def test_a_lesson_that_does_not_import_is_one_problem_whatever_is_not_started():
    # The tests of exercises not started are not run: their records must not hide the one message
    # every other test failed with (and fair credit then skips a lesson that hangs at import).
    from course.tools.grading.plan import Plan, TestCase
    from course.tools.grading.run import NOT_STARTED_EXERCISE, Run
    from course.tools.grading.score import score

    hang = "lessons/01_raw_cookies/app.py does not import: importing it did not finish"
    tests, records = [], []
    for exercise in LESSON.exercises:
        case = TestCase(f"tests/test_{SLUG}.py::t_{exercise.id}", SLUG, exercise.id, 1)
        tests.append(case)
        message = NOT_STARTED_EXERCISE.format(exercise=exercise.id, slug=SLUG) if exercise.id == "01.4" else hang
        records.append({"nodeid": case.nodeid, "exercise": exercise.id, "weight": 1,
                        "outcome": "failed" if exercise.id == "01.4" else "error", "message": message})
    graded = score(Plan([LESSON], tests, 1, 10), Run(records, "ok", 0, 1.0, 0, ""), {}, not_started={"01.4"})[0]
    assert graded.problem == hang


def test_a_test_that_passed_in_any_round_of_fair_credit_counts():
    # A test runs in fair credit's first round (the reference standing in for what is not started)
    # and, failing there, in its exercise's hybrid: merged across rounds, the failure won.
    from course.tools.grading.plan import Plan, TestCase
    from course.tools.grading.run import Run
    from course.tools.grading.score import FAIR_ROUND, score

    case = TestCase(f"tests/test_{SLUG}.py::t", SLUG, "01.2", 1)
    failed = {"nodeid": case.nodeid, "exercise": "01.2", "weight": 1, "outcome": "failed", "message": "no"}
    fair = [{**failed, FAIR_ROUND: 1}, {**failed, "outcome": "passed", "message": "", FAIR_ROUND: 2},
            {**failed, "nodeid": case.nodeid + "x", FAIR_ROUND: 2}]
    plan = Plan([LESSON], [case, TestCase(case.nodeid + "x", SLUG, "01.2", 1)], 1, 10)
    run = Run([failed, {**failed, "nodeid": case.nodeid + "x"}], "ok", 0, 1.0, 0, "")
    tests = score(plan, run, {}, fair=fair)[0].exercises[1].tests
    assert [(t.outcome, t.fair) for t in tests] == [("passed", True), ("failed", False)]


def test_a_round_of_fair_credit_names_a_test_whose_id_holds_a_double_slash_as_pytest_does():
    from course.tools.grading.plan import Plan, TestCase

    lesson = manifest.lesson("08_store_backends")
    nodeid = "tests/test_08_store_backends.py::test_x[bogus://somewhere]"
    plan = Plan([lesson], [TestCase(nodeid, lesson.slug, "08.1", 1)], 1, 10, only_these_tests=True)
    assert plan.test_args([lesson]) == [f"{ROOT}/{nodeid}"], "pathlib folded // into /: pytest ran nothing"


def test_an_app_process_of_a_lesson_sees_that_lessons_folder_only(tmp_path):
    from course.tools.grading import sandbox

    for slug in ("08_store_backends", "09_concurrency"):
        (tmp_path / slug).mkdir()
    config = sandbox.Config(uid=1 << 20, target=str(tmp_path), scratch=str(tmp_path / "s"))
    served = [sys.executable, "-m", "course.tools.faults", "serve", str(tmp_path), "09_concurrency", "--port", "1"]
    assert sandbox._lesson_of(config, served, {}) == "09_concurrency"
    assert sandbox._lesson_of(config, [sys.executable, str(tmp_path / "08_store_backends" / "app.py")], {}) == \
        "08_store_backends"
    assert sandbox._lesson_of(config, ["gunicorn"], {"COURSE_BENCH_SLUG": "09_concurrency",
                                                     "OLDPWD": str(tmp_path / "08_store_backends")}) == "09_concurrency"
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)            # a TMPDIR through a symlink
    linked = [sys.executable, str(tmp_path.parent / f"{tmp_path.name}-link" / "08_store_backends" / "app.py")]
    assert sandbox._lesson_of(config, linked, {}) == "08_store_backends"
    assert sandbox._lesson_of(config, [*served[:4], str(tmp_path), ".."], {}) is None, "never the folder above"


FORKS_AND_SLEEPS = """
import os as _os
import time as _time

_create_app, _calls = create_app, []


def create_app(**options):            # at lesson 01's last app (it makes 32), once: children until the
    _calls.append(1)                  # copy's user has no process left (RLIMIT_NPROC)
    if len(_calls) == 32:
        forked = 0
        for _ in range(200):
            try:
                if _os.fork() == 0:
                    _time.sleep(600)
                    _os._exit(0)
                forked += 1
            except OSError:
                break
        print("FORKED", forked, flush=True)
    return _create_app(**options)
"""


def test_processes_one_lesson_leaves_behind_do_not_cost_the_next_lesson(tmp_path):
    copy = tmp_path / "forker" / "lessons"
    build.patched(copy, SLUG, append=FORKS_AND_SLEEPS)
    build.solved(copy, "02_signed_cookies")
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(tmp_path / "forker"), "--out",
                           str(tmp_path / "out"), "--lessons", "01,02", "--no-progress", "--no-fair-credit"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "FORKED" in (tmp_path / "out" / "logs" / "forker.log").read_text(encoding="utf-8"), "lesson 01 forked"
    signed = load(tmp_path / "out", "forker")["lessons"][1]
    assert signed["points"] == signed["max_points"], [(t["name"], t["message"][:200]) for ex in signed["exercises"]
                                                      for t in ex["tests"] if t["outcome"] != "passed"][:3]


SOURCE_LEAK = """
import inspect
_reference = [line.strip() for line in inspect.getsource(sign).splitlines() if "hmac" in line]
print("LEAKED-OUT", _reference, flush=True)
raise ValueError("LEAKED " + " | ".join(_reference))
"""

CROSS_LESSON = """
import ast as _ast, pathlib as _pl
_src = (_pl.Path(__file__).resolve().parent.parent / "10_capstone" / "app.py").read_text()
_fn = next(n for n in _ast.parse(_src).body if isinstance(n, _ast.FunctionDef) and n.name == "session_state")
_ns = {}
exec(compile(_ast.Module([_fn], []), "x", "exec"), _ns)
return _ns["session_state"]({**session, "renewed_at": now}, now, idle_timeout, absolute_timeout, float("inf"))
"""


def test_fair_credit_shows_no_reference_code_and_no_lesson_reads_another_lessons_hybrid(tmp_path):
    """Fair credit runs the reference's code beside the copy's (attacks: a started 02.2 that raises
    with the source of the sign standing in for 02.1, which the feedback and the log then showed; a
    07.3 that ran lesson 10's reference session_state, read from the round's lesson 10, for 3/3)."""
    copy = tmp_path / "thief" / "lessons"
    build.write(copy, "02_signed_cookies", build.with_body(build.starter_text("02_signed_cookies"), "unsign",
                                                           SOURCE_LEAK))
    build.write(copy, "07_cookie_security", build.with_body(build.starter_text("07_cookie_security"),
                                                            "session_expired", CROSS_LESSON))
    build.write(copy, "10_capstone", build.with_body(build.starter_text("10_capstone"), "html_text",
                                                     'x = 1\nraise todo("10.7")'))
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(tmp_path / "thief"), "--out",
                           str(tmp_path / "out"), "--lessons", "02,07,10", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    record = load(tmp_path / "out", "thief")
    seen = "\n".join(path.read_text(encoding="utf-8") for path in (tmp_path / "out").rglob("*")
                     if path.is_file() and path.suffix != ".png")
    assert "LEAKED" in seen, "the copy's own run shows what its own code raised"
    assert "hmac.new(secret.encode()" not in seen, "nothing of the reference reaches the grades, feedback or logs"
    expired = next(ex for lesson in record["lessons"] for ex in lesson["exercises"] if ex["exercise"] == "07.3")
    assert expired["points"] == 0, [(t["name"], t["outcome"], t["fair"]) for t in expired["tests"]]


def not_passed(result) -> list[tuple[str, str, str]]:
    """The tests of a graded copy that did not pass, with their messages: what a failed assertion shows."""
    return [(test.case.nodeid.rsplit("::", 1)[-1], test.outcome, (test.message or "")[:300])
            for lesson in result.lessons for exercise in lesson.exercises for test in exercise.tests
            if test.outcome != "passed"]


def test_a_bug_of_the_grader_in_one_copys_analysis_is_that_copys_grader_error_not_the_classs(tmp_path, monkeypatch):
    import io

    from course.tools.grading import batch, same

    real = same.lesson_prints

    def breaks_on_bo(lessons_dir, slugs):
        if lessons_dir is not None and "bo" in lessons_dir.parts:
            raise KeyError("a bug")
        return real(lessons_dir, slugs)

    monkeypatch.setattr(same, "lesson_prints", breaks_on_bo)
    for name in ("ann", "bo"):
        build.solved(tmp_path / name / "lessons", SLUG)
    results = batch.grade([str(tmp_path / "ann"), str(tmp_path / "bo")], tmp_path / "out", jobs=1, lessons=["01"],
                          progress=False, stderr=io.StringIO(), fair_credit=False)
    by_name = {each.name: each for each in results}
    assert by_name["ann"].run.status == "ok" and by_name["ann"].points == LESSON.max_points, not_passed(by_name["ann"])
    assert by_name["bo"].run.status == "grader error" and by_name["bo"].points == LESSON.max_points, \
        not_passed(by_name["bo"])
    assert any(batch.FAILED_ON_COPY in note and "KeyError" in note for note in by_name["bo"].run.notes)
    assert (tmp_path / "out" / "gradebook.csv").is_file()


def test_the_grader_analyses_only_what_python_would_import_and_no_more_than_max_source(tmp_path):
    from course.tools.grading import same

    solved = build.solution_text(SLUG)
    app = tmp_path / "app.py"
    app.write_bytes(solved.encode() + b"# \xff\n")         # Python imports it: the byte is in a comment
    assert same.read_source(app).endswith("# \ufffd\n")
    assert same.fingerprint(same.read_source(app)) == same.reference_fingerprint(SLUG), \
        "one byte that is not UTF-8 in a comment must not hide a copy of the reference from the flags"
    app.write_bytes(b"# -*- coding: no-such-codec -*-\n" + solved.encode())
    assert same.read_source(app) is None, "Python refuses this file: the grader does not read it either"
    app.write_bytes(b"# -*- coding: latin-1 -*-\n# \xe9\n" + solved.encode())
    assert same.read_source(app).startswith("# -*- coding: latin-1 -*-\n# \u00e9"), "decoded as Python does"
    app.write_text(solved + "\n_PAD = [" + "0," * same.MAX_SOURCE + "]\n", encoding="utf-8")
    assert same.read_source(app) is None, "a file over MAX_SOURCE costs the grader nothing to analyse"
    padded = tmp_path / "padded" / SLUG / "app.py"        # the reference, and a comment past the cap
    padded.parent.mkdir(parents=True)
    padded.write_text(solved + "#" * same.MAX_SOURCE + "\n", encoding="utf-8")
    prints = {"pad": same.lesson_prints(tmp_path / "padded", [SLUG])}
    assert same.flags(prints, {SLUG: "01"}) == {"pad": [f"lesson 01 = {same.MARKERS['too big']}"]}, \
        "padding a copy of the reference past the cap must not hide it from the flags"
    assert same.MAX_SOURCE >= 2 * max(len(path.read_bytes()) for path in (ROOT / "solutions").glob("*/app.py"))
    assert same.parse("a " * 3000) is None and same.parse("def (") is None


PHASES = """
import time

import pytest


def _spin(seconds):
    ends = time.process_time() + seconds
    while time.process_time() < ends:
        pass


@pytest.fixture
def slow_setup():
    _spin(0.9)
    yield
    _spin(0.9)


def test_spends_its_budget_over_setup_call_and_teardown(slow_setup):
    _spin(0.9)


def test_cheap():
    pass
"""

RUN_WITH_A_CPU_LIMIT = """
import sys, time
import pytest
from course.tools.pytest_plugin import TimeLimit

class ThisProcess:                 # the sandboxes' CPU, as the grader's test process reads it
    def cpu_seconds(self):
        return time.process_time()
    def reset(self):
        pass

sys.exit(pytest.main([*sys.argv[1:], "-q", "-p", "no:cacheprovider", "--disable-plugin-autoload", "-rA"],
                     plugins=[TimeLimit(1.0, hosts=ThisProcess())]))
"""


def test_a_tests_cpu_limit_covers_its_setup_call_and_teardown_together(tmp_path):
    # Each phase had a limit of its own: 0.9 s in setup, 0.9 s in the call and 0.9 s in teardown all
    # passed a limit of 1 s, and one test could cost three limits. (With 0.6 s each, the call had only
    # its last 0.2 s over the limit, and on a loaded machine no look came in them: it failed in teardown.)
    (tmp_path / "test_phases.py").write_text(PHASES, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", RUN_WITH_A_CPU_LIMIT, "test_phases.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "FAILED test_phases.py::test_spends_its_budget_over_setup_call_and_teardown" in proc.stdout, proc.stdout
    assert "took it past 1 s of CPU" in proc.stdout and "PASSED test_phases.py::test_cheap" in proc.stdout


CHUNKED_FLOOD = """
import socket as _socket

_create_app = create_app


def create_app(**options):
    app = _create_app(**options)

    def one_byte_chunks(environ, start_response):
        if environ.get("PATH_INFO") != "/theme" or environ.get("QUERY_STRING") or environ.get("HTTP_COOKIE"):
            return app(environ, start_response)
        got = {}

        def keep(status, headers, exc_info=None):
            got["status"], got["headers"] = status, headers
            return lambda data: None
        body = b"".join(app(environ, keep))
        sock = environ["wsgi.input"].raw._sock          # the connection itself: one sendall costs the copy little
        head = "".join(f"{k}: {v}\\r\\n" for k, v in got["headers"] if k.lower() != "content-length")
        start = f"HTTP/1.1 {got['status']}\\r\\n{head}Transfer-Encoding: chunked\\r\\nConnection: close\\r\\n\\r\\n"
        chunks = b"%x\\r\\n%s\\r\\n" % (len(body), body) + b"1\\r\\n \\r\\n" * 1_500_000 + b"0\\r\\n\\r\\n"
        sock.sendall(start.encode() + chunks)
        sock.shutdown(_socket.SHUT_WR)
        start_response("200 OK", [])
        return []
    return one_byte_chunks
"""


def test_cpu_a_copy_makes_the_tests_own_side_spend_counts_against_the_test(tmp_path):
    # An answer of a million and a half one-byte chunks costs the copy one sendall, and the test
    # process (the relay, the HTTP client) seconds of CPU, which no test was charged: it passed.
    build.patched(tmp_path / "chunky" / "lessons", SLUG, append=CHUNKED_FLOOD)
    record = _graded_alone(tmp_path, "chunky", "--test-timeout", "1")
    theme = next(t for lesson in record["lessons"] for ex in lesson["exercises"] for t in ex["tests"]
                 if t["name"] == "test_theme_is_light_by_default")
    assert theme["outcome"] != "passed" and "s of CPU" in theme["message"], theme


def test_the_graders_cpu_reading_a_copys_output_is_charged_to_the_copy():
    # 9 GB of output through the pipe cost the grader's reading thread 8 s of CPU, and the copy none.
    from course.tools.grading.run import CpuMeter

    meter = CpuMeter(os.getpid())            # made in the thread that reads the worker's output
    ends = time.thread_time() + 0.3
    while time.thread_time() < ends:         # what reading a flood costs that thread
        pass
    assert meter.spent >= 0.3, f"the reading thread's 0.3 s of CPU came out as {meter.spent:.2f} s"


def test_a_sandboxed_grade_caches_the_courses_compiled_tests_and_writes_none_into_the_copy(tmp_path):
    # Each worker of each copy imports the course's tests: without pytest's cache of the rewritten
    # modules it rewrites them all again (1.3 s a worker). The instructor's PYTHONDONTWRITEBYTECODE
    # does not stop the grader's own test process, and no cache ever lands in a hand-in.
    cached = sorted((ROOT / "tests" / "__pycache__").glob(f"test_{SLUG}.*-pytest-*.pyc"))
    for each in cached:
        each.unlink()
    build.solved(tmp_path / "ann" / "lessons", SLUG)
    proc = subprocess.run(grade_command([tmp_path / "ann"], tmp_path / "out", "--no-progress"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert sorted((ROOT / "tests" / "__pycache__").glob(f"test_{SLUG}.*-pytest-*.pyc")), \
        "the grader's test process did not keep pytest's rewritten test module"
    assert not list((tmp_path / "ann").rglob("__pycache__")), "a cache was written into the student's hand-in"


def test_a_folder_of_submissions_is_expanded_and_names_stay_unique(tmp_path):
    from course.tools.grading.find import find_submissions

    build.solved(tmp_path / "class" / "ann" / "lessons", SLUG)
    build.solved(tmp_path / "class" / "bo", SLUG)
    build.solved(tmp_path / "other" / "ann" / "lessons", SLUG)
    found, notes = find_submissions([str(tmp_path / "class"), str(tmp_path / "other" / "ann"),
                                     str(tmp_path / "nothing.zip")])
    assert [s.name for s in found] == ["ann", "ann-2", "bo"]
    assert any("holds 2 submissions" in n for n in notes) and any("not a folder" in n for n in notes)


def test_grade_without_a_submission_or_with_an_unknown_lesson_says_why(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(tmp_path / "none"), "--out", str(tmp_path),
                           "--lessons", "99"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no submission" in proc.stderr
    (tmp_path / "s").mkdir()
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(tmp_path / "s"), "--out", str(tmp_path),
                           "--lessons", "99"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "There is no lesson '99'" in proc.stderr and "Traceback" not in proc.stderr


def test_scoring_shares_an_exercises_points_by_weight():
    from course.tools.grading.plan import Plan, TestCase
    from course.tools.grading.run import Run
    from course.tools.grading.score import score

    tests = [TestCase(f"tests/test_{SLUG}.py::t{i}", SLUG, "01.2", weight) for i, weight in enumerate((1, 2, 3))]
    records = [{"nodeid": tests[0].nodeid, "outcome": "passed", "message": ""},
               {"nodeid": tests[1].nodeid, "outcome": "failed", "message": "AssertionError: no"},
               {"nodeid": tests[2].nodeid, "outcome": "passed", "message": ""},
               {"nodeid": tests[2].nodeid, "outcome": "error", "message": "teardown broke"}]
    plan = Plan([LESSON], tests, 1, 10)
    result = score(plan, Run(records, "ok", 0, 1.0, 0, ""), {})[0]
    visits = result.exercises[1]
    assert visits.points == round(POINTS["01.2"] * 1 / 6, 2) and visits.status == "partial"
    assert [t.outcome for t in visits.tests] == ["passed", "failed", "error"], "a teardown error is not a pass"
    assert result.exercises[0].status == "untested" and result.exercises[0].points == 0


def test_an_unchanged_starter_scores_zero_without_running_its_tests(graded):
    # The teeth check proves every exercise test fails on the shipped starter, so the grader
    # does not spend a test process on a lesson the student has not touched.
    out, _ = graded
    record = json.loads((out / "json" / "b_starter.json").read_text(encoding="utf-8"))
    text = json.dumps(record)
    assert "is the starter as the course ships it" in text, "an untouched lesson is reported as not started"
    assert "is the starter as the course ships it" not in (out / "json" / "c_half.json").read_text(encoding="utf-8")


def _scored(outcomes_by_exercise: dict[str, list[tuple[str, str]]]):
    """The grader's lesson result and ``check``'s exercise states, for the same made-up records."""
    from course.tools.grading.plan import Plan, TestCase
    from course.tools.grading.run import Run
    from course.tools.grading.score import score
    from course.tools.results import states

    tests, records = [], []
    for exercise, outcomes in outcomes_by_exercise.items():
        for i, (outcome, message) in enumerate(outcomes):
            tests.append(TestCase(f"tests/test_{SLUG}.py::t_{exercise}_{i}", SLUG, exercise, 1))
            records.append({"nodeid": tests[-1].nodeid, "exercise": exercise, "outcome": outcome, "message": message})
    graded = score(Plan([LESSON], tests, 1, 10), Run(records, "ok", 0, 1.0, 0, ""), {})[0]
    return graded, states(LESSON, records, "solutions"), records


CALL_TIMEOUT = ("timed out: the test's call took longer than 5 s "
                "(an endless loop, or a request that never gets an answer?)")
SETUP_TIMEOUT = CALL_TIMEOUT.replace("call", "setup")
STUCK = [("skipped", "not run: an earlier test of it timed out")]


def test_check_and_the_grader_read_the_records_the_same_way():
    from course.tools.results import load_problem

    graded, checked, records = _scored({
        IDS[0]: [("passed", ""), ("passed", "")],
        IDS[1]: [("passed", ""), ("failed", "AssertionError: no")],
        IDS[2]: [("failed", CALL_TIMEOUT)] + STUCK,
        IDS[3]: [("error", "fixture broke"), ("error", "fixture broke")],
    })
    assert [e.status for e in graded.exercises] == ["pass", "partial", "timeout", "error"]
    assert [s.state for s in checked] == ["done", "fail", "timeout", "error"], "check says it in its own words"
    assert graded.problem == load_problem(records) == ""


def test_a_lesson_that_does_not_load_is_one_problem_and_an_endless_loop_is_not():
    from course.tools.results import load_problem

    hangs_at_import = {ex: [("error", SETUP_TIMEOUT)] + STUCK for ex in IDS}
    graded, _, records = _scored(hangs_at_import)
    assert graded.problem == load_problem(records) == SETUP_TIMEOUT
    # every route loops: each exercise's first test times out with the same words, yet app.py did load
    loops_in_every_route = {ex: [("failed", CALL_TIMEOUT)] + STUCK for ex in IDS}
    graded, checked, records = _scored(loops_in_every_route)
    assert graded.problem == load_problem(records) == ""
    assert {e.status for e in graded.exercises} == {"timeout"} and {s.state for s in checked} == {"timeout"}


# ---------------------------------------------------------------- hostile copies (the sandbox)

TOKEN = ("COURSE_INSTRUCTOR_TOKEN", "tok-" + hashlib.sha1(str(ROOT).encode()).hexdigest())
CLASSMATES = ["a_classmate", "z_classmate"]      # solved: graded with the attackers, before and after them


def _nodeids() -> list[tuple[str, str]]:
    from course.tools.grading.plan import collect
    return [(t.nodeid, t.exercise) for t in collect([LESSON])]


def _grade_the_attacks(root: Path) -> dict:
    klass, out = root / "class", root / "grades"
    where = {"solution": str(ROOT / "solutions" / SLUG / "app.py"), "out": str(out), "klass": str(klass),
             "marker": MARKER + "-daemon", "conftest": str(ROOT / "tests" / "conftest.py"),
             "token_name": TOKEN[0], "nodeids": _nodeids()}
    copies = attacks.build(klass, where)
    for name in CLASSMATES:
        build.solved(klass / name / "lessons", SLUG)
    hand_ins = {name: (klass / name / "lessons" / SLUG / "app.py").read_text() for name in CLASSMATES}
    students = sorted(copies + [klass / name for name in CLASSMATES])
    proc = subprocess.run(grade_command(students, out, "--no-progress"), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, TOKEN[0]: TOKEN[1]})
    import time
    time.sleep(4)                   # the daemon would rewrite the grade files 3 s after its start
    return {"out": str(out), "klass": str(klass), "returncode": proc.returncode, "output": proc.stdout + proc.stderr,
            "hand_ins": hand_ins, "names": [p.name for p in students]}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """The hostile copies of tests/fixtures/attacks.py and two solved classmates, graded together once
    per test run (as ``golden``, shared by xdist's workers)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        run = _grade_the_attacks(tmp_path_factory.mktemp("attacks"))
    else:
        shared = tmp_path_factory.getbasetemp().parent / "attack-grades"
        with open(f"{shared}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = shared / "run.json"
            if not done.exists():
                shared.mkdir(exist_ok=True)
                done.write_text(json.dumps(_grade_the_attacks(shared)))
            run = json.loads(done.read_text())
    assert run["returncode"] == 0, run["output"]
    return SimpleNamespace(out=Path(run["out"]), klass=Path(run["klass"]), output=run["output"],
                           hand_ins=run["hand_ins"], names=run["names"])


def test_no_hostile_copy_earns_a_point_and_every_classmate_gets_full_marks(attacked):
    totals = {name: load(attacked.out, name)["points"] for name in attacked.names}
    assert totals == {name: LESSON.max_points if name in CLASSMATES else 0 for name in attacked.names}


def test_no_hostile_copy_changes_a_grade_file_or_a_classmates_hand_in(attacked):
    hacked = [str(path) for path in attacked.out.rglob("*.*") if b"HACKED" in path.read_bytes()]
    assert not hacked, f"grade files rewritten: {hacked}"
    for name, before in attacked.hand_ins.items():
        assert (attacked.klass / name / "lessons" / SLUG / "app.py").read_text() == before, f"{name}'s app.py edited"
    assert not (ROOT / "tests" / "conftest.py").exists(), "a copy wrote tests/conftest.py into the course"


def test_no_hostile_copy_leaves_a_process_or_reads_the_instructors_environment(attacked):
    assert not marked_processes(MARKER + "-daemon"), "the detached daemon outlived its grading"
    leaked = [str(path) for path in attacked.out.rglob("*.*") if TOKEN[1].encode() in path.read_bytes()]
    assert not leaked and TOKEN[1] not in attacked.output, f"token read: {leaked}"
    assert "LEAKED: None" in (attacked.out / "logs" / "t_env_token.log").read_text(encoding="utf-8")


def test_a_symlink_is_not_followed_and_the_solution_is_not_there_to_read(attacked):
    log = (attacked.out / "logs" / "n_symlink.log").read_text(encoding="utf-8")
    assert f"symlinks are never followed: lessons/{SLUG}/app.py" in log
    assert load(attacked.out, "m_exec_solution")["lessons"][0]["exercises"][0]["status"] == "todo"


def test_a_loaded_machine_gives_the_same_totals(graded, klass, tmp_path):
    """Time limits are CPU seconds of the copy's sandbox: two busy loops change no outcome."""
    out, _ = graded
    again = ["c_half", "e_endless_loop"]          # passes, fails, and a test that runs into its time limit
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        proc = subprocess.run(grade_command([klass / name for name in again], tmp_path, "--no-progress"),
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert proc.returncode == 0, proc.stderr
    before = [line for line in (out / "grades.csv").read_text().splitlines() if line.split(",")[0] in again]
    assert (tmp_path / "grades.csv").read_text().splitlines()[1:] == before


def test_without_a_sandbox_grading_is_refused_unless_unsafe_is_asked_for(tmp_path, monkeypatch):
    from course.tools.grading import batch, sandbox

    build.solved(tmp_path / "ann" / "lessons", SLUG)
    monkeypatch.setattr(sandbox, "_PROBLEM", ["bwrap is not installed (Debian: apt-get install bubblewrap)"])
    with pytest.raises(batch.GradeError, match="no sandbox for the students' code: bwrap is not installed"):
        batch.grade([str(tmp_path / "ann")], tmp_path / "out", lessons=["01"], progress=False)
    batch.grade([str(tmp_path / "ann")], tmp_path / "out", lessons=["01"], progress=False, unsafe=True,
                stderr=open(os.devnull, "w"))
    assert "WITHOUT a sandbox" in (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "WITHOUT a sandbox" in (tmp_path / "out" / "logs" / "ann.log").read_text(encoding="utf-8")


def test_the_wire_carries_values_handles_and_exceptions_both_ways():
    """course.tools.grading.wire, both ends in this process: what crosses is what arrives."""
    from course.tools.grading import wire

    class Here:
        value = 7

        def twice(self, n):
            return 2 * n

    mine, theirs = wire.Objects(), wire.Objects()
    a = wire.Codec("$g", "$h", mine, lambda key: ("remote", key), lambda value: isinstance(value, Here))
    b = wire.Codec("$h", "$g", theirs, lambda key: wire.Remote(b, key, None))
    plain = [None, True, 3, 2.5, "x", b"\x00\xff", ("a", 1), {1: "one"}, {"$t": "tagged-looking key"}, {3, 4},
             {"nested": [b"b", (1, (2,))]}]
    assert [b.decode(json.loads(json.dumps(a.encode(each)))) for each in plain] == plain
    here = Here()
    handle = a.encode(here)
    assert handle == {"$g": 1} and a.decode(handle) is here, "an object stays where it lives, as a handle"
    with pytest.raises(TypeError, match="cannot be handed"):
        a.encode(os)
    bases = wire.builtin_bases(KeyError)
    with pytest.raises(LookupError) as caught:
        wire.raise_error({"type": "LockBusy", "bases": bases, "message": "busy"})
    assert type(caught.value).__name__ == "LockBusy" and "busy" in str(caught.value)
    assert wire.exception_class("LockBusy", bases) is type(caught.value), "one class per name, so raises() matches"
    assert wire.call_on(here, "twice", [4], {}) == 8
    with pytest.raises(PermissionError):
        wire.call_on(here, "__class__", [], {})


def test_calling_a_class_across_the_wire_makes_an_instance_even_when_its_instances_are_callable():
    """``app_module.SessionMiddleware(None, secret, store)``: the class's own ``__call__`` is the method of
    its instances (a WSGI app's), not the call that makes one; calling it that way called the method
    with ``self=None`` and failed the reference solution of 03.3 in the sandbox."""
    from course.tools.grading import wire

    class Middleware:
        def __init__(self, app, secret):
            self.app, self.secret = app, secret

        def __call__(self, environ, start_response):
            return ["served"]

    made = wire.call_on(Middleware, "__call__", [None, "s3cret"], {})
    codec = wire.Codec("$h", "$g", wire.Objects(), lambda key: None)

    class Session(dict):
        pass

    assert codec.encode(Session(a=1)) == {"$h": 1}, "an answer keeps the object (the test calls its methods)"
    assert codec.encode([Session(a=1)], plain_dicts=True) == [{"a": 1}], "a call back's argument is its items"
    assert isinstance(made, Middleware) and made.secret == "s3cret"
    assert wire.call_on(made, "__call__", [{}, None], {}) == ["served"], "an instance's call is its __call__"


# ---------------------------------------------------------------- the adversarial review's findings

def _grade_the_names_and_links(root: Path) -> dict:
    """Two sections with a ``bob`` each (solved), a third student who named her folder ``bob-2`` (the
    starter), names a spreadsheet or Markdown would run or break, and a hand-in whose ``lessons`` is a
    symlink to the course's solutions (unzip keeps symlinks)."""
    klass = root / "class"
    build.solved(klass / "secA" / "bob" / "lessons", SLUG)
    build.solved(klass / "secB" / "bob" / "lessons", SLUG)
    build.starter(klass / "secB" / "bob-2" / "lessons", SLUG)
    build.starter(klass / "secB" / "=1+2" / "lessons", SLUG)
    build.starter(klass / "secB" / "eve|x\ny" / "lessons", SLUG)
    (klass / "mallory").mkdir()
    (klass / "mallory" / "lessons").symlink_to(ROOT / "solutions")
    (klass / "sneaky").symlink_to(ROOT / "solutions")        # a "copy" that is the course's own solutions/
    out = root / "grades"
    paths = [klass / "secA" / "bob", klass / "secB" / "bob", klass / "secB" / "bob-2", klass / "secB" / "=1+2",
             klass / "secB" / "eve|x\ny", klass / "mallory", klass / "sneaky"]
    proc = subprocess.run(grade_command(paths, out, "--no-progress"), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return SimpleNamespace(out=out, output=proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def names_and_links(tmp_path_factory):
    return _grade_the_names_and_links(tmp_path_factory.mktemp("names"))


def test_a_name_taken_by_a_classmate_is_never_given_to_a_renamed_student(names_and_links):
    out = names_and_links.out
    by_student: dict[str, float] = {}
    for row in csv.DictReader(open(out / "grades.csv", encoding="utf-8")):
        by_student[row["student"]] = by_student.get(row["student"], 0) + float(row["points"])
    assert by_student["bob"] == by_student["bob-3"] == LESSON.max_points, by_student
    assert by_student["bob-2"] == 0, "the student who named her folder bob-2 keeps her own (starter) grade"
    assert load(out, "bob-2")["points"] == 0 and load(out, "bob-3")["points"] == LESSON.max_points


def test_a_name_is_escaped_in_grades_csv_and_summary_md(names_and_links):
    out = names_and_links.out
    students = {row["student"] for row in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}
    assert "'=1+2" in students and "=1+2" not in students, "a name that starts with = runs as a formula"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| eve\\|x y |" in summary, "a | or a line break in a name breaks the students' table"
    rows_of_table = [line for line in summary.split("## Students")[1].splitlines() if line.startswith("|")]
    assert all(line.count("|") - line.count("\\|") == rows_of_table[0].count("|") for line in rows_of_table)


def test_a_lessons_folder_that_is_a_symlink_is_not_followed_and_the_feedback_says_so(names_and_links):
    out = names_and_links.out
    assert load(out, "mallory")["points"] == 0, "a lessons/ symlinked to solutions/ was graded as the reference"
    assert "symlinks are never followed: lessons" in (out / "feedback" / "mallory.md").read_text(encoding="utf-8")
    assert load(out, "solutions")["points"] == 0, "the course's own solutions/ was graded as a student's copy"
    assert "inside the course's solutions/" in (out / "feedback" / "solutions.md").read_text(encoding="utf-8")


def test_a_symlink_below_the_lessons_or_leading_out_of_the_hand_in_is_dropped(tmp_path):
    from course.tools.grading.find import find_submissions
    from course.tools.grading.run import copy_lessons

    build.solved(tmp_path / "ann" / "lessons", SLUG)
    (tmp_path / "ann" / "lessons" / SLUG / "notes").mkdir()
    (tmp_path / "ann" / "lessons" / SLUG / "notes" / "ref.py").symlink_to(ROOT / "solutions" / SLUG / "app.py")
    (tmp_path / "ann" / "lessons" / "02_signed_cookies").symlink_to(ROOT / "solutions" / "02_signed_cookies")
    (ann,), _ = find_submissions([str(tmp_path / "ann")])
    dropped = copy_lessons(ann, [LESSON, manifest.lesson("02")], tmp_path / "copy")
    assert dropped == [f"lessons/{SLUG}/notes/ref.py", "lessons/02_signed_cookies"]
    assert sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*")) == \
        [SLUG, f"{SLUG}/app.py", f"{SLUG}/notes"]


def _callback_end(objects: dict):
    """The grader's end of the call-back channel (sandbox.HostProcess._callback) over a socket pair;
    ``ask(op, key, name, ...)`` sends what a copy could send, and returns the answer frame."""
    import socket
    import threading

    from course.tools.grading import sandbox, wire

    host = object.__new__(sandbox.HostProcess)
    host.objects = wire.Objects()
    host.codec = wire.Codec("$g", "$h", host.objects, lambda key: None, sandbox.trusted_object)
    host.send_lock = threading.Lock()
    host.callbacks, copy = socket.socketpair()
    keys = {name: host.objects.add(value) for name, value in objects.items()}

    def ask(op, name, attribute, **fields):
        host._callback({"id": 1, "op": op, "target": keys[name], "name": attribute, **fields})
        return wire.receive(copy)

    return ask


def test_a_copy_cannot_set_or_replace_what_the_grader_hands_it(tmp_path):
    """The call-back channel (attacks: root_userdb, oracle_setattr): no setattr, no data, only the class's methods."""
    from course.kit.security import FakeClock
    from course.kit.stores import CountingStore
    from course.kit.users import UserDB

    store, users = CountingStore(), UserDB(tmp_path / "users.sqlite3")
    path = users.path
    ask = _callback_end({"store": store, "users": users, "clock": FakeClock(5)})
    assert "err" in ask("setattr", "users", "path", value=str(tmp_path / "elsewhere.sqlite3"))
    assert users.path == path and not (tmp_path / "elsewhere.sqlite3").exists()
    assert "err" in ask("setattr", "store", "peek", value=None)
    assert "err" in ask("delattr", "store", "peek")
    assert "peek" not in vars(store) and type(store).peek.__get__(store) == store.peek
    assert "err" in ask("getattr", "users", "path"), "data of a grader's object is not the copy's to read"
    assert "err" in ask("call", "users", "_connect")
    assert ask("call", "store", "length") == {"ok": 0, "id": 1}, "the class's own methods stay callable"
    assert "err" in ask("call", "clock", "advance", args=[3600]), "moving the clock is the test's, not the copy's"
    assert ask("call", "clock", "__call__")["ok"] == 5.0
    assert "$g" in ask("getattr", "store", "store")["ok"], "what a CountingStore counts is handed as a handle"


@pytest.fixture(scope="module")
def lesson_08_graded(tmp_path_factory):
    """A probe of what lesson 08's sandbox reaches and a solved lesson 08, graded in one run, while a
    port of the grader's side listens and the machine's Redis, PostgreSQL and MariaDB hold a marker."""
    import socket
    import uuid

    from course.tools import services

    root = tmp_path_factory.mktemp("lesson08")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0)
    marker = f"grader_probe_{uuid.uuid4().hex[:12]}"
    machine = _machine_markers(services, marker)
    try:
        probe = attacks.build_network_probe(root / "probe", "08_store_backends",
                                            {"port": listener.getsockname()[1], "redis_key": marker,
                                             "redis_value": marker, "marker": marker,
                                             "solution": str(ROOT / "solutions" / "08_store_backends" / "app.py")})
        solved = build.solved(root / "solved" / "lessons", "08_store_backends").parents[2]
        proc = subprocess.run([sys.executable, "-m", "course", "grade", str(probe), str(solved), "--out",
                               str(root / "out"), "--lessons", "08", "--jobs", "1", "--no-progress"],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
        for drop in machine.values():
            drop()
    return root / "out", proc, machine


def _machine_markers(services, marker: str) -> dict:
    """The marker in each of the machine's servers that answers; how to remove it again, by server."""
    made = {}
    if services.reachable(services.url_for("redis"), 6379):
        import redis
        machine_redis = redis.Redis.from_url(services.url_for("redis"))
        machine_redis.set(marker, marker, ex=600)
        made["redis"] = lambda: machine_redis.delete(marker)
    if services.reachable(services.url_for("postgres"), 5432):
        import psycopg
        url = services.url_for("postgres")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {marker} (x int)")

        def drop_postgres():
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {marker}")
        made["postgres"] = drop_postgres
    if services.reachable(services.url_for("mysql"), 3306):
        import pymysql
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test")
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {marker} (x int)")
        made["mysql"] = lambda: conn.cursor().execute(f"DROP TABLE IF EXISTS {marker}")
    return made


def test_lesson_08s_sandbox_reaches_nothing_of_the_machine(lesson_08_graded):
    """No sandbox shares the machine's network (attacks: pg_solutions, net_classmates): the PostgreSQL and
    MariaDB it finds on 127.0.0.1 are its own (not the machine's, which hold the marker; they cannot
    read the reference solution), not the machine's Redis, not a port the grader's side listens on."""
    from course.tools import services

    out, _, machine = lesson_08_graded
    assert {"postgres", "mysql"} <= set(machine) or not services.required(), "the machine's servers hold the marker"
    log = (out / "logs" / "probe.log").read_text(encoding="utf-8")
    assert "REACHED: []" in log, [line for line in log.splitlines() if "REACHED" in line]
    assert "PRIVATE: ['mariadb', 'postgres']" in log, [line for line in log.splitlines() if ":" in line][:20]
    assert load(out, "probe")["points"] == 0


def test_a_copys_private_postgresql_and_mariadb_are_graded_without_trust_services(lesson_08_graded):
    """Every check of lesson 08 that needs PostgreSQL or MariaDB is graded, on the copy's own servers."""
    out, proc, _ = lesson_08_graded
    tests = [t for lesson in load(out, "solved")["lessons"] for ex in lesson["exercises"] for t in ex["tests"]]
    database = [t for t in tests if "postgres" in t["name"] or "mysql" in t["name"]]
    assert len(database) >= 10 and all(t["outcome"] == "passed" for t in database), \
        [(t["name"], t["outcome"], t["message"][:200]) for t in database if t["outcome"] != "passed"]
    assert not [t for t in tests if t["outcome"] == "not graded" and "mongodb" not in t["name"]]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "were not graded" not in summary and "were not graded" not in proc.stderr


def test_only_trust_services_shares_the_machines_network_and_a_database_without_a_private_server_is_not_graded():
    from course.tools import results
    from course.tools.grading import sandbox
    from course.tools.grading.score import _exercise_result

    private = sandbox.Config(uid=1 << 20, target="/nonexistent", scratch="/nonexistent", network=["08_store_backends"],
                             services=["postgres", "mysql"], templates={"postgres": "/t/pg", "mysql": "/t/my"})
    trusted = sandbox.Config(**{**private.__dict__, "trust_services": True})
    assert "--net" in sandbox.network_command(private) and "--net" not in sandbox.network_command(trusted)
    assert "--mount" in sandbox.network_command(trusted), "the scratch tmpfs lives in the worker's own mounts"
    assert "--unshare-net" not in sandbox.command(private, False, ["true"]), "the sandbox inherits the private one"
    assert "--unshare-net" in sandbox.command(trusted, False, ["true"])
    env = sandbox.network_environment(private)
    assert env["POSTGRES_URL"] == "postgresql://postgres@127.0.0.1:5432/test", "the copy's own, where the tests look"
    assert env["MYSQL_URL"] == "mysql://root@127.0.0.1:3306/test"
    assert env["COURSE_UNTRUSTED_SERVICES"].split(",") == ["mongodb"], "no private MongoDB: its checks not graded"
    no_mariadb = sandbox.Config(**{**private.__dict__, "templates": {"postgres": "/t/pg"}})
    assert sandbox.network_environment(no_mariadb)["COURSE_UNTRUSTED_SERVICES"].split(",") == ["mysql", "mongodb"]
    assert "MYSQL_URL" not in sandbox.network_environment(no_mariadb)
    skipped = {"outcome": "skipped", "message": f"Skipped: {results.NOT_GRADED_SIGN}: ..."}
    assert results.outcome(skipped) == "not graded"
    assert results.status(["passed", "not graded"], False) == "pass"
    assert results.status(["not graded", "not graded"], False) == "not graded"
    case = SimpleNamespace(weight=1)
    tests = [SimpleNamespace(case=case, outcome="passed"), SimpleNamespace(case=case, outcome="not graded")]
    assert _exercise_result(manifest.exercise("08.1"), tests, False).points == manifest.exercise("08.1").points


def test_a_copy_gets_a_capped_share_of_processes_memory_and_disk(tmp_path):
    """attack: resources: 3 x 1.5 GB and 1 GB of files passed; now 64 processes, 1 GB a process, 256 MB of scratch."""
    copy = attacks.build_resources_probe(tmp_path / "greedy")
    proc = subprocess.run(grade_command([copy], tmp_path / "out", "--no-progress"), cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(each for each in (tmp_path / "out" / "logs" / "greedy.log").read_text().splitlines()
                if each.startswith("LIMITS:"))
    got = dict(part.split("=") for part in line.split()[1:])
    assert int(got["processes"]) < 64 and got["memory"] == "refused", line
    assert int(got["written_mb"]) <= 256, line


def test_the_cpu_of_every_process_a_copy_starts_is_counted():
    """attack: cpu_starve: spinners in sessions of their own were never charged; the meter counts the tree."""
    import signal
    import time

    from course.tools.grading.run import CpuMeter
    from course.tools.grading.sandbox import descendants

    spinner = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        pass\ntime.sleep(60)\n"
    child = subprocess.Popen([sys.executable, "-c", spinner])
    try:
        meter = CpuMeter(child.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and meter() < 0.5:
            time.sleep(0.1)
        assert meter() >= 0.5, f"the spinner's CPU was not counted: {meter()}"
    finally:
        for pid in descendants(child.pid) + [child.pid]:
            os.kill(pid, signal.SIGKILL)
        child.wait()


def test_compare_digest_is_read_from_the_source_outside_the_sandbox(tmp_path):
    """attack: probe_forge: the copy answered the sandbox's compare_digest probe itself; the grader now
    also reads the function's syntax tree, outside, so == fails 02.2's check whatever the probe says."""
    from course.tools.testing import calls_compare_digest

    for slug, function in (("02_signed_cookies", "unsign"), ("06_login_logout", "check_password"),
                           ("07_cookie_security", "csrf_token_ok")):
        assert calls_compare_digest(build.solution_text(slug), function), f"{slug}'s solution {function}"
    helper = "from hmac import compare_digest as same\ndef _eq(a, b):\n    return same(a, b)\ndef check(a, b):\n" \
             "    return _eq(a, b)\n"
    assert calls_compare_digest(helper, "check"), "a helper of the module's own that calls it counts"
    assert not calls_compare_digest("import hmac\ndef check(a, b):\n    return a == b\nhmac.compare_digest(1, 1)\n",
                                    "check")
    copy = attacks.build_probe_forge(tmp_path / "forger")
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(copy), "--out", str(tmp_path / "out"),
                           "--lessons", "02", "--jobs", "1", "--test-timeout", "5", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    unsign = next(e for e in load(tmp_path / "out", "forger")["lessons"][0]["exercises"] if e["exercise"] == "02.2")
    digest = [t for t in unsign["tests"] if "compare_digest" in t["name"]]
    assert [t["outcome"] for t in digest] == ["failed"] and unsign["status"] == "partial", unsign


def test_a_lesson_that_imports_its_own_reference_from_the_kit_is_flagged(tmp_path):
    from course.tools.grading import kitcheck

    copy = attacks.build_kit_delegation(tmp_path / "delegate")
    flags = kitcheck.flags(copy / "lessons", ["01_raw_cookies", "02_signed_cookies"])
    assert len(flags) == 1 and "lesson 02's app.py imports course.kit.signing" in flags[0], flags
    assert kitcheck.kit_imports("from course.kit import signing as s\n") >= {"course.kit.signing"}
    everything = sorted(p.name for p in (ROOT / "solutions").iterdir() if (p / "app.py").is_file())
    assert kitcheck.flags(ROOT / "solutions", everything) == [], "the reference solutions use the kit as they may"


def test_a_check_not_graded_is_neither_a_pass_nor_a_failure_in_the_class_files():
    from course.tools.grading import report
    from course.tools.grading.find import Submission
    from course.tools.grading.plan import Plan
    from course.tools.grading.run import Run
    from course.tools.grading.score import StudentResult
    from course.tools.results import NOT_GRADED_SIGN

    skipped = ("skipped", f"Skipped: {NOT_GRADED_SIGN}: no postgres here")
    graded, _, _ = _scored({"01.1": [("passed", ""), skipped], "01.2": [skipped, skipped]})
    one, two = graded.exercises[:2]
    assert (one.status, one.points, two.status, two.points) == ("pass", POINTS["01.1"], "not graded", 0)
    student = StudentResult(Submission("ann", Path("ann"), None), Run([], "ok", 0, 1.0, 0, ""), [graded])
    text = report.summary([student], Plan([LESSON], [], 1, 10))
    assert "01.2" not in text.split("## Most-failed exercises")[1].split("## Students")[0]
    assert "not graded" in report.feedback(student)


def test_the_graders_notes_on_a_copy_reach_its_feedback_each_once():
    from course.tools.grading import report
    from course.tools.grading.batch import FAILED_ON_COPY
    from course.tools.grading.find import Submission
    from course.tools.grading.run import Run
    from course.tools.grading.score import StudentResult

    graded, _, _ = _scored({"01.1": [("passed", "")], "01.2": [("failed", "assert 1 == 2")]})
    crash = f"{FAILED_ON_COPY} (OSError: disk full)"
    hybrid = "01.2: not checked with the reference's other exercises: the student's app.py has no read_count"
    student = StudentResult(Submission("ann", Path("ann"), None), Run([crash], "ok", 0, 1.0, 0, ""), [graded],
                            notes=[crash, hybrid])
    text = report.feedback(student)
    assert text.count("Note: " + hybrid) == 1, "why 01.2 had no fair credit is the student's to read"
    assert text.count(crash) == 1, "a note that is the run's and the copy's is shown once"


MISTAKES_IN_THE_SANDBOX = [
    # (exercise, lesson, the reference's text, the mistake, the checks that must catch it in the sandbox)
    ("03.3", "03_session_ids", "        if session.is_new and not session:", "        if not session:",
     ["tests/test_03_session_ids.py::test_a_loaded_session_the_handler_emptied_is_saved_empty"]),
    ("09.1", "09_concurrency", "        if session_id is None:", "        if False:",
     ["tests/test_09_concurrency.py::test_a_request_without_a_session_cookie_takes_no_lock"]),
    ("09.3", "09_concurrency", '    if counter.kind == "sql":', '    if counter.kind == "no such store":',
     ["tests/test_09_concurrency.py::test_two_apps_on_one_store_count_on_one_counter[sqlite]"]),
    ("09.3", "09_concurrency", '    if counter.kind == "sql":',
     '    if counter.kind == "sql":                     # one count per process, not in the store\n'
     '        counts = globals().setdefault("SHARED_COUNTS", {})\n'
     '        counts[key] = counts.get(key, 0) + 1\n'
     '        return counts[key]\n'
     '    if False:',
     ["tests/test_09_concurrency.py::test_two_apps_on_one_store_count_on_one_counter[sqlite]"]),
    ("09.3", "09_concurrency", "    with counter.lock:", "    if True:",
     ["tests/test_09_concurrency.py::test_a_memory_counter_adds_in_one_step_when_threads_switch_often"]),
    ("10.1", "10_capstone", '= now\n    session.save()\n\n\n#', '= now\n\n\n#',
     ["tests/test_10_capstone.py::test_start_session_saves_the_new_token_and_clocks"]),
    ("10.5", "10_capstone", 'not hmac.compare_digest(row["validator_hash"], remember.digest(parts[1]))',
     'row["validator_hash"] != remember.digest(parts[1])',
     ["tests/test_10_capstone.py::test_the_remember_me_validator_is_compared_in_constant_time"]),
    ("10.6", "10_capstone", '    LOG.info("session %s %s%s", event, id_hash(session_id, salt), extra)',
     '    LOG.debug("session %s %s%s", event, id_hash(session_id, salt), extra)', LIFE_CYCLE_CHECKS := [
         "tests/test_10_capstone.py::test_owasp_O27_an_id_used_from_another_browser_is_logged",
         "tests/test_10_capstone.py::test_owasp_O29_the_life_cycle_is_logged_with_salted_hashes_only",
         "tests/test_10_capstone.py::test_a_life_cycle_line_is_the_event_the_hash_and_sorted_details"]),
    ("10.6", "10_capstone", '    LOG.info("session %s %s%s", event, id_hash(session_id, salt), extra)',
     '    LOG.info(f"session {event} {id_hash(session_id, salt)}{extra}", event)', LIFE_CYCLE_CHECKS),
    ("10.6", "10_capstone", '    LOG.info("session %s %s%s", event, id_hash(session_id, salt), extra)',
     '    logging.getLogger("course.capstone.life").setLevel(logging.DEBUG)\n'
     '    logging.getLogger("course.capstone.life").debug("session %s %s%s", event, id_hash(session_id, salt), extra)',
     LIFE_CYCLE_CHECKS),
]
"""Mistakes that only checks the sandbox once could not run, or ran differently from the test's own
process, would catch: each scored full marks under the grader then (the last three of 09.3 and
10.6 were found by an adversarial review after the first ten were made to run there)."""
RIGHT_IN_THE_SANDBOX = [
    # A right solution the wire once failed: a Session (a dict of the copy's class) handed to the
    # grader's store crossed as a handle, which the store could not copy.
    ("03.3", "03_session_ids", "        self.store.set(session.id, dict(session), ttl=IDLE_TIMEOUT)",
     "        self.store.set(session.id, session, ttl=IDLE_TIMEOUT)",
     ["tests/test_03_session_ids.py::test_a_loaded_session_the_handler_emptied_is_saved_empty",
      "tests/test_03_session_ids.py::test_an_expired_session_is_replaced"]),
]


def _run_in_the_sandbox(tmp_path, changes, checks) -> dict[str, str]:
    """The reference with ``changes`` ((lesson, text, replacement)...) made, its ``checks`` run as the grader
    runs them (the lesson imported and served in a sandbox, the test outside): outcome per check."""
    from course.tools.grading import sandbox
    from course.tools.results import merge

    lessons = tmp_path / "copy" / "lessons"
    for slug in {slug for slug, _, _ in changes}:
        build.solved(lessons, slug)
    for slug, right, wrong in changes:
        app = lessons / slug / "app.py"
        source = app.read_text(encoding="utf-8")
        assert source.count(right) == 1, f"{slug}: the reference no longer reads {right!r}"
        app.write_text(source.replace(right, wrong), encoding="utf-8")
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o1777)
    os.chmod(scratch, 0o1777)
    for path in [tmp_path, *tmp_path.parents][:-1]:
        os.chmod(path, os.stat(path).st_mode | 0o005)       # the sandbox's user reads the copy
    config = tmp_path / "sandbox.json"
    sandbox.Config(uid=(1 << 20) + 3, target=str(lessons), scratch=str(scratch), trust_services=True).write(config)
    report = tmp_path / "report.json"
    settings = sandbox.Config.read(str(config))
    proc = subprocess.run([*sandbox.network_command(settings), sys.executable, "-m", "pytest", "-q", "-p",
                           "no:cacheprovider", *checks, "--target", str(lessons), "--course-sandbox", str(config),
                           "--course-report", str(report), "--basetemp", str(scratch / "pytest")],
                          cwd=ROOT, env={**os.environ, **sandbox.network_environment(settings)},
                          capture_output=True, text=True, timeout=300)
    outcomes = {nodeid: record["outcome"]
                for nodeid, record in merge(json.loads(report.read_text(encoding="utf-8"))["tests"]).items()}
    assert set(outcomes) >= set(checks), proc.stdout[-3000:]
    return outcomes


def test_the_checks_that_hand_objects_across_catch_their_mistakes_in_the_sandbox(tmp_path):
    """Each mistake of MISTAKES_IN_THE_SANDBOX, patched into the reference solution, fails its checks
    when they run as the grader runs them. Mistakes on the same lines go to copies of their own."""
    rounds: list[list[tuple]] = []
    for mistake in MISTAKES_IN_THE_SANDBOX:
        free = next((each for each in rounds if all(other[2] != mistake[2] for other in each)), None)
        if free is None:
            rounds.append(free := [])
        free.append(mistake)
    for number, mistakes in enumerate(rounds):
        checks = sorted({check for *_, checks in mistakes for check in checks})
        outcomes = _run_in_the_sandbox(tmp_path / f"round{number}", [m[1:4] for m in mistakes], checks)
        for exercise, _, _, wrong, caught_by in mistakes:
            passed = [check for check in caught_by if outcomes[check] != "failed"]
            assert not passed, f"{exercise} with {wrong!r} passes these in the sandbox: {passed}"


def test_a_right_solution_the_wire_once_failed_passes_in_the_sandbox(tmp_path):
    for number, (exercise, slug, right, other, checks) in enumerate(RIGHT_IN_THE_SANDBOX):
        outcomes = _run_in_the_sandbox(tmp_path / f"case{number}", [(slug, right, other)], checks)
        assert all(outcomes[check] == "passed" for check in checks), (exercise, other, outcomes)


def test_the_reference_solutions_fail_no_check_of_any_lesson_in_the_sandbox(tmp_path):
    """The grader never marks correct code wrong: every lesson's solution, graded as a student's copy
    (sandboxed, fair credit on), passes every check it grades, and every check is graded: a check that
    fails here either hands the code under test what the sandbox cannot carry, or found a bug of the
    wire (ten did when it was written: they were marked "not graded" then, until they were made to run
    in the sandbox, so that a wrong solution of theirs cannot score)."""
    copy = tmp_path / "class" / "reference" / "lessons"
    for lesson in manifest.lessons():
        build.solved(copy, lesson.slug)
    out = tmp_path / "grades"
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(copy.parent), "--out", str(out),
                           "--jobs", "1", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    graded = json.loads((out / "json" / "reference.json").read_text(encoding="utf-8"))
    wrong = [f"{ex['exercise']} {test['name']}: {test['message'][:200]}"
             for lesson in graded["lessons"] for ex in lesson["exercises"] for test in ex["tests"]
             if test["outcome"] not in ("passed", "not graded")]
    assert not wrong, "the grader fails the reference solution on:\n" + "\n".join(wrong)
    # The one check a sandbox has no server for is MongoDB's (none can run here): nothing else goes ungraded.
    ungraded = [test["name"] for lesson in graded["lessons"] for ex in lesson["exercises"] for test in ex["tests"]
                if test["outcome"] == "not graded"]
    assert all("mongo" in name.lower() for name in ungraded), f"checks the grader did not grade: {ungraded}"
    assert graded["points"] == graded["max_points"], (graded["points"], graded["max_points"])
    # The grader's time limit per test (CPU seconds of the copy) leaves correct code a wide margin.
    spent = {test["name"]: test.get("cpu") for lesson in graded["lessons"] for ex in lesson["exercises"]
             for test in ex["tests"] if test["outcome"] == "passed"}
    assert all(cpu is not None for cpu in spent.values()), "every sandboxed check's record says its CPU"
    heaviest = max(spent, key=spent.get)
    assert spent[heaviest] <= GRADE_TEST_TIMEOUT / 2, \
        f"{heaviest} spent {spent[heaviest]} s of CPU: near the grader's limit of {GRADE_TEST_TIMEOUT:g} s a test"


def test_an_internal_error_of_the_grader_is_its_own_never_the_students(tmp_path, monkeypatch):
    # pytest's INTERNALERROR (exit code 3) is an exception in a hook of the grader's own: once, a
    # NameError in one made every check of a solved copy "not run", 0 of 125, blamed on the copy.
    import threading

    from course.tools.grading import worker
    from course.tools.grading.find import Submission
    from course.tools.grading.plan import Plan
    from course.tools.grading.run import run_submission
    from course.tools.grading.score import score

    plan = Plan([LESSON], collect([LESSON]), 5, 30)
    # As pytest does after an INTERNALERROR: its report is still written (pytest_sessionfinish runs),
    # with the tests that ran before it; or, had the process died, none.
    internal_error = """if 1:
        import json, sys
        if sys.argv[1] == "report":
            report = sys.argv[sys.argv.index("--course-report") + 1]
            with open(report, "w") as file:
                json.dump({"tests": []}, file)
        print("INTERNALERROR> NameError: name 'time' is not defined")
        sys.exit(3)"""
    copy = tmp_path / "alice"
    build.solved(copy / "lessons", SLUG)
    for written in ("report", "none"):
        monkeypatch.setattr(worker, "command",
                            lambda files, target, *extra, written=written: [sys.executable, "-c", internal_error,
                                                                            written, *extra])
        run = run_submission(Submission("alice", copy, copy / "lessons"), plan, tmp_path / written,
                             threading.Event())
        assert run.status == "grader error", written
        assert any("grader itself failed" in note for note in run.notes), run.notes
        graded = score(plan, run, {})[0]
        messages = {t.message for ex in graded.exercises for t in ex.tests}
        assert all("grader's own test process failed" in m for m in messages), messages
        assert not any("sys.exit" in m for m in messages), "the copy is not to blame"
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.exit(3)"])      # the code the check keys on
    assert proc.returncode == 3 == int(pytest.ExitCode.INTERNAL_ERROR)


def test_a_failed_check_waits_for_a_dying_sandbox_once_not_once_per_lesson():
    # A failed test asks whether a sandbox died under it, with a moment's grace for the death to
    # show. With ten lessons' hosts loaded, that grace was waited ten times: 0.5 s per failure, 75 s
    # of a half-solved copy. Now it is one grace for all, and none for a plain failed assertion.
    import threading
    import time

    import requests

    from course.tools import pytest_plugin
    from course.tools.grading.sandbox import HostGone, Hosts

    class LiveHost:
        def alive(self, grace=0):
            time.sleep(grace)            # as Event.wait on a host that does not die
            return True

    hosts = object.__new__(Hosts)
    hosts.by_slug, hosts.lock = {f"{n:02d}": LiveHost() for n in range(1, 11)}, threading.Lock()
    began = time.monotonic()
    assert hosts.ended(0.05) == []
    assert time.monotonic() - began < 0.15, "the grace is for all the hosts together"

    def excinfo(error):
        try:
            raise error
        except BaseException:
            return pytest.ExceptionInfo.from_current()

    def chained():
        try:
            raise ConnectionResetError("reset")
        except OSError as cause:
            raise AssertionError("the page did not answer") from cause

    assert not pytest_plugin._may_be_a_death(excinfo(AssertionError("expected 200, got 500")))
    assert not pytest_plugin._may_be_a_death(None)
    assert pytest_plugin._may_be_a_death(excinfo(requests.ConnectionError("refused")))
    assert pytest_plugin._may_be_a_death(excinfo(HostGone("lesson 01's process ended")))
    try:
        chained()
    except AssertionError:
        assert pytest_plugin._may_be_a_death(pytest.ExceptionInfo.from_current())


def test_a_variable_a_test_removes_stays_removed_in_the_process_it_starts_in_the_sandbox(monkeypatch, tmp_path):
    # The grader's throwaway SESSION_SECRET went into every app process a test started, even one the
    # test started with SESSION_SECRET removed to check the development fallback.
    from types import SimpleNamespace

    from course.tools.grading import sandbox

    config = sandbox.Config(uid=(1 << 20) + 5, target=str(tmp_path), scratch=str(tmp_path))
    monkeypatch.setattr(sandbox, "ACTIVE", [SimpleNamespace(config=config)])
    monkeypatch.setenv("SESSION_SECRET", "the-graders-own")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    without = {k: v for k, v in os.environ.items() if k != "SESSION_SECRET"}
    _, env, _ = sandbox.wrap(["python", "app.py"], without, tmp_path)
    assert "SESSION_SECRET" not in env and env["REDIS_URL"] == "redis://127.0.0.1:6379/0", env
    _, env, _ = sandbox.wrap(["python", "app.py"], dict(os.environ), tmp_path)
    assert env["SESSION_SECRET"] == "the-graders-own", "what the test process has goes with it"
