"""What to grade: the lessons asked for that have tests, and every exercise test they hold.

The tests are collected once, from the course against its own solutions, before any submission
runs: a submission that breaks collection cannot hide a test, and every student is graded on the
same list.
"""
from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from course import ROOT
from course.lesson import manifest
from course.tools import services
from course.tools.grading import worker
from course.tools.results import lesson_slug

SECONDS_PER_LESSON = 60.0               # a submission's time limit, unless --timeout says


class GradeError(Exception):
    """The batch cannot be graded (bad arguments, the course's own tests do not collect)."""


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
    only_these_tests: bool = False      # run only ``tests`` (by test id), not every exercise test of the files

    def test_args(self, lessons: list[manifest.Lesson]) -> list[str]:
        """What the worker is given to run for ``lessons``: their test files, or only this plan's tests."""
        slugs = {each.slug for each in lessons}
        if self.only_these_tests:
            # Not ROOT / test.nodeid: pathlib folds the // of a parameter's id (08.1's [bogus://somewhere])
            # into one /, pytest found no such test, and the whole round ran nothing.
            return [f"{ROOT}/{test.nodeid}" for test in self.tests if test.slug in slugs]
        return [str(each.test_file) for each in lessons]
    sandboxed: bool = False     # each copy's lessons run in a sandbox (batch sets it; see sandbox.py)
    trust_services: bool = False  # --trust-services: lessons 08/09 reach the machine's database servers
    templates: dict[str, str] = field(default_factory=dict)  # database -> its data dir template (batch makes them)


def make_plan(lesson_keys: list[str] | None, test_timeout: float, timeout: float | None) -> Plan:
    """The lessons to grade and every exercise test they hold (collected once, from the course)."""
    warnings: list[str] = []
    lessons = _with_test_files(_chosen(lesson_keys), warnings)
    tests = collect(lessons)
    by_slug = Counter(test.slug for test in tests)
    for lesson in list(lessons):
        if not by_slug[lesson.slug]:
            warnings.append(f"lesson {lesson.id}: no exercise test collected from {lesson.test_file.name}: not graded")
            lessons.remove(lesson)
    if not lessons:
        raise GradeError("none of the lessons has an exercise test that collects")
    warnings += _unreachable_services(lessons)
    return Plan(lessons=lessons, tests=[t for t in tests if t.slug in {each.slug for each in lessons}],
                test_timeout=test_timeout,
                timeout=timeout if timeout else SECONDS_PER_LESSON * len(lessons), warnings=warnings)


def _chosen(lesson_keys: list[str] | None) -> list[manifest.Lesson]:
    if not lesson_keys:
        return list(manifest.lessons())
    try:
        chosen = [manifest.lesson(key) for key in lesson_keys]
    except manifest.UnknownLesson as exc:
        raise GradeError(str(exc)) from None
    return sorted(set(chosen), key=lambda lesson: lesson.id)


def _with_test_files(chosen: list[manifest.Lesson], warnings: list[str]) -> list[manifest.Lesson]:
    lessons = []
    for lesson in chosen:
        if lesson.test_file.exists():
            lessons.append(lesson)
        else:
            warnings.append(f"lesson {lesson.id} has no tests/{lesson.test_file.name} yet: not graded")
    if not lessons:
        raise GradeError("there is no lesson with tests to grade")
    return lessons


def _unreachable_services(lessons: list[manifest.Lesson]) -> list[str]:
    """A warning for each store server a lesson needs that cannot be reached now."""
    warnings = []
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
    return warnings


def collect(lessons: list[manifest.Lesson]) -> list[TestCase]:
    """Every exercise test of ``lessons``, as the course's tests collect against its solutions."""
    with tempfile.TemporaryDirectory(prefix="course-collect-") as tmp:
        stream = Path(tmp) / "collected.jsonl"
        command = worker.command([str(each.test_file) for each in lessons], ROOT / "solutions", "--collect-only", "-q",
                                 "--course-stream", str(stream), "--continue-on-collection-errors")
        proc = subprocess.run(command, cwd=tmp, env=worker.environment(Path(tmp)), capture_output=True,
                              text=True, timeout=300)
        lines = worker.read_stream(stream)
    tests = []
    for line in lines:
        if "collected" not in line or not line.get("exercise"):
            continue
        slug = lesson_slug(line["collected"])
        if slug:
            tests.append(TestCase(line["collected"], slug, line["exercise"], float(line.get("weight") or 1)))
    if not tests:
        raise GradeError("the course's tests did not collect:\n" + (proc.stdout + proc.stderr)[-3000:])
    return tests
