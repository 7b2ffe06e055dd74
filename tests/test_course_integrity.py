"""The course agrees with its manifest, and every lesson keeps the module contract."""
import ast
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import requests

from course import ROOT
from course.lesson import manifest
from course.tools import teeth
from course.tools.loader import load_app_module

LESSONS = manifest.lessons()
SLUGS = [lesson.slug for lesson in LESSONS]


def test_manifest_and_folders_agree():
    for folder in ("lessons", "solutions"):
        on_disk = sorted(p.name for p in (ROOT / folder).iterdir() if p.is_dir() and p.name[:2].isdigit())
        assert on_disk == SLUGS, f"{folder}/ holds {on_disk}, the manifest lists {SLUGS}"
    tests = sorted(p.stem[5:] for p in (ROOT / "tests").glob("test_[0-9][0-9]_*.py"))
    assert tests == SLUGS, f"tests/ holds {tests}, the manifest lists {SLUGS}"
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks == SLUGS, f"notebooks/ holds {notebooks}, the manifest lists {SLUGS}"


def test_manifest_ids_are_ordered_and_exercises_have_points_and_hints():
    for lesson in LESSONS:
        assert lesson.slug.startswith(lesson.id + "_")
        assert lesson.exercises, f"lesson {lesson.id} has no exercises"
        for number, ex in enumerate(lesson.exercises, start=1):
            assert ex.id == f"{lesson.id}.{number}", f"exercise ids of lesson {lesson.id} go 1, 2, 3...: {ex.id}"
            assert ex.points > 0, f"{ex.id} is worth no points"
            assert len(ex.hints) >= 2 and all(h.strip() for h in ex.hints), f"{ex.id} needs progressive hints"


def test_readme_lesson_table_matches_the_manifest():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d\d)\s*\|\s*\[([^\]]+)\]\(lessons/([^/)]+)/README\.md\)", readme, re.M)
    assert rows == [(lesson.id, lesson.title, lesson.slug) for lesson in LESSONS], \
        "README.md's lesson table differs from the manifest"


@pytest.mark.parametrize("slug", SLUGS)
def test_every_lesson_has_its_text(slug):
    text = (ROOT / "lessons" / slug / "README.md").read_text(encoding="utf-8")
    assert len(text) > 800, f"lessons/{slug}/README.md is too short to teach anything"
    for ex in manifest.lesson(slug).exercises:
        assert ex.id in text, f"lessons/{slug}/README.md does not mention exercise {ex.id}"


def shipped_starter(slug: str) -> str:
    """The starter as the course ships it, from git when lessons/ holds the student's own work."""
    try:
        return teeth.shipped_starter(slug).decode("utf-8")
    except teeth.StarterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("slug", SLUGS)
def test_the_starter_marks_every_exercise_and_the_solution_none(slug):
    starter = shipped_starter(slug)
    solution = (ROOT / "solutions" / slug / "app.py").read_text(encoding="utf-8")
    for ex in manifest.lesson(slug).exercises:
        assert f'todo("{ex.id}")' in starter, f"the starter of {slug} has no todo(\"{ex.id}\")"
    assert "todo(\"" not in solution, f"solutions/{slug}/app.py still has a todo(...)"


@pytest.mark.parametrize("slug", SLUGS)
def test_the_starter_imports_what_the_solution_imports_and_todo(slug):
    # ruff.toml lets a starter import what its unwritten exercises will use (F401). This keeps that
    # honest: the solution, which ruff checks in full, imports the same names, all but todo.
    def imports(text):
        tree = ast.parse(text)
        return {(node.module if isinstance(node, ast.ImportFrom) else "", alias.name)
                for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    todo = ("course.lesson.web", "todo")
    starter = imports(shipped_starter(slug))
    solution = imports((ROOT / "solutions" / slug / "app.py").read_text(encoding="utf-8"))
    extra, missing = sorted(starter - solution - {todo}), sorted(solution - starter)
    assert todo in starter and not extra and not missing, \
        f"only in the starter: {extra}; only in the solution: {missing}"


APP_FILES = sorted((ROOT / "lessons").glob("*/app.py")) + sorted((ROOT / "solutions").glob("*/app.py"))


@pytest.mark.parametrize("path", APP_FILES,
                         ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_module_contract(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert {"create_app", "main"} <= top, f"{path}: needs create_app(**options) and main(argv=None)"
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert "app" in assigned, f"{path}: needs app = create_app() at module level"
    source = path.read_text(encoding="utf-8")
    assert '__name__ == "__main__"' in source
    for forbidden in ("bottle.route(", "@route(", "bottle.run(", "reloader=True", "default_app("):
        assert forbidden not in source, f"{path}: {forbidden} uses Bottle's global app or reloader"
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert not any(n.split(".")[0] in ("lessons", "solutions") for n in names), \
                f"{path}: a lesson never imports another lesson; put shared code in course/"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("slug", SLUGS)
def test_python_app_py_serves_the_lesson_page(slug, tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "solutions" / slug / "app.py"), "--port", str(port)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert proc.poll() is None, f"app.py exited: {proc.stdout.read()}"
                assert time.monotonic() < deadline, "app.py did not start serving within 15 s"
                time.sleep(0.05)
        assert resp.status_code == 200 and f"Lesson {slug[:2]}" in resp.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=5)
    assert f"127.0.0.1:{port}" in out, "main() prints the URL it serves on"


def test_run_on_a_taken_port_says_how_to_pick_another():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "course", "run", "01", "--port", str(port)],
                              cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "already in use" in proc.stderr and f"PORT={port + 1}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_advice_for_a_taken_port_is_the_students_whole_command_on_the_next_port():
    # It once said `make run PORT=8081` whatever the command was: the lesson, the reference and the
    # options were lost, and the advice started lesson 01 of the student's own code.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "course", "run", "04", "--solution", "--port", str(port),
                               "--option", "max_age=60", "--option", "rolling=true"],
                              cwd=ROOT, capture_output=True, text=True, timeout=20)
    advice = f"make run LESSON=04 SOLUTION=1 PORT={port + 1} OPTIONS='max_age=60 rolling=true'"
    assert proc.returncode != 0 and proc.stderr.rstrip().endswith(advice), proc.stderr


def test_run_of_an_unknown_lesson_lists_the_lessons():
    proc = subprocess.run([sys.executable, "-m", "course", "run", "99"], cwd=ROOT, capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode != 0
    assert "There is no lesson '99'" in proc.stderr and "01 (01_raw_cookies)" in proc.stderr


def test_every_requirement_is_pinned():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    unpinned = [line for line in lines
                if line and not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9_.\-]*", line)]
    assert not unpinned, f"pin these with ==: {unpinned}"


def test_recorded_starters_match_the_lessons_in_ci():
    if not os.environ.get("CI"):
        pytest.skip("only meaningful on a clean clone (CI): your lessons/ may hold your own work")
    recorded = teeth.recorded_starters()
    for slug in SLUGS:
        actual = teeth.blob_id((ROOT / "lessons" / slug / "app.py").read_bytes())
        assert recorded.get(slug) == actual, f"lessons/{slug}/app.py changed: run python -m course freeze"


@pytest.mark.parametrize("slug", SLUGS)
def test_no_page_answers_500_to_a_cookie_header_that_is_not_utf8(slug, serve_app, tmp_path, monkeypatch):
    # Bottle's request.get_header("Cookie") raises on such bytes; lessons read the header with
    # course.kit.cookies.cookie_header instead. Any client may send any bytes.
    monkeypatch.chdir(tmp_path)                      # lessons that keep files keep them here
    app = load_app_module("solutions", slug).create_app()
    url = serve_app(app)
    for path in ("/", "/visits", "/session", "/peek", "/dashboard", "/login", "/profile", "/theme"):
        resp = requests.get(url + path, headers={"Cookie": b"sid=\xff\xfe; visits=\xff; theme=\xe9"})
        assert resp.status_code < 500, f"{slug} {path}: {resp.status_code} for a non-UTF-8 Cookie header"
