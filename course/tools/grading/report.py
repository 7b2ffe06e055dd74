"""What the grader writes: grades.csv and summary.md for the class; JSON, JUnit XML, feedback and
the log for each student.

The feedback tells the student what passed, what failed and the first hint; never the solution.
"""
from __future__ import annotations

import csv
import io
import json
import re
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from course.tools.grading.escape import csv_cell, md_cell
from course.tools.grading.plan import Plan
from course.tools.grading.score import ExerciseResult, LessonResult, StudentResult, number
from course.tools.results import TIMED_OUT_SIGN

FOLDERS = {"json": ".json", "junit": ".xml", "feedback": ".md", "logs": ".log"}
"""Each student's files in ``--out``: folder, and the suffix of the files the grader owns there."""


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", name) or "_"


def prepare(out: Path) -> None:
    """``out`` and its folders, without the students' files of an earlier grading."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in FOLDERS:
        (out / sub).mkdir(exist_ok=True)
        for old in (out / sub).glob("*.*"):
            if old.suffix in FOLDERS.values():
                old.unlink()


def write_student(out: Path, result: StudentResult) -> None:
    name = safe_name(result.name)
    (out / "json" / f"{name}.json").write_text(json.dumps(student_json(result), indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    (out / "junit" / f"{name}.xml").write_bytes(junit(result))
    (out / "feedback" / f"{name}.md").write_text(feedback(result), encoding="utf-8")
    (out / "logs" / f"{name}.log").write_text(result.run.log, encoding="utf-8")


def write_class(out: Path, students: list[StudentResult], plan: Plan) -> None:
    write_csv(out / "grades.csv", students)
    (out / "summary.md").write_text(summary(students, plan), encoding="utf-8")


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
    path.write_text(buffer.getvalue(), encoding="utf-8")


# ---------------------------------------------------------------- json/NAME.json

def student_json(result: StudentResult) -> dict:
    run = result.run
    return {
        "version": 1, "student": result.name, "submission": str(result.submission.path),
        "status": run.status, "points": number(result.points), "max_points": result.max_points,
        "exit_code": run.exit_code, "duration_s": round(run.duration, 2), "output_bytes": run.output_bytes,
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
            "tests": [{"name": t.case.name, "weight": number(t.case.weight), "outcome": t.outcome,
                       "message": t.message} for t in e.tests],
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
    "not graded": "not graded (its checks need --trust-services: the instructor grades them separately)",
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
    """What went wrong with the run as a whole: stopped, crashed, too much output."""
    run, lines = result.run, []
    lines += [f"Note: {note}" for note in run.notes] + ([""] if run.notes else [])
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
    not_graded = sum(t.outcome == "not graded" for t in ex.tests)
    if not_graded and ex.status != "not graded":
        lines.append(f"  - {not_graded} check(s) not graded (they need PostgreSQL or MariaDB: --trust-services); "
                     "the points are shared by the others")
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


def summary(students: list[StudentResult], plan: Plan) -> str:
    lines = [f"# Class summary: {len(students)} submission(s)", "",
             f"Lessons {', '.join(each.id for each in plan.lessons)}; each test at most {plan.test_timeout:g} s, "
             f"each submission at most {plan.timeout:g} s.", ""]
    lines += [f"> Note: {warning}" for warning in plan.warnings]
    if plan.warnings:
        lines.append("")
    lines += _lessons_table(students, plan)
    rows = _exercise_rows(students, plan)
    lines += _exercises_table(rows, len(students))
    lines += _most_failed(rows, len(students))
    lines += _students_table(students, plan)
    lines.append("")
    return "\n".join(lines)


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
    lines = ["", "## Exercises", "", "| exercise | max | mean | passed by | not started |", "|---|---:|---:|---:|---:|"]
    for ex, found, passed, todo in rows:
        lines.append(f"| {ex.id} {ex.title} | {ex.points} | {statistics.mean(r.points for r in found):.2f} | "
                     f"{_pct(passed, n)} ({passed}) | {todo} |")
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


def _students_table(students: list[StudentResult], plan: Plan) -> list[str]:
    columns = " | ".join(each.id for each in plan.lessons)
    lines = ["", "## Students", "", f"| student | {columns} | total | status |",
             "|---|" + "---:|" * len(plan.lessons) + "---:|---|"]
    for s in students:
        cells = " | ".join(f"{number(each.points)}" for each in s.lessons)
        lines.append(f"| {md_cell(s.name)} | {cells} | {number(s.points)}/{s.max_points} | {s.run.status} |")
    return lines


# ---------------------------------------------------------------- the terminal

def print_totals(students: list[StudentResult], out: Path, started: float, stream=None) -> None:
    stream = stream or sys.stdout
    for s in students:
        flag = "" if s.run.status == "ok" else f"  ({s.run.status})"
        stream.write(f"  {s.name:<24} {number(s.points):>6} / {s.max_points}{flag}\n")
    stream.write(f"Graded {len(students)} submission(s) in {time.monotonic() - started:.1f} s. "
                 f"Wrote {out / 'grades.csv'}, {out / 'summary.md'}, "
                 "and json/, junit/, feedback/, logs/ per student.\n")
