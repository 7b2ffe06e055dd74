"""Helpers for the walkthrough notebooks: show a lesson's code, run a lesson's app.

Notebooks never copy code: ``show("01_raw_cookies", "read_count")`` prints the function as it is
in the lesson file, so the notebook cannot drift from the code. They run the reference solution
by default; set ``COURSE_TARGET=lessons`` to run your own work instead.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

from course.lesson.server import BackgroundServer
from course.tools.loader import app_path, load_app_module


def target() -> str:
    return os.environ.get("COURSE_TARGET", "solutions")


def load(slug: str):
    """The lesson's app.py module, from ``COURSE_TARGET`` (default: solutions)."""
    return load_app_module(target(), slug)


def source(slug: str, name: str) -> str:
    """The source of function or class ``name`` in the lesson's app.py, decorators included.

    Routes are defined inside ``create_app``; they are found there too.
    """
    path = app_path(target(), slug)
    text = Path(path).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = text.splitlines()[first - 1:node.end_lineno]
            indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
            return "\n".join(line[indent:] for line in lines)
    raise LookupError(f"{path} has no function or class named {name!r}")


def show(slug: str, *names: str) -> None:
    """Display code from the lesson file (as Markdown in Jupyter, as plain text elsewhere)."""
    code = "\n\n".join(source(slug, name) for name in names)
    try:
        from IPython.display import Markdown, display
        display(Markdown(f"```python\n{code}\n```"))
    except ImportError:  # pragma: no cover - outside Jupyter
        print(code)


def start(slug: str, **options) -> BackgroundServer:
    """Serve the lesson's ``create_app(**options)`` on a free port; ``.url``, then ``.stop()``."""
    return BackgroundServer(load(slug).create_app(**options))
