"""The grader's class files and fair credit: gradebook.csv, --merge, student names, same-code flags,
the histogram, and each exercise checked with the reference's version of the others (hybrid.py).

The hybrid transform is checked on every lesson as pure source; its teeth (a hybrid of the starter
still fails the exercise's tests) are checked by running them, one lesson per test. The class
files come from one small class graded on lesson 01 (each test at most 5 s).
"""
from __future__ import annotations

import ast
import csv
import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from course import ROOT
from course.lesson import manifest
from course.tools import results, teeth, term
from course.tools.grading import credit, same
from course.tools.grading.find import Submission, file_stem, find_submissions
from course.tools.grading.hybrid import HybridError, find, hybrid, not_started, splice
from course.tools.grading.plan import Plan, collect
from course.tools.grading.run import run_submission
from course.tools.grading.score import score
from course.tools.loader import load_app_module
from course.tools.term import _TODO
from tests.fixtures import submissions as build

SLUG = "01_raw_cookies"
LESSON = manifest.lesson("01")
POINTS = {ex.id: ex.points for ex in LESSON.exercises}
EXERCISES = [(lesson.slug, ex.id) for lesson in manifest.lessons() for ex in lesson.exercises]


def solution(slug: str) -> str:
    return build.solution_text(slug)


def starter(slug: str) -> str:
    return build.starter_text(slug)


def sharing(exercise_id: str) -> set[str]:
    """The exercises that own one of ``exercise_id``'s definitions (08.4 and 08.5 share one function)."""
    ex = manifest.exercise(exercise_id)
    return {other.id for other in manifest.lesson(ex.lesson_slug).exercises if set(other.names) & set(ex.names)}


def text_of(source: str, name: str) -> str:
    node = find(ast.parse(source), tuple(name.split(".")))[-1]
    return ast.get_source_segment(source, node)


# ---------------------------------------------------------------- the hybrid, as source

def test_every_exercise_names_definitions_that_the_starter_and_the_solution_both_have():
    for slug, exercise_id in EXERCISES:
        ex = manifest.exercise(exercise_id)
        assert ex.names, f"{exercise_id} has no names = [...] in course/lesson/manifest.toml"
        for name in ex.names:
            for what, source in (("solution", solution(slug)), ("starter", starter(slug))):
                assert find(ast.parse(source), tuple(name.split("."))), f"{exercise_id}: the {what} has no {name}"
        todo_in_starter = {found for name in ex.names for found in _TODO.findall(text_of(starter(slug), name))}
        assert exercise_id in todo_in_starter, f"{exercise_id}'s names do not hold its todo({exercise_id!r})"


@pytest.mark.parametrize("slug, exercise_id", EXERCISES)
def test_a_hybrid_of_the_solution_is_the_solution(slug, exercise_id):
    assert hybrid(solution(slug), solution(slug), exercise_id) == solution(slug)


@pytest.mark.parametrize("slug, exercise_id", EXERCISES)
def test_a_hybrid_of_the_starter_leaves_only_that_exercise_to_do_and_keeps_it_as_the_student_wrote_it(
        slug, exercise_id, tmp_path):
    made = hybrid(starter(slug), solution(slug), exercise_id)
    assert set(_TODO.findall(made)) == sharing(exercise_id), "every other exercise should be the reference's"
    for name in manifest.exercise(exercise_id).names:
        assert text_of(made, name) == text_of(starter(slug), name), f"{name} must stay the student's"
    path = tmp_path / slug / "app.py"
    path.parent.mkdir()
    path.write_text(made, encoding="utf-8")
    module = load_app_module(tmp_path, slug)                  # it imports, and builds its app
    assert callable(module.create_app) and module.app is not None


TOY_REFERENCE = '''\
"""A toy lesson."""
import json
from functools import partial

LIMIT = 3
TWICE = LIMIT * 2


class Box:
    def get(self):
        return self._clean(json.loads("[1]"))

    def put(self, value):
        raise NotImplementedError

    def _clean(self, value):
        return value[:LIMIT]


def helper():
    return partial(len, "abc")()


def create_app():
    def route():
        return TWICE + helper()
    return route


app = create_app()
'''

TOY_STUDENT = '''\
"""A toy lesson, as a student wrote it (two-space indents, no json import, no LIMIT)."""
class Box:
  def get(self):
    raise RuntimeError("todo")

  def put(self, value):
    return "mine"


def create_app():
  def route():
    return "student"
  return route


app = create_app()
'''


def test_the_splice_brings_the_imports_names_and_class_helpers_the_reference_needs(tmp_path):
    made = splice(TOY_STUDENT, TOY_REFERENCE, ["Box.get", "create_app.route", "helper"], kept=["Box.put"])
    namespace = {}
    exec(compile(made, "hybrid.py", "exec"), namespace)
    box = namespace["Box"]()
    assert box.get() == [1], "Box.get and the helper method it calls (_clean) come from the reference"
    assert box.put(1) == "mine", "the kept method stays the student's"
    assert namespace["app"]() == 6 + 3, "the route, TWICE, LIMIT and helper come from the reference"
    assert "import json" in made and "from functools import partial" in made
    assert made.startswith('"""A toy lesson, as a student wrote it'), "the student's text comes first, unchanged"
    assert "  def get(self):\n      return self._clean" in made, "re-indented under the student's two spaces"
    assert '  def put(self, value):\n    return "mine"' in made, "the student's own code keeps its text"


def test_the_splice_never_brings_in_what_the_exercise_owns():
    # The student deleted read_count (01.1); the reference's /visits (01.2) calls it: the hybrid for
    # 01.1 must not get the reference's read_count through the back door.
    tree = ast.parse(solution(SLUG))
    node = find(tree, ("read_count",))[-1]
    lines = solution(SLUG).splitlines()
    without = "\n".join(lines[:node.lineno - 1] + lines[node.end_lineno:]) + "\n"
    made = hybrid(without, solution(SLUG), "01.1")
    assert not find(ast.parse(made), ("read_count",)), "the exercise's own function was brought in"
    student = TOY_STUDENT.replace("  def put(self, value):\n    return \"mine\"\n", "")
    made = splice(student, TOY_REFERENCE, ["Box.get"], kept=["Box.put"])
    assert not find(ast.parse(made), ("Box", "put")), "a kept method was added as a missing class member"


def test_what_cannot_be_built_is_a_hybrid_error_that_says_why():
    with pytest.raises(HybridError, match="does not parse"):
        hybrid("def broken(:\n", solution(SLUG), "01.2")
    no_route = TOY_STUDENT.replace("  def route():\n    return \"student\"\n  return route\n", "  return None\n")
    with pytest.raises(HybridError, match="no create_app.route"):
        splice(no_route, TOY_REFERENCE, ["create_app.route"])
    with pytest.raises(HybridError, match="overlap"):
        splice(TOY_STUDENT, TOY_REFERENCE, ["Box"], kept=["Box.put"])


# ---------------------------------------------------------------- the hybrid's teeth, by running the tests

WITHOUT_TEETH_IN_CONTEXT: dict[str, str] = {
    # test id: why it passes when its exercise is still the starter's and the lesson's other
    # exercises are done (it checks a "do nothing" case, which the starter's todo(...) also does).
    # hybrid.not_started gives such an exercise 0 whatever passes, but a started, wrong attempt
    # would earn the test: better to give it teeth (as lesson 04's and 08's were) than to list it.
}


@pytest.mark.parametrize("slug", [lesson.slug for lesson in manifest.lessons()])
def test_a_hybrid_of_the_starter_earns_nothing_for_its_exercise(slug, tmp_path):
    """Every other exercise done right, this one the starter's: it earns 0, and its tests fail.

    (A hybrid of the solution is the solution, above, and the solution passes: the rest of the suite.)
    """
    lesson = manifest.lesson(slug)
    plan = Plan([lesson], collect([lesson]), test_timeout=30, timeout=900)
    start = teeth.shipped_starter(slug).decode("utf-8")
    folder = tmp_path / "starter"
    build.write(folder, slug, start)
    rounds = credit.build_rounds(folder, {slug: [ex.id for ex in lesson.exercises]}, tmp_path / "hybrids", [])
    records, points = [], {}
    for number, (lessons_dir, held) in enumerate(rounds, start=1):
        exercise_id = held[slug]
        tests = [t for t in plan.tests if t.exercise == exercise_id]
        sub_plan = Plan([lesson], tests, plan.test_timeout, plan.timeout, only_these_tests=True)
        run = run_submission(Submission("starter", folder, lessons_dir), sub_plan, tmp_path / f"run-{number}",
                             threading.Event())
        records += run.records
        untouched = not_started((lessons_dir / slug / "app.py").read_text(encoding="utf-8"), start, slug)
        graded = score(sub_plan, run, {}, not_started=untouched)[0]
        points[exercise_id] = next(e.points for e in graded.exercises if e.exercise.id == exercise_id)
    skipped = [r["nodeid"] for r in records if r["outcome"] == "skipped"]
    if skipped and not os.environ.get("COURSE_REQUIRE_SERVICES"):
        pytest.skip(f"{len(skipped)} tests skipped (a service is missing?): {skipped[:3]}")
    assert set(points) == {ex.id for ex in lesson.exercises}, "every exercise's tests should have run on its hybrid"
    assert not any(points.values()), f"an exercise left as the starter has it earned points: {points}"
    passing = {nodeid for nodeid, record in results.merge(records).items() if record["outcome"] == "passed"}
    known = {nodeid for nodeid in WITHOUT_TEETH_IN_CONTEXT if f"test_{slug}.py" in nodeid}
    assert passing == known, ("tests that pass with their exercise left as the starter has it (and the rest done) "
                              f"should be listed in WITHOUT_TEETH_IN_CONTEXT, with why: {sorted(passing ^ known)}")


# ---------------------------------------------------------------- not started: the starter's code earns 0

def test_an_exercise_still_the_starters_code_is_not_started_and_a_partly_done_one_is():
    slug = "08_store_backends"
    done_08_4 = solution(slug).replace('return "413 Content Too Large", str(exc)', 'raise todo("08.5")')
    assert done_08_4 != solution(slug)
    assert not_started(done_08_4, starter(slug), slug) == {"08.5"}, "a shared function still saying todo(08.5)"
    reformatted = starter(slug).replace("# TODO(08.1)", "# my notes\n    # TODO(08.1)")
    assert not_started(reformatted, starter(slug), slug) == {e.id for e in manifest.lesson(slug).exercises}
    # 03.1: one of MemoryStore's seven methods written; the rest still raise todo("03.1"): started
    slug = "03_session_ids"
    one_method = starter(slug).replace('''        """How many live records there are."""
        raise todo("03.1")''', '''        """How many live records there are."""
        return len(self.records)''')
    assert one_method != starter(slug)
    assert "03.1" not in not_started(one_method, starter(slug), slug)
    assert not_started(solution(slug), starter(slug), slug) == set()


# ---------------------------------------------------------------- names

def test_a_copy_wrapped_in_a_folder_is_graded_under_the_students_name(tmp_path):
    build.solved(tmp_path / "alice" / "web-sessions-main" / "lessons", SLUG)
    build.solved(tmp_path / "class" / "bo" / "web-sessions-main" / "lessons", SLUG)
    build.solved(tmp_path / "class" / "cy" / "download" / "web-sessions-main", SLUG)
    (tmp_path / "class" / "no code").mkdir()
    found, notes = find_submissions([str(tmp_path / "alice"), str(tmp_path / "class")])
    assert [(s.name, s.lessons_dir) for s in found] == [
        ("alice", tmp_path / "alice" / "web-sessions-main" / "lessons"),
        ("bo", tmp_path / "class" / "bo" / "web-sessions-main" / "lessons"),
        ("cy", tmp_path / "class" / "cy" / "download" / "web-sessions-main")]
    assert any("holds 2 submissions" in n for n in notes) and any("no code" in n and "not graded" in n for n in notes)


def test_student_file_names_are_stable_and_never_shared():
    assert file_stem("ann_lee") == "ann_lee" and file_stem("ann lee") == file_stem("ann lee") != "ann_lee"
    assert file_stem("ann lee").startswith("ann_lee-") and "/" not in file_stem("../x/y")
    names = ["ann lee", "ann_lee", "Ann_Lee", "ann/lee", file_stem("ann lee")]
    paths = {name: Path("/nowhere") / str(i) for i, name in enumerate(names)}
    submissions = [Submission(name, path, None) for name, path in paths.items()]
    from course.tools.grading.find import _with_files

    notes: list[str] = []
    named = _with_files(submissions, {}, notes)
    stems = [s.file_name.casefold() for s in named]
    assert len(set(stems)) == len(names), f"two students share a file: {stems}"
    assert notes, "a renamed file is noted for the instructor"
    again = _with_files(submissions[:1], {"ann_lee": "ann_lee"}, [])
    assert again[0].file_name == named[0].file_name, "the same student gets the same file name in another run"


# ---------------------------------------------------------------- same code

def test_the_same_code_is_the_same_whatever_the_layout_comments_and_docstrings():
    code = solution(SLUG)
    relaid = code.replace("    return 0\n", "    return (0)   # nothing\n").replace('"""Exercise 01.3', '"""Mine 01.3')
    relaid = "# my copy\n\n" + relaid.replace("\n\n\n", "\n\n\n\n")
    assert relaid != code and same.fingerprint(relaid) == same.fingerprint(code)
    assert same.fingerprint(code.replace("MAX_VISITS = 999_999_999", "MAX_VISITS = 99")) != same.fingerprint(code)
    broken = "def f(:\n    pass\n"
    assert same.fingerprint(broken + "# note\n") == same.fingerprint(broken), "not parsing: compared by tokens"


# ---------------------------------------------------------------- one class, graded on lesson 01

def grade(paths, out, *extra):
    command = [sys.executable, "-m", "course", "grade", *map(str, paths), "--out", str(out), "--lessons", "01",
               "--jobs", "2", "--test-timeout", "5", "--timeout", "60", "--no-progress", *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


ODD_NAME = '=cmd,"x"'
QUOTED_ODD_NAME = '"\'=cmd,""x""",'           # the cell: quoted, its quotes doubled, a ' first


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradebook")
    c = root / "class"
    relaid = "# alice's copy\n" + solution(SLUG).replace("    return 0\n", "    return (0)  # not a count\n")
    build.write(c / "alice" / "web-sessions-main" / "lessons", SLUG, relaid)
    build.partly(c / "ann lee" / "lessons", SLUG, done={"01.1", "01.2"})
    build.solved(c / "ann_lee" / "lessons", SLUG)
    build.partly(c / "bob" / "lessons", SLUG, done={"01.2", "01.3", "01.4"})      # 01.1 not done
    renamed = solution(SLUG).replace("wanted", "choice")
    for name in ("carl", "dina"):
        build.write(c / name / "lessons", SLUG, renamed)
    build.starter(c / "émile" / "lessons", SLUG)
    build.partly(c / ODD_NAME, SLUG, done={"01.1"})
    (c / "gil" / "lessons" / SLUG).mkdir(parents=True)
    (c / "gil" / "lessons" / SLUG / "app.py").symlink_to(ROOT / "solutions" / SLUG / "app.py")
    out = root / "out"
    proc = grade(sorted(c.iterdir()), out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root, out, proc


def gradebook(out: Path) -> list[dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def student(out: Path, name: str) -> dict:
    files = {json.loads(p.read_text(encoding="utf-8"))["student"]: p for p in (out / "json").glob("*.json")}
    return json.loads(files[name].read_text(encoding="utf-8"))


EXPECTED_TOTALS = {"alice": 9, "ann lee": 5, "ann_lee": 9, "bob": 7, "carl": 9, "dina": 9, "émile": 0,
                   "'" + ODD_NAME: 2}


def test_the_gradebook_is_one_rfc_4180_row_per_student_that_reads_back_the_same(klass):
    _, out, _ = klass
    raw = (out / "gradebook.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "no byte-order mark"
    text = raw.decode("utf-8")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", ""), "RFC 4180: CRLF line ends"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["student", "total", "max", "lesson 01", "status", "flags"]
    assert len(rows) == 1 + len(EXPECTED_TOTALS) + 1          # gil too (a symlink: graded by the sandbox's rules)
    again = io.StringIO()
    csv.writer(again, lineterminator="\r\n").writerows(rows)
    assert again.getvalue() == text, "a csv reader and writer give back the same file"
    table = {row["student"]: row for row in gradebook(out)}
    for name, total in EXPECTED_TOTALS.items():
        row = table[name]
        assert float(row["total"]) == total and row["max"] == str(LESSON.max_points), (name, row)
        assert float(row["lesson 01"]) == float(row["total"])
    for row in table.values():
        for key in ("total", "max", "lesson 01"):
            assert row[key].replace(".", "", 1).isdigit(), f"not a plain decimal: {row[key]!r}"
    assert (out / "grades.csv").read_text(encoding="utf-8").startswith("student,lesson,exercise,points")


def test_a_name_a_spreadsheet_would_run_as_a_formula_stays_text(klass):
    _, out, _ = klass
    assert student(out, ODD_NAME)["points"] == 2, "the real name is kept in the student's JSON"
    assert "'" + ODD_NAME in {row["student"] for row in gradebook(out)}
    assert QUOTED_ODD_NAME in (out / "gradebook.csv").read_text(encoding="utf-8"), "quoted as RFC 4180 says"


def test_a_wrapped_copy_is_the_students_and_similar_names_get_their_own_files(klass):
    _, out, proc = klass
    names = {row["student"] for row in gradebook(out)}
    assert "alice" in names and "web-sessions-main" not in names
    assert "graded as 'alice'" in proc.stderr
    ann, ann_ = student(out, "ann lee"), student(out, "ann_lee")
    assert ann["file"] != ann_["file"] and (ann["points"], ann_["points"]) == (5, 9)
    for record in (ann, ann_):
        text = (out / "feedback" / f"{record['file']}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# Feedback for {record['student']}\n")
        assert f"**{record['points']} of {LESSON.max_points} points**" in text


def test_copies_of_the_reference_or_of_each_other_are_flagged(klass):
    _, out, _ = klass
    flags = {row["student"]: row["flags"] for row in gradebook(out)}
    assert flags["alice"] == "lesson 01 = the reference, ann_lee", "layout and comments do not hide a copy"
    assert flags["ann_lee"] == "lesson 01 = the reference, alice"
    assert flags["carl"] == "lesson 01 = dina" and flags["dina"] == "lesson 01 = carl"
    assert "symlink" in flags["gil"]
    assert flags["émile"] == "" and flags["bob"] == "" and flags["ann lee"] == "", "an untouched starter is no copy"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Same code" in summary and "- **carl**: lesson 01 = dina" in summary
    assert "| carl | 9 | 9/9 | ok | lesson 01 = dina |" in summary


def test_an_older_starter_is_nobodys_work_and_an_older_reference_is_still_the_reference():
    """Students clone at different times: two lessons left as last month's starter are no copy of
    each other, and last month's reference solution is still the reference."""
    current_starter, current_reference = same.starter_fingerprint(SLUG), same.reference_fingerprint(SLUG)
    exercises = {exercise.id for exercise in manifest.lesson(SLUG).exercises}
    starters = [text for text in same.history(f"lessons/{SLUG}/app.py")
                if term.todo_ids(text) >= exercises and same.fingerprint(text) != current_starter]
    references = [text for text in same.history(f"solutions/{SLUG}/app.py")
                  if same.fingerprint(text) != current_reference]
    if not starters or not references:
        pytest.skip("this clone holds no earlier starter or reference of lesson 01 (a shallow clone?)")
    prints = {"ann": {SLUG: same.fingerprint(starters[-1])}, "bob": {SLUG: same.fingerprint(starters[-1])},
              "cy": {SLUG: same.fingerprint(references[-1])}}
    found = same.flags(prints, {SLUG: "01"})
    assert found == {"ann": [], "bob": [], "cy": ["lesson 01 = the reference"]}, found


def test_fair_credit_counts_an_exercise_whatever_the_others(klass, tmp_path):
    root, out, _ = klass
    bob = student(out, "bob")
    visits = bob["lessons"][0]["exercises"][1]
    assert visits["status"] == "pass" and visits["fair"] > 0, "01.2 passes with the reference's read_count"
    assert bob["lessons"][0]["exercises"][0]["status"] == "todo" and bob["points"] == 7
    text = (out / "feedback" / "bob.md").read_text(encoding="utf-8")
    assert "passed when the lesson's other exercises were the course's own" in text
    alone = grade([root / "class" / "bob"], tmp_path / "unfair", "--no-fair-credit")
    assert alone.returncode == 0, alone.stderr
    assert student(tmp_path / "unfair", "bob")["points"] < 7, "without fair credit, 01.2 depends on 01.1"


def test_fair_credit_counts_an_exercise_whose_dependency_is_started_but_wrong(tmp_path):
    # read_count (01.1) started, wrongly: every count reads as 0. 01.2 counts visits with it, right:
    # it fails as the copy is, and passes in the hybrid, where 01.1 is the reference's.
    build.patched(tmp_path / "class" / "cy" / "lessons", SLUG, function="read_count", body="return 0")
    proc = grade([tmp_path / "class" / "cy"], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    cy = student(tmp_path / "out", "cy")
    read_count, visits = cy["lessons"][0]["exercises"][:2]
    assert read_count["status"] != "pass" and visits["status"] == "pass" and visits["fair"] > 0, (read_count, visits)
    text = (tmp_path / "out" / "feedback" / f"{cy['file']}.md").read_text(encoding="utf-8")
    assert "passed when the lesson's other exercises were the course's" in text


def test_the_histogram_is_a_valid_png(klass):
    _, out, _ = klass
    data = (out / "histogram.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, kinds = 8, []
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        kinds.append(kind)
        at += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    from matplotlib import image

    assert image.imread(out / "histogram.png").shape[:2] == (height, width)
    assert "![The class's totals](histogram.png)" in (out / "summary.md").read_text(encoding="utf-8")


def test_merge_updates_the_students_graded_again_and_keeps_the_others(klass, tmp_path):
    root, _, _ = klass
    out = tmp_path / "out"
    first = grade([root / "class" / "alice", root / "class" / "bob", root / "class" / "ann lee"], out)
    assert first.returncode == 0, first.stderr
    before = {row["student"]: row for row in gradebook(out)}
    alice_feedback = (out / "feedback" / "alice.md").read_text(encoding="utf-8")
    build.solved(tmp_path / "again" / "bob" / "lessons", SLUG)               # bob hands in again, solved
    merged = grade([tmp_path / "again" / "bob"], out, "--merge")
    assert merged.returncode == 0, merged.stderr
    assert "keeping the 2 student(s) graded earlier" in merged.stderr
    after = {row["student"]: row for row in gradebook(out)}
    assert sorted(after) == sorted(before) == ["alice", "ann lee", "bob"]
    assert after["ann lee"] == before["ann lee"]
    assert {**after["alice"], "flags": ""} == {**before["alice"], "flags": ""}
    assert after["bob"]["total"] == "9" and before["bob"]["total"] == "7"
    assert (out / "feedback" / "alice.md").read_text(encoding="utf-8") == alice_feedback
    assert after["bob"]["flags"] == "lesson 01 = the reference, alice", "flags are computed over the merged class"
    assert after["alice"]["flags"] == "lesson 01 = the reference, bob"
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "# Class summary: 3 submission(s)" in summary and "| ann lee |" in summary
    other_lessons = subprocess.run(
        [sys.executable, "-m", "course", "grade", str(tmp_path / "again" / "bob"), "--out", str(out), "--lessons",
         "02", "--merge", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert other_lessons.returncode != 0 and "graded on lesson(s) 01" in other_lessons.stderr
    assert "Traceback" not in other_lessons.stderr
    assert {row["student"] for row in gradebook(out)} == set(after), "a refused merge changes nothing"
    alone = grade([tmp_path / "again" / "bob"], out)
    assert alone.returncode == 0 and [row["student"] for row in gradebook(out)] == ["bob"], \
        "without --merge, --out holds this grading only"
