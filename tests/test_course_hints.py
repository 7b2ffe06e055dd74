"""The hints in course/lesson/manifest.toml: keyed to real checks, and the last one still teaches.

``check`` shows, for a failing test, the hint that names it (``checks = [...]``): a name that
matches no test of the exercise would silently fall back to hint 1, so every name is checked here.
And a last hint that is the solution's code, line for line, hands the exercise over instead of
teaching it: no hint may hold a line of the reference solution that the starter does not have.
"""
from __future__ import annotations

import ast
import re

import pytest

from course import ROOT
from course.lesson import manifest
from course.tools import teeth

LESSONS = [lesson for lesson in manifest.lessons() if lesson.test_file.exists()]


def exercise_tests(lesson: manifest.Lesson) -> dict[str, str]:
    """Each test function of the lesson's test file with the exercise its marker names."""
    found = {}
    tree = ast.parse(lesson.test_file.read_text(encoding="utf-8"))
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
            continue
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "exercise" and decorator.args
                    and isinstance(decorator.args[0], ast.Constant)):
                found[node.name] = decorator.args[0].value
    return found


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.slug for lesson in LESSONS])
def test_every_check_a_hint_names_is_a_test_of_that_exercise(lesson):
    tests = exercise_tests(lesson)
    for ex in lesson.exercises:
        assert len(ex.hint_checks) == len(ex.hints)
        named = [name for checks in ex.hint_checks for name in checks]
        assert len(named) == len(set(named)), f"{ex.id}: a test is named by two hints: {named}"
        for name in named:
            assert name in tests, f"{ex.id}: a hint names {name}, which is not a test in {lesson.test_file.name}"
            assert tests[name] == ex.id, f"{ex.id}: a hint names {name}, a test of exercise {tests[name]}"


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.slug for lesson in LESSONS])
def test_most_checks_have_a_hint_written_for_them(lesson):
    # Not every test needs its own hint (hint 1 is the default), but an exercise whose tests are
    # all unnamed gets the same hint whatever fails: at least half of each lesson's tests are named.
    tests = exercise_tests(lesson)
    named = {name for ex in lesson.exercises for checks in ex.hint_checks for name in checks}
    assert len(named) * 2 >= len(tests), f"{lesson.slug}: only {len(named)} of {len(tests)} tests have a hint"


def _normal(text: str) -> str:
    return re.sub(r"\s+", "", text.replace('"', "'"))


def solution_only_lines(slug: str) -> list[str]:
    """Code lines of the reference solution that the starter does not have (its answers).

    The starter as the course ships it (from git, as the teeth check reads it): a student's
    lessons/ may hold their own solution.
    """
    try:
        shipped = teeth.shipped_starter(slug).decode("utf-8")
    except teeth.StarterUnavailable as exc:
        pytest.skip(str(exc))
    starter = {_normal(line) for line in shipped.splitlines()}
    lines = [line.strip() for line in (ROOT / "solutions" / slug / "app.py").read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith(("#", '"""', "'''"))
            and len(_normal(line)) >= 24 and _normal(line) not in starter]


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.slug for lesson in LESSONS])
def test_no_hint_hands_over_a_line_of_the_solution(lesson):
    answers = solution_only_lines(lesson.slug)
    assert answers, f"{lesson.slug}: the solution should differ from the starter"
    for ex in lesson.exercises:
        for number, text in enumerate(ex.hints, start=1):
            given = [line for line in answers if _normal(line) in _normal(text)]
            assert not given, f"hint {number} of {ex.id} is the solution's code verbatim: {given[0]!r}"


def test_the_verbatim_check_would_catch_the_old_kind_of_last_hint():
    # The test above must be able to fail: a hint that spells out 01.2's line is caught.
    answers = solution_only_lines("01_raw_cookies")
    old = ("count = read_count(request.get_cookie('visits')) + 1; response.set_cookie('visits', str(count), "
           "path='/', max_age=ONE_YEAR, httponly=True)")
    assert any(_normal(line) in _normal(old) for line in answers)


def test_hint_for_picks_the_hint_that_names_the_failing_test():
    ex = manifest.exercise("01.2")
    assert ex.hint_for("tests/test_01_raw_cookies.py::test_visits_cookie_has_path_max_age_and_httponly") == 2
    assert ex.hint_for("tests/test_01_raw_cookies.py::test_each_visit_counts_up") == 3
    assert ex.hint_for("tests/test_01_raw_cookies.py::test_a_garbage_visits_cookie_counts_as_zero_never_a_500"
                       "[letters]") == 1
    assert ex.hint_for("tests/test_01_raw_cookies.py::test_no_such_test") == 1
    assert ex.hint_for(None) == 1
