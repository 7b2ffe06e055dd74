"""Load a lesson's ``app.py`` by path, from the folder under test (the "target").

A target is a folder holding ``NN_slug/app.py`` folders: ``solutions/`` (the reference),
``lessons/`` (the student's own work) or any student's copy handed to the grader. Each file is
imported under a module name of its own, so the starter, the solution and twenty students' copies
of the same lesson can live in one process without one shadowing another (``import app`` would
hand back whichever was imported first).
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import types
from pathlib import Path

from course import ROOT
from course.kit.beaker_import import import_beaker


class LessonLoadError(Exception):
    """The lesson's app.py is missing or does not import; the message says what to do."""


def resolve_target(target: str | Path) -> Path:
    """``solutions`` and ``lessons`` name the repository's folders; anything else is a path.

    A student's copy may be given as its root (holding ``lessons/``) or as the folder of lessons.
    """
    text = str(target)
    if text in ("solutions", "lessons"):
        return ROOT / text
    path = Path(text).expanduser().resolve()
    if (path / "lessons").is_dir() and not any(path.glob("[0-9][0-9]_*/app.py")):
        path = path / "lessons"
    return path


def app_path(target: str | Path, slug: str) -> Path:
    return resolve_target(target) / slug / "app.py"


def load_app_module(target: str | Path, slug: str) -> types.ModuleType:
    """Import ``TARGET/slug/app.py`` as a fresh module with a name unique to that file."""
    path = app_path(target, slug)
    from course.tools.term import python_command

    if not path.is_file():
        raise LessonLoadError(f"{path} does not exist: lesson {slug} needs an app.py there.")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"course_target_{slug}_{digest}"
    import_beaker()             # before a lesson that imports Beaker itself (05) does: see course/kit/beaker_import.py
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look modules up by name while importing
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:          # sys.exit() at import too: the app.py does not load
        sys.modules.pop(name, None)
        raise LessonLoadError(
            f"{display(path)} does not import: {type(exc).__name__}: {exc}. "
            f"Run `{python_command()} {display(path)}` to see the full error."
        ) from exc
    if not callable(getattr(module, "create_app", None)):
        raise LessonLoadError(f"{display(path)} has no create_app(**options) function; every lesson needs one.")
    return module


def use_a_throwaway_secret() -> None:
    """Lessons 05 on warn loudly at import when SESSION_SECRET is unset (their development fallback is
    published). Checks are not a deployment: they get a throwaway secret, so that the warning means
    something where it shows. Tests of that warning remove the variable themselves."""
    import os

    os.environ.setdefault("SESSION_SECRET", "pytest-throwaway-secret-" + os.urandom(16).hex())


_MODULE_NAME = re.compile(r"course_target_(\d\d_\w+?)_[0-9a-f]{10}\b")


def readable_names(text: str) -> str:
    """``text`` with the module names ``load_app_module`` makes (``course_target_01_raw_cookies_3f2a...``,
    in an AttributeError, say) as the student knows them: ``01_raw_cookies/app.py``."""
    return _MODULE_NAME.sub(lambda match: f"{match.group(1)}/app.py", text) if "course_target_" in text else text


def display(path: Path) -> str:
    """A path as the reader knows it: relative to the repository when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
