"""The mutation tool (course/tools/mutate.py): its operators, and a fixed sample run as CI runs it.

The operator tests mutate a tiny function each and look for the expected change. The sample tests
run a seeded handful of mutants of lesson 01's solution and of a kit module against their killer
tests: every one must be killed, except those recorded as equivalent, so a test that loses its teeth
shows here.
"""
from __future__ import annotations

import ast
import json
import os
import textwrap

import pytest

from course import ROOT
from course.lesson import manifest
from course.tools import mutate


def mutations(tmp_path, code: str, functions=None, name="subject.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return [m.mutation for m in mutate.mutants_of(path, functions)]


# ---------------------------------------------------------------- the operators

def test_comparisons_are_turned_round(tmp_path):
    found = mutations(tmp_path, """
        def f(a, b):
            return a < b and a == b and a is not None and a in b
    """)
    for expected in ("a < b -> (a <= b)", "a == b -> (a != b)", "a is not None -> (a is None)",
                     "a in b -> (a not in b)"):
        assert expected in found, f"no mutant {expected!r} among {found}"


def test_and_becomes_or_and_each_condition_can_be_left_out(tmp_path):
    found = mutations(tmp_path, """
        def f(a, b, c):
            return a and b and c
    """)
    assert "a and b and c -> (a or b or c)" in found
    assert {"a and b and c -> (b and c)", "a and b and c -> (a and c)", "a and b and c -> (a and b)"} <= set(found)


def test_not_is_removed(tmp_path):
    assert "not a -> a" in mutations(tmp_path, """
        def f(a):
            return not a
    """)


def test_constants_change(tmp_path):
    found = mutations(tmp_path, """
        def f():
            return (7, 2.5, "abc", b"x", True, "")
    """)
    expected = ["7 -> 8", "7 -> 6", "2.5 -> 3.5", "2.5 -> 1.5", "\"abc\" -> ''", "\"abc\" -> 'XX'", "b\"x\" -> b''",
                "b\"x\" -> b'XX'", "True -> False", "\"\" -> 'XX'"]
    assert set(expected) <= set(found), f"missing: {set(expected) - set(found)}"


def test_a_return_value_becomes_none_and_statements_are_deleted(tmp_path):
    found = mutations(tmp_path, """
        def f(items):
            items.append(1)
            if items:
                return items
            return len(items)
    """)
    assert "items.append(1) -> pass" in found
    assert "return items -> return None" in found
    assert "return items -> pass" in found, "an early return can be deleted (the code falls through)"
    assert "return len(items) -> return None" in found
    assert "return len(items) -> pass" not in found, "deleting the last return is the same as returning None"


def test_arithmetic_is_swapped(tmp_path):
    found = mutations(tmp_path, """
        def f(a, b):
            a += 1
            return a * b - a // b
    """)
    assert "a += 1 -> a -= 1" in found
    assert "a * b -> (a / b)" in found
    assert "a * b - a // b -> (a * b + a // b)" in found


def test_an_if_guard_is_removed(tmp_path):
    assert "a > 3 -> True" in mutations(tmp_path, """
        def f(a):
            if a > 3:
                a = 3
            return a
    """)


def test_slice_bounds_are_dropped(tmp_path):
    found = mutations(tmp_path, """
        def f(text):
            return text[1:5]
    """)
    assert "1:5 -> :5" in found and "1:5 -> 1:" in found


def test_arguments_are_left_out_of_calls_to_kit_functions_only(tmp_path):
    found = mutations(tmp_path, """
        from course.kit.signing import sign_cookie
        from course.kit import cookies

        def f(sid, secret):
            print(sid, secret)
            return sign_cookie(sid, secret=secret) + cookies.encode_value(sid)
    """)
    assert "sign_cookie(sid, secret=secret) -> sign_cookie(secret=secret)" in found
    assert "sign_cookie(sid, secret=secret) -> sign_cookie(sid)" in found
    assert "cookies.encode_value(sid) -> cookies.encode_value()" in found
    assert not any(m.startswith("print(sid, secret) -> print(") for m in found), "print is not a kit function"


def test_mutants_that_do_not_compile_are_dropped(tmp_path):
    found = mutations(tmp_path, """
        def f():
            x = 1
            def g():
                nonlocal x
                x = 2
            return g
    """, functions=["f"])
    assert "x = 1 -> pass" not in found, "without x = 1, nonlocal x is a SyntaxError: that mutant must be dropped"
    assert "1 -> 2" in found


def test_docstrings_annotations_and_other_functions_are_left_alone(tmp_path):
    found = mutations(tmp_path, """
        from __future__ import annotations

        def f(a: int = 5) -> str:
            '''A docstring.'''
            return "x"

        def g():
            return 1
    """, functions=["f"])
    assert sorted(found) == sorted(["return \"x\" -> return None", "\"x\" -> ''", "\"x\" -> 'XX'"]), found


def test_a_mutant_changes_only_its_own_span(tmp_path):
    path = tmp_path / "subject.py"
    path.write_text("def f(a):\n    # a comment stays\n    return a == 'é'  # so does this\n", encoding="utf-8")
    (mutant,) = [m for m in mutate.mutants_of(path) if m.operator == "compare"]
    assert mutant.source == "def f(a):\n    # a comment stays\n    return (a != 'é')  # so does this\n"
    assert (mutant.line, mutant.function) == (3, "f")


def test_each_mutant_is_a_different_program(tmp_path):
    path = tmp_path / "subject.py"
    path.write_text("def f(a):\n    return a[0:1] + a[0:1]\n", encoding="utf-8")
    dumps = [ast.dump(ast.parse(m.source)) for m in mutate.mutants_of(path)]
    assert len(dumps) == len(set(dumps))
    assert ast.dump(ast.parse(path.read_text())) not in dumps


def test_two_mutants_that_read_alike_on_one_line_are_two_mutants(tmp_path):
    """``1 < n and n - 1``: "1 -> 2" twice on one line. Were they equal, the run's outcomes (a dict keyed
    by mutant) would give both the fate of whichever finished last."""
    path = tmp_path / "subject.py"
    path.write_text("def f(n):\n    return 1 < n and n - 1\n", encoding="utf-8")
    twins = [m for m in mutate.mutants_of(path) if m.mutation == "1 -> 2"]
    assert len(twins) == 2 and twins[0] != twins[1] and len({*twins}) == 2
    assert sorted(m.column for m in twins) == [11, 25]
    record = [{"file": twins[0].file, "function": "f", "line": 2, "column": 25, "mutant": "1 -> 2", "why": "x" * 21}]
    assert mutate.match_equivalent(twins, record) == {next(m for m in twins if m.column == 25): "x" * 21}


# ---------------------------------------------------------------- what is mutated

@pytest.mark.parametrize(("description", "expected"), [
    ("function read_count", ["read_count"]),
    ("route GET /visits (function visits)", ["create_app.visits"]),
    ("SessionMiddleware.load and SessionMiddleware.save", ["SessionMiddleware.load", "SessionMiddleware.save"]),
    ("class Store (get, set)", ["Store.__init__", "Store.get", "Store.set"]),
    ("functions read_count and visits", ["read_count", "create_app.visits"]),
])
def test_the_manifest_names_the_functions_to_mutate(description, expected):
    tree = ast.parse(textwrap.dedent("""
        def read_count(value): return 0
        def create_app():
            def visits(): return 1
            def dashboard(): return 2
        class Store:
            def __init__(self): pass
            def get(self): return 1
            def set(self): return 2
        class SessionMiddleware:
            def load(self): pass
            def save(self): pass
            def get(self): pass
    """))
    assert mutate.exercise_functions(tree, description) == expected


@pytest.mark.parametrize("lesson", [each for each in manifest.lessons()
                                    if (ROOT / "solutions" / each.slug / "app.py").exists()], ids=lambda each: each.id)
def test_every_exercise_of_every_solution_has_functions_to_mutate(lesson):
    subject = mutate.lesson_subject(lesson.id)
    assert subject.functions
    assert subject.mutants(), f"lesson {lesson.id}: no mutants of {subject.functions}"


def test_the_equivalent_mutants_are_recorded_with_a_reason_and_still_exist():
    record = mutate.equivalent_record()
    by_file: dict[str, list] = {}
    for entry in record:
        assert {"file", "line", "mutant", "why"} <= set(entry), f"incomplete record: {entry}"
        assert len(entry["why"]) > 20, f"say why {entry['file']}:{entry['line']} {entry['mutant']} is equivalent"
        by_file.setdefault(entry["file"], []).append(entry)
    for file, entries in by_file.items():
        mutants = mutate.mutants_of(ROOT / file, _functions_of(file), own_kit=file.startswith("course/kit/"))
        matched = mutate.match_equivalent(mutants, entries)
        stale = [e for e in entries if not any(matched.get(m) == e["why"] for m in mutants
                                               if m.mutation == e["mutant"])]
        assert not stale, (f"{file}: these recorded equivalent mutants no longer exist (the code changed): update "
                           f"course/tools/mutants_equivalent.toml: {stale}")


def _functions_of(file: str):
    if file.startswith("solutions/"):
        return mutate.lesson_subject(file.split("/")[1]).functions
    return None


# ---------------------------------------------------------------- a fixed sample, as CI runs it

def _killed_or_equivalent(report: mutate.Report) -> list[str]:
    return [f"{o.mutant.where} {o.mutant.function}: {o.mutant.mutation} ({o.status})"
            for f in report.files for o in f.outcomes
            if o.status not in ("killed", "timeout") and not o.equivalent]


def test_a_sample_of_lesson_01s_mutants_is_killed():
    report = mutate.mutate([mutate.lesson_subject("01")], sample=12, seed=17)
    assert sum(len(f.outcomes) for f in report.files) == 12
    survivors = _killed_or_equivalent(report)
    assert not survivors, f"lesson 01's exercise tests accept these wrong solutions: {survivors}"
    assert report.cpu_seconds < 60, f"the sample took {report.cpu_seconds:.0f} s of CPU"


KIT_SAMPLE_TESTS = ("tests/test_kit_signing.py", "tests/test_kit_properties.py")
"""The killers of the kit sample: signing's own unit and property tests (fast: no server, no store)."""


def test_a_sample_of_the_signing_kit_mutants_is_killed():
    missing = [name for name in KIT_SAMPLE_TESTS if not (ROOT / name).exists()]
    if missing:
        message = f"the kit sample needs the kit's unit tests, and {missing} are missing"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    report = mutate.mutate([mutate.kit_subject("signing")], sample=12, seed=17, kit_tests=KIT_SAMPLE_TESTS)
    assert sum(len(f.outcomes) for f in report.files) == 12
    survivors = _killed_or_equivalent(report)
    assert not survivors, f"the kit's tests accept these wrong versions of course/kit/signing.py: {survivors}"
    assert report.cpu_seconds < 60, f"the sample took {report.cpu_seconds:.0f} s of CPU"


def test_a_mutant_no_test_notices_is_reported_as_surviving():
    # Lesson 01's tests reach course/kit/cookies.py only through the inspector on GET /: most mutants of
    # parse_cookie_header survive them. The tool must say so rather than call them killed.
    subject = mutate.kit_subject("cookies")
    report = mutate.mutate([subject], kit_tests=("tests/test_01_raw_cookies.py",),
                           only=lambda m: m.function == "cookie_header")
    statuses = {o.status for f in report.files for o in f.outcomes}
    assert statuses, "no mutant of cookie_header ran"
    assert statuses & {"survived", "not covered"}, statuses


def test_survivors_of_an_earlier_run_are_read_back_and_a_sample_is_refused(tmp_path):
    survivor = {"file": "solutions/01_raw_cookies/app.py", "function": "read_count", "line": 33, "mutation": "a -> b"}
    report = {"files": [{"survivors": [survivor], "equivalent_survivors": []}], "sample": False}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    assert mutate.survivors_of(path) == {("solutions/01_raw_cookies/app.py", "read_count", 33, "a -> b")}
    path.write_text(json.dumps({**report, "sample": True}), encoding="utf-8")
    with pytest.raises(mutate.MutateError, match="sample"):
        mutate.survivors_of(path)


def test_killers_that_match_no_test_file_are_refused(capsys):
    import argparse
    parser = argparse.ArgumentParser()
    mutate.add_arguments(parser)
    code = mutate.command(parser.parse_args(["--kit", "signing", "--killers", "tests/test_no_such_file.py"]))
    assert code == 2
    assert "--killers tests/test_no_such_file.py: no test file matches" in capsys.readouterr().err
