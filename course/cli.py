"""The commands behind ``python -m course``. Each takes the parsed arguments, returns an exit code."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from course import ROOT, manifest, teeth
from course.loader import LessonLoadError, display, load_app_module


def _lesson(key: str) -> manifest.Lesson:
    try:
        return manifest.lesson(key)
    except manifest.UnknownLesson as exc:
        raise SystemExit(str(exc)) from None


def run(args) -> int:
    lesson = _lesson(args.lesson)
    target = "solutions" if args.solution else "lessons"
    try:
        module = load_app_module(target, lesson.slug)
    except LessonLoadError as exc:
        raise SystemExit(str(exc)) from None
    argv = ["--host", args.host, "--port", str(args.port)]
    if args.store:
        argv += ["--store", args.store]
    print(f"Lesson {lesson.id} ({'reference solution' if args.solution else 'your code'}: "
          f"{display(ROOT / target / lesson.slug / 'app.py')})", flush=True)
    module.main(argv)
    return 0


def run_checks(lesson: manifest.Lesson, target: str = "lessons", quiet: bool = True) -> list[dict]:
    """Run one lesson's tests in this process against ``target``; one record per test."""
    import pytest

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = [str(lesson.test_file), "--target", target, "--course-report", str(report), "-p", "no:xdist"]
        args += ["-p", "no:terminal"] if quiet else ["-q", "--no-header", "--tb=short"]
        pytest.main(args)
        if not report.exists():
            return []
        return json.loads(report.read_text(encoding="utf-8"))["tests"]


def check(args) -> int:
    lesson = _lesson(args.lesson)
    records = run_checks(lesson, args.target)
    if not records:
        print(f"No checks ran for lesson {lesson.id}: is tests/test_{lesson.slug}.py there?")
        return 2
    failing_first = None
    print(f"Lesson {lesson.id}: {lesson.title}")
    for ex in lesson.exercises:
        mine = [r for r in records if r["exercise"] == ex.id]
        bad = [r for r in mine if r["outcome"] not in ("passed",)]
        mark = "done" if mine and not bad else "todo"
        print(f"  [{mark}] {ex.id} {ex.title}  ({len(mine) - len(bad)}/{len(mine)} checks)")
        if bad and failing_first is None:
            failing_first = (ex, bad[0])
    other = [r for r in records if r["exercise"] is None and r["outcome"] != "passed"]
    if failing_first:
        ex, record = failing_first
        print(f"\nNext: exercise {ex.id}, {ex.title}. Edit {ex.app_path}, {ex.function}.")
        print(f"  failing check: {record['nodeid'].split('::', 1)[-1]}")
        print(f"  what happened: {record['message'].strip().splitlines()[0] if record['message'] else record['outcome']}")
        if ex.hints:
            print(f"  hint: {ex.hints[0]}")
        return 1
    if other:
        print(f"\nAll exercises pass, but {len(other)} other check(s) fail: {other[0]['nodeid']}: {other[0]['message']}")
        return 1
    print(f"\nLesson {lesson.id} is complete.")
    return 0


def freeze(args) -> int:
    lock = teeth.freeze()
    print(f"Recorded {len(lock)} starters in {display(teeth.STARTERS_LOCK)}.")
    return 0
