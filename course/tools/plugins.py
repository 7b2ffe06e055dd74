"""pytest plugins that ``check`` and the grader's worker add to the run, in-process (``plugins=[...]``).

They are not in course.tools.pytest_plugin because a plain ``pytest`` of the course (``make test``)
wants none of them: it shows every test's own outcome and pytest's full tracebacks.
"""
from __future__ import annotations

from course.tools.results import STUCK_SIGN, TIMED_OUT_SIGN


class SkipAfterTimeout:
    """Once a test of an exercise timed out, the exercise's other tests are skipped.

    They would most likely hang the same way, one time limit each: in ``check`` the student would
    wait for nothing, and in the grader one endless loop could use up the whole submission's time
    and cost the lessons after it. What the exercise earns is what its tests earned before.
    """

    def __init__(self):
        self.stuck: set[str] = set()

    def pytest_runtest_setup(self, item):
        import pytest

        exercise = dict(item.user_properties).get("exercise")
        if exercise in self.stuck:
            pytest.skip(f"not run: {STUCK_SIGN} {exercise} timed out")

    def pytest_runtest_logreport(self, report):
        if report.failed and TIMED_OUT_SIGN in str(report.longrepr):
            exercise = dict(report.user_properties).get("exercise")
            if exercise:
                self.stuck.add(exercise)


class NativeTracebacks:
    """Short native tracebacks: the records keep the same message, and pytest's long tracebacks of
    every failing test cost more than half the time of a run against a starter."""

    def pytest_configure(self, config):
        config.option.tbstyle = "native"


class CollectErrors:
    """Keeps the collection errors, for a run whose own output is off (``-p no:terminal``)."""

    def __init__(self):
        self.errors: list[str] = []

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors.append(str(report.longrepr))
