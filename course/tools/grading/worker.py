"""The test process the grader starts: its command line, its environment, what it streams, and its main.

``python -m course.tools.grading.worker PYTEST-ARGS`` runs pytest with the plugins ``check`` uses
too (course.tools.plugins), then ``os._exit``: a thread the submission left running cannot keep
the process alive.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from course import ROOT
from course.tools.results import PYTEST_QUIET

MODULE = "course.tools.grading.worker"


def command(files: list[str], target: Path, *extra: str) -> list[str]:
    """The worker's command: the course's exercise tests in ``files``, against ``target``."""
    return [sys.executable, "-m", MODULE, "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT),
            *files, "-m", "exercise", "--target", str(target), *PYTEST_QUIET, *extra]


def environment(tmp: Path) -> dict[str, str]:
    """This process's environment without the course's own settings, and with temporary files in ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("COURSE_TARGET", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "COURSE_TEST_TIMEOUT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONDONTWRITEBYTECODE"] = "1"     # never into a copy's files (a sandboxed worker lifts it: run.py)
    env["TMPDIR"] = str(tmp)
    env["NO_COLOR"] = "1"
    return env


def read_stream(path: Path) -> list[dict]:
    """The lines a worker appended to ``--course-stream`` (what it collected, then each record)."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            pass                     # the last line of a killed run may be cut short
    return lines


def main(argv: list[str]) -> None:
    import pytest

    from course.tools.plugins import NativeTracebacks, SkipAfterTimeout

    code = pytest.main(argv, plugins=[SkipAfterTimeout(), NativeTracebacks()])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(int(code))


if __name__ == "__main__":
    main(sys.argv[1:])
