"""course.tools.browser's launch: a Chromium that is slow to start is tried again, and says so.

In a file of its own: Playwright's sync API runs one instance a thread, and the browser-claims
module keeps one open for all its tests.
"""
from __future__ import annotations

import pytest

from course.tools import browser


def test_a_chromium_launch_that_runs_out_of_time_is_tried_once_more_with_a_warning(tmp_path):
    """A loaded machine once kept Chromium from starting in 15 s, and ten tests errored at once.
    The first start here never comes (a ``sleep`` that Playwright kills when the launch runs out)."""
    real = browser.require_chromium()
    first_try = tmp_path / "first-try-done"
    slow_once = tmp_path / "chromium"
    slow_once.write_text(f'#!/bin/sh\nif [ ! -e {first_try} ]; then touch {first_try}; exec sleep 10; fi\n'
                         f'exec {real} "$@"\n')
    slow_once.chmod(0o755)
    with pytest.warns(RuntimeWarning, match="did not start in 3 s"):
        with browser.chromium(str(slow_once), timeout_ms=3000) as instance:
            assert instance.new_page().evaluate("1 + 1") == 2
    assert first_try.exists()
