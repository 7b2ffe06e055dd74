"""Fair credit: each exercise that did not pass in the copy's run, checked again in a hybrid.

In the copy's own run, the exercises not started (still the starter's code: ``unstarted``) are not
tested (run.run_submission). Here, the first round runs the failed exercises of each lesson with
the reference's code standing in for those not started: 03.3 solved and 03.2 not started earns
03.3's points. Then the hybrid of each exercise still failing, X (course.tools.grading.hybrid),
is the student's app.py with every other exercise of the lesson taken from the reference, so X is
worth its points whatever else the student did, however wrong: 03.2 started and wrong, 03.3
right, earns 03.3's points. A test earns its weight when it passed in any run.

Only exercises worth a second look are checked again: not those that passed, not those the
student has not started (status todo: their code is the starter's, and the starter fails every
test), and none when the copy ran out of time or the lesson's app.py hangs at import. Each
lesson's app.py holds one hybrid at a time, so the hybrids run in rounds: round k checks the k-th
exercise of every lesson that has one, with only that exercise's tests that did not pass already,
in one test process.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from course import ROOT
from course.lesson import manifest
from course.tools import teeth
from course.tools.grading.find import Submission
from course.tools.grading.hybrid import HybridError, encoded, hybrid, not_started, with_reference_for
from course.tools.grading.plan import Plan
from course.tools.grading.run import Run, run_submission
from course.tools.grading.same import read_source
from course.tools.grading.score import FAIR_ROUND, LessonResult
from course.tools.results import TIMED_OUT_SIGN
from course.tools.term import Progress

SKIP_STATUSES = {"pass", "todo", "untested", "skipped"}


@dataclass
class Recheck:
    """What the hybrids of one copy did: their records, the exercises checked, and what could not be."""
    records: list[dict] = field(default_factory=list)
    exercises: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration: float = 0.0
    rounds: int = 0


def unstarted(lessons_dir: Path | None, plan: Plan, notes: list[str]) -> set[str]:
    """The exercises whose code in the copy is still the shipped starter's (hybrid.not_started): they earn 0."""
    found = set()
    for lesson in plan.lessons:
        student = read_source(lessons_dir / lesson.slug / "app.py") if lessons_dir else None
        if student is None:
            continue
        try:
            starter = teeth.shipped_starter(lesson.slug).decode("utf-8", "replace")
        except teeth.StarterUnavailable as exc:
            notes.append(f"lesson {lesson.id}: cannot tell an untouched exercise from a started one: {exc}")
            continue
        found |= not_started(student, starter, lesson.slug)
    return found


def worth_checking(run: Run, lessons: list[LessonResult]) -> dict[str, list[str]]:
    """Per lesson slug, the exercises to check again in a hybrid (see the module docstring)."""
    if run.status in ("timeout", "grader error"):
        return {}
    chosen = {}
    for lesson in lessons:
        if TIMED_OUT_SIGN in lesson.problem:
            continue
        ids = [ex.exercise.id for ex in lesson.exercises if ex.status not in SKIP_STATUSES and ex.exercise.names]
        if ids:
            chosen[lesson.lesson.slug] = ids
    return chosen


def build_rounds(student_dir: Path, chosen: dict[str, list[str]], into: Path,
                 notes: list[str]) -> list[tuple[Path, dict[str, str]]]:
    """The hybrid copies, one folder of lessons per round, and the exercise each lesson holds in it."""
    hybrids: dict[str, list[tuple[str, str]]] = {}
    for slug, ids in chosen.items():
        student = read_source(student_dir / slug / "app.py")
        if student is None:
            continue
        reference = (ROOT / "solutions" / slug / "app.py").read_text(encoding="utf-8")
        for exercise_id in ids:
            try:
                hybrids.setdefault(slug, []).append((exercise_id, encoded(hybrid(student, reference, exercise_id))))
            except HybridError as exc:
                notes.append(f"{exercise_id}: not checked with the reference's other exercises: {exc}")
    rounds = []
    for number in range(max((len(each) for each in hybrids.values()), default=0)):
        folder = into / f"round-{number + 1}"
        held = {}
        for slug, each in hybrids.items():
            if number < len(each):
                exercise_id, source = each[number]
                (folder / slug).mkdir(parents=True)
                (folder / slug / "app.py").write_bytes(source)
                held[slug] = exercise_id
        rounds.append((folder, held))
    return rounds


def recheck(submission: Submission, plan: Plan, run: Run, lessons: list[LessonResult], workdir: Path,
            cancel: threading.Event, progress: Progress | None = None, not_started: set[str] = frozenset()) -> Recheck:
    """Run the hybrids of the exercises worth checking again; their records, for ``score(..., fair=...)``.

    ``workdir`` holds the copy's lessons as graded (``workdir/lessons``); the rounds go beside them.
    The first round has, in each lesson with exercises ``not_started``, the reference's code standing
    in for those (hybrid.with_reference_for): at once, every exercise that only needed them passes.
    Then one round per exercise still failing, as the module's docstring says. All rounds together
    get at most the copy's own time limit. Nothing of a round reaches the student but which tests
    passed: its messages and output would show the reference's code.
    """
    result = Recheck()
    chosen = worth_checking(run, lessons)
    if not chosen:
        return result
    building = time.thread_time()
    passed = {t.case.nodeid for lesson in lessons for ex in lesson.exercises for t in ex.tests if t.outcome == "passed"}
    first = stand_in_round(workdir / "lessons", chosen, not_started, workdir / "hybrids" / "stand-in", result.notes)
    budget = plan.timeout - (time.thread_time() - building)      # the grader's work on the hybrids is the copy's too
    if first is not None:
        budget = _one_round(submission, plan, first, passed, budget, workdir / "fair-0", cancel, progress, result)
        passed |= {r["nodeid"] for r in result.records if r.get("outcome") == "passed"}
        chosen = {slug: [ex for ex in ids if not _all_passed(plan, slug, ex, passed)] for slug, ids in chosen.items()}
        chosen = {slug: ids for slug, ids in chosen.items() if ids}
    building = time.thread_time()
    rounds = build_rounds(workdir / "lessons", chosen, workdir / "hybrids", result.notes)
    budget -= time.thread_time() - building
    for number, (folder, held) in enumerate(rounds, start=1):
        if budget <= 1:
            result.notes.append("fair credit: stopped, the copy's time limit is used up")
            break
        one_each = {slug: {exercise_id} for slug, exercise_id in held.items()}
        budget = _one_round(submission, plan, (folder, one_each), passed, budget, workdir / f"fair-{number}", cancel,
                            progress, result)
    return result


def stand_in_round(student_dir: Path, chosen: dict[str, list[str]], not_started: set[str], into: Path,
                   notes: list[str]) -> tuple[Path, dict[str, set[str]]] | None:
    """Fair credit's first round: per lesson with exercises to check again and some not started, the
    student's app.py with the reference's code for those not started; the folder, and per lesson
    the exercises it checks. None when no lesson has one."""
    held = {}
    for slug, ids in chosen.items():
        lesson_ids = {ex.id for ex in manifest.lesson(slug).exercises}
        student = read_source(student_dir / slug / "app.py")
        if student is None or not lesson_ids & not_started:
            continue
        reference = (ROOT / "solutions" / slug / "app.py").read_text(encoding="utf-8")
        try:
            source, _ = with_reference_for(student, reference, slug, lesson_ids & not_started)
        except HybridError as exc:
            notes.append(f"lesson {slug[:2]}: the reference's code did not stand in for the exercises not "
                         f"started: {exc}")
            continue
        (into / slug).mkdir(parents=True)
        (into / slug / "app.py").write_bytes(encoded(source))
        held[slug] = set(ids)
    return (into, held) if held else None


def _all_passed(plan: Plan, slug: str, exercise_id: str, passed: set[str]) -> bool:
    return all(t.nodeid in passed for t in plan.tests if t.slug == slug and t.exercise == exercise_id)


def _one_round(submission: Submission, plan: Plan, made: tuple[Path, dict], passed: set[str], budget: float,
               workdir: Path, cancel: threading.Event, progress: Progress | None, result: Recheck) -> float:
    """Run one round of hybrids (``made``: the folder, and per lesson the exercises it checks), its
    tests that did not pass yet only; add its records to ``result``; the budget left."""
    folder, checks = made
    tests = [t for t in plan.tests if t.exercise in checks.get(t.slug, ()) and t.nodeid not in passed]
    sub_plan = replace(plan, lessons=[each for each in plan.lessons if each.slug in checks], tests=tests,
                       timeout=budget, only_these_tests=True, warnings=[])    # sandboxed as the copy was
    copy = Submission(submission.name, folder, folder, submission.file_name)      # the hybrids only
    hybrid_run = run_submission(copy, sub_plan, workdir, cancel, progress)
    if tests and not hybrid_run.records and hybrid_run.status == "ok":
        result.notes.append(f"fair credit: a round of {len(tests)} checks ran none of them (exit code "
                            f"{hybrid_run.exit_code}): a bug of the grader's; report it to the course's maintainers")
    result.duration += hybrid_run.duration
    result.exercises += sorted(each for ids in checks.values() for each in ids)
    result.rounds += 1
    for record in hybrid_run.records:      # a test may run in two rounds: its phases are merged per round
        record[FAIR_ROUND] = result.rounds
    result.records += hybrid_run.records
    return budget - (hybrid_run.cpu if plan.sandboxed else hybrid_run.duration)     # as each round's own limit counts
