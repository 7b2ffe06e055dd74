"""A run's records as points: per test, per exercise (shared by weight), per lesson, per student.

An exercise is worth the manifest's points; its tests share them by weight: points = points x
passed weight / total weight. What each test's outcome means, and an exercise's status, are
course.tools.results' rules, the ones ``python -m course check`` follows too.

Fair credit (course.tools.grading.credit): a test that failed in the copy as it is, and passed
when the exercise was checked with the reference's version of the lesson's other exercises, counts
as passed; the feedback says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
    fair: bool = False          # passed only with the reference's other exercises (fair credit)
    cpu: float | None = None    # CPU seconds the copy's code spent in the test's call (sandboxed runs)


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
    def fair(self) -> int:
        """How many of its tests passed only with the reference's other exercises."""
        return sum(t.fair for t in self.tests)

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
    fingerprints: dict[str, str] = field(default_factory=dict)   # lesson slug -> its app.py's (grading.same)
    notes: list[str] = field(default_factory=list)      # what fair credit could not check (json and feedback)
    fair_seconds: float = 0.0                           # time the fair-credit runs took

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


NOT_STARTED = ("not started: {names} is still the starter's code, so its checks earn nothing "
               "(this one passes on the starter when the rest of the lesson is done)")


FAIR_ROUND = "fair_round"
"""The key of a fair-credit record that says which round of hybrids it comes from (credit._one_round)."""


def score(plan: Plan, run: Run, replace: dict[str, str], fair: list[dict] | None = None,
          not_started: set[str] = frozenset()) -> list[LessonResult]:
    """Each lesson's results; ``replace`` maps the working folder's paths in messages to the student's.

    ``fair``: the records of the hybrid runs (fair credit); a test passed there counts as passed.
    ``not_started``: exercises whose code is still the starter's (hybrid.not_started); they earn 0.
    """
    merged = results.merge(run.records)
    rounds: dict[int, list[dict]] = {}
    for record in fair or []:            # a test passed in any round (its phases merged in each) counts
        rounds.setdefault(record.get(FAIR_ROUND, 0), []).append(record)
    passed_fair = {nodeid for each in rounds.values() for nodeid, record in results.merge(each).items()
                   if results.outcome(record) == "passed"}
    lessons = []
    for lesson in plan.lessons:
        exercises = []
        for ex in lesson.exercises:
            cases = [t for t in plan.tests if t.slug == lesson.slug and t.exercise == ex.id]
            tests = [_test_result(case, merged.get(case.nodeid), run, replace) for case in cases]
            for test in tests:
                if test.outcome != "passed" and test.case.nodeid in passed_fair:
                    test.outcome, test.recorded, test.message, test.fair = "passed", "passed", "", True
                if ex.id in not_started and test.outcome == "passed":
                    test.recorded, test.fair = "failed", False
                    test.message = NOT_STARTED.format(names=", ".join(ex.names))
                if ex.id in not_started:
                    test.outcome = "todo"
            exercises.append(_exercise_result(ex, tests, ex.id in run.todo or ex.id in not_started))
        everything = [(t.recorded, t.message) for e in exercises if e.exercise.id not in not_started
                      for t in e.tests]          # those not started were not run: they tell nothing
        lessons.append(LessonResult(lesson, exercises, results.problem(everything)))
    return lessons


def _test_result(case: TestCase, record: dict | None, run: Run, replace: dict[str, str]) -> TestResult:
    if record is None:
        return TestResult(case, "not run", run.not_run.get(case.nodeid) or run.stopped or "not run", "not run")
    message = "\n".join(tidy_message(record.get("message") or "", replace, max_lines=6))
    outcome = results.outcome(record)
    return TestResult(case, outcome, "" if outcome == "passed" else message, record["outcome"], cpu=record.get("cpu"))


def _exercise_result(ex: manifest.Exercise, tests: list[TestResult], marked_todo: bool) -> ExerciseResult:
    total = sum(t.case.weight for t in tests if t.outcome != "not graded")     # a check not graded counts for nothing
    passed = sum(t.case.weight for t in tests if t.outcome == "passed")
    points = round(ex.points * passed / total, 2) if total else 0.0
    return ExerciseResult(ex, tests, points, results.status([t.outcome for t in tests], marked_todo), marked_todo)
