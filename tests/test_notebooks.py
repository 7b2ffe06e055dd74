"""Every walkthrough notebook is saved without outputs, and runs from a fresh kernel.

A notebook states what it shows with ``assert``s, so running it checks it. It runs from the
repository root against the reference solutions (COURSE_TARGET=solutions).
"""
import json

import nbformat
import pytest
from nbclient import NotebookClient

from course import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_saved_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, cell in enumerate(notebook["cells"])
             if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))]
    assert not dirty, (f"{path.name}: cells {dirty} were saved with outputs; clear them "
                       "(Jupyter: Edit > Clear Outputs of All Cells) before committing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_from_a_clean_kernel(path, monkeypatch):
    monkeypatch.setenv("COURSE_TARGET", "solutions")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=90, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
