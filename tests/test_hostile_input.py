"""Hostile input never breaks a lesson: the corpus of tests/hostile/corpus.toml against every target.

Every Cookie header, header, raw request and body of the corpus goes to every route of every
target's reference solution (lessons in each of their modes). A target fails on any 500 or 503,
any traceback in a body, any request over 2 s of wall time or 0.5 s of server CPU. The corpus is
data: a new lesson is covered by adding its ``[[target]]``.
"""
import pytest

from course.tools import hostile, services
from course.tools.loader import load_app_module

CORPUS = hostile.load()
TARGETS = CORPUS["target"]


def target_id(target: dict) -> str:
    return target["lesson"] + (f"[{target['mode']}]" if "mode" in target else "")


def test_the_corpus_covers_every_category_with_200_inputs():
    sizes = {kind: len(CORPUS[kind]) for kind in ("cookie", "header", "raw", "body")}
    assert all(sizes.values()) and sum(sizes.values()) >= 200, sizes


@pytest.mark.parametrize("target", TARGETS, ids=[target_id(t) for t in TARGETS])
def test_no_hostile_input_breaks_the_lesson(target, course_target, tmp_path):
    options = dict(target.get("options", {}))
    for name in target.get("tmp_options", []):
        options[name] = str(tmp_path / f"{name}.sqlite3")
    if target.get("store") == "sqlite":
        options["store_url"] = f"sqlite:///{tmp_path}/sessions.db"
    elif target.get("store") == "redis":
        options["store_url"] = services.require("redis")
    module = load_app_module(course_target, target["lesson"])
    problems, sent = hostile.run_target(module.create_app, target, CORPUS, options)
    shown = "\n  ".join(p.describe() for p in problems[:40])
    assert not problems, (f"{len(problems)} of {sent} hostile requests to {target_id(target)} "
                          f"went wrong:\n  {shown}")
