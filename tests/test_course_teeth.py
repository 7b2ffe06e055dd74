"""The course checks itself: its exercise tests bite.

* every exercise test fails against the shipped starter (a test that passes on unsolved code
  proves nothing), and every exercise in the manifest has at least one test;
* every decoy (a solution with one typical mistake, tests/decoys/) fails at least one test.

The passing half, every test passes on the solutions, is the rest of the suite (--target solutions).
The Makefile runs the suite with `--dist loadfile`, so one worker runs this file and its session
fixtures (the starter run, the decoy run) run once.
"""
import os

import pytest

from course.lesson import manifest
from course.tools import teeth

LESSONS = [lesson.slug for lesson in manifest.lessons()]
DECOYS = teeth.decoys()


def _selected(session, param):
    """The values of ``param`` among the tests this run will execute (``-k`` and xdist aware)."""
    return {item.callspec.params[param] for item in session.items
            if hasattr(item, "callspec") and param in item.callspec.params}


@pytest.fixture(scope="session")
def starter_run(request, tmp_path_factory):
    # Only the lessons whose tests were selected: `-k 03_session_ids` runs one lesson's starter.
    return teeth.run_starters(tmp_path_factory.mktemp("teeth"), only=_selected(request.session, "slug"))


@pytest.fixture(scope="session")
def decoy_run(request, tmp_path_factory):
    chosen = {decoy.id for decoy in _selected(request.session, "decoy")}
    return teeth.run_decoys(tmp_path_factory.mktemp("decoys"), only=chosen)


@pytest.mark.parametrize("slug", LESSONS)
def test_every_exercise_test_fails_on_the_starter(starter_run, slug):
    records, unavailable = starter_run
    if slug in unavailable:
        if os.environ.get("CI"):
            pytest.fail(unavailable[slug])
        pytest.skip(unavailable[slug])
    mine = [r for r in records if f"test_{slug}.py" in r["nodeid"]]
    assert mine, f"no exercise test of {slug} ran against its starter"
    passing = teeth.passing_on_starter(mine)
    assert not passing, ("these exercise tests pass (or skip) on the unsolved starter, so they prove "
                         f"nothing: {passing}")


@pytest.mark.parametrize("slug", LESSONS)
def test_every_exercise_has_tests(starter_run, slug):
    records, unavailable = starter_run
    if slug in unavailable:
        pytest.skip(unavailable[slug])
    tested = {r["exercise"] for r in records if f"test_{slug}.py" in r["nodeid"]}
    untested = [ex.id for ex in manifest.lesson(slug).exercises if ex.id not in tested]
    assert not untested, f"exercises with no test: {untested}"


@pytest.mark.parametrize("decoy", DECOYS, ids=[d.id for d in DECOYS])
def test_every_decoy_fails(decoy_run, decoy):
    records = decoy_run[decoy.id]
    assert not isinstance(records, str), records
    assert records, f"no exercise test ran against decoy {decoy.id}"
    assert teeth.caught(records), \
        f"decoy {decoy.id!r} ({decoy.mistake}) passes every exercise test: add a test that catches it"


def test_the_teeth_check_itself_can_fail(tmp_path):
    # Run lesson 01's exercise tests against the *solution* as if it were a starter or a decoy:
    # the check must flag every test as toothless and the "decoy" as not caught.
    records = teeth.run_exercise_tests(teeth.ROOT / "solutions", ["01_raw_cookies"], tmp_path / "r.json")
    assert records and len(teeth.passing_on_starter(records)) == len(records)
    assert not teeth.caught(records)
