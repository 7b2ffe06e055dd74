"""Which folders are students' copies, and the student each one is: a stable, unique name and file name.

A path given is one student's copy, named by its folder, wherever inside it the lessons are: an
unzipped download often wraps the clone once more (``alice/web-sessions-main/lessons/...`` is
alice's). A folder that holds several copies is a class: each of its folders is one student, named
by that folder. Two students never share a file in ``--out``: a name that is not a plain file name
(``ann lee``) gets a short hash of itself (``ann_lee-5f0c2e``), so it cannot meet ``ann_lee``.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from course.tools.loader import resolve_target

MAX_DEPTH = 3                   # how deep inside a student's folder the copy may be
PLAIN = re.compile(r"[\w.@+-]+")
SKIPPED_FOLDERS = {"__MACOSX", "node_modules", ".git", ".venv", "venv", "__pycache__"}


@dataclass(frozen=True)
class Submission:
    name: str                   # the student: the folder's name
    path: Path                  # the folder as given
    lessons_dir: Path | None    # where its NN_slug/ folders are (None: no lessons found)
    file: str = ""              # the student's file name in --out (feedback/FILE.md), unique in the class

    @property
    def file_name(self) -> str:
        return self.file or file_stem(self.name)


def readable(text: str) -> str:
    """``text`` as valid UTF-8: a folder name's bytes that are not UTF-8 (which Python carries as
    surrogates) become U+FFFD. A student's name goes into every file of ``--out``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def safe_name(name: str) -> str:
    """``name`` with every character a file name should not hold replaced by ``_``."""
    return re.sub(r"[^\w.@+-]", "_", name).lstrip(".") or "_"


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:6]


def file_stem(name: str) -> str:
    """The file name of a student: the name itself when it is a plain one, else made safe plus a hash of it."""
    safe = safe_name(name)
    return safe if safe == name and PLAIN.fullmatch(name) else f"{safe}-{_hash(name)}"


def name_key(name: str) -> str:
    """What two students' names must not share: the name itself, compared case-blind (``Bob`` and
    ``bob`` are one student to a person). Names that differ otherwise (``ann lee``, ``ann_lee``)
    stay two students, and their files never meet: see ``file_stem`` and ``_with_files``."""
    return name.casefold()


def _has_lessons(folder: Path) -> bool:
    return any(folder.glob("[0-9][0-9]_*/app.py"))


def _is_copy(folder: Path) -> bool:
    return _has_lessons(resolve_target(folder)) or (folder / "lessons").is_dir()


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir() and not child.is_symlink()
                      and child.name not in SKIPPED_FOLDERS and not child.name.startswith("."))
    except OSError:
        return []


def _copies_inside(folder: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """The copies in ``folder``: itself, or the copies of its folders (at most ``depth`` levels down)."""
    if _is_copy(folder):
        return [folder]
    if depth == 0:
        return []
    return [copy for child in _subfolders(folder) for copy in _copies_inside(child, depth - 1)]


def _copies(paths: list[str], notes: list[str]) -> list[tuple[str, Path]]:
    """(name, copy) of each student; a folder that holds several copies is a class, expanded."""
    found: list[tuple[str, Path]] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.is_dir():
            notes.append(f"{text}: not a folder, skipped (unzip a .zip submission first)")
            continue
        inside = _copies_inside(path)
        if len(inside) <= 1:
            copy = inside[0] if inside else path
            if copy != path:
                notes.append(f"{text}: the copy is in {copy.relative_to(path)}; graded as {path.resolve().name!r}")
            found.append((readable(path.resolve().name), copy))
            continue
        students = [(child, _copies_inside(child, MAX_DEPTH - 1)) for child in _subfolders(path)]
        for child, copies in students:
            if not copies:
                notes.append(f"{child}: no lessons/NN_slug/app.py found in it: not graded")
        students = [(child, copies) for child, copies in students if copies]
        notes.append(f"{text}: holds {len(students)} submissions; grading each")
        for child, copies in students:
            if len(copies) > 1:
                notes.append(f"{child}: holds {len(copies)} copies; grading {copies[0].relative_to(child)} as "
                             f"{child.name!r}, the others are not graded")
            found.append((readable(child.name), copies[0]))
    return found


def find_submissions(paths: list[str], taken: dict[str, str] | None = None) -> tuple[list[Submission], list[str]]:
    """The submissions in ``paths``, sorted, with unique names and file names; notes on what was skipped or renamed.

    ``taken`` (student name -> file name) are the students already in ``--out`` (``--merge``): a
    student graded again keeps the file name, and a new one never takes another's.
    """
    notes: list[str] = []
    copies = sorted(_copies(paths, notes), key=lambda item: (item[0], str(item[1])))
    wanted = Counter(name_key(name) for name, _ in copies)      # a name is its folder's, unless two want it
    submissions, claimed = [], set()
    for name, path in copies:
        unique = name
        number = 1
        while name_key(unique) in claimed or (unique != name and wanted[name_key(unique)]):
            number += 1
            unique = f"{name}-{number}"
        claimed.add(name_key(unique))
        if unique != name:
            notes.append(f"two submissions are named {name!r}: {path} is graded as {unique!r}")
        lessons_dir = resolve_target(path)
        submissions.append(Submission(unique, path, lessons_dir if lessons_dir.is_dir() else None))
    return _with_files(submissions, dict(taken or {}), notes), notes


def _with_files(submissions: list[Submission], taken: dict[str, str], notes: list[str]) -> list[Submission]:
    """Each submission with a file name no other student has, compared as a case-blind file system would."""
    used = {stem.casefold(): name for name, stem in taken.items()}
    named = []
    for sub in submissions:
        stem = taken.get(sub.name) or file_stem(sub.name)
        if used.get(stem.casefold(), sub.name) != sub.name:
            stem = f"{safe_name(sub.name)}-{_hash(sub.name)}"
            number = 1
            while used.get(stem.casefold(), sub.name) != sub.name:
                number += 1
                stem = f"{safe_name(sub.name)}-{_hash(sub.name)}-{number}"
            notes.append(f"{sub.name!r} would share its files with {used.get(file_stem(sub.name).casefold())!r}: "
                         f"its files are named {stem!r}")
        used[stem.casefold()] = sub.name
        named.append(Submission(sub.name, sub.path, sub.lessons_dir, stem))
    return named
