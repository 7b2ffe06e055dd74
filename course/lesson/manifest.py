"""The manifest: the one place that says which lessons exist, in what order, with which exercises.

Lesson folders, test files, notebooks, the README's lesson table and the command line all follow
``course/lesson/manifest.toml``; ``tests/test_course_integrity.py`` checks that they agree with it.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from course import ROOT

MANIFEST_PATH = Path(__file__).with_name("manifest.toml")


@dataclass(frozen=True)
class Exercise:
    id: str                 # "03.2": lesson number, dot, exercise number
    title: str
    function: str           # what to edit in the lesson's app.py (a function, route or class)
    points: int
    hints: tuple[str, ...]  # progressive: each one says more than the last
    lesson_slug: str
    hint_checks: tuple[tuple[str, ...], ...] = ()   # per hint: the tests (function names) it answers
    names: tuple[str, ...] = ()    # the definitions of app.py it owns: "sign", "Store.get", "create_app.visits"

    @property
    def app_path(self) -> str:
        return f"lessons/{self.lesson_slug}/app.py"

    def hint_for(self, nodeid: str | None) -> int:
        """The number (from 1) of the hint written for the failing test ``nodeid``; 1 if none names it.

        ``tests/test_01_raw_cookies.py::test_x[param]`` is matched by its function name, ``test_x``.
        """
        if nodeid:
            name = nodeid.split("::")[-1].split("[")[0]
            for number, checks in enumerate(self.hint_checks, start=1):
                if name in checks:
                    return number
        return 1


def _hints(raw: list) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """A hint is a string, or a table ``{ text = "...", checks = ["test_name", ...] }``."""
    texts, checks = [], []
    for hint in raw:
        if isinstance(hint, str):
            texts.append(hint)
            checks.append(())
        else:
            texts.append(hint["text"])
            checks.append(tuple(hint.get("checks", ())))
    return tuple(texts), tuple(checks)


@dataclass(frozen=True)
class Lesson:
    id: str                 # "03"
    slug: str               # "03_session_ids"
    title: str
    services: tuple[str, ...] = ()   # servers its tests need: "redis", "postgres", "mysql", ...
    exercises: tuple[Exercise, ...] = field(default_factory=tuple)

    @property
    def readme(self) -> Path:
        return ROOT / "lessons" / self.slug / "README.md"

    @property
    def notebook(self) -> Path:
        return ROOT / "notebooks" / f"{self.slug}.ipynb"

    @property
    def test_file(self) -> Path:
        return ROOT / "tests" / f"test_{self.slug}.py"

    @property
    def max_points(self) -> int:
        return sum(e.points for e in self.exercises)


class UnknownLesson(LookupError):
    """Raised with a message that lists the lessons there are."""


@lru_cache(maxsize=1)
def lessons() -> tuple[Lesson, ...]:
    data = tomllib.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    result = []
    for raw in data.get("lesson", []):
        exercises = tuple(
            Exercise(
                id=e["id"], title=e["title"], function=e["function"], points=int(e.get("points", 1)),
                hints=_hints(e.get("hints", ()))[0], hint_checks=_hints(e.get("hints", ()))[1],
                lesson_slug=raw["slug"], names=tuple(e.get("names", ())),
            )
            for e in raw.get("exercise", [])
        )
        result.append(Lesson(id=raw["id"], slug=raw["slug"], title=raw["title"],
                             services=tuple(raw.get("services", ())), exercises=exercises))
    return tuple(sorted(result, key=lambda lesson: lesson.id))


def lesson(key: str | int) -> Lesson:
    """Find a lesson by number ("3", "03", 3) or slug ("03_session_ids")."""
    text = str(key).strip().rstrip("/")
    text = text.split("/")[-1]
    for candidate in lessons():
        if text in (candidate.id, candidate.slug) or (text.isdigit() and int(text) == int(candidate.id)):
            return candidate
    there = ", ".join(f"{each.id} ({each.slug})" for each in lessons())
    raise UnknownLesson(f"There is no lesson {key!r}. The lessons are: {there}.")


def exercise(exercise_id: str) -> Exercise:
    """Find an exercise by id ("03.2"); a short form like "3.2" works too."""
    text = str(exercise_id).strip()
    lesson_part, _, number = text.partition(".")
    try:
        wanted = f"{int(lesson_part):02d}.{int(number)}"
    except ValueError:
        wanted = text
    for each in lessons():
        for ex in each.exercises:
            if ex.id == wanted:
                return ex
    known = ", ".join(ex.id for each in lessons() for ex in each.exercises)
    raise LookupError(f"There is no exercise {exercise_id!r}. The exercises are: {known}.")
