"""What a run of the course's tests says about each exercise: one reading, for ``check`` and the grader.

The records are course.tools.pytest_plugin's (``--course-report``): one per test phase that
decided something, with the test's id, exercise, weight, outcome (passed, failed, error, skipped)
and message. The student's commands (``check``, ``list``, ``hint``, ``diff``) and the grader read
them the same way, with the same rules, so a student and the instructor never see two verdicts:

* a test's phases are merged into one record, the worst of them (a teardown error after a pass
  is one failing test);
* a failure or error by the time limit is a ``timeout``;
* an exercise's status follows from its tests' outcomes (``status``): the grader's words, which
  the student's commands say in their own (``ExerciseState.state``);
* a lesson whose app.py does not load fails every test with one message (``problem``): that
  message is shown once instead of once per test.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from course.lesson import manifest
from course.tools.loader import resolve_target
from course.tools.term import todo_ids, unfinished

GRADE_TEST_TIMEOUT = 10.0
"""The grader's limit per test: CPU seconds of the copy's code (the reference solutions' heaviest check
spends 2.5 alone, up to 4 on a loaded machine), so an endless loop costs about 10 s, and a loaded
machine changes no outcome."""
TIMED_OUT_SIGN = "timed out: the test's"        # how pytest_plugin's time limit (--course-timeout) fails a test
STUCK_SIGN = "an earlier test of"                # how plugins.SkipAfterTimeout skips the rest of an exercise
NOT_STARTED_SIGN = "not run: the code of exercise"  # how plugins.SkipNotStarted skips an untouched exercise
READY_MADE_WAITS = "not run until every exercise of the lesson is started (its ready-made parts need them); not yet:"
NOT_GRADED_SIGN = "not graded: needs --trust-services"  # how services.require skips a server a sandbox may not reach
PYTEST_QUIET = ["--disable-plugin-autoload", "-p", "no:cacheprovider", "-p", "no:unraisableexception"]
"""What a run of the course's lesson tests for one student does without, each costing start-up time.
No plugin is found by entry points (the course's own is in pytest.ini; xdist, anyio, platformdirs
and hypothesis are installed for the maintainers' suite): looking them up reads every installed
package's metadata, and hypothesis's plugin imports all of hypothesis when the session ends, which
pytest rewrites module by module for its asserts (a plugin's package is rewritten), 0.9 s where
PYTHONDONTWRITEBYTECODE keeps that from being cached. unraisableexception also runs the garbage
collector at the end, for warnings nobody reads there."""
TEST_FILE = re.compile(r"test_(\d\d_[a-z0-9_]+)\.py(?=::|$)")
"""A lesson's test file, ``tests/test_NN_slug.py``, in a path or at the start of a test's id."""
RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
"""Outcomes from best to worst; an unknown one counts as the worst."""


def lesson_slug(path_or_nodeid: str) -> str | None:
    """``01_raw_cookies`` for ``tests/test_01_raw_cookies.py`` (or a test id in it); None otherwise."""
    match = TEST_FILE.search(path_or_nodeid)
    return match.group(1) if match else None


def merge(records: list[dict]) -> dict[str, dict]:
    """One record per test id, the worst of its phases (a teardown error after a pass is a failure)."""
    merged: dict[str, dict] = {}
    for record in records:
        held = merged.get(record["nodeid"])
        if held is None or RANK.get(record["outcome"], 3) > RANK.get(held["outcome"], 3):
            merged[record["nodeid"]] = record
    return merged


def outcome(record: dict) -> str:
    """The record's outcome; ``timeout`` when the time limit failed it, ``todo`` when not started."""
    if record["outcome"] != "passed" and TIMED_OUT_SIGN in (record.get("message") or ""):
        return "timeout"
    if record["outcome"] == "skipped" and NOT_STARTED_SIGN in (record.get("message") or ""):
        return "todo"
    if record["outcome"] == "skipped" and NOT_GRADED_SIGN in (record.get("message") or ""):
        return "not graded"
    return record["outcome"]


def status(outcomes: list[str], marked_todo: bool) -> str:
    """An exercise's status from its tests' outcomes (``outcome``'s words, or ``not run``).

    pass, partial (some passed), not run, todo (the app.py still says ``todo("NN.K")`` and every
    test simply failed), timeout, skipped, error, fail; untested when it has no tests.
    """
    if not outcomes:
        return "untested"
    if set(outcomes) == {"not graded"}:
        return "not graded"
    outcomes = [o for o in outcomes if o != "not graded"]     # neither a pass nor a failure: left out
    failing = {o for o in outcomes if o != "passed"}
    if not failing:
        return "pass"
    if "passed" in outcomes:
        return "partial"
    if failing == {"not run"}:
        return "not run"
    if failing == {"todo"} or (marked_todo and failing <= {"failed", "todo"}):
        return "todo"
    if "timeout" in failing:
        return "timeout"
    if failing == {"skipped"}:
        return "skipped"
    if failing <= {"error", "not run"}:
        return "error"
    return "fail"


def problem(tests: list[tuple[str, str]]) -> str:
    """The one message behind every failure of a lesson, when its app.py does not load at all.

    ``tests`` are (recorded outcome, message) pairs; ``not run`` for a test the grader never got to.
    A module that fails to import fails each test's setup (an ``error``) with the same message;
    the tests skipped after a time limit are left out.
    """
    if not tests or any(kind == "passed" for kind, _ in tests):
        return ""
    core = [(kind, message) for kind, message in tests if not (kind == "skipped" and STUCK_SIGN in message)]
    messages = {message for _, message in core}
    if len(messages) == 1 and all(kind in ("error", "not run") for kind, _ in core):
        return messages.pop()
    return ""


# ---------------------------------------------------------------- the student's view

STUDENT_WORDS = {"pass": "done", "skipped": "skip", "untested": "none"}
"""``check`` and ``list`` say done/todo/fail/timeout/error/skip/none; a partly passed exercise is
``fail`` there (or ``timeout``, when a time limit is why)."""


@dataclass
class ExerciseState:
    """One exercise in the student's commands: its tests' records, and what they add up to."""
    exercise: manifest.Exercise
    records: list[dict]
    marked_todo: bool = False       # the app.py still says todo("NN.K")

    @property
    def failing(self) -> list[dict]:
        return [r for r in self.records if r["outcome"] != "passed"]

    @property
    def state(self) -> str:
        """done, todo (not started), fail, timeout, error, skip, or none (no checks ran)."""
        outcomes = [outcome(r) for r in self.records]
        found = status(outcomes, self.marked_todo)
        if found == "partial":
            if all(r["outcome"] == "skipped" and STUCK_SIGN in (r.get("message") or "") for r in self.failing):
                return "skip"          # what did not pass was not run: another check timed out first
            return "timeout" if "timeout" in outcomes else "fail"
        return STUDENT_WORDS.get(found, found)

    @property
    def passed(self) -> int:
        return len(self.records) - len(self.failing)


def states(lesson: manifest.Lesson, records: list[dict], target: str = "lessons") -> list[ExerciseState]:
    """Each exercise of the lesson with its records (and whether the target's app.py marks it todo)."""
    todo = unfinished(resolve_target(target) / lesson.slug / "app.py")
    return [ExerciseState(ex, [r for r in records if r["exercise"] == ex.id], ex.id in todo)
            for ex in lesson.exercises]


# ---------------------------------------------------------------- not started: no need to run

def _functions(tree: ast.AST) -> dict[str, list[ast.AST]]:
    """Every function of a module by its qualified name (``SessionMiddleware.save``)."""
    found: dict[str, list[ast.AST]] = {}

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    found.setdefault(name, []).append(child)
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def _mentions(node: ast.AST, exercise_id: str) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "todo" and n.args
               and isinstance(n.args[0], ast.Constant) and n.args[0].value == exercise_id for n in ast.walk(node))


def _shape(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def not_started(code: str, starter: str) -> set[str]:
    """The exercises whose code in ``code`` is still the starter's, so their checks cannot pass.

    An exercise is not started when every function of the ``starter`` that raises its
    ``todo("NN.K")`` is in ``code`` unchanged (the same syntax tree: comments and layout do not
    count), and defined once. Its checks would fail exactly as on the starter, where the teeth
    check (tests/test_course_teeth.py) makes sure that every one of them fails; so ``check`` and
    ``list`` report it as todo at once, without starting a server. Anything else (a function
    changed, renamed, defined twice, a file that does not parse) is run as usual.
    """
    try:
        mine, theirs = _functions(ast.parse(code)), _functions(ast.parse(starter))
    except (SyntaxError, ValueError):
        return set()
    ids = todo_ids(starter)
    result = set()
    for exercise_id in ids:
        marked = {name: nodes for name, nodes in theirs.items() if any(_mentions(n, exercise_id) for n in nodes)}
        if marked and all(len(nodes) == 1 and len(mine.get(name, [])) == 1
                          and _shape(mine[name][0]) == _shape(nodes[0]) for name, nodes in marked.items()):
            result.add(exercise_id)
    return result


def not_started_in(app_py: Path, slug: str) -> set[str]:
    """``not_started`` for a lesson's app.py, against the starter the course ships (empty if unknown)."""
    from course.tools.teeth import StarterUnavailable, shipped_starter

    try:
        code = Path(app_py).read_text(encoding="utf-8")
        starter = shipped_starter(slug).decode("utf-8")
    except (OSError, UnicodeDecodeError, StarterUnavailable):
        return set()
    return not_started(code, starter)


def load_problem(records: list[dict]) -> str:
    """``problem`` of the records of one lesson's run in this process."""
    return problem([(r["outcome"], r["message"]) for r in records])
