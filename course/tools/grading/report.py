"""What the grader writes: gradebook.csv, grades.csv, summary.md and histogram.png for the class;
JSON, JUnit XML, feedback and the log for each student.

gradebook.csv is the file for a spreadsheet or an LMS: one row per student (student, total, max,
one column per lesson, status, flags), RFC 4180 (comma-separated, CRLF line ends, quoted only when
needed), UTF-8 without a byte-order mark, numbers as plain decimals (8.33, never 8,33 or 8.33e0).
A cell that a spreadsheet would run as a formula (it starts with = + - @) is written with a
leading ' so it stays text. grades.csv has one row per student and exercise.

With ``--merge``, the students graded earlier into the same folder stay: their rows are read
back from their json/NAME.json.

The feedback tells the student what passed, what failed and the first hint; never the solution.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from course.lesson import manifest
from course.tools.grading import same
from course.tools.grading.escape import csv_cell, md_cell
from course.tools.grading.find import Submission
from course.tools.grading.plan import GradeError, Plan, TestCase
from course.tools.grading.run import Run
from course.tools.grading.score import ExerciseResult, LessonResult, StudentResult, TestResult, number
from course.tools.results import TIMED_OUT_SIGN

FOLDERS = {"json": ".json", "junit": ".xml", "feedback": ".md", "logs": ".log"}
"""Each student's files in ``--out``: folder, and the suffix of the files the grader owns there."""


CLASS_FILES = ("gradebook.csv", "grades.csv", "summary.md", "histogram.png")


def prepare(out: Path, merge: bool = False) -> None:
    """``out`` and its folders; without the students' files of an earlier grading, unless ``merge``."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in FOLDERS:
        (out / sub).mkdir(exist_ok=True)
        if merge:
            continue
        for old in (out / sub).glob("*.*"):
            if old.suffix in FOLDERS.values():
                old.unlink()


def write_student(out: Path, result: StudentResult) -> None:
    name = result.submission.file_name
    (out / "json" / f"{name}.json").write_text(json.dumps(student_json(result), indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8", errors="backslashreplace")
    (out / "junit" / f"{name}.xml").write_bytes(junit(result))
    (out / "feedback" / f"{name}.md").write_text(feedback(result), encoding="utf-8", errors="backslashreplace")
    (out / "logs" / f"{name}.log").write_text(result.run.log, encoding="utf-8", errors="backslashreplace")


def write_class(out: Path, students: list[StudentResult], plan: Plan) -> None:
    flags = class_flags(students, plan)
    write_csv(out / "grades.csv", students)
    write_gradebook(out / "gradebook.csv", students, plan, flags)
    (out / "summary.md").write_text(summary(students, plan, flags), encoding="utf-8", errors="backslashreplace")
    write_histogram(out / "histogram.png", students)


def class_flags(students: list[StudentResult], plan: Plan) -> dict[str, list[str]]:
    """Per student, the lessons whose code is the reference's or a classmate's (course.tools.grading.same)."""
    return same.flags({s.name: s.fingerprints for s in students}, {each.slug: each.id for each in plan.lessons})


# ---------------------------------------------------------------- gradebook.csv

def decimal(value: float) -> str:
    """A number as a spreadsheet and an LMS read it in any locale's CSV import: 8.33, 8, 0.5."""
    return f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")


def gradebook_header(plan: Plan) -> list[str]:
    return ["student", "total", "max"] + [f"lesson {each.id}" for each in plan.lessons] + ["status", "flags"]


def write_gradebook(path: Path, students: list[StudentResult], plan: Plan, flags: dict[str, list[str]]) -> None:
    """One row per student: student, total, max, one column per lesson, status, flags (RFC 4180)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(gradebook_header(plan))
    for student in students:
        writer.writerow([csv_cell(student.name), decimal(student.points), decimal(student.max_points)]
                        + [decimal(each.points) for each in student.lessons]
                        + [student.run.status, csv_cell("; ".join(flags.get(student.name, [])))])
    path.write_bytes(buffer.getvalue().encode("utf-8"))


# ---------------------------------------------------------------- histogram.png

def write_histogram(path: Path, students: list[StudentResult]) -> None:
    """The class's totals, in tenths of the maximum (matplotlib's Agg backend: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shares = [100 * s.points / s.max_points if s.max_points else 0 for s in students]
    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(shares, bins=[10 * i for i in range(11)], color="#4477aa", edgecolor="white")
    axes.set_xlim(0, 100)
    axes.set_xlabel("total, % of the maximum")
    axes.set_ylabel("students")
    mean = statistics.mean(shares) if shares else 0
    axes.set_title(f"{len(students)} submission(s), mean {mean:.0f}%")
    axes.yaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})


# ---------------------------------------------------------------- --merge: the students graded earlier

def load_students(out: Path, plan: Plan, skip: set[str]) -> list[StudentResult]:
    """The students in ``out/json`` but not in ``skip``, as results; GradeError if graded on other lessons."""
    found = []
    for path in sorted((out / "json").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            name = data["student"]
        except (OSError, ValueError, KeyError, TypeError):
            continue                    # not one of the grader's files
        if name in skip:
            continue
        lessons = [each["lesson"] for each in data.get("lessons", [])]
        if lessons != [each.id for each in plan.lessons]:
            raise GradeError(f"--merge: {name} in {out} was graded on lesson(s) {', '.join(lessons) or 'none'}, "
                             f"this grading is of {', '.join(each.id for each in plan.lessons)}. Grade the same "
                             "lessons, or grade into another --out.")
        found.append(_from_json(data, path.stem))
    return found


def earlier_files(out: Path) -> dict[str, str]:
    """Student name -> file name, of the students graded earlier into ``out`` (so that --merge keeps them)."""
    files = {}
    for path in sorted((out / "json").glob("*.json")) if (out / "json").is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files[str(data["student"])] = str(data.get("file") or path.stem)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return files


def _from_json(data: dict, stem: str) -> StudentResult:
    submission = Submission(data["student"], Path(data.get("submission", "")), None, data.get("file") or stem)
    run = Run([], data.get("status", "ok"), data.get("exit_code"), float(data.get("duration_s", 0)),
              int(data.get("output_bytes", 0)), "")
    lessons = []
    for raw in data["lessons"]:
        lesson = manifest.lesson(raw["lesson"])
        exercises = []
        for ex_raw in raw["exercises"]:
            ex = manifest.exercise(ex_raw["exercise"])
            tests = [TestResult(TestCase(f"tests/test_{lesson.slug}.py::{t['name']}", lesson.slug, ex.id,
                                         float(t.get("weight", 1))), t["outcome"], t.get("message", ""),
                                t["outcome"], bool(t.get("fair"))) for t in ex_raw["tests"]]
            exercises.append(ExerciseResult(ex, tests, float(ex_raw["points"]), ex_raw["status"],
                                            bool(ex_raw.get("marked_todo"))))
        lessons.append(LessonResult(lesson, exercises, raw.get("problem", "")))
    return StudentResult(submission, run, lessons, dict(data.get("fingerprints", {})), list(data.get("notes", [])),
                         float(data.get("fair_seconds", 0)))


# ---------------------------------------------------------------- grades.csv

def write_csv(path: Path, students: list[StudentResult]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "lesson", "exercise", "points", "max_points", "passed", "total", "status"])
    for student in students:
        for lesson in student.lessons:
            for ex in lesson.exercises:
                writer.writerow([csv_cell(student.name), lesson.lesson.id, ex.exercise.id, number(ex.points),
                                 ex.exercise.points, ex.passed, len(ex.tests), ex.status])
    path.write_text(buffer.getvalue(), encoding="utf-8", errors="backslashreplace")


# ---------------------------------------------------------------- json/NAME.json

def student_json(result: StudentResult) -> dict:
    run = result.run
    return {
        "version": 1, "student": result.name, "file": result.submission.file_name,
        "submission": str(result.submission.path),
        "status": run.status, "points": number(result.points), "max_points": result.max_points,
        "exit_code": run.exit_code, "duration_s": round(run.duration, 2), "output_bytes": run.output_bytes,
        "fair_seconds": round(result.fair_seconds, 2), "notes": result.notes, "fingerprints": result.fingerprints,
        "lessons": [_lesson_json(each) for each in result.lessons],
    }


def _lesson_json(lesson: LessonResult) -> dict:
    return {
        "lesson": lesson.lesson.id, "slug": lesson.lesson.slug, "title": lesson.lesson.title,
        "points": number(lesson.points), "max_points": lesson.lesson.max_points, "complete": lesson.complete,
        "problem": lesson.problem,
        "exercises": [{
            "exercise": e.exercise.id, "title": e.exercise.title, "points": number(e.points),
            "max_points": e.exercise.points, "status": e.status, "passed": e.passed, "total": len(e.tests),
            "marked_todo": e.marked_todo, "fair": e.fair,
            "tests": [{"name": t.case.name, "weight": number(t.case.weight), "outcome": t.outcome,
                       "message": t.message, "fair": t.fair, **({"cpu": t.cpu} if t.cpu is not None else {})}
                      for t in e.tests],
        } for e in lesson.exercises],
    }


# ---------------------------------------------------------------- junit/NAME.xml

JUNIT_COUNTS = ("tests", "failures", "errors", "skipped")
JUNIT_KIND = {"failed": ("failure", "failures"), "timeout": ("failure", "failures"),
              "error": ("error", "errors"), "not run": ("error", "errors"), "skipped": ("skipped", "skipped")}
"""A test's outcome as a JUnit element, and the count it adds to."""


def junit(result: StudentResult) -> bytes:
    suites = ET.Element("testsuites", name=result.name)
    counts = Counter()
    for lesson in result.lessons:
        suite = ET.SubElement(suites, "testsuite", name=lesson.lesson.slug)
        local = Counter()
        for ex in lesson.exercises:
            for test in ex.tests:
                local.update(_junit_case(suite, lesson, ex, test))
        for key in JUNIT_COUNTS:
            suite.set(key, str(local[key]))
        counts.update(local)
    for key in JUNIT_COUNTS:
        suites.set(key, str(counts[key]))
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def _junit_case(suite: ET.Element, lesson: LessonResult, ex: ExerciseResult, test) -> list[str]:
    """Add the test's ``<testcase>`` to ``suite``; the counts it adds to."""
    case = ET.SubElement(suite, "testcase", classname=f"tests.test_{lesson.lesson.slug}", name=test.case.name)
    properties = ET.SubElement(case, "properties")
    ET.SubElement(properties, "property", name="exercise", value=ex.exercise.id)
    ET.SubElement(properties, "property", name="weight", value=f"{test.case.weight:g}")
    if test.outcome not in JUNIT_KIND:
        return ["tests"]
    tag, count = JUNIT_KIND[test.outcome]
    first = test.message.splitlines()[0] if test.message else test.outcome
    if tag == "skipped":
        ET.SubElement(case, tag, message=first)
    else:
        ET.SubElement(case, tag, message=first, type=test.outcome).text = test.message
    return ["tests", count]


# ---------------------------------------------------------------- feedback/NAME.md

STATUS_WORDS = {
    "pass": "passed", "partial": "partly passed", "todo": "not started (it still raises todo)",
    "fail": "not passed yet", "error": "could not be checked", "timeout": "timed out",
    "skipped": "skipped (a service was missing when grading)", "not run": "not checked (grading stopped)",
    "untested": "has no checks yet",
    "not graded": "not graded (its checks need a server the grader had no private one of for your copy, or "
                  "run only in the test's own process: the instructor grades them separately)",
}


def feedback(result: StudentResult) -> str:
    lines = [f"# Feedback for {md_cell(result.name)}", "",
             f"**{number(result.points)} of {result.max_points} points** "
             f"(lessons {', '.join(each.lesson.id for each in result.lessons)}).", ""]
    lines += _run_notes(result)
    for lesson in result.lessons:
        lines += _lesson_feedback(lesson)
    lines += ["Run the same checks yourself: `python -m course check NN`; "
              "`python -m course hint NN.K` gives more hints.", ""]
    return "\n".join(lines)


def _run_notes(result: StudentResult) -> list[str]:
    """What went wrong with the run as a whole: stopped, crashed, too much output; and the grader's
    notes on this copy (an exercise that could not be checked with the reference's other exercises,
    and why), each once."""
    run, lines = result.run, []
    notes = list(dict.fromkeys(run.notes + result.notes))
    lines += [f"Note: {note}" for note in notes] + ([""] if notes else [])
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
    return lines


def _lesson_feedback(lesson: LessonResult) -> list[str]:
    lines = [f"## Lesson {lesson.lesson.id}: {lesson.lesson.title} — "
             f"{number(lesson.points)} of {lesson.lesson.max_points} points", ""]
    if lesson.problem:
        hang = (" Importing app.py did not finish: does it start a server or loop when imported? Code that "
                'serves belongs under `if __name__ == "__main__":`.') if TIMED_OUT_SIGN in lesson.problem else ""
        lines += [f"Nothing in this lesson could be checked: {lesson.problem.splitlines()[0]}{hang}", ""]
    for ex in lesson.exercises:
        lines += _exercise_feedback(ex, show_failure=not lesson.problem)
    lines.append("")
    return lines


def _exercise_feedback(ex: ExerciseResult, show_failure: bool) -> list[str]:
    lines = [f"- **{ex.exercise.id} {ex.exercise.title}**: {STATUS_WORDS.get(ex.status, ex.status)}, "
             f"{number(ex.points)}/{ex.exercise.points} points ({ex.passed} of {len(ex.tests)} checks)"]
    if ex.fair:
        lines.append(f"  - {ex.fair} of these checks passed when the lesson's other exercises were the course's "
                     "own: they count, so an exercise is worth its points whatever else is done")
    not_graded = sum(t.outcome == "not graded" for t in ex.tests)
    if not_graded and ex.status != "not graded":
        lines.append(f"  - {not_graded} check(s) not graded (they need a server the grader had no private one of "
                     "for your copy, or run only in the test's own process); the points are shared by the others")
    failure = ex.first_failure
    if failure and show_failure and ex.status != "todo":
        message = failure.message.splitlines() or [failure.outcome]
        lines.append(f"  - first failing check: `{failure.case.name}`")
        lines.append(f"  - what happened: {message[0]}")
        lines.extend(f"    `{extra}`" if extra.startswith("assert") else f"    {extra}" for extra in message[1:3])
    if ex.status != "pass" and ex.exercise.hints:
        lines.append(f"  - hint: {ex.exercise.hints[0]}")
    return lines


# ---------------------------------------------------------------- summary.md

def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def summary(students: list[StudentResult], plan: Plan, flags: dict[str, list[str]] | None = None) -> str:
    flags = flags if flags is not None else class_flags(students, plan)
    lines = [f"# Class summary: {len(students)} submission(s)", "",
             f"Lessons {', '.join(each.id for each in plan.lessons)}; each test at most {plan.test_timeout:g} s, "
             f"each submission at most {plan.timeout:g} s.", "",
             "![The class's totals](histogram.png)", "",
             "gradebook.csv: one row per student, for a spreadsheet or an LMS; grades.csv: one row per exercise.", ""]
    lines += [f"> Note: {warning}" for warning in plan.warnings]
    if plan.warnings:
        lines.append("")
    lines += _lessons_table(students, plan)
    rows = _exercise_rows(students, plan)
    lines += _exercises_table(rows, len(students))
    lines += _most_failed(rows, len(students))
    lines += _same_code(flags)
    lines += _students_table(students, plan, flags)
    lines.append("")
    return "\n".join(lines)


def _same_code(flags: dict[str, list[str]]) -> list[str]:
    lines = ["", "## Same code", "",
             "Lessons whose app.py is, apart from whitespace, comments and docstrings, the reference solution's "
             "or a classmate's (an untouched starter is not counted). A reason to look, not a verdict.", ""]
    flagged = {name: found for name, found in sorted(flags.items()) if found}
    if not flagged:
        lines.append("None.")
    lines += [f"- **{name}**: {'; '.join(found)}" for name, found in flagged.items()]
    return lines


def _lessons_table(students: list[StudentResult], plan: Plan) -> list[str]:
    n = len(students)
    lines = ["## Lessons", "", "| lesson | max | mean | median | complete |", "|---|---:|---:|---:|---:|"]
    for i, lesson in enumerate(plan.lessons):
        points = [s.lessons[i].points for s in students]
        done = sum(s.lessons[i].complete for s in students)
        lines.append(f"| {lesson.id} {lesson.title} | {lesson.max_points} | {statistics.mean(points):.2f} | "
                     f"{statistics.median(points):g} | {_pct(done, n)} ({done}/{n}) |")
    return lines


def _exercise_rows(students: list[StudentResult], plan: Plan) -> list[tuple]:
    """(exercise, every student's result, how many passed, how many did not start it), in lesson order."""
    rows = []
    for i, lesson in enumerate(plan.lessons):
        for j, ex in enumerate(lesson.exercises):
            found = [s.lessons[i].exercises[j] for s in students]
            passed = sum(r.status == "pass" for r in found)
            todo = sum(r.status != "pass" and r.marked_todo for r in found)
            rows.append((ex, found, passed, todo))
    return rows


def _exercises_table(rows: list[tuple], n: int) -> list[str]:
    lines = ["", "## Exercises", "",
             "Fair credit: students with checks of the exercise that passed only when the lesson's other "
             "exercises were the reference's.", "",
             "| exercise | max | mean | passed by | not started | fair credit |", "|---|---:|---:|---:|---:|---:|"]
    for ex, found, passed, todo in rows:
        fair = sum(bool(r.fair) for r in found)
        lines.append(f"| {ex.id} {ex.title} | {ex.points} | {statistics.mean(r.points for r in found):.2f} | "
                     f"{_pct(passed, n)} ({passed}) | {todo} | {fair} |")
    return lines


def _most_failed(rows: list[tuple], n: int) -> list[str]:
    """The exercises most students started and did not pass, with what they saw most often."""
    lines = ["", "## Most-failed exercises", "",
             "Students who tried and did not pass (not started does not count), and what they saw most often.", ""]
    def failed(found, passed, todo):       # not started, and not graded (--trust-services), do not count
        return n - passed - todo - sum(r.status == "not graded" for r in found)

    tried = sorted(((failed(found, passed, todo), ex, found) for ex, found, passed, todo in rows
                    if failed(found, passed, todo) > 0), key=lambda row: (-row[0], row[1].id))
    if not tried:
        lines.append("None: every exercise a student started passes.")
    for count, ex, found in tried[:8]:
        lines.append(f"- **{ex.id} {ex.title}**: not passed by {count} of {n} who started it")
        messages = Counter()
        for r in found:
            if r.status != "pass" and not r.marked_todo and r.first_failure:
                first = r.first_failure
                messages[(first.case.name.split("[")[0], (first.message.splitlines() or [first.outcome])[0])] += 1
        for (test, message), times in messages.most_common(3):
            lines.append(f"  - {times}× `{test}`: {message}")
    return lines


def _students_table(students: list[StudentResult], plan: Plan, flags: dict[str, list[str]]) -> list[str]:
    columns = " | ".join(each.id for each in plan.lessons)
    lines = ["", "## Students", "", f"| student | {columns} | total | status | flags |",
             "|---|" + "---:|" * len(plan.lessons) + "---:|---|---|"]
    for s in students:
        cells = " | ".join(f"{number(each.points)}" for each in s.lessons)
        flagged = md_cell("; ".join(flags.get(s.name, [])))
        lines.append(f"| {md_cell(s.name)} | {cells} | {number(s.points)}/{s.max_points} | "
                     f"{s.run.status} | {flagged} |")
    return lines


# ---------------------------------------------------------------- the terminal

def print_totals(students: list[StudentResult], out: Path, started: float, stream=None) -> None:
    stream = stream or sys.stdout
    for s in students:
        flag = "" if s.run.status == "ok" else f"  ({s.run.status})"
        stream.write(f"  {s.name:<24} {number(s.points):>6} / {s.max_points}{flag}\n")
    stream.write(f"Graded {len(students)} submission(s) in {time.monotonic() - started:.1f} s. "
                 f"Wrote {out / 'gradebook.csv'}, {out / 'grades.csv'}, {out / 'summary.md'}, "
                 f"{out / 'histogram.png'}, and json/, junit/, feedback/, logs/ per student.\n")
