"""The tests have teeth: every exercise test fails on the unsolved starter, and decoys fail too.

Two kinds of code under test that must *not* pass:

* the **starter** of each lesson as the course ships it. A student who solved lessons in their own
  copy still has the shipped starter in git: ``course/tools/starters.json`` records each starter's git
  blob id, so the shipped version is read back from git whatever the working tree holds. When the
  working file matches the record it is used directly (no git needed);
* **decoys**: the reference solution with one typical mistake patched in, listed in
  ``tests/decoys/NN_slug.toml``. Each must fail at least one exercise test.

``python -m course freeze`` records the starters after a maintainer changes one.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from course import ROOT
from course.lesson import manifest
from course.tools.results import PYTEST_QUIET

STARTERS_LOCK = Path(__file__).with_name("starters.json")
DECOYS_DIR = ROOT / "tests" / "decoys"


class StarterUnavailable(Exception):
    """The shipped starter cannot be found (changed without a freeze, or no git history)."""


def blob_id(data: bytes) -> str:
    """The id git gives a file's content (``git hash-object``), computed without git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def recorded_starters() -> dict[str, str]:
    if not STARTERS_LOCK.exists():
        return {}
    return json.loads(STARTERS_LOCK.read_text(encoding="utf-8"))


def freeze() -> dict[str, str]:
    """Record the current lessons/*/app.py as the shipped starters."""
    lock = {lesson.slug: blob_id((ROOT / "lessons" / lesson.slug / "app.py").read_bytes())
            for lesson in manifest.lessons() if (ROOT / "lessons" / lesson.slug / "app.py").exists()}
    STARTERS_LOCK.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return lock


def shipped_starter(slug: str) -> bytes:
    """The starter's content as the course ships it (see the module docstring)."""
    recorded = recorded_starters().get(slug)
    if recorded is None:
        raise StarterUnavailable(f"course/tools/starters.json has no entry for {slug}: "
                                 "run `python -m course freeze` and commit the file")
    path = ROOT / "lessons" / slug / "app.py"
    if path.exists() and blob_id(path.read_bytes()) == recorded:
        return path.read_bytes()
    if os.environ.get("CI"):
        raise StarterUnavailable(
            f"lessons/{slug}/app.py is not the starter recorded in course/tools/starters.json. If you changed "
            "the starter on purpose, run `python -m course freeze` and commit course/tools/starters.json.")
    try:
        return subprocess.run(["git", "cat-file", "blob", recorded], cwd=ROOT, capture_output=True,
                              check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise StarterUnavailable(
            f"lessons/{slug}/app.py holds your own work, and the shipped starter (git blob {recorded[:10]}) "
            f"is not in this copy's git history ({type(exc).__name__}), so its teeth cannot be checked "
            "here. A fresh clone checks them.") from exc


@dataclass(frozen=True)
class Decoy:
    slug: str
    name: str
    mistake: str
    replace: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return f"{self.slug}:{self.name}"

    def exercises(self, solution: str) -> set[str]:
        """The exercises whose definitions (the manifest's ``names``) the decoy's changes fall in.

        Their tests run first, so a decoy is usually caught by the first few tests it meets.
        """
        import ast
        tree = ast.parse(solution)
        spans = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                spans.setdefault(node.name, []).append((node.lineno, node.end_lineno))
        lines = [solution[:solution.index(old)].count("\n") + 1 for old, _ in self.replace if old in solution]
        found = set()
        for ex in manifest.lesson(self.slug).exercises:
            for name in ex.names:
                for start, end in spans.get(name.split(".")[-1], []):
                    if any(start <= line <= end for line in lines):
                        found.add(ex.id)
        return found

    def apply(self, solution: str) -> str:
        for old, new in self.replace:
            if old not in solution:
                raise ValueError(f"decoy {self.id!r}: the solution no longer contains {old!r}; "
                                 f"update tests/decoys/{self.slug}.toml")
            solution = solution.replace(old, new)
        return solution


def decoys() -> list[Decoy]:
    found = []
    for path in sorted(DECOYS_DIR.glob("*.toml")):
        for raw in tomllib.loads(path.read_text(encoding="utf-8")).get("decoy", []):
            found.append(Decoy(slug=path.stem, name=raw["name"], mistake=raw["mistake"],
                               replace=tuple((r["old"], r["new"]) for r in raw["replace"])))
    return found


def passing_on_starter(records: list[dict]) -> list[str]:
    """The exercise tests that did not fail: on a starter, each one is a test without teeth."""
    return [r["nodeid"] for r in records if r["exercise"] and r["outcome"] in ("passed", "skipped")]


def caught(records: list[dict]) -> bool:
    """Did at least one exercise test fail (a decoy must be caught)?"""
    return any(r["exercise"] and r["outcome"] in ("failed", "error") for r in records)


def run_exercise_tests(target: Path, slugs: list[str], report: Path, timeout: float = 600,
                       stop_at_first_failure: bool = False, first: set[str] = frozenset()) -> list[dict]:
    """Run the exercise tests of ``slugs`` against ``target`` in a fresh process; its records.

    ``first``: exercise ids whose tests run before the others (course.tools.pytest_plugin reads
    COURSE_RUN_FIRST).
    """
    files = [str(ROOT / "tests" / f"test_{slug}.py") for slug in slugs]
    command = [sys.executable, "-m", "pytest", *files, "-m", "exercise", "-q", "--no-header", "--tb=native",
               *PYTEST_QUIET, "--target", str(target), "--course-report", str(report)]
    if stop_at_first_failure:
        command.append("-x")
    env = {**os.environ, "COURSE_RUN_FIRST": ",".join(sorted(first))}
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if not report.exists():
        raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(report.read_text(encoding="utf-8"))["tests"]


def run_starters(workdir: Path, only: set[str] | None = None) -> tuple[list[dict], dict[str, str]]:
    """The lessons' exercise tests against the shipped starters: (records, unavailable).

    ``only`` limits the run to those lesson slugs (the ones the selected tests ask about).
    """
    target = workdir / "starters"
    unavailable, slugs = {}, []
    for lesson in manifest.lessons():
        if only is not None and lesson.slug not in only:
            continue
        try:
            content = shipped_starter(lesson.slug)
        except StarterUnavailable as exc:
            unavailable[lesson.slug] = str(exc)
            continue
        (target / lesson.slug).mkdir(parents=True, exist_ok=True)
        (target / lesson.slug / "app.py").write_bytes(content)
        slugs.append(lesson.slug)
    records = run_exercise_tests(target, slugs, workdir / "starters.json") if slugs else []
    return records, unavailable


def _decoy_args(target: Path, slug: str, report: Path) -> list[str]:
    return ["-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), str(ROOT / "tests" / f"test_{slug}.py"),
            "-m", "exercise", "-x", "-q", "--no-header", "--tb=native", "-p", "_hypothesis_pytestplugin",
            "--target", str(target), "--course-report", str(report), "--basetemp", str(target / "tmp")]


def _decoy_child(args: list[str], first: set[str]) -> int:
    """In a child forked from a warm parent: one decoy's exercise tests, the ones it touches first."""
    import pytest

    from course.tools import mutate
    mutate._purge_course_modules()             # the child imports the course (and the tests) afresh
    os.environ["COURSE_RUN_FIRST"] = ",".join(sorted(first))
    return int(pytest.main(args))


def run_decoys(workdir: Path, jobs: int = 2, only: set[str] | None = None,
               timeout: float = 600) -> dict[str, list[dict] | str]:
    """Each decoy's exercise-test records (or why it could not be applied).

    Each decoy runs in a child forked from this process after it has imported the libraries the tests
    use (as ``python -m course mutate`` runs its mutants), ``jobs`` at a time, each stopping at its
    first failing test: a decoy is caught as soon as one test fails, and the tests of the exercises
    its changes fall in run first. A fresh interpreter per decoy spent about a second of CPU on
    imports alone, most of a decoy's cost.
    """
    from course.tools import mutate

    chosen = [d for d in decoys() if only is None or d.id in only]
    slugs = sorted({d.slug for d in chosen})
    mutate._warm([*(ROOT / "tests" / f"test_{slug}.py" for slug in slugs),
                  *(ROOT / "solutions" / slug / "app.py" for slug in slugs)])
    results: dict[str, list[dict] | str] = {}
    tasks = []
    for index, decoy in enumerate(chosen):
        solution = (ROOT / "solutions" / decoy.slug / "app.py").read_text(encoding="utf-8")
        try:
            patched = decoy.apply(solution)
        except ValueError as exc:       # a stale decoy fails alone, with a message saying why
            results[decoy.id] = str(exc)
            continue
        tasks.append((index, decoy, patched, decoy.exercises(solution)))

    def start(task):
        index, decoy, patched, first = task
        here = workdir / f"decoy-{index}"
        (here / decoy.slug).mkdir(parents=True)
        (here / decoy.slug / "app.py").write_text(patched, encoding="utf-8")
        args = _decoy_args(here, decoy.slug, here / "report.json")
        return mutate._fork(lambda: _decoy_child(args, first), here / "log.txt"), timeout, here

    def finish(task, code, here):
        decoy = task[1]
        report, log = here / "report.json", here / "log.txt"
        if report.exists():
            results[decoy.id] = json.loads(report.read_text(encoding="utf-8"))["tests"]
        else:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.exists() else ""
            ended = "timed out" if code is None else f"exit {code}"
            results[decoy.id] = f"pytest wrote no report ({ended}):\n{tail}"

    mutate.run_pool(tasks, start, finish, jobs)
    return {d.id: results[d.id] for d in chosen}
