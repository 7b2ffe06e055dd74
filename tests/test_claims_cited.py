"""The lesson texts and the tests agree, and the repository stands on its own.

- Every test a lesson text, notebook or the course README names (``test_...`` in backticks) exists
  in ``tests/``: a renamed or deleted test cannot leave a claim pointing at nothing.
- No file points outside the repository (the design notes and research the course was built from
  are not shipped; a learner clones only this repository), and none promises a lesson that does
  not exist.
"""
from __future__ import annotations

import ast
import functools
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXTS = sorted(ROOT.glob("lessons/*/README.md")) + sorted(ROOT.glob("notebooks/*.ipynb")) + [ROOT / "README.md"]
CITED = re.compile(r"(?:tests/(test_\w+)\.py)?(?:::)?\b(test_[a-z0-9_]+)\b")


@functools.cache
def defined_tests() -> dict[str, set[str]]:
    """Each test file's test names (parsed once per run: there are sixty files and twenty texts)."""
    found = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found[path.stem] = {node.name for node in ast.walk(tree)
                            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    return found


@pytest.mark.parametrize("text", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_test_a_text_cites_exists(text):
    tests = defined_tests()
    every = set().union(*tests.values())
    body = text.read_text(encoding="utf-8")
    missing = []
    for span in re.findall(r"`([^`]*test_[^`]*)`", body):
        for module, name in CITED.findall(span):
            if module and module == name:
                continue                                  # the file itself, tests/test_x.py
            if module and module not in tests:
                missing.append(f"tests/{module}.py (no such file)")
            elif name not in (tests.get(module, every) if module else every) and name not in tests:
                missing.append(name)
    assert not missing, f"{text.relative_to(ROOT)} cites tests that do not exist: {sorted(set(missing))}"


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]
    return [ROOT / line for line in out.stdout.splitlines()]


OUTSIDE = re.compile(r"\.\./shared|research/|COURSE\.md", re.IGNORECASE)
LESSON_NUMBER = re.compile(r"\blessons? (\d\d)\b", re.IGNORECASE)


def lesson_ids() -> set[str]:
    from course.lesson import manifest
    return {lesson.id for lesson in manifest.lessons()}


def test_no_file_points_outside_the_repository_or_to_a_lesson_that_does_not_exist():
    here = Path(__file__).resolve()
    known = lesson_ids()                  # "lesson NN" must name a lesson of the manifest
    hits = []
    for path in tracked_files():
        if path.resolve() == here or path.suffix in {".png", ".jpg", ".sqlite3"} or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) or set(LESSON_NUMBER.findall(line)) - known:
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, "a learner clones only this repository:\n" + "\n".join(hits)
