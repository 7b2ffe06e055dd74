"""Copies that are the same code: a lesson identical to the reference solution, or to a classmate's.

Two app.py files are the same when their code is, whatever the whitespace, comments, docstrings,
quotes or parentheses: the fingerprint is a hash of the module's syntax tree without those
(``ast.dump`` of the tree with its docstrings removed). A file that does not parse is compared by
its tokens without comments and blank lines. The shipped starter is nobody's work, so two
untouched lessons are never flagged. A flag is a reason to look, not a verdict: short exercises
done the obvious way can come out the same.

Students clone at different times, so every version of a starter and of a reference solution in
the course's git history counts (:func:`history`): two lessons left as an older starter are not
each other's copy, and a copy of last term's reference is still a copy of the reference.
"""
from __future__ import annotations

import ast
import hashlib
import io
import subprocess
import tokenize
from functools import lru_cache

from course import ROOT
from course.tools import teeth
from course.tools.term import todo_ids

REFERENCE = "the reference"


def without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def _tokens(source: str) -> str:
    """The tokens of code that does not parse, without comments and layout (as far as they can be read)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
    found = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type not in skip:
                found.append(tok.string)
    except (tokenize.TokenError, SyntaxError):
        pass                        # an unclosed bracket is found at the end: what came before is kept
    return " ".join(found)


def normalised(source: str) -> str:
    """The code of ``source`` without whitespace, comments and docstrings (its syntax tree, as text)."""
    tree = parse(source)
    try:
        if tree is not None:
            return ast.dump(without_docstrings(tree), annotate_fields=False)
    except (RecursionError, MemoryError):
        pass
    return "tokens:" + _tokens(source)


def fingerprint(source: str) -> str:
    return hashlib.sha256(normalised(source).encode("utf-8", "surrogateescape")).hexdigest()[:16]


@lru_cache(maxsize=None)
def reference_fingerprint(slug: str) -> str:
    return fingerprint((ROOT / "solutions" / slug / "app.py").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def starter_fingerprint(slug: str) -> str:
    try:
        return fingerprint(teeth.shipped_starter(slug).decode("utf-8", "replace"))
    except teeth.StarterUnavailable:
        return fingerprint((ROOT / "lessons" / slug / "app.py").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def reference_fingerprints(slug: str) -> frozenset[str]:
    """The reference solution's fingerprint, and every earlier version's."""
    older = {fingerprint(text) for text in history(f"solutions/{slug}/app.py")}
    return frozenset({reference_fingerprint(slug)} | older)


@lru_cache(maxsize=None)
def starter_fingerprints(slug: str) -> frozenset[str]:
    """The shipped starter's fingerprint, and every earlier version's that was a starter: one that
    raises ``todo("NN.K")`` for each of the lesson's exercises (not a version that held a solution)."""
    from course.lesson import manifest

    wanted = {exercise.id for exercise in manifest.lesson(slug).exercises}
    older = {fingerprint(text) for text in history(f"lessons/{slug}/app.py")
             if wanted <= todo_ids(text)}
    return frozenset({starter_fingerprint(slug)} | older)


def history(path: str) -> list[str]:
    """Every version of ``path`` (from the course's root) in its git history, newest first; none
    without git or its history (a shallow clone holds only the last)."""
    def git(*args: str, given: bytes | None = None) -> bytes:
        return subprocess.run(["git", *args], cwd=ROOT, input=given, capture_output=True, check=True,
                              timeout=30).stdout

    try:
        commits = git("log", "--format=%H", "--", path).split()
        if not commits:
            return []
        batch = git("cat-file", "--batch", given=b"".join(c + b":" + path.encode() + b"\n" for c in commits))
    except (OSError, subprocess.SubprocessError):
        return []
    texts, at = [], 0
    while (end := batch.find(b"\n", at)) != -1:
        header = batch[at:end].split()
        at = end + 1
        if len(header) != 3 or header[1] != b"blob":    # "<name> missing": deleted in that commit
            continue
        size = int(header[2])
        texts.append(batch[at:at + size].decode("utf-8", "replace"))
        at += size + 1
    return texts


def flags(prints: dict[str, dict[str, str]], lesson_ids: dict[str, str]) -> dict[str, list[str]]:
    """Per student, the flags: ``lesson 03 = the reference``, ``lesson 02 = bob``.

    ``prints``: student -> {lesson slug: fingerprint of its app.py}; ``lesson_ids``: slug -> "03".
    """
    by_print: dict[tuple[str, str], list[str]] = {}
    for student, lessons in prints.items():
        for slug, value in lessons.items():
            if value and value not in MARKERS and value not in starter_fingerprints(slug):
                by_print.setdefault((slug, value), []).append(student)
    found: dict[str, list[str]] = {student: [] for student in prints}
    for slug, lesson_id in lesson_ids.items():
        for student, lessons in sorted(prints.items()):
            value = lessons.get(slug)
            if not value or value in starter_fingerprints(slug):
                continue
            if value in MARKERS:
                found[student].append(f"lesson {lesson_id} = {MARKERS[value]}")
                continue
            same = [REFERENCE] if value in reference_fingerprints(slug) else []
            same += sorted(other for other in by_print.get((slug, value), []) if other != student)
            if same:
                found[student].append(f"lesson {lesson_id} = {', '.join(same)}")
    return found


MAX_SOURCE = 100_000
"""Bytes: a bigger app.py is not analysed outside the sandbox (the largest reference solution is 34 kB).
The grader's own process reads, parses and compares a copy's code (untouched exercises, fair credit's
hybrids, kit imports, identical copies); none of that is charged to the copy, so its size is capped."""


def read_source(path) -> str | None:
    """A copy's app.py as text, in the encoding Python's import reads it in (a coding line, a BOM,
    else UTF-8), line ends made ``\n``; None when it is missing, too big, a symlink (never followed)
    or its coding line names no encoding. A byte the encoding cannot decode becomes U+FFFD: Python
    imports a file with such a byte in a comment, so it must neither hide the copy from the
    same-code flags nor make a check of its code fail."""
    if path is None or path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SOURCE:
        return None
    try:
        data = path.read_bytes()
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding, errors="replace")
    except (SyntaxError, LookupError, OSError):
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse(source: str) -> ast.Module | None:
    """The syntax tree of a copy's source, or None when there is none to have: besides a SyntaxError,
    a line the parser runs out of memory on (``MemoryError``) or nesting past the recursion limit
    (``RecursionError``), which must cost that copy its analysis, never the grading of the class."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


MARKERS = {"symlink": "a symlink (app.py points elsewhere)",
           "too big": f"over {MAX_SOURCE // 1000} kB, not compared with the reference, classmates or the kit"}
"""Fingerprints that are flags of their own: what the grader would not read (padding an app.py past
MAX_SOURCE must not hide a copy of the reference from these flags)."""


def lesson_prints(lessons_dir, slugs: list[str]) -> dict[str, str]:
    """The fingerprint of each lesson's app.py in a copy (a symlink, or a file over MAX_SOURCE, is flagged
    as such, never read)."""
    prints = {}
    for slug in slugs:
        path = lessons_dir / slug / "app.py" if lessons_dir else None
        if path is not None and path.is_symlink():
            prints[slug] = "symlink"
        elif path is not None and path.is_file() and path.stat().st_size > MAX_SOURCE:
            prints[slug] = "too big"
        elif (source := read_source(path)) is not None:
            prints[slug] = fingerprint(source)
    return prints
