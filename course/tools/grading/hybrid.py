"""Fair credit: one exercise of a student's app.py, with every other exercise of the lesson done right.

``hybrid(student, reference, "03.3")`` is a pure source transform. It returns the student's app.py
with the definitions that every *other* exercise of the lesson owns (the manifest's ``names``:
``"sign"``, ``"MemoryStore"``, ``"SessionMiddleware.load"``, ``"create_app.visits"``) replaced by the
reference solution's, plus what those need and the student's file lacks: the reference's imports
and module-level names, and the methods of a class the reference added. The exercise's own
definitions stay the student's, and nothing the reference adds ever brings one of them in, so the
exercise's tests pass on the hybrid only if the student's own code for it is right. 03.3 solved
and 03.2 not: 03.3's tests run on the hybrid, where 03.2 is the reference's, and 03.3 earns its
points.

The splice works on whole lines (a ``def`` or ``class`` always starts its own line), so the
student's code keeps its text and line numbers up to the first spliced definition. What cannot be
built (the student's file does not parse, a route the reference defines is missing from the
student's ``create_app``) raises HybridError: the grader then credits what the copy earned as it is.
"""
from __future__ import annotations

import ast
import builtins
import copy
import io
import re
import tokenize

from course.lesson import manifest
from course.tools.grading.same import parse, without_docstrings
from course.tools.term import _TODO

SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
BUILTINS = frozenset(dir(builtins))


class HybridError(ValueError):
    """The hybrid cannot be built; the message says why (for the instructor's log)."""


def hybrid(student: str, reference: str, exercise_id: str) -> str:
    """The student's source with every exercise of the lesson but ``exercise_id`` taken from ``reference``."""
    exercise = manifest.exercise(exercise_id)
    lesson = manifest.lesson(exercise.lesson_slug)
    if not exercise.names:
        raise HybridError(f"exercise {exercise.id} names no definition in course/lesson/manifest.toml")
    kept = set(exercise.names)
    others = {name for each in lesson.exercises if each.id != exercise.id for name in each.names} - kept
    try:
        return splice(student, reference, sorted(others), kept=sorted(kept))
    except (RecursionError, MemoryError):
        raise HybridError("the student's app.py is nested deeper than the splice can follow") from None


def splice(student: str, reference: str, names: list[str], kept: list[str] = ()) -> str:
    """``student`` with the definitions ``names`` taken from ``reference``; ``kept`` are never brought in."""
    return _spliced(student, reference, names, kept).text


def with_reference_for(student: str, reference: str, slug: str, exercise_ids: set[str]) -> tuple[str, set[str]]:
    """The student's source with the exercises ``exercise_ids`` (not started: still the starter's
    code) taken from the reference, the others the student's; and the exercises it did so for. One
    that shares a definition with a started exercise (08.4 and 08.5's store_error_answer) stays the
    student's. HybridError when it cannot be built, or there is nothing to take.

    Fair credit's first round (credit.recheck): an exercise that builds on one not started is
    checked with a working version of it, for all such exercises of a lesson at once."""
    lesson = manifest.lesson(slug)
    started = {name for ex in lesson.exercises if ex.id not in exercise_ids for name in ex.names}
    taken = {ex.id for ex in lesson.exercises if ex.id in exercise_ids and ex.names and not set(ex.names) & started}
    if not taken:
        raise HybridError("no exercise not started has code of its own to take from the reference")
    names = sorted({name for ex in lesson.exercises if ex.id in taken for name in ex.names})
    try:
        return _spliced(student, reference, names, sorted(started)).text, taken
    except (RecursionError, MemoryError):
        raise HybridError("the student's app.py is nested deeper than the splice can follow") from None


def _spliced(student: str, reference: str, names: list[str], kept: list[str]) -> _Splice:
    mine, theirs = _parse(student, "the student's app.py"), _parse(reference, "the reference")
    kept_paths = [tuple(name.split(".")) for name in kept]
    paths = [tuple(name.split(".")) for name in names]
    for path in paths:
        clash = [k for k in kept_paths if k[:len(path)] == path or path[:len(k)] == k]
        if clash:
            raise HybridError(f"{'.'.join(path)} and the exercise's own {'.'.join(clash[0])} overlap")
    made = _Splice(student, reference, mine, theirs, kept_paths)
    made.run(paths)
    return made


def _parse(source: str, what: str) -> ast.Module:
    tree = parse(source)
    if tree is None:
        raise HybridError(f"{what} does not parse")
    return tree


# ---------------------------------------------------------------- finding definitions

def _definitions(body: list[ast.stmt]):
    """The defs and classes of one scope, in order, looking into if/try/with/for blocks but not into scopes."""
    for stmt in body:
        if isinstance(stmt, SCOPES):
            yield stmt
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(stmt, field, ()):
                    yield from _definitions(child.body if isinstance(child, ast.ExceptHandler) else [child])


def find(tree: ast.Module, path: tuple[str, ...]) -> list[ast.AST]:
    """The chain of nodes from the module to the (last) definition at ``path``; [] when it is missing."""
    chain, scope = [], tree.body
    for name in path:
        found = [node for node in _definitions(scope) if node.name == name]
        if not found:
            return []
        chain.append(found[-1])
        scope = found[-1].body
    return chain


def _first_line(node: ast.AST) -> int:
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])


def _bound(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """Every name a scope's statements bind (not looking into nested scopes), with the statement."""
    names: dict[str, ast.stmt] = {}
    for stmt in body:
        for name in _binds(stmt):
            names[name] = stmt
    return names


def _binds(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, SCOPES):
        return {stmt.name}
    found = set()
    for node in _walk_scope(stmt):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            found.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {_alias_name(alias) for alias in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            found.add(node.name)
        elif isinstance(node, SCOPES):
            found.add(node.name)
    return found


def _walk_scope(node: ast.AST):
    """``ast.walk`` that does not enter nested functions, classes or lambdas (their names are their own).

    With a stack, not recursion: nested generators cost each node the depth it is nested at, and a
    copy's 200 kB of expressions 900 deep cost the grader 6 s per hybrid."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if isinstance(child, SCOPES):
                yield child
            elif not isinstance(child, ast.Lambda):
                todo.append(child)


def source_lines(source: str) -> list[str]:
    """The lines of ``source`` as the syntax tree numbers them: str.splitlines() also splits at a form
    feed, U+2028 and other separators Python's tokenizer keeps inside a line."""
    lines = re.split(r"\r\n|\r|\n", source)
    return lines[:-1] if lines and lines[-1] == "" else lines


def _alias_name(alias: ast.alias) -> str:
    return alias.asname or alias.name.split(".")[0]


def _all_stored(node: ast.AST) -> set[str]:
    """Every name bound anywhere inside ``node``: its parameters, assignments, imports, inner defs."""
    stored = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            stored.add(sub.id)
        elif isinstance(sub, ast.arg):
            stored.add(sub.arg)
        elif isinstance(sub, SCOPES) and sub is not node:
            stored.add(sub.name)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            stored |= {_alias_name(alias) for alias in sub.names}
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            stored.add(sub.name)
    return stored


def free_names(node: ast.AST, enclosing: set[str] = frozenset()) -> set[str]:
    """The global names ``node`` reads: loaded, not bound inside it or by ``enclosing``, not builtins."""
    loaded = {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)}
    return loaded - _all_stored(node) - set(enclosing) - BUILTINS


# ---------------------------------------------------------------- the splice

class _Splice:
    """One hybrid being built: line edits on the student's text, then the additions, then a parse check."""

    def __init__(self, student: str, reference: str, mine: ast.Module, theirs: ast.Module,
                 kept: list[tuple[str, ...]]):
        self.lines, self.ref_lines = source_lines(student), source_lines(reference)
        self.mine, self.theirs, self.kept = mine, theirs, kept
        self.edits: list[tuple[int, int, list[str]]] = []      # (first line, last line, new lines), 1-based
        self.needed: set[str] = set()                          # global names the reference's code reads
        self.added: dict[int, ast.stmt] = {}                   # reference module statements to add, by line
        self.members: dict[str, list[ast.stmt]] = {}           # class name -> reference members to add

    def run(self, paths: list[tuple[str, ...]]) -> str:
        for path in paths:
            self.take(path)
        self.add_globals()
        self.text = self.render()
        return self.text

    def is_kept(self, path: tuple[str, ...]) -> bool:
        return any(k[:len(path)] == path or path[:len(k)] == k for k in self.kept)

    def take(self, path: tuple[str, ...]) -> None:
        """Replace the student's definition at ``path`` with the reference's (or add it where it is missing)."""
        ref_chain = find(self.theirs, path)
        if not ref_chain:
            raise HybridError(f"the reference has no {'.'.join(path)} (course/lesson/manifest.toml names it)")
        chain = find(self.mine, path)
        if chain:
            self.replace(chain[-1], ref_chain[-1])
        elif len(path) == 1:
            self.added[_first_line(ref_chain[0])] = ref_chain[0]
        elif len(path) == 2 and isinstance(ref_chain[0], ast.ClassDef) and find(self.mine, path[:1]):
            self.members.setdefault(path[0], []).append(ref_chain[-1])
        else:
            raise HybridError(f"the student's app.py has no {'.'.join(path)} to replace")
        self.needed |= free_names(ref_chain[-1], self.enclosing_names(path))
        if len(path) > 1 and isinstance(ref_chain[0], ast.ClassDef):
            self.missing_members(path[0], ref_chain[0])

    def enclosing_names(self, path: tuple[str, ...]) -> set[str]:
        """Names bound by the student's functions around ``path`` (a route's closure: app, config)."""
        names = set()
        for node in find(self.mine, path)[:-1] or find(self.theirs, path)[:-1]:
            if not isinstance(node, ast.ClassDef):
                names |= _all_stored(node)
        return names

    def replace(self, node: ast.AST, ref_node: ast.AST) -> None:
        first = _first_line(node)
        indent = self.lines[first - 1][:node.col_offset]
        self.edits.append((first, node.end_lineno, self.reference_text(ref_node, indent)))

    def reference_text(self, ref_node: ast.AST, indent: str) -> list[str]:
        """The reference's lines of ``ref_node``, re-indented from its indentation to ``indent``."""
        first = _first_line(ref_node)
        lines = self.ref_lines[first - 1:ref_node.end_lineno]
        theirs = lines[0][:ref_node.col_offset]
        return [indent + line[len(theirs):] if line.startswith(theirs) else line for line in lines]

    def missing_members(self, class_name: str, ref_class: ast.ClassDef) -> None:
        """The reference class's methods and attributes the student's class lacks (helpers it added)."""
        chain = find(self.mine, (class_name,))
        if not chain or not isinstance(chain[0], ast.ClassDef):
            return
        have = set(_bound(chain[0].body))
        queued = {id(each) for each in self.members.get(class_name, [])}
        for stmt in ref_class.body:
            names = _binds(stmt)
            if not names or names & have or self.is_kept((class_name, *sorted(names)[:1])):
                continue
            if id(stmt) not in queued:
                self.members.setdefault(class_name, []).append(stmt)
                queued.add(id(stmt))
            self.needed |= free_names(stmt)

    def add_globals(self) -> None:
        """The reference's module-level statements that bind a name the spliced code reads and the student lacks."""
        have = set(_bound(self.mine.body))
        theirs = _bound(self.theirs.body)
        todo, seen = set(self.needed), set()
        while todo:
            name = todo.pop()
            seen.add(name)
            if name in have or name not in theirs or self.is_kept((name,)):
                continue
            stmt = theirs[name]
            self.added.setdefault(_first_line(stmt), stmt)
            todo |= (free_names(stmt) if isinstance(stmt, SCOPES) else _loaded(stmt)) - seen

    def render(self) -> str:
        lines = list(self.lines)
        edits = list(self.edits) + self.member_edits() + self.global_edits()
        edits.sort(key=lambda edit: (edit[0], edit[1]), reverse=True)
        for first, last, new in edits:
            lines[first - 1:last] = new
        text = "\n".join(lines) + "\n"
        if parse(text) is None:
            raise HybridError("the hybrid does not parse; the student's indentation may be unusual")
        return text

    def member_edits(self) -> list[tuple[int, int, list[str]]]:
        edits = []
        for class_name, stmts in self.members.items():
            cls = find(self.mine, (class_name,))[0]
            indent = self.lines[_first_line(cls.body[0]) - 1][:cls.body[0].col_offset]
            new = [line for stmt in stmts for line in [""] + self.reference_text(stmt, indent)]
            edits.append((cls.end_lineno + 1, cls.end_lineno, new))
        return edits

    def global_edits(self) -> list[tuple[int, int, list[str]]]:
        """Imports go after the student's imports; definitions before ``app = create_app()`` runs them."""
        imports = [self.import_line(stmt) for _, stmt in sorted(self.added.items())
                   if isinstance(stmt, (ast.Import, ast.ImportFrom))]
        others = [line for _, stmt in sorted(self.added.items()) if not isinstance(stmt, (ast.Import, ast.ImportFrom))
                  for line in self.reference_text(stmt, "") + [""]]
        imports = [line for line in imports if line]
        if others:
            others = ["", "# added for grading: from the reference solution"] + others
        at_imports = _after_imports(self.mine) + 1
        at_others = max(_before_app(self.mine, len(self.lines)), at_imports)
        if at_others == at_imports:
            return [(at_imports, at_imports - 1, imports + others)] if imports or others else []
        return [(at, at - 1, new) for at, new in ((at_imports, imports), (at_others, others)) if new]

    def import_line(self, stmt: ast.stmt) -> str:
        """Only the names the hybrid needs from one of the reference's imports (never ``__future__``)."""
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            return ""
        wanted = [alias for alias in stmt.names if _alias_name(alias) in self.needed_all]
        copy = type(stmt)(**{**{f: getattr(stmt, f) for f in stmt._fields}, "names": wanted or stmt.names})
        return ast.unparse(copy)

    @property
    def needed_all(self) -> set[str]:
        names = set(self.needed)
        for stmt in self.added.values():
            names |= free_names(stmt) if isinstance(stmt, SCOPES) else _loaded(stmt)
        return names


def _loaded(stmt: ast.stmt) -> set[str]:
    return {sub.id for sub in ast.walk(stmt) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)} - BUILTINS


def _after_imports(tree: ast.Module) -> int:
    """The last line of the module's opening docstring and imports (0: none)."""
    last = 0
    for stmt in tree.body:
        docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and last == 0
        if not (isinstance(stmt, (ast.Import, ast.ImportFrom)) or docstring):
            break
        last = stmt.end_lineno
    return last


def _before_app(tree: ast.Module, length: int) -> int:
    """The line of the module's ``app = ...`` (the module contract: ``app = create_app()``), else its end."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "app" for t in stmt.targets):
            return stmt.lineno
    return length + 1


# ---------------------------------------------------------------- not started: still the starter's code

def _code(node: ast.AST) -> str:
    """A definition's code without docstrings, comments and layout (see course.tools.grading.same)."""
    return ast.dump(without_docstrings(copy.deepcopy(node)), annotate_fields=False)


def not_started(student: str, starter: str, slug: str) -> set[str]:
    """The exercises of lesson ``slug`` whose code in ``student`` is still the starter's: they earn nothing.

    An exercise is not started when each definition it owns is the starter's (the same code, apart
    from comments, docstrings and layout); a definition two exercises share (08.4 and 08.5's
    store_error_answer) is this exercise's starter code while it still holds ``todo("NN.K")``.
    Some tests pass on starter code in the right context (a test that nothing is written when
    nothing changed passes when the exercise only raises todo), so a test passing is not enough.
    """
    mine, theirs = parse(student), parse(starter)
    if mine is None or theirs is None:
        return set()
    try:
        return _untouched(mine, theirs, student, slug)
    except (RecursionError, MemoryError):       # nested deeper than comparing can go: started, then
        return set()


def _untouched(mine: ast.Module, theirs: ast.Module, student: str, slug: str) -> set[str]:
    lesson = manifest.lesson(slug)
    owners: dict[str, int] = {}
    for ex in lesson.exercises:
        for name in ex.names:
            owners[name] = owners.get(name, 0) + 1
    found = set()
    for ex in lesson.exercises:
        untouched = bool(ex.names)
        for name in ex.names:
            path = tuple(name.split("."))
            node, start = find(mine, path), find(theirs, path)
            if not node or not start:
                untouched = False
                break
            same_code = _code(node[-1]) == _code(start[-1])
            marked = owners[name] > 1 and ex.id in _TODO.findall(ast.get_source_segment(student, node[-1]) or "")
            untouched = untouched and (same_code or marked)
        if untouched:
            found.add(ex.id)
    return found


CODING = re.compile(r"^([ \t\f]*#.*?coding[:=][ \t]*)[-\w.]+")
"""A PEP 263 coding line (on one of a file's first two lines)."""


def encoded(source: str) -> bytes:
    """A hybrid's bytes as Python will read them: in the encoding its coding line declares (it keeps the
    student's), or, where that cannot hold the reference's text (latin-1 and an Arabic-Indic digit in
    a docstring), in UTF-8 with the coding line saying so; the line numbers stay the student's."""
    try:
        return source.encode(tokenize.detect_encoding(io.BytesIO(source.encode("utf-8")).readline)[0])
    except (UnicodeEncodeError, LookupError, SyntaxError):
        lines = source.split("\n", 2)
        head = [CODING.sub(r"\1utf-8", line, count=1) for line in lines[:2]]
        return "\n".join(head + lines[2:]).encode("utf-8")
