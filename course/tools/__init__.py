"""The student's and instructor's tools, and the course's checks of itself.

``cli`` and ``term`` (``python -m course``), ``results`` (what a test run says about each exercise,
for ``check`` and the grader alike), ``plugins`` (the pytest plugins both add), ``grading`` (the
grader, one module per stage), ``teeth`` (every exercise test fails on the starter), ``loader`` (a
lesson's app.py by path), ``pytest_plugin``, ``crashes`` (an exception in the app under test, shown
with the student's own frames), ``testing`` (helpers for tests), ``services`` (which
store servers are reachable), ``browser`` (headless Chromium), ``faults`` (a TCP relay that cuts a
real store), ``bench`` and ``notebook`` (the walkthroughs' helpers).
"""
