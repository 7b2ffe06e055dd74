"""Mutation testing of the course's own code: would a test notice a small wrong change?

A *mutant* is the file with one small change to one function body: a comparison turned round
(``<`` into ``<=``), ``and`` into ``or``, a ``not`` dropped, a constant changed, a return value
replaced by None, a statement deleted, an ``if`` guard removed, a slice bound dropped, an argument
left out of a call to a kit function. Each is run against the *killer* tests; a mutant that passes
them all *survives*: a wrong version of the code that the tests would accept.

``python -m course mutate --lesson 03`` mutates the exercise functions of lesson 03's solution (the
functions the manifest's ``function`` field names) and runs the lesson's exercise tests against a copy
(``--target``); ``--kit signing`` mutates ``course/kit/signing.py`` and runs the kit's own tests plus
the lesson tests. Three things make it fast enough for two cores:

* one run of the killer tests on the unchanged code records, per test, the lines it executes; a mutant
  is then run only against the tests that execute its lines, fastest first, stopping at the first
  failure, and a mutant on lines no test executes is not run at all ("not covered");
* every mutant runs in a child forked from a parent that has already imported the libraries, with a
  time limit (a mutant that loops is killed, and counts as killed);
* two children at a time.

Some mutants cannot be told apart from the original by any test (``x[:n]`` on a string shorter than
``n``...). They are listed, each with the reason, in ``course/tools/mutants_equivalent.toml`` and left
out of the score: killed / (mutants - equivalent).
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.abc
import importlib.util
import json
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course import ROOT

EQUIVALENT_RECORD = Path(__file__).with_name("mutants_equivalent.toml")
KIT = ROOT / "course" / "kit"
KIT_TESTS = ("tests/test_kit_*.py", "tests/test_store_contract.py", "tests/test_[0-9][0-9]_*.py")
"""The killer tests of the kit: its own tests, the store contract, and every lesson's tests."""
PYTEST_ARGS = ("-x", "-p", "no:cacheprovider", "-p", "_hypothesis_pytestplugin", "-p", "no:terminal",
               "--assert=plain", "-W", "ignore")
"""Fast and quiet: no plugins found by entry points (PYTEST_DISABLE_PLUGIN_AUTOLOAD, set in the children)
but Hypothesis', no assertion rewriting (a failing assert still fails), no terminal output."""
SHORT = 70                       # characters of code shown on each side of a mutation


# ---------------------------------------------------------------- the mutants

@dataclass(frozen=True)
class Mutant:
    file: str          # relative to the repository: solutions/03_session_ids/app.py, course/kit/signing.py
    function: str      # qualified name: read_count, MemoryStore.get, create_app.visits
    line: int
    end_line: int
    operator: str      # compare, boolean, not, constant, return, delete, arithmetic, guard, slice, argument
    mutation: str      # what changed, as code: "a < b -> a <= b"
    source: str = field(repr=False, compare=False)   # the whole mutated file
    column: int = 0    # where on its line the change starts: "1 -> 2" twice on one line are two mutants

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def describe(self) -> dict:
        data = asdict(self)
        del data["source"]
        return data


@dataclass(frozen=True)
class _Edit:
    node: ast.AST       # what is replaced (its source span)
    text: str           # by this code
    operator: str


def _short(code: str) -> str:
    code = " ".join(code.split())
    return code if len(code) <= SHORT else code[:SHORT - 1] + "…"


COMPARE_SWAPS = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE,
                 ast.GtE: ast.Gt, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
ARITHMETIC_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                    ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.LShift: ast.RShift,
                    ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitAnd}
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
SIMPLE_STATEMENTS = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise, ast.Assert,
                     ast.Delete)
ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Call, ast.Subscript, ast.List, ast.Tuple, ast.Dict, ast.Set)


def _code(node: ast.AST) -> str:
    """Code for an expression, in parentheses unless it is an atom (so it can replace any expression)."""
    text = ast.unparse(node)
    return text if isinstance(node, ATOMS) else f"({text})"


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _children(node: ast.AST):
    """The nodes under ``node`` that may be mutated: not annotations (never run, under
    ``from __future__ import annotations``), not the inside of f-strings, not docstrings."""
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment"):
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                yield child


def _walk(body: list[ast.stmt]):
    stack = [s for s in reversed(body)]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.stmt) and _is_docstring(node):
            continue
        yield node
        if isinstance(node, ast.JoinedStr):
            continue
        stack.extend(reversed(list(_children(node))))


def _body(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    body = function.body
    return body[1:] if body and _is_docstring(body[0]) else body


def _edits(node: ast.AST, kit_names: set[str], last_statement: ast.stmt | None):
    """Every mutation of ``node`` itself (not of its children)."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAPS.get(type(op))
            if swap:
                ops = [*node.ops[:i], swap(), *node.ops[i + 1:]]
                yield _Edit(node, _code(ast.Compare(node.left, ops, node.comparators)), "compare")
    elif isinstance(node, ast.BoolOp):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield _Edit(node, _code(ast.BoolOp(other, node.values)), "boolean")
        for i in range(len(node.values)):            # one condition of the chain left out
            rest = [*node.values[:i], *node.values[i + 1:]]
            yield _Edit(node, _code(rest[0] if len(rest) == 1 else ast.BoolOp(node.op, rest)), "boolean")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield _Edit(node, _code(node.operand), "not")
    elif isinstance(node, ast.BinOp):
        swap = ARITHMETIC_SWAPS.get(type(node.op))
        if swap:
            yield _Edit(node, _code(ast.BinOp(node.left, swap(), node.right)), "arithmetic")
    elif isinstance(node, ast.Constant):
        yield from _constant_edits(node)
    elif isinstance(node, ast.JoinedStr):
        yield _Edit(node, repr("XX"), "constant")
    elif isinstance(node, ast.Slice):
        for part in ("lower", "upper", "step"):
            if getattr(node, part) is not None:
                parts = {name: getattr(node, name) for name in ("lower", "upper", "step")}
                parts[part] = None
                yield _Edit(node, ast.unparse(ast.Slice(**parts)), "slice")
    elif isinstance(node, ast.Call) and _called_name(node.func) in kit_names:
        for i in range(len(node.args)):
            call = ast.Call(node.func, [*node.args[:i], *node.args[i + 1:]], node.keywords)
            yield _Edit(node, ast.unparse(call), "argument")
        for i in range(len(node.keywords)):
            call = ast.Call(node.func, node.args, [*node.keywords[:i], *node.keywords[i + 1:]])
            yield _Edit(node, ast.unparse(call), "argument")
    if isinstance(node, ast.AugAssign):
        swap = ARITHMETIC_SWAPS.get(type(node.op))
        if swap:
            yield _Edit(node, ast.unparse(ast.AugAssign(node.target, swap(), node.value)), "arithmetic")
    if isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        yield _Edit(node, "return None", "return")
    if isinstance(node, SIMPLE_STATEMENTS) and not (isinstance(node, ast.Return) and node is last_statement):
        yield _Edit(node, "pass", "delete")
    if isinstance(node, ast.If) and not isinstance(node.test, ast.Constant):
        yield _Edit(node.test, "True", "guard")


def _constant_edits(node: ast.Constant):
    value = node.value
    if isinstance(value, bool):
        yield _Edit(node, repr(not value), "constant")
    elif isinstance(value, (int, float)):
        yield _Edit(node, repr(value + 1), "constant")
        yield _Edit(node, repr(value - 1), "constant")
    elif isinstance(value, (str, bytes)):
        empty = "" if isinstance(value, str) else b""
        xx = "XX" if isinstance(value, str) else b"XX"
        if value != empty:
            yield _Edit(node, repr(empty), "constant")
        if value != xx:
            yield _Edit(node, repr(xx), "constant")


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return None


def kit_names(tree: ast.Module, own: bool) -> set[str]:
    """Names that call a kit function here: ``sign_cookie``, ``beakerkit.session_options``; with ``own``
    (a kit module), also the module's own top-level functions and classes."""
    names, modules = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "course.kit":
                modules.update(alias.asname or alias.name for alias in node.names)
            elif node.module.startswith("course.kit."):
                names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("course.kit.") and alias.asname:
                    modules.add(alias.asname)
        elif own and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names | {f"{module}.{name}" for module in modules for name in _kit_module_names(module)}


def _kit_module_names(module: str) -> set[str]:
    path = KIT / f"{module}.py"
    if not path.exists():
        return set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                  ast.ClassDef))}


def definitions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """Every function by qualified name: ``f``, ``Class.method``, ``create_app.visits`` (nested)."""
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(prefix + child.name, child)
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            elif not isinstance(child, ast.expr):
                visit(child, prefix)

    visit(tree, "")
    return found


def exercise_functions(tree: ast.Module, description: str) -> list[str]:
    """The functions a manifest ``function`` field names, as qualified names in this module.

    ``function read_count`` and ``route GET /visits (function visits)`` name a function (nested ones
    too: routes live inside create_app); ``SessionMiddleware.load`` a method; ``class MemoryStore (get,
    set)`` a class, which means all its methods (the helpers a student writes along with them).
    """
    defined = definitions(tree)
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    text = re.sub(r"/\S*", " ", description)            # route paths are not names
    chosen = []
    for word in re.findall(r"[A-Za-z_][\w.]*", text):
        if word in classes:
            chosen += [name for name in defined if name.split(".")[-2:-1] == [word]]
        elif "." in word:
            chosen += [name for name in defined if name == word or name.endswith("." + word)]
        else:
            chosen += [name for name in defined if name.split(".")[-1] == word and not _is_method(name, classes)]
    return list(dict.fromkeys(chosen))


def _is_method(name: str, classes: set[str]) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and parts[-2] in classes


def _offsets(source: str):
    """A function turning (line, UTF-8 column) into an index in ``source``."""
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def index(line: int, column: int) -> int:
        text = lines[line - 1] if line - 1 < len(lines) else ""
        return starts[line - 1] + len(text.encode("utf-8")[:column].decode("utf-8", "replace"))

    return index


def mutants_of(path: Path, functions: list[str] | None = None, own_kit: bool = False) -> list[Mutant]:
    """Every mutant of ``functions`` (qualified names; None: every function and method) in ``path``."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    index = _offsets(source)
    defined = definitions(tree)
    if functions is None:
        functions = [name for name in defined if not any(name.startswith(other + ".") for other in defined
                                                         if isinstance(defined[other], FUNCTIONS))]
    functions = [name for name in functions if not any(name.startswith(other + ".") for other in functions)]
    names = kit_names(tree, own_kit)
    relative = _relative(path)
    seen, found = set(), []
    for qualname in functions:
        function = defined[qualname]
        seen.add((qualname, ast.dump(function)))
        # Only the top-level statement holding the function changes, so only it is parsed and compiled
        # again for each mutant (the whole file for each one took most of the tool's start-up).
        top = next(node for node in tree.body if node.lineno <= function.lineno <= node.end_lineno)
        first_line = min([top.lineno, *(d.lineno for d in getattr(top, "decorator_list", []))])
        seg_start, seg_end = index(first_line, 0), index(top.end_lineno, top.end_col_offset)
        body = _body(function)
        for node in _walk(body):
            for edit in _edits(node, names, body[-1] if body else None):
                start = index(edit.node.lineno, edit.node.col_offset)
                end = index(edit.node.end_lineno, edit.node.end_col_offset)
                segment = source[seg_start:start] + edit.text + source[end:seg_end]
                try:
                    changed = ast.parse(segment)
                    compile(changed, str(path), "exec")
                except (SyntaxError, ValueError):
                    continue                          # a mutant that does not compile is dropped
                dump = (qualname, ast.dump(definitions(changed)[qualname]))
                if dump in seen:
                    continue                          # the same program as the original or another mutant
                seen.add(dump)
                found.append(Mutant(relative, qualname, edit.node.lineno, edit.node.end_lineno, edit.operator,
                                    f"{_short(source[start:end])} -> {_short(edit.text)}",
                                    source[:seg_start] + segment + source[seg_end:], edit.node.col_offset))
    return found


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT.resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- what is mutated, and by what tests

@dataclass
class Subject:
    """One file to mutate, and how to run the killer tests against a mutant of it."""
    path: Path
    kind: str                 # "lesson" (a copy is served through --target) or "kit" (imported in its place)
    functions: list[str] | None
    slug: str = ""            # lesson
    module: str = ""          # kit: course.kit.signing

    @property
    def file(self) -> str:
        return _relative(self.path)

    def mutants(self) -> list[Mutant]:
        return mutants_of(self.path, self.functions, own_kit=self.kind == "kit")


class MutateError(Exception):
    """Something to tell the user (an unknown lesson or module, a baseline that fails)."""


def lesson_subject(key: str) -> Subject:
    from course.lesson import manifest

    try:
        lesson = manifest.lesson(key)
    except manifest.UnknownLesson as exc:
        raise MutateError(str(exc)) from None
    path = ROOT / "solutions" / lesson.slug / "app.py"
    if not path.exists() or not lesson.test_file.exists():
        raise MutateError(f"lesson {lesson.id} has no solution or no tests yet")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = []
    for exercise in lesson.exercises:
        named = exercise_functions(tree, exercise.function)
        if not named:
            raise MutateError(f"exercise {exercise.id}: no function of {_relative(path)} matches the manifest's "
                              f"function field {exercise.function!r}; name it as it is defined (Class.method)")
        functions += named
    return Subject(path, "lesson", list(dict.fromkeys(functions)), slug=lesson.slug)


def kit_subject(name: str) -> Subject:
    path = KIT / f"{name}.py"
    if not path.exists() or name.startswith("_"):
        there = ", ".join(kit_modules())
        raise MutateError(f"there is no kit module {name!r}; the kit's modules are: {there}")
    return Subject(path, "kit", None, module=f"course.kit.{name}")


def kit_modules() -> list[str]:
    return sorted(path.stem for path in KIT.glob("*.py") if not path.stem.startswith("_"))


def killer_files(subjects: list[Subject], kit_tests: tuple[str, ...] = KIT_TESTS) -> list[Path]:
    files = []
    for subject in subjects:
        if subject.kind == "lesson":
            files.append(ROOT / "tests" / f"test_{subject.slug}.py")
        else:
            files += [path for pattern in kit_tests for path in sorted(ROOT.glob(pattern))]
    return list(dict.fromkeys(files))


def _pytest_args(subjects: list[Subject], files: list[Path]) -> list[str]:
    args = ["-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), *map(str, files), *PYTEST_ARGS]
    if all(subject.kind == "lesson" for subject in subjects):
        args += ["-m", "exercise"]      # what a student's grade counts
    return args


# ---------------------------------------------------------------- the children

class _Trace:
    """Which lines of the subjects each test executes: a line tracer in every thread, set once at start."""

    def __init__(self, files: set[str]):
        self.files = {os.path.realpath(f) for f in files}
        self.known: dict[str, str | None] = {}
        self.current = "(collection)"
        self.lines: dict[str, set[tuple[str, int]]] = {}
        self.durations: dict[str, float] = {}
        self.outcomes: dict[str, str] = {}

    def _file(self, name: str) -> str | None:
        if name not in self.known:
            real = os.path.realpath(name)
            self.known[name] = real if real in self.files else None
        return self.known[name]

    def global_trace(self, frame, event, arg):
        file = self._file(frame.f_code.co_filename)
        if file is None:
            return None
        lines = self.lines.setdefault(self.current, set())

        def local(frame, event, arg):
            if event == "line":
                lines.add((file, frame.f_lineno))
            return local

        lines.add((file, frame.f_lineno))
        return local

    def start(self):
        threading.settrace(self.global_trace)
        sys.settrace(self.global_trace)

    # pytest hooks
    def pytest_runtest_logstart(self, nodeid, location):
        self.current = nodeid
        sys.settrace(self.global_trace)          # pytest (or a test) may have replaced it

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.when == "call" or report.skipped:
            self.outcomes.setdefault(report.nodeid, report.outcome)


class _Select:
    """Run only the tests that execute the mutant's lines, in the order given (fastest first)."""

    def __init__(self, order: list[str]):
        self.rank = {nodeid: i for i, nodeid in enumerate(order)}

    def pytest_collection_modifyitems(self, config, items):
        kept = sorted((item for item in items if item.nodeid in self.rank), key=lambda item: self.rank[item.nodeid])
        dropped = [item for item in items if item.nodeid not in self.rank]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class _FirstFailure:
    def __init__(self, path: Path):
        self.path = path

    def pytest_runtest_logreport(self, report):
        if report.failed and not self.path.exists():
            message = getattr(getattr(report.longrepr, "reprcrash", None), "message", "") or str(report.longrepr)
            self.path.write_text(json.dumps({"test": report.nodeid, "message": message[:300]}), encoding="utf-8")


class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the mutated source in place of one kit module (same name, same __file__)."""

    def __init__(self, name: str, path: Path, source: str):
        self.name, self.path, self.source = name, path, source

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=str(self.path))
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = str(self.path)
        exec(compile(self.source, str(self.path), "exec"), module.__dict__)


def _quiet_child(log: Path | None) -> None:
    """In a forked child: a process group of its own (killed whole), output to a log or nowhere."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sink = os.open(str(log) if log else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    os.environ.setdefault("SESSION_SECRET", "mutate-throwaway-secret-" + os.urandom(8).hex())
    if log:                                     # Hypothesis keeps its examples there, not in the checkout
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(log.parent / ".hypothesis")


def _purge_course_modules() -> None:
    """Forget every imported course module, so they import again and see the mutated kit module."""
    for name in list(sys.modules):
        if name == "course" or name.startswith(("course.", "course_target_", "tests.", "test_")) or name == "tests":
            del sys.modules[name]


def _baseline_child(args: list[str], files: set[str], out: Path) -> int:
    import pytest

    trace = _Trace(files)
    trace.start()
    code = pytest.main(args, plugins=[trace])
    sys.settrace(None)
    threading.settrace(None)
    out.write_text(json.dumps({
        "code": int(code),
        "lines": {nodeid: sorted(lines) for nodeid, lines in trace.lines.items()},
        "durations": trace.durations, "outcomes": trace.outcomes}), encoding="utf-8")
    return 0


def _mutant_child(subject: Subject, mutant: Mutant, args: list[str], tests: list[str], workdir: Path) -> int:
    import pytest

    if subject.kind == "kit":
        _purge_course_modules()
        sys.meta_path.insert(0, _MutantFinder(subject.module, subject.path, mutant.source))
    else:
        (workdir / subject.slug).mkdir(parents=True)
        (workdir / subject.slug / "app.py").write_text(mutant.source, encoding="utf-8")
        args = [*args, "--target", str(workdir)]
    return int(pytest.main(args, plugins=[_Select(tests), _FirstFailure(workdir / "killed-by.json")]))


@dataclass
class _Running:
    pid: int
    deadline: float
    task: object
    workdir: Path


def _fork(work, log: Path | None = None) -> int:
    """Start ``work()`` in a forked child; its return value is the child's exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid != 0:
        try:
            os.setpgid(pid, pid)                # as the child does: no race with a kill on timeout
        except (PermissionError, ProcessLookupError):
            pass
    if pid == 0:                                # the child
        code = 70
        try:
            _quiet_child(log)
            code = work()
        except BaseException:                   # a child must never return into the parent's code
            code = 70
        finally:
            os._exit(code)
    return pid


def _reap(running: _Running, status: int) -> int | None:
    try:
        os.killpg(running.pid, signal.SIGKILL)  # whatever the tests started and left behind
    except (ProcessLookupError, PermissionError):
        pass
    return os.waitstatus_to_exitcode(status)


def run_pool(tasks: list, start, finish, jobs: int) -> None:
    """Run ``start(task) -> (pid, seconds, workdir)`` for each task, ``jobs`` at a time; ``finish(task,
    exit_code_or_None_for_timeout, workdir)`` as each one ends."""
    pending = list(reversed(tasks))
    running: dict[int, _Running] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                task = pending.pop()
                pid, seconds, workdir = start(task)
                running[pid] = _Running(pid, time.monotonic() + seconds, task, workdir)
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid in running:
                done = running.pop(pid)
                finish(done.task, _reap(done, status), done.workdir)
                continue
            now = time.monotonic()
            for late in [r for r in running.values() if r.deadline < now]:
                os.killpg(late.pid, signal.SIGKILL)
                os.waitpid(late.pid, 0)
                del running[late.pid]
                finish(late.task, None, late.workdir)
            time.sleep(0.01)
    finally:
        for left in running.values():
            try:
                os.killpg(left.pid, signal.SIGKILL)
                os.waitpid(left.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _warm(files: list[Path]) -> None:
    """Import, once in the parent, the libraries the tests and the code under test import."""
    from _pytest.config import default_plugins

    names = {"pytest", "hypothesis", "_hypothesis_pytestplugin", *(f"_pytest.{name}" for name in default_plugins)}
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    for name in sorted(names):
        if name == "course" or name.startswith(("course.", "tests")):
            continue
        try:
            importlib.import_module(name)
        except Exception:                       # a module that needs what is not here: the tests will say
            pass


# ---------------------------------------------------------------- the run

@dataclass
class Baseline:
    lines: dict[str, set[tuple[str, int]]]      # test -> (file, line) it executes
    durations: dict[str, float]
    failing: list[str]
    seconds: float


def _traced(subjects: list[Subject]) -> set[str]:
    """The files whose lines the baseline records: the subjects, and with a kit module every kit module
    (so one recorded baseline serves ``--kit signing`` and ``--kit cookies`` alike)."""
    files = {str(subject.path) for subject in subjects}
    if any(subject.kind == "kit" for subject in subjects):
        files |= {str(KIT / f"{name}.py") for name in kit_modules()}
    return files


def _baseline_key(args: list[str], traced: set[str]) -> str:
    """Changes whenever the tests, the code they run or the command line change."""
    digest = hashlib.sha256(json.dumps([str(ROOT), args, sorted(traced)]).encode())
    for folder in ("course", "solutions", "tests"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".toml", ".ini") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    digest.update((ROOT / "pytest.ini").read_bytes())
    return digest.hexdigest()[:20]


def baseline(subjects: list[Subject], files: list[Path], workdir: Path, timeout: float = 1800,
             cache: bool = True) -> Baseline:
    """The killer tests once, on the code as it is, recording the lines each test executes.

    The result is kept in the system's temporary folder under a key of every file's content, so a second
    run on unchanged code (``--kit cookies`` after ``--kit signing``) starts at once; ``cache=False``
    runs it again.
    """
    args = [a for a in _pytest_args(subjects, files) if a != "-x"]
    traced = _traced(subjects)
    kept = Path(tempfile.gettempdir()) / f"course-mutate-baseline-{_baseline_key(args, traced)}.json"
    out, log = workdir / "baseline.json", workdir / "baseline.log"
    started = time.monotonic()
    if cache and kept.exists():
        out = kept
    else:
        result = {}
        pid = _fork(lambda: _baseline_child(args, traced, out), log)
        run_pool([pid], lambda pid: (pid, timeout, workdir), lambda task, code, _: result.update(code=code), 1)
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
        if result.get("code") != 0 or not out.exists():
            raise MutateError(f"the killer tests did not run on the unchanged code:\n{tail}")
    data = json.loads(out.read_text(encoding="utf-8"))
    if data["code"] not in (0, 1):
        raise MutateError(f"pytest could not run the killer tests (exit {data['code']}): run them alone, "
                          f"pytest {' '.join(map(str, files))}")
    if out != kept:
        kept.write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
    lines = {test: {tuple(pair) for pair in pairs} for test, pairs in data["lines"].items()}
    failing = sorted(test for test, outcome in data["outcomes"].items() if outcome == "failed")
    return Baseline(lines, data["durations"], failing, time.monotonic() - started)


def killers(mutant: Mutant, subject: Subject, base: Baseline) -> list[str]:
    """The tests that execute one of the mutant's lines and pass on the unchanged code, fastest first."""
    real = os.path.realpath(subject.path)
    span = {(real, line) for line in range(mutant.line, mutant.end_line + 1)}
    chosen = [test for test, lines in base.lines.items()
              if test not in base.failing and test != "(collection)" and lines & span]
    return sorted(chosen, key=lambda test: (base.durations.get(test, 0.0), test))


STATUS = {0: "survived", 1: "killed", 2: "killed", 5: "survived"}
"""pytest's exit code -> the mutant's fate: 1 a test failed; 2 the tests could not even import the mutated
code (collection error); 5 no test ran (counted as surviving, never as killed); anything else is an error
of the run (also never counted as killed)."""
NOT_KILLED = ("survived", "not covered", "error")
KILLED = ("killed", "timeout", "killed before")
"""``killed before``: with ``--survivors-of``, a mutant the earlier run killed (only its survivors run again)."""


@dataclass
class Outcome:
    mutant: Mutant
    status: str               # killed, timeout, killed before, survived, not covered, error
    tests: int = 0            # how many tests it was run against
    killed_by: str = ""
    equivalent: str = ""      # the recorded reason, when it is in the record


@dataclass
class FileReport:
    file: str
    outcomes: list[Outcome]

    def count(self, *statuses) -> int:
        return sum(o.status in statuses for o in self.outcomes)

    @property
    def equivalent(self) -> int:
        return sum(bool(o.equivalent) for o in self.outcomes)

    @property
    def not_covered(self) -> int:
        """Survivors on lines no killer test executes (so they were not run)."""
        return sum(o.status == "not covered" and not o.equivalent for o in self.outcomes)

    @property
    def survived(self) -> int:
        """Not killed and not recorded as equivalent (those on lines no test runs included)."""
        return sum(o.status in NOT_KILLED and not o.equivalent for o in self.outcomes)

    @property
    def killed(self) -> int:
        return self.count(*KILLED)

    @property
    def score(self) -> float | None:
        counted = len(self.outcomes) - self.equivalent
        killed = sum(o.status in KILLED and not o.equivalent for o in self.outcomes)
        return killed / counted if counted else None

    def summary(self) -> dict:
        return {"file": self.file, "mutants": len(self.outcomes), "not_covered": self.not_covered,
                "killed": self.killed, "survived": self.survived,
                "equivalent": self.equivalent, "score": self.score,
                "survivors": [{**o.mutant.describe(), "status": o.status} for o in self.outcomes
                              if o.status in NOT_KILLED and not o.equivalent],
                "equivalent_survivors": [{**o.mutant.describe(), "status": o.status} for o in self.outcomes
                                         if o.status in NOT_KILLED and o.equivalent],
                "equivalent_killed": [o.mutant.describe() for o in self.outcomes
                                      if o.equivalent and o.status in KILLED]}


def equivalent_record(path: Path = EQUIVALENT_RECORD) -> list[dict]:
    if not path.exists():
        return []
    return tomllib.loads(path.read_text(encoding="utf-8")).get("equivalent", [])


def match_equivalent(mutants: list[Mutant], record: list[dict]) -> dict[Mutant, str]:
    """Each recorded equivalent mutant found among ``mutants``: by file, function and mutation, and by
    line when the same mutation occurs twice in a function (so an edit elsewhere does not unmatch it), and
    by column when it occurs twice on one line."""
    found = {}
    for entry in record:
        same = [m for m in mutants if m.file == entry["file"] and m.mutation == entry["mutant"]
                and m.function == entry.get("function", m.function)]
        if len(same) > 1:
            same = [m for m in same if m.line == entry.get("line")]
        if len(same) > 1 and "column" in entry:
            same = [m for m in same if m.column == entry["column"]]
        for mutant in same:
            found[mutant] = entry["why"]
    return found


@dataclass
class Report:
    files: list[FileReport]
    seconds: float
    cpu_seconds: float
    baseline_seconds: float
    failing_baseline: list[str]
    sampled: bool

    @property
    def run(self) -> int:
        """How many mutants this run ran (not those on lines no test runs, nor those killed before)."""
        return sum(1 for f in self.files for o in f.outcomes if o.status not in ("not covered", "killed before"))

    def as_dict(self) -> dict:
        return {"files": [f.summary() for f in self.files], "seconds": round(self.seconds, 1),
                "cpu_seconds": round(self.cpu_seconds, 1), "baseline_seconds": round(self.baseline_seconds, 1),
                "mutants_run": self.run, "mutants_per_second": round(self.run / max(self.seconds, 1e-9), 2),
                "failing_on_unchanged_code": self.failing_baseline, "sample": self.sampled}


def _cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def mutate(subjects: list[Subject], jobs: int = 2, sample: int | None = None, seed: int = 0,
           kit_tests: tuple[str, ...] = KIT_TESTS, progress=None, record: list[dict] | None = None,
           keep: Path | None = None, only=None, cache: bool = True, again: set | None = None) -> Report:
    """Generate the subjects' mutants, run each against the tests that execute its lines; the report.

    ``only(mutant)`` keeps some of them (before ``sample`` picks among those). ``again``: the keys
    (``_key``) of the mutants an earlier full run did not kill; only those run, the others count as
    "killed before" (tests are only ever added, and the code under test is the same)."""
    started, cpu = time.monotonic(), _cpu()
    by_subject = [(subject, [m for m in subject.mutants() if only is None or only(m)]) for subject in subjects]
    every = [(subject, mutant) for subject, mutants in by_subject for mutant in mutants]
    if sample is not None and sample < len(every):
        every = random.Random(seed).sample(every, sample)
    files = killer_files(subjects, kit_tests)
    _warm([*files, *(subject.path for subject in subjects)])
    equivalent = match_equivalent([m for _, m in every], equivalent_record() if record is None else record)
    with tempfile.TemporaryDirectory(prefix="course-mutate-", dir=keep) as tmp:
        workdir = Path(tmp)
        base = baseline(subjects, files, workdir, cache=cache)
        outcomes: dict[Mutant, Outcome] = {}
        tasks = []
        for index, (subject, mutant) in enumerate(every):
            tests = killers(mutant, subject, base)
            if again is not None and _key(mutant) not in again:
                outcomes[mutant] = Outcome(mutant, "killed before")
            elif tests:
                tasks.append((index, subject, mutant, tests))
            else:
                outcomes[mutant] = Outcome(mutant, "not covered")
        args = _pytest_args(subjects, files)
        args = [a for a in args if not a.endswith(".py")]     # each mutant: only the files of its killers
        done = {"n": 0}

        def start(task):
            index, subject, mutant, tests = task
            here = workdir / f"m{index}"
            here.mkdir()
            slowest = max(base.durations.get(t, 1.0) for t in tests)
            test_files = list(dict.fromkeys(str(ROOT / t.split("::")[0]) for t in tests))
            child_args = [*args, *test_files, "--course-timeout", f"{max(5.0, 4 * slowest + 2):g}"]
            seconds = 30 + 3 * sum(base.durations.get(t, 1.0) for t in tests)
            return _fork(lambda: _mutant_child(subject, mutant, child_args, tests, here)), seconds, here

        def finish(task, code, here):
            _, subject, mutant, tests = task
            killed_by = here / "killed-by.json"
            by = json.loads(killed_by.read_text(encoding="utf-8"))["test"] if killed_by.exists() else ""
            status = "timeout" if code is None else STATUS.get(code, "error")
            outcomes[mutant] = Outcome(mutant, status, len(tests), by)
            done["n"] += 1
            if progress:
                progress(done["n"], len(tasks), outcomes[mutant])

        run_pool(tasks, start, finish, jobs)
    reports = []
    for subject, mutants in by_subject:
        mine = [outcomes[m] for m in mutants if m in outcomes]
        for outcome in mine:
            outcome.equivalent = equivalent.get(outcome.mutant, "")
        reports.append(FileReport(subject.file, mine))
    return Report(reports, time.monotonic() - started, _cpu() - cpu, base.seconds, base.failing,
                  sample is not None)


# ---------------------------------------------------------------- the command

def add_arguments(parser) -> None:
    parser.add_argument("--lesson", nargs="*", metavar="NN",
                        help="mutate these lessons' solutions (no number: every lesson with a solution and tests)")
    parser.add_argument("--kit", nargs="*", metavar="MODULE",
                        help="mutate these kit modules, e.g. signing (no name: every module of course/kit)")
    parser.add_argument("--sample", type=int, metavar="N", help="run only N mutants, chosen at random with --seed")
    parser.add_argument("--seed", type=int, default=0, help="the seed of --sample (default 0)")
    parser.add_argument("--jobs", "-j", type=int, default=2, metavar="N", help="mutants run at once (default 2)")
    parser.add_argument("--survivors-of", metavar="REPORT.json",
                        help="run again only the mutants an earlier full --json report did not kill (after adding "
                             "tests); the others count as killed before")
    parser.add_argument("--killers", nargs="+", metavar="GLOB",
                        help="with --kit: use only these test files as killers (e.g. tests/test_kit_forms.py). "
                             "Fewer killers can only kill fewer mutants, so the score is a lower bound of the "
                             "full run's, reached much sooner")
    parser.add_argument("--list", action="store_true", help="only list the mutants, run nothing")
    parser.add_argument("--fresh", action="store_true",
                        help="run the baseline (the killer tests on the unchanged code, traced) again, "
                             "even if the code has not changed since the last one")
    parser.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    parser.add_argument("--all-survivors", action="store_true",
                        help="list every survivor (default: the first 40 of each file)")


def subjects_from(args) -> list[Subject]:
    from course.lesson import manifest

    subjects = []
    if args.lesson is not None:
        keys = args.lesson or [lesson.id for lesson in manifest.lessons()
                               if (ROOT / "solutions" / lesson.slug / "app.py").exists() and lesson.test_file.exists()]
        subjects += [lesson_subject(key) for part in keys for key in part.split(",") if key]
    if args.kit is not None:
        subjects += [kit_subject(name) for name in (args.kit or kit_modules())]
    if not subjects:
        raise MutateError("say what to mutate: --lesson NN (or --lesson for all), --kit MODULE (or --kit for all)")
    return subjects


def command(args) -> int:
    try:
        subjects = subjects_from(args)
        if args.list:
            return _list(subjects, args.json)
        progress = None if args.json or not sys.stderr.isatty() else _progress
        again = survivors_of(Path(args.survivors_of)) if args.survivors_of else None
        kit_tests = tuple(args.killers) if args.killers else KIT_TESTS
        for pattern in kit_tests:
            if not any(ROOT.glob(pattern)):
                raise MutateError(f"--killers {pattern}: no test file matches (patterns are relative to {ROOT})")
        reports = [mutate(group, jobs=args.jobs, sample=args.sample, seed=args.seed, progress=progress,
                          cache=not args.fresh, again=again, kit_tests=kit_tests)
                   for group in ([s for s in subjects if s.kind == kind] for kind in ("lesson", "kit")) if group]
        report = reports[0] if len(reports) == 1 else _joined(reports)
    except MutateError as exc:
        print(f"mutate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print_report(report, every=args.all_survivors)
    return 0


def _key(mutant: Mutant) -> tuple:
    return mutant.file, mutant.function, mutant.line, mutant.mutation


def survivors_of(report: Path) -> set:
    """The keys of the mutants an earlier full ``--json`` report did not kill (equivalent ones too)."""
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        if data.get("sample"):
            raise MutateError(f"{report} is the report of a sample: --survivors-of needs a full run")
        return {(m["file"], m["function"], m["line"], m["mutation"]) for f in data["files"]
                for m in [*f["survivors"], *f.get("equivalent_survivors", [])]}
    except (OSError, ValueError, KeyError) as exc:
        raise MutateError(f"{report} is not a report of python -m course mutate --json ({exc})") from None


def _joined(reports: list[Report]) -> Report:
    """Lessons and kit modules run separately (the lessons' killers are their exercise tests only)."""
    return Report([f for r in reports for f in r.files], sum(r.seconds for r in reports),
                  sum(r.cpu_seconds for r in reports), sum(r.baseline_seconds for r in reports),
                  [t for r in reports for t in r.failing_baseline], any(r.sampled for r in reports))


def _progress(done: int, total: int, outcome: Outcome) -> None:
    print(f"\r{done}/{total} mutants run", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _list(subjects: list[Subject], as_json: bool) -> int:
    mutants = [m for subject in subjects for m in subject.mutants()]
    if as_json:
        print(json.dumps([m.describe() for m in mutants], indent=1))
    else:
        for m in mutants:
            print(f"{m.where}  {m.function}  [{m.operator}]  {m.mutation}")
        print(f"{len(mutants)} mutants")
    return 0


def print_report(report: Report, every: bool = False) -> None:
    header = f"{'file':<40} {'mutants':>7} {'not cov.':>8} {'killed':>6} {'survived':>8} {'equiv.':>6} {'score':>6}"
    print(header)
    for f in report.files:
        score = "-" if f.score is None else f"{100 * f.score:.1f}%"
        print(f"{f.file:<40} {len(f.outcomes):>7} {f.not_covered:>8} {f.killed:>6} "
              f"{f.survived:>8} {f.equivalent:>6} {score:>6}")
    for f in report.files:
        survivors = [o for o in f.outcomes if o.status in NOT_KILLED and not o.equivalent]
        if survivors:
            print(f"\nSurvivors in {f.file}:")
            for o in survivors if every else survivors[:40]:
                note = {"not covered": " (not covered: no test runs this line)",
                        "error": " (the run failed: see --json)"}.get(o.status, "")
                print(f"  {o.mutant.where}  {o.mutant.function}  [{o.mutant.operator}]  {o.mutant.mutation}{note}")
            if not every and len(survivors) > 40:
                print(f"  ... and {len(survivors) - 40} more (--all-survivors)")
        wrong = [o for o in f.outcomes if o.equivalent and o.status in ("killed", "timeout")]
        for o in wrong:
            print(f"  recorded as equivalent but killed by {o.killed_by}: {o.mutant.where} {o.mutant.mutation} "
                  f"(remove it from {_relative(EQUIVALENT_RECORD)})")
    if report.failing_baseline:
        print(f"\nNote: {len(report.failing_baseline)} killer test(s) fail on the unchanged code and were not used: "
              + ", ".join(report.failing_baseline[:5]))
    sample = " (a sample)" if report.sampled else ""
    rate = report.run / max(report.seconds, 1e-9)
    print(f"\n{report.run} mutants run{sample} in {report.seconds:.1f} s ({rate:.2f} mutants/s; "
          f"CPU {report.cpu_seconds:.1f} s; the baseline run took {report.baseline_seconds:.1f} s of it)")
