"""Flags a lesson whose app.py imports the course's finished version of that lesson's own exercises.

course/kit holds the session library the lessons build, finished (each module is the reference
answer of a lesson, for the lessons after it). A copy's lesson 02 can call ``course.kit.signing``
instead of writing ``sign``: the tests pass, and nothing is learnt. The grader cannot forbid it
(later lessons rightly use the kit), so it flags it for the instructor, read from the syntax tree
of the copy's app.py, outside the sandbox; imports the shipped starter has too are not flagged.
"""
from __future__ import annotations

import ast
from pathlib import Path

from course.tools import teeth
from course.tools.grading import same

REFERENCES = {
    "02": {"course.kit.signing"},
    "03": {"course.kit.sessions", "course.kit.stores"},
    "04": {"course.kit.sessions"},
    "05": {"course.kit.beakerkit"},
    "06": {"course.kit.auth", "course.kit.passwords", "course.kit.users"},
    "07": {"course.kit.security", "course.kit.csrf"},
    "08": {"course.kit.stores_beaker"},
}
"""Per lesson, the kit modules that implement its exercises (course/kit's docstrings say which)."""


def kit_imports(source: str) -> set[str]:
    """The ``course.kit.*`` modules ``source`` imports, however it spells the import."""
    tree = same.parse(source)
    if tree is None:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("course.kit.")}


def flags(target: Path, slugs: list[str]) -> list[str]:
    """One line per lesson of ``target`` (a folder of NN_slug/app.py) that imports its own reference."""
    lines = []
    for slug in slugs:
        own = REFERENCES.get(slug[:2], set())
        source = same.read_source(target / slug / "app.py") if own else None
        if source is None:
            continue
        starter = kit_imports(teeth.shipped_starter(slug).decode("utf-8", "replace"))
        used = sorted((kit_imports(source) & own) - starter)
        if used:
            lines.append(f"flag: lesson {slug[:2]}'s app.py imports {', '.join(used)}, the course's finished "
                         "version of this lesson's own exercises: its points may not be the student's work")
    return lines
