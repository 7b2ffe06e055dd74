"""Copies that are the same code: a lesson identical to the reference solution, or to a classmate's.

Two app.py files are the same when their code is, whatever the whitespace, comments, docstrings,
quotes or parentheses: the fingerprint is a hash of the module's syntax tree without those
(``ast.dump`` of the tree with its docstrings removed). A file that does not parse is compared by
its tokens without comments and blank lines. The shipped starter is nobody's work, so two
untouched lessons are never flagged. A flag is a reason to look, not a verdict: short exercises
done the obvious way can come out the same.
"""
from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from functools import lru_cache

from course import ROOT
from course.tools import teeth

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


def flags(prints: dict[str, dict[str, str]], lesson_ids: dict[str, str]) -> dict[str, list[str]]:
    """Per student, the flags: ``lesson 03 = the reference``, ``lesson 02 = bob``.

    ``prints``: student -> {lesson slug: fingerprint of its app.py}; ``lesson_ids``: slug -> "03".
    """
    by_print: dict[tuple[str, str], list[str]] = {}
    for student, lessons in prints.items():
        for slug, value in lessons.items():
            if value and value not in MARKERS and value != starter_fingerprint(slug):
                by_print.setdefault((slug, value), []).append(student)
    found: dict[str, list[str]] = {student: [] for student in prints}
    for slug, lesson_id in lesson_ids.items():
        for student, lessons in sorted(prints.items()):
            value = lessons.get(slug)
            if not value or value == starter_fingerprint(slug):
                continue
            if value in MARKERS:
                found[student].append(f"lesson {lesson_id} = {MARKERS[value]}")
                continue
            same = [REFERENCE] if value == reference_fingerprint(slug) else []
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
