"""Where the real servers are, and what to do when one is not there.

Tests that need Redis, PostgreSQL, MariaDB, memcached or MongoDB call ``require("redis")``. It
returns the server's URL (from ``REDIS_URL`` and friends, defaulting to the local server on its
standard port). When the server does not answer, the test is skipped with a line saying how to
start it, unless ``COURSE_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where it fails instead: in CI
a skipped store test would hide a broken backend.

The grader's sandbox (course.tools.grading.sandbox) gives each copy private servers (Redis,
memcached, PostgreSQL, MariaDB) at these same URLs, and sets ``COURSE_UNTRUSTED_SERVICES`` to the
servers it has no private one of (MongoDB; PostgreSQL or MariaDB when they are not installed on
the grading machine or did not start): their tests are skipped as "not graded: needs
--trust-services", never a pass or a failure; the machine's servers are never reached.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

DEFAULT_URLS = {
    "redis": ("REDIS_URL", "redis://127.0.0.1:6379/0", 6379),
    "postgres": ("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test", 5432),
    "mysql": ("MYSQL_URL", "mysql://root@127.0.0.1:3306/test", 3306),
    "memcached": ("MEMCACHED_URL", "memcached://127.0.0.1:11211", 11211),
    "mongodb": ("MONGODB_URL", None, 27017),   # no default: no MongoDB server can be installed here
}

HOW_TO_START = (
    "Start it with `make services` (Docker, compose.yaml), or install it from your package manager "
    "and start it on its standard port; or point {env} at a running server."
)


def required() -> bool:
    return os.environ.get("COURSE_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def url_for(name: str) -> str | None:
    env, default, _ = DEFAULT_URLS[name]
    return os.environ.get(env) or default


def reachable(url: str, default_port: int, timeout: float = 0.5) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str) -> str:
    """The URL of a running ``name`` server, or skip (fail under COURSE_REQUIRE_SERVICES=1)."""
    import pytest

    env, _, port = DEFAULT_URLS[name]
    if name in os.environ.get("COURSE_UNTRUSTED_SERVICES", "").split(","):
        from course.tools.results import NOT_GRADED_SIGN
        pytest.skip(f"{NOT_GRADED_SIGN}: the grader's sandbox has no {name} server of its own (not installed "
                    "on the grading machine, or it did not start), and reaches the machine's only when the "
                    "instructor gives --trust-services")
    url = url_for(name)
    if url is None:
        pytest.skip(f"{name}: set {env} to a running server to run this test "
                    f"(there is no default; it is not run in CI)")
    if reachable(url, port):
        return url
    message = f"{name} is not reachable at {url}. " + HOW_TO_START.format(env=env)
    if required():
        pytest.fail(message + " (COURSE_REQUIRE_SERVICES=1: a missing server is a failure)")
    pytest.skip(message)
