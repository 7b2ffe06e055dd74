"""Which folders are students' copies: each path given, or each copy inside a folder of copies."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from course.tools.loader import resolve_target


@dataclass(frozen=True)
class Submission:
    name: str                   # the student: the folder's name
    path: Path                  # the folder as given
    lessons_dir: Path | None    # where its NN_slug/ folders are (None: no lessons found)


def name_key(name: str) -> str:
    """What two names must not share: compared as a case-blind file system compares file names, after the
    characters a file name cannot hold are replaced (``ann lee`` and ``Ann_Lee`` are one)."""
    return re.sub(r"[^\w.@+-]", "_", name).casefold()


def _has_lessons(folder: Path) -> bool:
    return any(folder.glob("[0-9][0-9]_*/app.py"))


def _copies(paths: list[str], notes: list[str]) -> list[tuple[str, Path]]:
    """(name, folder) of each copy; a folder that holds copies (and no lessons) is expanded."""
    found: list[tuple[str, Path]] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.is_dir():
            notes.append(f"{text}: not a folder, skipped (unzip a .zip submission first)")
            continue
        if not _has_lessons(resolve_target(path)) and not (path / "lessons").is_dir():
            children = sorted(child for child in path.iterdir()
                              if child.is_dir() and _has_lessons(resolve_target(child)))
            if children:
                notes.append(f"{text}: holds {len(children)} submissions; grading each")
                found.extend((child.resolve().name, child) for child in children)
                continue
        found.append((path.resolve().name, path))
    return found


def find_submissions(paths: list[str]) -> tuple[list[Submission], list[str]]:
    """The submissions in ``paths``, sorted, with unique names; and notes on what was skipped or renamed."""
    notes: list[str] = []
    copies = sorted(_copies(paths, notes), key=lambda item: (item[0], str(item[1])))
    wanted = Counter(name_key(name) for name, _ in copies)      # a name is its folder's, unless two want it
    submissions, taken = [], set()
    for name, path in copies:
        unique = name
        number = 1
        while name_key(unique) in taken or (unique != name and wanted[name_key(unique)]):
            number += 1
            unique = f"{name}-{number}"
        taken.add(name_key(unique))
        if unique != name:
            notes.append(f"two submissions are named {name!r}: {path} is graded as {unique!r}")
        lessons_dir = resolve_target(path)
        submissions.append(Submission(unique, path, lessons_dir if lessons_dir.is_dir() else None))
    return submissions, notes
