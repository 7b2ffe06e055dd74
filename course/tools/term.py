"""Terminal output for ``python -m course``: colour only on a terminal, and a progress bar.

Colour is used when the stream is a TTY and ``NO_COLOR`` is not set (https://no-color.org); in a
pipe, a file or CI the same words come out plain, so every message reads the same without it.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
import threading
import time
from pathlib import Path

CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36"}


def python_command() -> str:
    """This Python as the reader can type it: ``.venv/bin/python`` for the course's own venv.

    Advice the commands print must work as printed. A bare ``python`` is often a Python without
    the course's dependencies (the system's), so the venv's is named by its path.
    """
    from course import ROOT

    venv = ROOT / ".venv"
    try:
        if Path(sys.prefix).resolve() == venv.resolve():
            relative = os.path.relpath(venv / "bin" / "python", Path.cwd())
            return relative if relative.startswith(".") else "./" + relative
    except (OSError, ValueError):
        pass
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found and Path(found).resolve() == Path(sys.executable).resolve():
            return name
    return sys.executable


def course_command(args: str) -> str:
    """``.venv/bin/python -m course check 01``: a command to print as advice."""
    return f"{python_command()} -m course {args}"


def wants_colour(stream) -> bool:
    return not os.environ.get("NO_COLOR") and _is_tty(stream)


class Style:
    """``style.green("done")``: the word in green on a terminal, the bare word elsewhere."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = wants_colour(self.stream)

    def paint(self, text: str, *names: str) -> str:
        if not self.enabled or not names:
            return text
        return f"\033[{';'.join(CODES[n] for n in names)}m{text}\033[0m"

    def __getattr__(self, name):
        if name in CODES:
            return lambda text: self.paint(text, name)
        raise AttributeError(name)


def width(default: int = 100) -> int:
    return max(40, min(shutil.get_terminal_size((default, 24)).columns, 160))


def bar(done: int, total: int, size: int = 20) -> str:
    """``[########------------]``: plain characters, readable anywhere."""
    filled = round(size * done / total) if total else size
    return "[" + "#" * filled + "-" * (size - filled) + "]"


class Progress:
    """A batch's progress on stderr.

    On a terminal, one line redrawn in place (count, bar, what is running, elapsed time); elsewhere
    (a pipe, a CI log) one plain line per finished item, so a log file stays readable.
    """

    def __init__(self, total: int, label: str = "grading", stream=None, enabled: bool = True):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.live = enabled and _is_tty(self.stream)     # redraw in place only on a terminal
        self.enabled = enabled
        self.done = 0
        self.running: list[str] = []
        self.started = time.monotonic()
        self.drawn = 0.0
        self.lock = threading.Lock()

    def start(self, name: str) -> None:
        with self.lock:
            self.running.append(name)
            self._draw()

    def finish(self, name: str, summary: str) -> None:
        with self.lock:
            if name in self.running:
                self.running.remove(name)
            self.done += 1
            if not self.enabled:
                return
            if self.live:
                self._clear()
                self.stream.write(f"  {name}: {summary}\n")
                self._draw()
            else:
                self.stream.write(f"[{self.done}/{self.total}] {name}: {summary}\n")
                self.stream.flush()

    def tick(self) -> None:
        """Redraw the elapsed time (at most once a second); callers poll it while they wait."""
        if self.live and time.monotonic() - self.drawn >= 1:
            with self.lock:
                self._draw()

    def close(self) -> None:
        with self.lock:
            if self.enabled and self.live:
                self._clear()
                self.stream.flush()

    def _elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def _clear(self) -> None:
        self.stream.write("\r\033[K")

    def _draw(self) -> None:
        if not (self.enabled and self.live):
            return
        self.drawn = time.monotonic()
        running = ", ".join(self.running)
        line = f"{self.label} {bar(self.done, self.total)} {self.done}/{self.total}  {self._elapsed()}"
        if running:
            line += f"  now: {running}"
        self._clear()
        self.stream.write(line[: width() - 1])
        self.stream.flush()


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------- failure messages

_WHERE = re.compile(r"^\s*\+\s")                 # pytest's "+  where 3 = f(x)" explanation lines
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PREFIXES = ("AssertionError: ", "Failed: ", "course.lesson.web.ExerciseNotDone: ")


def tidy_message(message: str, replace: dict[str, str] | None = None, max_lines: int = 4,
                 max_width: int = 240, wrap: int | None = None) -> list[str]:
    """A test's failure message as a few readable lines: the test's own words, then the comparison.

    Drops pytest's ``+ where`` lines and object addresses; ``replace`` maps text to hide (a
    temporary path) to what the reader knows it as. With ``wrap``, a long line is folded onto
    lines of that width (up to ``max_width`` characters in all) instead of being cut.
    """
    for old, new in (replace or {}).items():
        if old:
            message = message.replace(old, new)
    lines = [line.rstrip() for line in message.strip().splitlines()]
    lines = [_ADDRESS.sub("", line) for line in lines if line.strip() and not _WHERE.match(line)]
    if lines:
        for prefix in _PREFIXES:
            if lines[0].startswith(prefix):
                lines[0] = lines[0][len(prefix):]
    out = [line if len(line) <= max_width else line[: max_width - 3] + "..." for line in lines[:max_lines]]
    if wrap:
        out = [piece for line in out for piece in _fold(line, wrap)]
    return out or ["(no message)"]


def _fold(line: str, size: int) -> list[str]:
    """``line`` on lines of at most ``size`` characters, broken between words where it has spaces."""
    return textwrap.wrap(line, max(20, size), break_on_hyphens=False) or [""]


_TODO = re.compile(r"""\btodo\(\s*["'](\d\d\.\d+)["']\s*\)""")


def todo_ids(source: str) -> set[str]:
    """The exercise ids a lesson's source marks with ``todo("NN.K")``."""
    return set(_TODO.findall(source))


def unfinished(path) -> set[str]:
    """The exercise ids an app.py still marks with ``todo("NN.K")`` (not started, if nothing passes)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return todo_ids(file.read())
    except OSError:
        return set()
