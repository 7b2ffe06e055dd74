"""A real browser for the tests: headless Chromium driven by Playwright, never a browser download.

Lesson 06's browser test logs in through the HTML form and checks what only a browser can show:
the session cookie is ``HttpOnly``, so page scripts (``document.cookie``) cannot read it.

It uses the system's Chromium with the ``playwright`` Python package's driver; Playwright's own
browser downloads (``playwright install``) are never used. Two builds of it, both Debian packages:

* ``chromium-headless-shell`` (``/usr/bin/chromium-headless-shell``): Chromium's headless build
  (the "old" headless mode, now a binary of its own), the one Playwright itself runs headless
  tests in. It starts and opens a page in about a third of the full browser's time (0.15 s against
  0.40 s here), so the lessons' checks use it when it is installed (``check 06`` on two cores: about
  2 s instead of 3.3 s).
* ``chromium`` (``/usr/bin/chromium``): the browser itself, in its "new" headless mode. What
  the lesson texts say about "the browser" is checked in this one (``build="full"``:
  the browser-claims tests), since the shell "does not match the behavior of the regular Chrome
  completely" (Puppeteer's guide to headless modes). ``tests/test_browser_claims.py`` runs every claim in both:
  where they disagreed, the checks could not use the shell.

``COURSE_CHROMIUM`` names another binary, for both. Without Chromium a test is skipped with a line
saying how to install it, unless ``COURSE_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where it fails
instead: in CI a skipped browser test would hide a broken login.
"""
from __future__ import annotations

import importlib
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from course.tools.services import required

DEFAULT_CHROMIUM = "/usr/bin/chromium"
HEADLESS_SHELL = "/usr/bin/chromium-headless-shell"

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
"""What Chromium needs here: no sandbox (containers run as root), no GPU, and no traffic of its own."""

TEST_HOSTS = "--host-resolver-rules=MAP *.test 127.0.0.1"
"""Every ``*.test`` host name is 127.0.0.1 in the browser: several sites, and no traffic off the machine."""

HOW_TO_INSTALL = ("Chromium is not installed. Install Debian's packages: `sudo apt-get install "
                  "chromium-headless-shell chromium` (or point COURSE_CHROMIUM at a Chromium binary).")

BUILDS = {"shell": ("chromium-headless-shell", HEADLESS_SHELL), "full": ("chromium", DEFAULT_CHROMIUM)}


def chromium_path(build: str = "any") -> str | None:
    """The Chromium binary to drive, or None: ``build="shell"`` or ``"full"`` is that build only;
    ``"any"`` (the lessons' checks) is ``COURSE_CHROMIUM``, else the headless shell, else the full
    browser. ``"full"`` takes ``COURSE_CHROMIUM`` too. Each build at Debian's path, then on PATH."""
    builds = {"any": ["shell", "full"], "full": ["full"], "shell": ["shell"]}[build]
    candidates = [os.environ.get("COURSE_CHROMIUM")] if build != "shell" else []
    for name, debian_path in (BUILDS[each] for each in builds):
        candidates += [debian_path, shutil.which(name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_chromium(build: str = "any") -> str:
    """The Chromium path (see ``chromium_path``), or skip the test (fail under ``COURSE_REQUIRE_SERVICES=1``)."""
    import pytest

    path = chromium_path(build)
    if path is not None:
        try:
            importlib.import_module("playwright.sync_api")
        except ImportError:
            message = "the playwright package is missing: run `make venv` (it is in requirements.txt)"
        else:
            return path
    elif build == "any":
        message = HOW_TO_INSTALL
    else:
        message = f"{BUILDS[build][0]} is not installed: `sudo apt-get install {BUILDS[build][0]}`"
    if required():
        pytest.fail(message + " (COURSE_REQUIRE_SERVICES=1: a missing browser is a failure)", pytrace=False)
    pytest.skip(message)


LAUNCH_TIMEOUT_MS = 30_000
"""How long one launch may take. Chromium starts in about a second, but a loaded 2-core machine
once needed more than 15 s: a launch that runs out is tried once more, with a warning that says so."""


@contextmanager
def chromium(executable: str | None = None, timeout_ms: int = LAUNCH_TIMEOUT_MS,
             test_hosts: bool = False) -> Iterator:
    """A headless Chromium (a Playwright ``Browser``), closed when the block ends.

    >>> with chromium() as browser:
    ...     page = browser.new_page()

    ``test_hosts=True`` resolves every ``*.test`` name to 127.0.0.1 inside this browser only
    (:data:`TEST_HOSTS`), so ``site-a.test`` and ``evil.test`` are other sites on loopback. A launch
    that takes longer than ``timeout_ms`` is tried once more (twice as long), and the retry is
    reported as a warning: a slow machine is not a failing test, but it is not hidden either.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    executable = executable or chromium_path()
    if executable is None:
        raise FileNotFoundError(HOW_TO_INSTALL)
    _node_compile_cache()
    with sync_playwright() as playwright:
        args = CHROMIUM_ARGS + ([TEST_HOSTS] if test_hosts else [])

        def launch(timeout: int):
            return playwright.chromium.launch(executable_path=executable, args=args,
                                              headless=True, timeout=timeout)

        try:
            browser = launch(timeout_ms)
        except PlaywrightTimeout:
            warnings.warn(f"Chromium did not start in {timeout_ms / 1000:g} s (a loaded machine?); "
                          "launching it once more", RuntimeWarning, stacklevel=3)
            browser = launch(2 * timeout_ms)
        try:
            yield browser
        finally:
            browser.close()


def _node_compile_cache() -> None:
    """Playwright's driver is a Node.js program that compiles its JavaScript at each start; Node keeps
    what it compiled in ``NODE_COMPILE_CACHE`` and reuses it next time: the driver came up in about
    0.27 s here without it, 0.20 s with it, on every launch. Kept beside the course's other caches."""
    from course.tools.cli import cache_file

    os.environ.setdefault("NODE_COMPILE_CACHE", str(cache_file("node-compile-cache")))
