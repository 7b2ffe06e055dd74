"""The instructor's grader: ``python -m course grade SUBMISSION... --out DIR``.

Each submission (a student's clone or unzipped copy) is graded with the course's own tests, never
the copy's: its ``lessons/NN_slug/`` folders are copied into a fresh working folder, and one
``pytest`` process runs the course's exercise tests against them there (``--target``), in a
session of its own, with a time limit per test (``--course-timeout``) and per submission. When the
process is done, or over time, its whole process group is killed: a submission that hangs, crashes,
prints a flood, or leaves a server, a thread or a child process running costs only itself.

Scoring: an exercise is worth the manifest's points; its tests share them by weight (the marker's
``weight=``, default 1): points = points x passed weight / total weight. A test that did not pass
(failed, error, timed out, skipped, or never ran because the submission was stopped) earns nothing.

Outputs in ``--out``: ``grades.csv`` (student x exercise), ``summary.md`` (the class), and per
student ``json/NAME.json``, ``junit/NAME.xml``, ``feedback/NAME.md`` (what passed, what failed, the
first hint; never the solution) and ``logs/NAME.log`` (the test run's output, head and tail).

``python -m course.tools.grader PYTEST-ARGS`` is the worker the grader starts: pytest, then ``os._exit``,
so a thread the submission left running cannot keep the process alive.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from course import ROOT
from course.lesson import manifest
from course.tools import services, teeth
from course.tools.loader import resolve_target
from course.tools.term import Progress, tidy_message, unfinished

TEST_FILE = re.compile(r"test_(\d\d_[a-z0-9_]+)\.py")
TIMED_OUT_SIGN = "timed out: the test's"           # how course.tools.pytest_plugin's time limit fails a test
STUCK_SIGN = "an earlier test of"                   # how SkipAfterTimeout skips the rest of an exercise
PYTEST_QUIET = ["-p", "no:xdist", "-p", "no:anyio", "-p", "no:platformdirs", "-p", "no:cacheprovider"]
KEEP_OUTPUT = 32_000                                # bytes of a run's output kept, at each end
MAX_FILE = 10_000_000                               # files bigger than this are not copied from a submission
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".sessions", ".pytest_cache", ".ipynb_checkpoints")
DEFAULT_TEST_TIMEOUT = 30.0                         # generous: lesson 08 starts a dozen processes in one test
SECONDS_PER_LESSON = 60.0


class GradeError(Exception):
    """The batch cannot be graded (bad arguments, the course's own tests do not collect)."""


# ---------------------------------------------------------------- what to grade

@dataclass(frozen=True)
class Submission:
    name: str                   # the student: the folder's name
    path: Path                  # the folder as given
    lessons_dir: Path | None    # where its NN_slug/ folders are (None: no lessons found)


@dataclass(frozen=True)
class TestCase:
    nodeid: str
    slug: str
    exercise: str
    weight: float

    @property
    def name(self) -> str:
        return self.nodeid.split("::", 1)[-1]


@dataclass
class Plan:
    lessons: list[manifest.Lesson]
    tests: list[TestCase]
    test_timeout: float
    timeout: float
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [str(lesson.test_file) for lesson in self.lessons]


def _has_lessons(folder: Path) -> bool:
    return any(folder.glob("[0-9][0-9]_*/app.py"))


def find_submissions(paths: list[str]) -> tuple[list[Submission], list[str]]:
    """Each path is a student's copy; a folder that holds copies (and no lessons) is expanded."""
    found: list[tuple[str, Path]] = []
    notes: list[str] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.is_dir():
            notes.append(f"{text}: not a folder, skipped (unzip a .zip submission first)")
            continue
        lessons_dir = resolve_target(path)
        if not _has_lessons(lessons_dir) and not (path / "lessons").is_dir():
            children = sorted(child for child in path.iterdir()
                              if child.is_dir() and _has_lessons(resolve_target(child)))
            if children:
                notes.append(f"{text}: holds {len(children)} submissions; grading each")
                found.extend((child.resolve().name, child) for child in children)
                continue
        found.append((path.resolve().name, path))
    submissions, seen = [], Counter()
    for name, path in sorted(found, key=lambda item: (item[0], str(item[1]))):
        seen[name] += 1
        unique = name if seen[name] == 1 else f"{name}-{seen[name]}"
        if unique != name:
            notes.append(f"two submissions are named {name!r}: {path} is graded as {unique!r}")
        lessons_dir = resolve_target(path)
        submissions.append(Submission(unique, path, lessons_dir if lessons_dir.is_dir() else None))
    return submissions, notes


def worker_command(files: list[str], target: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "course.tools.grader", "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT),
            *files, "-m", "exercise", "--target", str(target), *PYTEST_QUIET, *extra]


def worker_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("COURSE_TARGET", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "COURSE_TEST_TIMEOUT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONDONTWRITEBYTECODE"] = "1"     # never write __pycache__ into anybody's files
    env["TMPDIR"] = str(tmp)
    env["NO_COLOR"] = "1"
    return env


def make_plan(lesson_keys: list[str] | None, test_timeout: float, timeout: float | None) -> Plan:
    """The lessons to grade and every exercise test they hold (collected once, from the course)."""
    warnings = []
    if lesson_keys:
        try:
            chosen = [manifest.lesson(key) for key in lesson_keys]
        except manifest.UnknownLesson as exc:
            raise GradeError(str(exc)) from None
        chosen = sorted(set(chosen), key=lambda lesson: lesson.id)
    else:
        chosen = list(manifest.lessons())
    lessons = []
    for lesson in chosen:
        if lesson.test_file.exists():
            lessons.append(lesson)
        else:
            warnings.append(f"lesson {lesson.id} has no tests/{lesson.test_file.name} yet: not graded")
    if not lessons:
        raise GradeError("there is no lesson with tests to grade")
    tests = collect(lessons)
    by_slug = Counter(test.slug for test in tests)
    for lesson in list(lessons):
        if not by_slug[lesson.slug]:
            warnings.append(f"lesson {lesson.id}: no exercise test collected from {lesson.test_file.name}: not graded")
            lessons.remove(lesson)
    if not lessons:
        raise GradeError("none of the lessons has an exercise test that collects")
    for lesson in lessons:
        for name in lesson.services:
            if name not in services.DEFAULT_URLS:
                continue
            env, _, port = services.DEFAULT_URLS[name]
            url = services.url_for(name)
            if url is None or not services.reachable(url, port):
                warnings.append(
                    f"lesson {lesson.id} needs {name}, which is not reachable ({url or 'set ' + env}): its tests "
                    "that need it will be skipped and earn nothing. Start it first (make services).")
    return Plan(lessons=lessons, tests=[t for t in tests if t.slug in {l.slug for l in lessons}],
                test_timeout=test_timeout,
                timeout=timeout if timeout else SECONDS_PER_LESSON * len(lessons), warnings=warnings)


def collect(lessons: list[manifest.Lesson]) -> list[TestCase]:
    with tempfile.TemporaryDirectory(prefix="course-collect-") as tmp:
        stream = Path(tmp) / "collected.jsonl"
        command = worker_command([str(l.test_file) for l in lessons], ROOT / "solutions", "--collect-only", "-q",
                                 "--course-stream", str(stream), "--continue-on-collection-errors")
        proc = subprocess.run(command, cwd=tmp, env=worker_env(Path(tmp)), capture_output=True, text=True,
                              timeout=300)
        lines = _read_jsonl(stream)
    tests = []
    for line in lines:
        if "collected" not in line or not line.get("exercise"):
            continue
        match = TEST_FILE.search(line["collected"])
        if match:
            tests.append(TestCase(line["collected"], match.group(1), line["exercise"], float(line.get("weight") or 1)))
    if not tests:
        raise GradeError("the course's tests did not collect:\n" + (proc.stdout + proc.stderr)[-3000:])
    return tests


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            pass                     # the last line of a killed run may be cut short
    return lines


# ---------------------------------------------------------------- running one submission

@dataclass
class Run:
    records: list[dict]
    status: str                 # ok, timeout, crashed
    exit_code: int | None
    duration: float
    output_bytes: int
    log: str
    stopped: str = ""           # why tests that never ran did not run
    todo: set[str] = field(default_factory=set)     # exercises its app.py files still mark todo("NN.K")
    not_run: dict[str, str] = field(default_factory=dict)   # why a test did not run, by test id


class Cancelled(Exception):
    pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def copy_lessons(submission: Submission, lessons: list[manifest.Lesson], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if submission.lessons_dir is None:
        return

    def ignore(folder, names):
        skipped = set(IGNORE(folder, names))
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink() and path.stat().st_size > MAX_FILE:
                skipped.add(name)
        return skipped

    for lesson in lessons:
        source = submission.lessons_dir / lesson.slug
        if source.is_dir():
            shutil.copytree(source, target / lesson.slug, symlinks=True, ignore=ignore)


def _one_process(command: list[str], workdir: Path, tmp: Path, budget: float, cancel: threading.Event,
                 progress: Progress | None) -> tuple[bool, int | None, int, str]:
    """Run one worker in a session of its own: (timed out, exit code, bytes of output, log)."""
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=workdir, env=worker_env(tmp), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    head, tail, total = bytearray(), bytearray(), 0
    fd = proc.stdout.fileno()
    timed_out = eof = False
    exited_at = None
    try:
        while True:
            if not eof:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        eof = True
                    else:                    # a flood is counted, and only its two ends are kept
                        total += len(chunk)
                        if len(head) < KEEP_OUTPUT:
                            head += chunk[: KEEP_OUTPUT - len(head)]
                        tail += chunk
                        if len(tail) > 2 * KEEP_OUTPUT:
                            del tail[: len(tail) - KEEP_OUTPUT]
            else:
                time.sleep(0.05)
            if progress:
                progress.tick()
            if proc.poll() is not None:
                exited_at = exited_at or time.monotonic()
                # its output may still be held open by a child it left behind: wait a moment only
                if eof or time.monotonic() - exited_at > 0.5:
                    break
            if cancel.is_set():
                raise Cancelled()
            if time.monotonic() - started > budget:
                timed_out = True
                break
    finally:
        _kill_group(proc.pid)            # the worker and anything it started: servers, children
        proc.wait()
        proc.stdout.close()
    log = head.decode("utf-8", "replace")
    if total > len(head):
        kept = min(total - len(head), KEEP_OUTPUT)
        if total - len(head) > kept:
            log += f"\n\n[... {total - len(head) - kept} bytes of output not kept ...]\n\n"
        log += bytes(tail[-kept:]).decode("utf-8", "replace")
    return timed_out, proc.returncode, total, log


NOT_STARTED = "not started: lessons/{slug}/app.py is the starter as the course ships it"


def unchanged_starter(path: Path, slug: str) -> bool:
    """Is ``path`` the shipped starter of lesson ``slug``, byte for byte (course/tools/starters.json)?"""
    recorded = teeth.recorded_starters().get(slug)
    return recorded is not None and path.is_file() and teeth.blob_id(path.read_bytes()) == recorded


def run_submission(submission: Submission, plan: Plan, workdir: Path, cancel: threading.Event,
                   progress: Progress | None = None) -> Run:
    """Run the course's tests against one submission, in a process group of its own, within limits.

    When the test process dies (``os._exit``, a crash of Python), the lesson it was in keeps what
    it had done, and the lessons after it are checked in a new process: a crash costs one lesson.
    """
    target, tmp = workdir / "lessons", workdir / "tmp"
    copy_lessons(submission, plan.lessons, target)
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # A lesson whose app.py is the shipped starter, byte for byte, is not started: the teeth check
    # proves that every exercise test fails on it, so it scores 0 without running them.
    untouched = {l.slug for l in plan.lessons if unchanged_starter(target / l.slug / "app.py", l.slug)}
    pending = [l for l in plan.lessons if l.slug not in untouched]
    records: list[dict] = [
        {"nodeid": t.nodeid, "exercise": t.exercise, "weight": t.weight, "outcome": "failed",
         "message": NOT_STARTED.format(slug=t.slug), "duration": 0}
        for t in plan.tests if t.slug in untouched]
    logs, total, status, stopped, not_run, exit_code = [], 0, "ok", "", {}, None
    attempt = 0
    while pending:
        attempt += 1
        report, stream = workdir / f"report-{attempt}.json", workdir / f"stream-{attempt}.jsonl"
        command = worker_command([str(l.test_file) for l in pending], target, "--course-report", str(report),
                                 "--course-stream", str(stream), "--course-timeout", f"{plan.test_timeout:g}",
                                 "--capture=no", "-p", "no:terminal", "--continue-on-collection-errors")
        budget = plan.timeout - (time.monotonic() - started)
        timed_out, code, size, log = _one_process(command, workdir, tmp, budget, cancel, progress)
        total += size
        logs.append(log)
        exit_code = code if exit_code is None or status == "ok" else exit_code
        if report.exists():
            records += json.loads(report.read_text(encoding="utf-8"))["tests"]
            break
        records += [line for line in _read_jsonl(stream) if "nodeid" in line]
        if timed_out:
            status = "timeout"
            stopped = f"not run: grading of this submission was stopped after {plan.timeout:g} s (its time limit)"
            break
        status = "crashed"
        seen = {r["nodeid"] for r in records}
        slugs = [l.slug for l in pending]
        missing = next((t for t in plan.tests if t.slug in slugs and t.nodeid not in seen), None)
        if missing is None:
            break
        message = (f"not run: the test process ended (exit code {code}) in lesson {missing.slug[:2]} at or "
                   "before this test; does the code call sys.exit/os._exit, or crash Python?")
        not_run.update({t.nodeid: message for t in plan.tests if t.slug == missing.slug and t.nodeid not in seen})
        pending = pending[slugs.index(missing.slug) + 1:]
    todo = set().union(*(unfinished(target / lesson.slug / "app.py") for lesson in plan.lessons))
    log = "\n\n=== the test process ended early; the next lessons ran in a new one ===\n\n".join(logs)
    return Run(records, status, exit_code, time.monotonic() - started, total, log, stopped, todo, not_run)


# ---------------------------------------------------------------- scoring

RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


@dataclass
class TestResult:
    case: TestCase
    outcome: str                # passed, failed, error, skipped, timeout, not run
    message: str


@dataclass
class ExerciseResult:
    exercise: manifest.Exercise
    tests: list[TestResult]
    points: float
    status: str                 # pass, partial, todo, fail, error, timeout, skipped, not run, untested
    marked_todo: bool = False   # the app.py still says todo("NN.K"): not started, whatever passes by chance

    @property
    def passed(self) -> int:
        return sum(t.outcome == "passed" for t in self.tests)

    @property
    def first_failure(self) -> TestResult | None:
        return next((t for t in self.tests if t.outcome != "passed"), None)


@dataclass
class LessonResult:
    lesson: manifest.Lesson
    exercises: list[ExerciseResult]

    @property
    def points(self) -> float:
        return round(sum(e.points for e in self.exercises), 2)

    @property
    def complete(self) -> bool:
        return all(e.status == "pass" for e in self.exercises)

    @property
    def problem(self) -> str:
        """One message that explains every failure of the lesson (its app.py does not load)."""
        everything = [t for e in self.exercises for t in e.tests]
        if not everything or any(t.outcome == "passed" for t in everything):
            return ""
        core = [t for t in everything if not (t.outcome == "skipped" and STUCK_SIGN in t.message)]
        messages = {t.message for t in core}
        if len(messages) == 1 and all(t.outcome in ("error", "not run", "timeout") for t in core):
            return messages.pop()
        return ""


@dataclass
class StudentResult:
    submission: Submission
    run: Run
    lessons: list[LessonResult]

    @property
    def name(self) -> str:
        return self.submission.name

    @property
    def points(self) -> float:
        return round(sum(l.points for l in self.lessons), 2)

    @property
    def max_points(self) -> int:
        return sum(l.lesson.max_points for l in self.lessons)


def _points(value: float):
    value = round(value, 2)
    return int(value) if value == int(value) else value


def score(plan: Plan, run: Run, replace: dict[str, str]) -> list[LessonResult]:
    merged: dict[str, dict] = {}
    for record in run.records:
        held = merged.get(record["nodeid"])
        if held is None or RANK.get(record["outcome"], 3) > RANK.get(held["outcome"], 3):
            merged[record["nodeid"]] = record
    results = []
    for lesson in plan.lessons:
        exercises = []
        for ex in lesson.exercises:
            tests = []
            for case in (t for t in plan.tests if t.slug == lesson.slug and t.exercise == ex.id):
                record = merged.get(case.nodeid)
                if record is None:
                    tests.append(TestResult(case, "not run", run.not_run.get(case.nodeid) or run.stopped or "not run"))
                    continue
                message = "\n".join(tidy_message(record.get("message") or "", replace, max_lines=6))
                outcome = record["outcome"]
                if outcome != "passed" and TIMED_OUT_SIGN in (record.get("message") or ""):
                    outcome = "timeout"
                tests.append(TestResult(case, outcome, "" if outcome == "passed" else message))
            total = sum(t.case.weight for t in tests)
            passed = sum(t.case.weight for t in tests if t.outcome == "passed")
            points = round(ex.points * passed / total, 2) if total else 0.0
            exercises.append(ExerciseResult(ex, tests, points, _status(tests, ex.id in run.todo), ex.id in run.todo))
        results.append(LessonResult(lesson, exercises))
    return results


def _status(tests: list[TestResult], marked_todo: bool) -> str:
    if not tests:
        return "untested"
    outcomes = {t.outcome for t in tests}
    failing = [t for t in tests if t.outcome != "passed"]
    if not failing:
        return "pass"
    if len(failing) < len(tests):
        return "partial"
    if outcomes == {"not run"}:
        return "not run"
    if marked_todo and all(t.outcome == "failed" for t in failing):
        return "todo"
    if "timeout" in outcomes:
        return "timeout"
    if outcomes == {"skipped"}:
        return "skipped"
    if outcomes <= {"error", "not run"}:
        return "error"
    return "fail"


# ---------------------------------------------------------------- the batch

def grade(paths: list[str], out: Path, jobs: int = 2, timeout: float | None = None,
          test_timeout: float = DEFAULT_TEST_TIMEOUT, lessons: list[str] | None = None,
          progress: bool = True, stderr=None) -> list[StudentResult]:
    stderr = stderr or sys.stderr
    submissions, notes = find_submissions(paths)
    if not submissions:
        raise GradeError("no submission to grade: give the folders of the students' copies")
    plan = make_plan(lessons, test_timeout, timeout)
    for note in notes + plan.warnings:
        stderr.write(f"note: {note}\n")
    stderr.write(f"Grading {len(submissions)} submission(s), lesson(s) {', '.join(l.id for l in plan.lessons)}: "
                 f"{len(plan.tests)} tests each, {jobs} at a time, at most {plan.test_timeout:g} s a test "
                 f"and {plan.timeout:g} s a submission.\n")
    stderr.flush()
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("json", "junit", "feedback", "logs"):
        (out / sub).mkdir(exist_ok=True)
        for old in (out / sub).glob("*.*"):
            if old.suffix in (".json", ".xml", ".md", ".log"):
                old.unlink()
    bar = Progress(len(submissions), "grading", stderr, enabled=progress)
    cancel = threading.Event()
    results: dict[str, StudentResult] = {}

    def one(submission: Submission) -> StudentResult:
        bar.start(submission.name)
        workdir = Path(tempfile.mkdtemp(prefix="course-grade-"))
        try:
            run = run_submission(submission, plan, workdir, cancel, bar)
            replace = {str(workdir / "lessons"): "lessons", str(workdir): ".", str(ROOT) + os.sep: ""}
            result = StudentResult(submission, run, score(plan, run, replace))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        write_student(out, result)
        note = "" if run.status == "ok" else f", {run.status}"
        bar.finish(submission.name, f"{_points(result.points)}/{result.max_points} points "
                                    f"({run.duration:.1f} s{note})")
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for result in pool.map(one, submissions):
            results[result.name] = result
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        raise
    pool.shutdown()
    bar.close()
    ordered = [results[s.name] for s in submissions]
    write_csv(out / "grades.csv", ordered)
    (out / "summary.md").write_text(summary(ordered, plan), encoding="utf-8")
    return ordered


# ---------------------------------------------------------------- writing it down

def safe_name(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", name) or "_"


def write_csv(path: Path, students: list[StudentResult]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "lesson", "exercise", "points", "max_points", "passed", "total", "status"])
    for student in students:
        for lesson in student.lessons:
            for ex in lesson.exercises:
                writer.writerow([student.name, lesson.lesson.id, ex.exercise.id, _points(ex.points),
                                 ex.exercise.points, ex.passed, len(ex.tests), ex.status])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def student_json(result: StudentResult) -> dict:
    run = result.run
    return {
        "version": 1, "student": result.name, "submission": str(result.submission.path),
        "status": run.status, "points": _points(result.points), "max_points": result.max_points,
        "exit_code": run.exit_code, "duration_s": round(run.duration, 2), "output_bytes": run.output_bytes,
        "lessons": [{
            "lesson": l.lesson.id, "slug": l.lesson.slug, "title": l.lesson.title, "points": _points(l.points),
            "max_points": l.lesson.max_points, "complete": l.complete, "problem": l.problem,
            "exercises": [{
                "exercise": e.exercise.id, "title": e.exercise.title, "points": _points(e.points),
                "max_points": e.exercise.points, "status": e.status, "passed": e.passed, "total": len(e.tests),
                "tests": [{"name": t.case.name, "weight": _points(t.case.weight), "outcome": t.outcome,
                           "message": t.message} for t in e.tests],
            } for e in l.exercises],
        } for l in result.lessons],
    }


def junit(result: StudentResult) -> bytes:
    suites = ET.Element("testsuites", name=result.name)
    counts = Counter()
    for lesson in result.lessons:
        suite = ET.SubElement(suites, "testsuite", name=lesson.lesson.slug)
        local = Counter()
        for ex in lesson.exercises:
            for test in ex.tests:
                case = ET.SubElement(suite, "testcase", classname=f"tests.test_{lesson.lesson.slug}",
                                     name=test.case.name)
                properties = ET.SubElement(case, "properties")
                ET.SubElement(properties, "property", name="exercise", value=ex.exercise.id)
                ET.SubElement(properties, "property", name="weight", value=f"{test.case.weight:g}")
                local["tests"] += 1
                first = test.message.splitlines()[0] if test.message else test.outcome
                if test.outcome in ("failed", "timeout"):
                    ET.SubElement(case, "failure", message=first, type=test.outcome).text = test.message
                    local["failures"] += 1
                elif test.outcome in ("error", "not run"):
                    ET.SubElement(case, "error", message=first, type=test.outcome).text = test.message
                    local["errors"] += 1
                elif test.outcome == "skipped":
                    ET.SubElement(case, "skipped", message=first)
                    local["skipped"] += 1
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(local[key]))
        counts.update(local)
    for key in ("tests", "failures", "errors", "skipped"):
        suites.set(key, str(counts[key]))
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


STATUS_WORDS = {
    "pass": "passed", "partial": "partly passed", "todo": "not started (it still raises todo)",
    "fail": "not passed yet", "error": "could not be checked", "timeout": "timed out",
    "skipped": "skipped (a service was missing when grading)", "not run": "not checked (grading stopped)",
    "untested": "has no checks yet",
}


def feedback(result: StudentResult) -> str:
    run = result.run
    lines = [f"# Feedback for {result.name}", "",
             f"**{_points(result.points)} of {result.max_points} points** "
             f"(lessons {', '.join(l.lesson.id for l in result.lessons)}).", ""]
    if run.status == "timeout":
        lines += [f"Grading stopped after the time limit ({run.duration:.0f} s): checks that had not run yet "
                  "earn no points. Look for an endless loop, or a server started when app.py is imported.", ""]
    elif run.status == "crashed":
        lines += [f"The test process ended in the middle of a lesson (exit code {run.exit_code}): that lesson's "
                  "checks that had not run earn no points (the lessons after it were checked in a new process). "
                  "Does your code call sys.exit() or os._exit()?", ""]
    if run.output_bytes > 1_000_000:
        lines += [f"Your code printed {run.output_bytes / 1e6:.0f} MB while it was checked. That slows "
                  "everything down: remove the debugging prints.", ""]
    for lesson in result.lessons:
        lines += [f"## Lesson {lesson.lesson.id}: {lesson.lesson.title} — "
                  f"{_points(lesson.points)} of {lesson.lesson.max_points} points", ""]
        if lesson.problem:
            hang = (" Importing app.py did not finish: does it start a server or loop when imported? Code that "
                    'serves belongs under `if __name__ == "__main__":`.') if TIMED_OUT_SIGN in lesson.problem else ""
            lines += [f"Nothing in this lesson could be checked: {lesson.problem.splitlines()[0]}{hang}", ""]
        for ex in lesson.exercises:
            head = (f"- **{ex.exercise.id} {ex.exercise.title}**: {STATUS_WORDS.get(ex.status, ex.status)}, "
                    f"{_points(ex.points)}/{ex.exercise.points} points ({ex.passed} of {len(ex.tests)} checks)")
            lines.append(head)
            failure = ex.first_failure
            if failure and not lesson.problem and ex.status != "todo":
                message = failure.message.splitlines() or [failure.outcome]
                lines.append(f"  - first failing check: `{failure.case.name}`")
                lines.append(f"  - what happened: {message[0]}")
                lines.extend(f"    `{extra}`" if extra.startswith("assert") else f"    {extra}" for extra in message[1:3])
            if ex.status != "pass" and ex.exercise.hints:
                lines.append(f"  - hint: {ex.exercise.hints[0]}")
        lines.append("")
    lines += ["Run the same checks yourself: `python -m course check NN`; "
              "`python -m course hint NN.K` gives more hints.", ""]
    return "\n".join(lines)


def write_student(out: Path, result: StudentResult) -> None:
    name = safe_name(result.name)
    (out / "json" / f"{name}.json").write_text(json.dumps(student_json(result), indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    (out / "junit" / f"{name}.xml").write_bytes(junit(result))
    (out / "feedback" / f"{name}.md").write_text(feedback(result), encoding="utf-8")
    (out / "logs" / f"{name}.log").write_text(result.run.log, encoding="utf-8")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def summary(students: list[StudentResult], plan: Plan) -> str:
    n = len(students)
    lines = [f"# Class summary: {n} submission(s)", "",
             f"Lessons {', '.join(l.id for l in plan.lessons)}; each test at most {plan.test_timeout:g} s, "
             f"each submission at most {plan.timeout:g} s.", ""]
    for warning in plan.warnings:
        lines.append(f"> Note: {warning}")
    if plan.warnings:
        lines.append("")
    lines += ["## Lessons", "", "| lesson | max | mean | median | complete |", "|---|---:|---:|---:|---:|"]
    for i, lesson in enumerate(plan.lessons):
        points = [s.lessons[i].points for s in students]
        done = sum(s.lessons[i].complete for s in students)
        lines.append(f"| {lesson.id} {lesson.title} | {lesson.max_points} | {statistics.mean(points):.2f} | "
                     f"{statistics.median(points):g} | {_pct(done, n)} ({done}/{n}) |")
    lines += ["", "## Exercises", "", "| exercise | max | mean | passed by | not started |",
              "|---|---:|---:|---:|---:|"]
    rows = []
    for i, lesson in enumerate(plan.lessons):
        for j, ex in enumerate(lesson.exercises):
            results = [s.lessons[i].exercises[j] for s in students]
            passed = sum(r.status == "pass" for r in results)
            todo = sum(r.status != "pass" and r.marked_todo for r in results)
            rows.append((ex, results, passed, todo))
            lines.append(f"| {ex.id} {ex.title} | {ex.points} | {statistics.mean(r.points for r in results):.2f} | "
                         f"{_pct(passed, n)} ({passed}) | {todo} |")
    lines += ["", "## Most-failed exercises", "",
              "Students who tried and did not pass (not started does not count), and what they saw most often.", ""]
    tried = sorted(((n - passed - todo, ex, results) for ex, results, passed, todo in rows if n - passed - todo > 0),
                   key=lambda row: (-row[0], row[1].id))
    if not tried:
        lines.append("None: every exercise a student started passes.")
    for count, ex, results in tried[:8]:
        lines.append(f"- **{ex.id} {ex.title}**: not passed by {count} of {n} who started it")
        messages = Counter()
        for r in results:
            if r.status != "pass" and not r.marked_todo and r.first_failure:
                first = r.first_failure
                messages[(first.case.name.split("[")[0], (first.message.splitlines() or [first.outcome])[0])] += 1
        for (test, message), times in messages.most_common(3):
            lines.append(f"  - {times}× `{test}`: {message}")
    lines += ["", "## Students", "", "| student | " + " | ".join(l.id for l in plan.lessons) + " | total | status |",
              "|---|" + "---:|" * len(plan.lessons) + "---:|---|"]
    for s in students:
        cells = " | ".join(f"{_points(l.points)}" for l in s.lessons)
        lines.append(f"| {s.name} | {cells} | {_points(s.points)}/{s.max_points} | {s.run.status} |")
    lines.append("")
    return "\n".join(lines)


def print_totals(students: list[StudentResult], out: Path, started: float, stream=None) -> None:
    stream = stream or sys.stdout
    for s in students:
        flag = "" if s.run.status == "ok" else f"  ({s.run.status})"
        stream.write(f"  {s.name:<24} {_points(s.points):>6} / {s.max_points}{flag}\n")
    stream.write(f"Graded {len(students)} submission(s) in {time.monotonic() - started:.1f} s. "
                 f"Wrote {out / 'grades.csv'}, {out / 'summary.md'}, and json/, junit/, feedback/, logs/ per student.\n")


# ---------------------------------------------------------------- the worker

class SkipAfterTimeout:
    """pytest plugin: once a test of an exercise timed out, the exercise's other tests are skipped.

    They would most likely hang the same way, one time limit each: in ``check`` the student would
    wait for nothing, and in the grader one endless loop could use up the whole submission's time
    and cost the lessons after it. What the exercise earns is what its tests earned before.
    """

    def __init__(self):
        self.stuck: set[str] = set()

    def pytest_runtest_setup(self, item):
        import pytest

        exercise = dict(item.user_properties).get("exercise")
        if exercise in self.stuck:
            pytest.skip(f"not run: {STUCK_SIGN} {exercise} timed out")

    def pytest_runtest_logreport(self, report):
        if report.failed and TIMED_OUT_SIGN in str(report.longrepr):
            exercise = dict(report.user_properties).get("exercise")
            if exercise:
                self.stuck.add(exercise)


class NativeTracebacks:
    """The records keep the same message; pytest's long tracebacks cost half a failing run's time."""

    def pytest_configure(self, config):
        config.option.tbstyle = "native"


def _worker(argv: list[str]) -> None:
    import pytest

    code = pytest.main(argv, plugins=[SkipAfterTimeout(), NativeTracebacks()])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(int(code))


if __name__ == "__main__":
    _worker(sys.argv[1:])
