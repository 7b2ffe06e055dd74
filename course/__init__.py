"""The course's own package, in three wings.

* :mod:`course.kit` — the session library the lessons build, finished: what lesson NN teaches by
  hand, later lessons import from here (``course.kit.signing`` after lesson 02, and so on).
* :mod:`course.lesson` — what every lesson app stands on: a fresh Bottle app whose unfinished
  exercises answer 501, the shared lesson page, the threaded server and the manifest.
* :mod:`course.tools` — the student's and instructor's tools (``python -m course``: check, hint,
  grade...) and the course's checks of itself (pytest plugin, teeth check, test helpers).

The arrows point one way: ``tools`` may use ``lesson`` and ``kit``; ``lesson`` may use ``kit``;
``kit`` imports neither.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: lessons/, solutions/, notebooks/ and tests/ live here."""
