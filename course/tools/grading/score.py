"""A run's records as points: per test, per exercise (shared by weight), per lesson, per student.

An exercise is worth the manifest's points; its tests share them by weight: points = points x
passed weight / total weight. What each test's outcome means, and an exercise's status, are
course.tools.results' rules, the ones ``python -m course check`` follows too.
"""
from __future__ import annotations

from dataclasses import dataclass

from course.lesson import manifest
from course.tools import results
from course.tools.grading.find import Submission
from course.tools.grading.plan import Plan, TestCase
from course.tools.grading.run import Run
from course.tools.term import tidy_message


@dataclass
class TestResult:
    case: TestCase
    outcome: str                # passed, failed, error, skipped, timeout, not run, not graded
    message: str
    recorded: str = ""          # the outcome as recorded (failed or error for a timeout), or not run


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
        return next((t for t in self.tests if t.outcome not in ("passed", "not graded")), None)


@dataclass
class LessonResult:
    lesson: manifest.Lesson
    exercises: list[ExerciseResult]
    problem: str = ""           # one message that explains every failure (its app.py does not load)

    @property
    def points(self) -> float:
        return round(sum(e.points for e in self.exercises), 2)

    @property
    def complete(self) -> bool:
        return all(e.status == "pass" for e in self.exercises)


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
        return round(sum(each.points for each in self.lessons), 2)

    @property
    def max_points(self) -> int:
        return sum(each.lesson.max_points for each in self.lessons)


def number(value: float):
    """Points as written: 2, not 2.0; 0.33 for a third."""
    value = round(value, 2)
    return int(value) if value == int(value) else value


def score(plan: Plan, run: Run, replace: dict[str, str]) -> list[LessonResult]:
    """Each lesson's results; ``replace`` maps the working folder's paths in messages to the student's."""
    merged = results.merge(run.records)
    lessons = []
    for lesson in plan.lessons:
        exercises = []
        for ex in lesson.exercises:
            cases = [t for t in plan.tests if t.slug == lesson.slug and t.exercise == ex.id]
            tests = [_test_result(case, merged.get(case.nodeid), run, replace) for case in cases]
            exercises.append(_exercise_result(ex, tests, ex.id in run.todo))
        everything = [(t.recorded, t.message) for e in exercises for t in e.tests]
        lessons.append(LessonResult(lesson, exercises, results.problem(everything)))
    return lessons


def _test_result(case: TestCase, record: dict | None, run: Run, replace: dict[str, str]) -> TestResult:
    if record is None:
        return TestResult(case, "not run", run.not_run.get(case.nodeid) or run.stopped or "not run", "not run")
    message = "\n".join(tidy_message(record.get("message") or "", replace, max_lines=6))
    outcome = results.outcome(record)
    return TestResult(case, outcome, "" if outcome == "passed" else message, record["outcome"])


def _exercise_result(ex: manifest.Exercise, tests: list[TestResult], marked_todo: bool) -> ExerciseResult:
    total = sum(t.case.weight for t in tests if t.outcome != "not graded")     # a check not graded counts for nothing
    passed = sum(t.case.weight for t in tests if t.outcome == "passed")
    points = round(ex.points * passed / total, 2) if total else 0.0
    return ExerciseResult(ex, tests, points, results.status([t.outcome for t in tests], marked_todo), marked_todo)
