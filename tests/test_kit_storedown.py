"""course.kit.storedown on its own: which errors mean "the store is down", and the one 503 answer."""
import logging

import bottle
import pytest

from course.kit import storedown
from course.kit.storedown import (
    MESSAGE,
    RETRY_AFTER,
    STATUS,
    StoreUnavailable,
    answer,
    guard,
    is_store_down,
    plugin,
    plugin_with,
    respond,
    store_errors,
)
from course.tools.testing import wsgi_request


def test_store_unavailable_is_a_connection_error():
    assert issubclass(StoreUnavailable, ConnectionError) and issubclass(StoreUnavailable, OSError)


def test_the_store_errors_are_ours_the_builtins_and_each_installed_drivers():
    import pymysql.err
    import redis.exceptions
    import sqlalchemy.exc
    errors = store_errors()
    assert errors[:3] == (StoreUnavailable, ConnectionError, TimeoutError)
    for expected in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                     sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                     sqlalchemy.exc.DisconnectionError, pymysql.err.OperationalError):
        assert expected in errors, expected
    assert len(errors) == len(set(errors)), "each type once"
    assert ValueError not in errors and OSError not in errors and KeyError not in errors


def test_a_driver_that_is_not_imported_is_skipped_and_never_imported(monkeypatch):
    import json
    monkeypatch.setattr(storedown, "_DRIVER_ERRORS", (("no_such_driver_module", ("Error",)),
                                                       ("json", ("JSONDecodeError", "NoSuchName"))))
    assert store_errors() == (StoreUnavailable, ConnectionError, TimeoutError, json.JSONDecodeError)


def test_the_first_store_error_of_a_process_imports_no_driver():
    import subprocess
    import sys

    code = ("import sys; from course.kit import storedown; before = set(sys.modules); "
            "down = storedown.is_store_down(ConnectionRefusedError()); errors = storedown.store_errors(); "
            "print(down, sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
            "('redis', 'sqlalchemy', 'psycopg', 'pymysql', 'memcache', 'pymongo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", "[]"], out.stdout + out.stderr


@pytest.mark.parametrize("exc, down", [
    (StoreUnavailable("x"), True), (ConnectionRefusedError(), True), (TimeoutError(), True),
    (OSError("disk"), True), (FileNotFoundError(), True),
    (ValueError(), False), (KeyError("k"), False), (RuntimeError(), False), (TypeError(), False),
])
def test_inside_a_store_any_os_error_is_the_store_down(exc, down):
    assert is_store_down(exc) is down


def test_the_answer_is_the_503_and_the_one_line():
    assert answer() == (STATUS, MESSAGE) == ("503 Service Unavailable", "Session store unavailable")
    assert answer(ValueError()) == (STATUS, MESSAGE)


def test_respond_sends_one_line_no_cookie_no_cache_and_a_retry_after():
    seen = {}
    body = respond(lambda status, headers, exc_info=None: seen.update(status=status, headers=headers,
                                                                      exc_info=exc_info))
    assert body == [b"Session store unavailable\n"]
    assert seen["status"] == STATUS
    assert seen["headers"] == [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "26"),
                               ("Cache-Control", "no-store"), ("Retry-After", RETRY_AFTER)]
    assert RETRY_AFTER == "1"
    assert seen["exc_info"] is None


def test_respond_with_another_status_has_no_retry_after_and_keeps_a_newline():
    seen = {}
    body = respond(lambda status, headers, exc_info=None: seen.update(status=status, headers=headers),
                   "413 Content Too Large", "too big\n")
    assert body == [b"too big\n"]
    assert seen["status"] == "413 Content Too Large"
    assert dict(seen["headers"]) == {"Content-Type": "text/plain; charset=utf-8", "Content-Length": "8",
                                     "Cache-Control": "no-store"}


def test_respond_counts_bytes_not_characters():
    seen = {}
    body = respond(lambda status, headers, exc_info=None: seen.update(headers=dict(headers)), STATUS, "é")
    assert body == ["é\n".encode()] and seen["headers"]["Content-Length"] == "3"


def test_guard_answers_a_store_error_escaping_the_app(caplog):
    def failing(environ, start_response):
        raise StoreUnavailable("redis is gone")

    with caplog.at_level(logging.WARNING, logger="course.kit.storedown"):
        status, headers, body = wsgi_request(guard(failing))
    assert status == STATUS and body == b"Session store unavailable\n"
    assert any("redis is gone" in r.getMessage() for r in caplog.records)


def test_guard_lets_other_errors_and_good_answers_through():
    def fine(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    def buggy(environ, start_response):
        raise ValueError("a bug")

    assert wsgi_request(guard(fine)) == ("200 OK", [], b"ok")
    with pytest.raises(ValueError):
        wsgi_request(guard(buggy))
    custom = guard(lambda e, s: (_ for _ in ()).throw(TimeoutError()), answer=lambda exc: ("502 Bad Gateway", "no"))
    status, _, body = wsgi_request(custom)
    assert status == "502 Bad Gateway" and body == b"no\n"


def make_app(installed=plugin):
    app = bottle.Bottle()
    app.install(installed)

    @app.get("/down")
    def down():
        bottle.response.set_header("X-Kept", "yes")
        raise StoreUnavailable("down")

    @app.get("/bug")
    def bug():
        raise KeyError("a bug")

    @app.get("/ok")
    def ok():
        return "fine"

    return app


def test_the_plugin_turns_a_store_error_in_a_route_into_the_503():
    status, headers, body = wsgi_request(make_app(), "/down")
    headers = dict(headers)
    assert status == STATUS and body == b"Session store unavailable\n"
    assert headers["Cache-Control"] == "no-store" and headers["Retry-After"] == "1"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Kept"] == "yes", "what the route set is kept"
    assert wsgi_request(make_app(), "/ok")[2] == b"fine"
    assert wsgi_request(make_app(), "/bug")[0].startswith("500"), "a bug is not the store being down"


def test_plugin_with_another_answer_and_more_errors():
    installed = plugin_with(lambda exc: ("500 Internal Server Error", "Failed to log out.\n"), also=(KeyError,))
    status, headers, body = wsgi_request(make_app(installed), "/bug")
    assert status.startswith("500") and body == b"Failed to log out.\n"
    assert "Retry-After" not in dict(headers) and dict(headers)["Cache-Control"] == "no-store"


def test_guard_hands_the_error_to_start_response_as_exc_info():
    seen = {}

    def failing(environ, start_response):
        raise StoreUnavailable("down")

    guard(failing)({}, lambda status, headers, exc_info=None: seen.update(exc_info=exc_info))
    assert seen["exc_info"][0] is StoreUnavailable


def test_the_plugin_logs_the_store_error(caplog):
    with caplog.at_level(logging.WARNING, logger="course.kit.storedown"):
        wsgi_request(make_app(), "/down")
    assert [r.getMessage() for r in caplog.records] == ["the session store failed: StoreUnavailable('down')"]
