"""The course's own toolkit.

Everything a lesson needs but should not have to show: loading a lesson by path, serving an app on
a free port, the shared lesson page with its cookie inspector, the manifest, the pytest plugin, the
student and instructor command line (``python -m course``), and the finished reference pieces that
later lessons build on (``course.signing`` after lesson 02, and so on).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: lessons/, solutions/, notebooks/ and tests/ live here."""
