"""A crash in the code under test, shown as a crash: the exception, the student's own lines, the request.

A route that raises answers 500 and the check that sent the request sees only the 500
(``assert 500 == 200``): without the exception, a student would go and fix whatever the check's
message names. So the lesson servers of the tests record every exception raised in the app while
a test runs (``CrashRecorder``, a WSGI wrapper), and when the test fails its report carries the
first one (``pytest_plugin``): ``python -m course check`` shows it before the check's expectation,
and a plain ``pytest`` shows it in a section of its own under the failure.

Bottle catches an exception in a route itself (and answers 500), so the wrapper cannot see it
raised; it sees Bottle put ``sys.exc_info()`` into ``environ["bottle.exc_info"]`` (Bottle 0.13,
``Bottle._handle``), in the same dict the wrapper passed in, and records it there. An exception
raised outside Bottle (in a middleware) reaches the wrapper directly.

The student's frames are those in the folder of lessons under test; the rest (the course, Bottle,
Beaker, the standard library) are folded into a count: they are not where the bug is.
"""
from __future__ import annotations

import functools
import linecache
import threading
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course.tools.loader import readable_names

MAX_FRAMES = 4          # the student's innermost frames shown (the last one is where it broke)
KEEP_INNERMOST, KEEP_OUTERMOST = 500, 200   # of a stack too deep to read whole (``called_from``)


@dataclass
class Frame:
    file: str           # as the reader knows it: lessons/01_raw_cookies/app.py
    line: int
    function: str
    code: str


@dataclass
class Crash:
    error: str                          # "KeyError: 'visits'"
    request: str = ""                   # "GET /visits  (Cookie: visits=abc)", or "" when called directly
    frames: list[Frame] = field(default_factory=list)
    folded: int = 0                     # frames of the course and of libraries, left out
    earlier: int = 0                    # the student's own frames above those shown (a recursion: hundreds)
    stuck: bool = False                 # not raised: still running when the time limit came (``stuck``)
    context: str = ""                   # without a request: where it happened, when the stack tells (``_context``)

    def as_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> Crash:
        return Crash(error=data.get("error", ""), request=data.get("request", ""),
                     frames=[Frame(**f) for f in data.get("frames", [])], folded=int(data.get("folded", 0)),
                     earlier=int(data.get("earlier", 0)), stuck=bool(data.get("stuck", False)),
                     context=str(data.get("context", "")))

    def lines(self) -> list[str]:
        """The crash as plain lines: what broke, where in the student's code, for which request."""
        out = [self.error]
        if self.request:
            out.append(f"while answering {self.request}")
        else:
            out.append(self.context or "in a function the check called directly")
        if self.earlier:
            out.append(f"({self.earlier} more call{'s' * (self.earlier != 1)} of your code before these"
                       f"{': a function that calls itself without end?' if self.earlier > 100 else ''})")
        for frame in self.frames:
            out.append(f"{frame.file}, line {frame.line}, in {frame.function}")
            if frame.code:
                out.append(f"    {frame.code}")
        if self.folded:
            out.append(f"({self.folded} frame{'s' * (self.folded != 1)} of the course and its libraries folded)")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())


def _display(path: str) -> str:
    from course import ROOT

    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


@functools.lru_cache(maxsize=4096)
def _inside(filename: str, root: Path) -> bool:
    """Is ``filename`` in the folder ``root``? Asked for every frame of a stack (a recursion has
    hundreds, or a million where the student raised the limit): remembered per file."""
    try:
        return Path(filename).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def from_traceback(exc: BaseException, tb, root: Path, request: str = "") -> Crash:
    """A Crash from an exception and its traceback; ``root`` is the folder of the student's code."""
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return _bounded(list(traceback.walk_tb(tb)), Path(root).resolve(), error[-1] if error else type(exc).__name__,
                    request)


def _bounded(pairs: list, root: Path, error: str, request: str) -> Crash:
    """A Crash from ``pairs`` of (frame, line number), outermost first. A recursion whose limit the
    student raised is a million frames deep: its outermost and innermost frames are read, and the
    rest only counted (reading every one took the crash's recording past the check's time limit)."""
    deep = max(0, len(pairs) - (KEEP_OUTERMOST + KEEP_INNERMOST))
    kept = pairs[:KEEP_OUTERMOST] + pairs[KEEP_OUTERMOST + deep:] if deep else pairs
    crash = _from_summary(traceback.StackSummary.extract(iter(kept)), root, error, request)
    if deep:
        middle = pairs[KEEP_OUTERMOST][0].f_code.co_filename
        if _inside(middle, root):
            crash.earlier += deep
        else:
            crash.folded += deep
    return crash


def from_entries(entries: list[tuple[str, int, str]], root: Path, error: str) -> Crash:
    """A Crash from (file, line, function) entries, outermost first: a stack read from elsewhere
    (faulthandler's dump of a process that died of a fatal signal)."""
    summary = traceback.StackSummary.from_list([(file, line, function, None) for file, line, function in entries])
    return _from_summary(summary, Path(root).resolve(), error, "")


def _from_summary(summary: traceback.StackSummary, root: Path, error: str, request: str) -> Crash:
    mine = [entry for entry in summary if _inside(entry.filename, root)]
    shown = mine[-MAX_FRAMES:] or summary[-1:]
    frames = [Frame(_display(e.filename), e.lineno or 0, e.name,
                    (e.line or linecache.getline(e.filename, e.lineno or 0)).strip()) for e in shown]
    return Crash(error=readable_names(error), request=request, frames=frames,
                 folded=len(summary) - len(mine) - (0 if mine else len(shown)), earlier=max(0, len(mine) - len(shown)),
                 context="" if request else _context(summary, mine))


def _context(summary: traceback.StackSummary, mine: list) -> str:
    """Where a crash without a known request happened, when its stack says: the import of app.py, or a
    request whose details went with the process (a fatal signal: only faulthandler's frames are left)."""
    if any(entry.name == "<module>" for entry in mine):
        return "while the lesson's app.py was being imported"
    if any(entry.name == "__call__" and Path(entry.filename).name == "crashes.py" for entry in summary):
        return "while answering a request (which one went with the process that ended)"
    return ""


def stuck(frames, root: Path, seconds: float) -> Crash | None:
    """Where the student's code is when a test runs out of time: the first of ``frames`` (the stack
    tops of the test's thread and of the threads it started) that is inside ``root``, as a Crash
    marked ``stuck``, with the request its thread was answering; None when none of them is.

    A route in an endless loop never raises: without this, the student sees only that a check
    timed out, under the name of whichever exercise's check sent the first request to it.
    """
    for top in frames:
        crash = called_from(top, root, f"still running after {seconds:g} s: it never returned "
                            "(an endless loop, or a wait that never ends?)")
        if crash is not None:
            crash.stuck = True
            return crash
    return None


def called_from(top, root: Path, error: str) -> Crash | None:
    """A Crash saying ``error`` at the stack whose innermost frame is ``top``, with the request its
    thread was answering; None when no frame of that stack is inside ``root`` (the student's code)."""
    root = Path(root).resolve()
    stack, request, frame = [], "", top
    while frame is not None:             # a request's thread: CrashRecorder.__call__ holds its environ
        stack.append((frame, frame.f_lineno))
        if frame.f_code is CrashRecorder.__call__.__code__:
            request = describe_request(frame.f_locals.get("watched") or {})
        frame = frame.f_back
    stack.reverse()
    if not any(_inside(frame.f_code.co_filename, root) for frame, _ in stack):
        return None
    return _bounded(stack, root, error, request)


def describe_request(environ: dict) -> str:
    """``GET /visits?x=1  (Cookie: visits=abc)``: enough to send the same request again."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if environ.get("QUERY_STRING"):
        path += "?" + environ["QUERY_STRING"]
    line = f"{environ.get('REQUEST_METHOD', 'GET')} {path or '/'}"
    cookie = environ.get("HTTP_COOKIE")
    if cookie is not None:
        cookie = cookie if len(cookie) <= 120 else cookie[:117] + "..."
        line += f"  (Cookie: {cookie})"
    else:
        line += "  (no Cookie header)"
    return line


class StoppedByTheCheck(SystemExit):
    """Raised by the time limit in a thread it gives up on (pytest_plugin.TimeLimit): not the app's crash."""


def is_todo(exc: BaseException) -> bool:
    from course.lesson.web import ExerciseNotDone

    return isinstance(exc, ExerciseNotDone)


class _Watched(dict):
    """The request's environ, which tells the recorder when Bottle files an exception in it."""

    recorder: CrashRecorder

    def __setitem__(self, key, value):
        if key == "bottle.exc_info" and value and value[1] is not None:
            self.recorder.record(value[1], value[2], self)
        super().__setitem__(key, value)


class CrashRecorder:
    """WSGI wrapper: every exception the app raises while answering is kept in ``crashes``.

    The app answers exactly as it would unwrapped (the exception is re-raised, Bottle's 500 stays).
    ``todo(...)`` is not a crash (it is the 501 of an unfinished exercise) and is not kept.
    """

    def __init__(self, app, root: Path, crashes: list[Crash]):
        self.app, self.root, self.crashes = app, Path(root), crashes
        self.lock = threading.Lock()

    def record(self, exc: BaseException, tb, environ: dict) -> None:
        if is_todo(exc) or isinstance(exc, StoppedByTheCheck):
            return
        crash = from_traceback(exc, tb, self.root, describe_request(environ))
        with self.lock:
            self.crashes.append(crash)

    def __call__(self, environ, start_response):
        watched = _Watched(environ)
        watched.recorder = self
        try:
            return self.app(watched, start_response)
        except BaseException as exc:     # sys.exit() in a route too: Bottle lets SystemExit through
            self.record(exc, exc.__traceback__, watched)
            raise


def called_directly(excinfo, root: Path) -> Crash | None:
    """A Crash for an exception a test's own call raised (``app_module.read_count(...)``), if it is one.

    Not one: a failed assert or ``pytest.fail`` (the check's own verdict), a skip, ``todo(...)``.
    """
    if excinfo is None:
        return None
    exc = excinfo.value
    import pytest

    if isinstance(exc, (AssertionError, pytest.fail.Exception, pytest.skip.Exception, KeyboardInterrupt,
                        StoppedByTheCheck)) or is_todo(exc) or not isinstance(exc, (Exception, SystemExit)):
        return None
    crash = from_traceback(exc, excinfo.tb, root)
    mine = Path(root).resolve()
    if not any(_inside(frame.filename, mine) for frame in traceback.extract_tb(excinfo.tb)):
        return None                      # raised in the test or a library, not in the student's code
    return crash
