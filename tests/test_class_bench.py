"""The class benchmark's class (course/tools/class_bench.py): the copies it builds are what it says.

The timing itself is a benchmark, not a test; what is checked here is that the class it grades
has the issue's proportions and that each kind of copy is what its name says.
"""
import ast
from collections import Counter

from course import ROOT
from course.lesson import manifest
from course.tools import class_bench, teeth


def test_a_class_of_30_has_the_issues_proportions():
    assert Counter(class_bench.kinds(30)) == {"solved": 8, "partly": 10, "untouched": 4, "broken": 8}
    assert len(class_bench.kinds(7)) == 7


def test_each_copy_is_what_its_kind_says(tmp_path):
    made = class_bench.build_class(tmp_path, 12)
    assert sorted(made) == sorted(p.name for p in tmp_path.iterdir())
    lessons = manifest.lessons()
    for name, kind in made.items():
        texts = {lesson.slug: (tmp_path / name / "lessons" / lesson.slug / "app.py").read_text() for lesson in lessons}
        solution = {lesson.slug: (ROOT / "solutions" / lesson.slug / "app.py").read_text() for lesson in lessons}
        if kind == "solved":
            assert texts == solution
        elif kind == "untouched":
            assert all(texts[slug].encode() == teeth.shipped_starter(slug) for slug in texts)
        elif kind.startswith("broken"):
            changed = [slug for slug in texts if texts[slug] != solution[slug]]
            assert len(changed) == 1, f"{name}: one broken lesson, the rest solved: {changed}"
            text = texts[changed[0]]
            if "syntax error" in kind:
                try:
                    ast.parse(text)
                except SyntaxError:
                    pass
                else:
                    raise AssertionError(f"{name}'s lesson {changed[0]} parses")
            else:
                ast.parse(text)
                sign = {"endless loop": "while True", "os._exit": "os._exit(3)", "flood": "4_000_000"}
                assert sign[kind[len("broken ("):-1]] in text
    assert {kind.split(" (")[0] for kind in made.values()} == {"solved", "partly", "untouched", "broken"}
