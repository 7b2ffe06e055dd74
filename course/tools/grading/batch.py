"""The whole class: find the copies, plan once, then run, score and report each, a few at a time.

Each copy runs as it is, then (fair credit, course.tools.grading.credit) each exercise that did
not pass there runs again with the reference's version of the lesson's other exercises.
``merge=True`` keeps the students graded earlier into ``out`` and replaces only the rows of those
graded again.

Ctrl-C (or any error) stops the batch: the running workers are killed, and the class files
(gradebook.csv, grades.csv, summary.md, histogram.png) are not written.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from course import ROOT
from course.tools.grading import cpuacct, credit, report, same, sandbox
from course.tools.grading.find import Submission, find_submissions
from course.tools.grading.plan import GradeError, Plan, make_plan
from course.tools.grading.run import Cancelled, Run, run_submission
from course.tools.grading.score import StudentResult, number, score
from course.tools.results import GRADE_TEST_TIMEOUT
from course.tools.term import Progress

DEFAULT_TEST_TIMEOUT = GRADE_TEST_TIMEOUT

TRUSTED = ("--trust-services: lessons 08 and 09's sandboxes shared this machine's network: a copy could reach its "
           "PostgreSQL, MariaDB, Redis and memcached as their users allow, and every loopback port")
NOT_TRUSTED = ("the checks that need {names} were not graded: the grader could not give each copy a private one "
               "({why}); install it, or grade them with --trust-services against throwaway servers (make services)")
SERVER_NAMES = {"postgres": "PostgreSQL", "mysql": "MariaDB"}
FAILED_ON_COPY = ("the grader failed on this copy (copying it, or analysing its code after its tests ran: untouched "
                   "exercises, fair credit, identical copies), a bug of the course's grader: the grade is its tests "
                   "as they ran, if they ran, without fair credit. Report it to the course's maintainers")


def grade(paths: list[str], out: Path, jobs: int = 2, timeout: float | None = None,
          test_timeout: float = DEFAULT_TEST_TIMEOUT, lessons: list[str] | None = None,
          progress: bool = True, stderr=None, merge: bool = False, fair_credit: bool = True,
          unsafe: bool = False, trust_services: bool = False) -> list[StudentResult]:
    """Grade every submission in ``paths`` into ``out``; the results of those graded now, in name order.

    Each copy runs in a sandbox (course.tools.grading.sandbox); where none can be made, grading is
    refused, unless ``unsafe`` (``--unsafe-no-sandbox``) says to grade in-process, with a warning.
    """
    stderr = stderr or sys.stderr
    submissions, notes = find_submissions(paths, report.earlier_files(out) if merge else None)
    if not submissions:
        raise GradeError("no submission to grade: give the folders of the students' copies")
    why = sandbox.problem()
    if why and not unsafe:
        raise GradeError(f"no sandbox for the students' code: {why}. Install it, or (never for a class you "
                         "do not trust) give --unsafe-no-sandbox")
    plan = make_plan(lessons, test_timeout, timeout)
    plan.sandboxed = not why and not unsafe
    plan.trust_services = trust_services
    if plan.sandboxed and any(each.services for each in plan.lessons):
        plan.warnings = [w for w in plan.warnings if trust_services or not _private(w)]   # the machine's: not used
        plan.warnings += [TRUSTED] if trust_services else []
    folder = None
    try:
        if plan.sandboxed and not trust_services:
            folder = _private_databases(plan)
        return _grade(submissions, notes, plan, out, jobs, progress, stderr, merge, fair_credit)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def _private(warning: str) -> bool:
    """Is it the plan's warning that the machine's server is down, for a server each copy has a private one of?"""
    return any(warning.startswith("lesson ") and f" needs {name}, which is not reachable" in warning
               for name in sandbox.PRIVATE_SERVICES)


def _private_databases(plan: Plan) -> str | None:
    """The templates of the private databases the plan's lessons need, made once for the whole run
    (course.tools.grading.databases); a warning for each that cannot be made. Their folder, to remove."""
    from course.tools.grading import databases

    needed = {name for each in plan.lessons for name in each.services}
    folder, plan.templates, problems = databases.make_templates(needed)
    if problems:
        names = " or ".join(SERVER_NAMES.get(name, name) for name in sorted(problems))
        plan.warnings.append(NOT_TRUSTED.format(names=names, why="; ".join(problems[n] for n in sorted(problems))))
    return folder


def _grade(submissions: list[Submission], notes: list[str], plan: Plan, out: Path, jobs: int, progress: bool,
           stderr, merge: bool, fair_credit: bool) -> list[StudentResult]:
    if not plan.sandboxed:
        plan.warnings.insert(0, sandbox.UNSAFE_WARNING)
    else:
        plan.warnings += [each for each in (sandbox.symlink_protection(), cpuacct.problem()) if each]
    earlier = report.load_students(out, plan, skip={s.name for s in submissions}) if merge else []
    if earlier:
        notes.append(f"--merge: keeping the {len(earlier)} student(s) graded earlier in {out}")
    _announce(stderr, notes + plan.warnings, submissions, plan, jobs)
    report.prepare(out, merge=merge)
    bar = Progress(len(submissions), "grading", stderr, enabled=progress)
    cancel = threading.Event()

    def one(submission: Submission) -> StudentResult:
        return _grade_one(submission, plan, out, cancel, bar, fair_credit)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        ordered = list(pool.map(one, submissions))          # in the submissions' order: never keyed by a name
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        raise
    pool.shutdown()
    bar.close()
    report.write_class(out, sorted(earlier + ordered, key=lambda each: each.name), plan)
    return ordered


def _announce(stderr, notes: list[str], submissions: list[Submission], plan: Plan, jobs: int) -> None:
    for note in notes:
        stderr.write(f"note: {note}\n")
    stderr.write(f"Grading {len(submissions)} submission(s), lesson(s) {', '.join(each.id for each in plan.lessons)}: "
                 f"{len(plan.tests)} tests each, {jobs} at a time, at most {plan.test_timeout:g} s a test "
                 f"and {plan.timeout:g} s a submission.\n")
    stderr.flush()


def _grade_one(submission: Submission, plan: Plan, out: Path, cancel: threading.Event,
               bar: Progress, fair_credit: bool = True) -> StudentResult:
    """Run, score and write one submission, in a working folder removed afterwards."""
    bar.start(submission.name)
    workdir = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        replace = {str(workdir / "lessons"): "lessons", str(workdir): ".", str(ROOT) + os.sep: ""}
        notes: list[str] = []
        run = None
        try:
            untouched = credit.unstarted(submission.lessons_dir, plan, notes)
            run = run_submission(submission, plan, workdir, cancel, bar, not_started=untouched)
            lessons = score(plan, run, replace, not_started=untouched)
            again = (credit.recheck(submission, plan, run, lessons, workdir, cancel, bar, not_started=untouched)
                     if fair_credit else None)
            if again and again.records:
                lessons = score(plan, run, replace, fair=again.records, not_started=untouched)
            prints = same.lesson_prints(submission.lessons_dir, [each.slug for each in plan.lessons])
        except Cancelled:
            raise
        except Exception as exc:        # one copy the grader cannot handle must not stop the class's grading
            run = run or Run([], "grader error", None, 0.0, 0, "", stopped="not run: the grader failed on this copy")
            run.status, again, prints = "grader error", None, {}
            notes.append(f"{FAILED_ON_COPY} ({type(exc).__name__}: {str(exc)[:200]})")
            run.notes.append(notes[-1])
            lessons = score(plan, run, replace)
        result = StudentResult(submission, run, lessons, prints, notes + (again.notes if again else []),
                               again.duration if again else 0.0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.write_student(out, result)
    note = "" if run.status == "ok" else f", {run.status}"
    bar.finish(submission.name, f"{number(result.points)}/{result.max_points} points "
                                f"({run.duration:.1f} s{note})")
    return result

