"""course.kit.sessions on its own: express-session's rules, checked in-process on a CountingStore.

Lessons 03-04 test these rules over HTTP against the student's code; this file calls the kit's
middleware directly (``course.tools.testing.wsgi_request``), one rule per test.
"""
import re

import pytest

from course.kit import storedown
from course.kit.sessions import (
    COOKIE_NAME,
    MAX_COOKIE_CHARS,
    Session,
    SessionMiddleware,
    clear_cookie_header,
    cookie_value,
    fingerprint,
    new_session_id,
    run_buffered,
    session_id_from,
    set_cookie_header,
)
from course.kit.signing import sign_cookie
from course.kit.stores import CountingStore
from course.tools.testing import wsgi_request

SECRET = "kit-sessions-secret-0123456789"


def app(environ, start_response):
    """/set adds n=1, /read reads, /destroy destroys, /boom raises, anything else does nothing."""
    session, path = environ["session"], environ["PATH_INFO"]
    if path == "/set":
        session["n"] = session.get("n", 0) + 1
    elif path == "/destroy":
        session.destroy()
    elif path == "/boom":
        raise RuntimeError("the handler failed")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"id={session.id} new={session.is_new} n={session.get('n')}".encode()]


def make(**options):
    store = CountingStore()
    return SessionMiddleware(app, SECRET, store, **options), store


def cookies_of(headers):
    return [value for name, value in headers if name == "Set-Cookie"]


def sid_of(headers):
    [line] = cookies_of(headers)
    return session_id_from(line.split(";")[0], SECRET)


def visit(middleware, path, sid=None, secret=SECRET):
    headers = {"Cookie": f"sid={cookie_value(sid, secret)}"} if sid else {}
    return wsgi_request(middleware, path, headers=headers)


# ---------------------------------------------------------------- the pieces

def test_a_session_id_is_43_url_safe_characters_and_never_repeats():
    ids = {new_session_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", sid) for sid in ids)


def test_the_cookie_value_is_the_signed_id_percent_encoded():
    assert cookie_value("abc", SECRET) == sign_cookie("abc", SECRET).replace(":", "%3A").replace("+", "%2B") \
        .replace("/", "%2F")
    assert cookie_value("abc", [SECRET, "old"]) == cookie_value("abc", SECRET), "the newest secret signs"


def test_session_id_from_reads_the_first_signed_cookie_only():
    good = cookie_value("abc", SECRET)
    assert session_id_from(f"sid={good}", SECRET) == "abc"
    assert session_id_from(f"sid=forged; sid={good}", SECRET) is None, "the first sid counts"
    assert session_id_from(f"other={good}", SECRET) is None
    assert session_id_from(f"other={good}", SECRET, name="other") == "abc"
    assert session_id_from(None, SECRET) is None
    assert session_id_from("sid=s%3Aabc", SECRET) is None


def test_an_oversized_cookie_is_refused_before_any_hmac(monkeypatch):
    import course.kit.sessions as sessions
    calls = []
    monkeypatch.setattr(sessions, "unsign_cookie", lambda value, secret: calls.append(len(value)))
    assert MAX_COOKIE_CHARS == 4096
    assert session_id_from("sid=" + "x" * 4097, SECRET) is None
    assert calls == [], "a value over 4096 characters never reaches unsign_cookie"
    session_id_from("sid=" + "x" * 4096, SECRET)
    assert calls == [4096], "exactly 4096 characters is still read"


def test_set_cookie_header_is_http_only_lax_and_host_wide():
    assert set_cookie_header("v") == "sid=v; Path=/; HttpOnly; SameSite=Lax"
    assert set_cookie_header("v", name="other").startswith("other=v;")
    persistent = set_cookie_header("v", max_age=60.7)
    assert persistent.startswith("sid=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Expires=")
    assert persistent.endswith(" GMT")
    assert set_cookie_header("v", max_age=0).endswith("GMT") and "Max-Age=0" in set_cookie_header("v", max_age=0)


def test_the_expires_date_is_max_age_from_now(monkeypatch):
    import course.kit.sessions as sessions
    monkeypatch.setattr(sessions, "time", lambda: 0.0)
    assert set_cookie_header("v", max_age=3600).endswith("Max-Age=3600; Expires=Thu, 01 Jan 1970 01:00:00 GMT")


def test_clearing_a_cookie_uses_the_same_path_and_a_date_in_the_past():
    assert clear_cookie_header() == ("sid=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; "
                                     "Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert clear_cookie_header("other").startswith("other=;")


def test_modified_compares_canonical_json():
    assert fingerprint({}) == "{}"
    assert fingerprint({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    session = Session("id", {"a": 1}, is_new=False)
    assert not session.modified and not session.is_new and session.id == "id"
    session["a"] = 1
    assert not session.modified, "writing the same value is no change"
    session["a"] = 2
    assert session.modified
    assert Session("new").is_new and not Session("new").modified and Session("new") == {}


def test_destroy_empties_the_session_and_marks_it():
    session = Session("id", {"a": 1}, is_new=False)
    assert not session.destroyed
    session.destroy()
    assert session.destroyed and session == {}


def test_run_buffered_collects_written_and_returned_chunks_and_closes():
    closed = []

    class Body(list):
        def close(self):
            closed.append(True)

    def wsgi(environ, start_response):
        write = start_response("201 Created", [("X", "1")])
        write(b"a")
        return Body([b"b", b"c"])

    assert run_buffered(wsgi, {}) == ("201 Created", [("X", "1")], [b"a", b"b", b"c"], None)
    assert closed == [True]


# ---------------------------------------------------------------- the rules, through the middleware

def test_a_visit_that_changes_nothing_stores_nothing_and_sends_no_cookie():
    middleware, store = make()
    status, headers, body = visit(middleware, "/read")
    assert status == "200 OK" and cookies_of(headers) == []
    assert store.stats() == {"gets": 0, "sets": 0, "touches": 0, "destroys": 0, "sessions": 0}
    assert b"new=True" in body


def test_save_uninitialized_stores_and_sends_even_an_empty_session():
    middleware, store = make(save_uninitialized=True)
    _, headers, _ = visit(middleware, "/read")
    sid = sid_of(headers)
    assert store.peek(sid) == {} and store.stats()["sets"] == 1


def test_a_modified_new_session_is_stored_and_its_signed_cookie_sent():
    middleware, store = make()
    _, headers, body = visit(middleware, "/set")
    [line] = cookies_of(headers)
    assert line.startswith("sid=s%3A") and line.endswith("; Path=/; HttpOnly; SameSite=Lax")
    sid = sid_of(headers)
    assert store.peek(sid) == {"n": 1}
    assert body == f"id={sid} new=True n=1".encode()


def test_a_known_cookie_loads_the_stored_session():
    middleware, store = make()
    sid = sid_of(visit(middleware, "/set")[1])
    store.reset()
    _, headers, body = visit(middleware, "/set", sid)
    assert body == f"id={sid} new=False n=2".encode()
    assert store.peek(sid) == {"n": 2}
    assert cookies_of(headers) == [], "not rolling, not persistent: no cookie again"
    assert store.stats()["gets"] == 1 and store.stats()["sets"] == 1 and store.stats()["touches"] == 0


def test_an_unchanged_loaded_session_is_touched_not_written():
    middleware, store = make(max_age=120)
    sid = sid_of(visit(middleware, "/set")[1])
    store.reset()
    _, headers, _ = visit(middleware, "/read", sid)
    assert store.stats()["touches"] == 1 and store.stats()["sets"] == 0
    assert cookies_of(headers) == [], "persistent but unmodified: the cookie is not re-sent"
    assert store.store._records[sid][1] is not None


def test_resave_writes_an_unchanged_session_back():
    middleware, store = make(resave=True)
    sid = sid_of(visit(middleware, "/set")[1])
    store.reset()
    visit(middleware, "/read", sid)
    assert store.stats()["sets"] == 1 and store.stats()["touches"] == 0


def test_a_store_without_touch_is_neither_touched_nor_written():
    middleware = SessionMiddleware(app, SECRET, CountingStore(touch=False))
    sid = sid_of(visit(middleware, "/set")[1])
    middleware.store.reset()
    status, _, body = visit(middleware, "/read", sid)
    assert (status, body.endswith(b"new=False n=1")) == ("200 OK", True)
    assert middleware.store.stats()["sets"] == 0 and middleware.store.stats()["touches"] == 0


def test_rolling_resends_the_cookie_of_every_loaded_session():
    middleware, _ = make(rolling=True)
    sid = sid_of(visit(middleware, "/set")[1])
    _, headers, _ = visit(middleware, "/read", sid)
    assert sid_of(headers) == sid


def test_a_persistent_session_resends_its_cookie_when_modified():
    middleware, store = make(max_age=60)
    _, headers, _ = visit(middleware, "/set")
    sid = sid_of(headers)
    assert "Max-Age=60" in cookies_of(headers)[0]
    assert store.store._records[sid][1] is not None, "max_age is the record's ttl"
    _, headers, _ = visit(middleware, "/set", sid)
    assert sid_of(headers) == sid and "Max-Age=60" in cookies_of(headers)[0]


def test_without_max_age_the_record_gets_the_store_default():
    middleware, store = make()
    sid = sid_of(visit(middleware, "/set")[1])
    assert "Max-Age" not in cookies_of(visit(middleware, "/set")[1])[0]
    assert store.store._records[sid][1] is not None


def test_an_id_the_store_does_not_hold_is_never_adopted():
    middleware, store = make()
    _, headers, body = visit(middleware, "/set", "planted-by-an-attacker")
    assert b"new=True" in body
    assert sid_of(headers) != "planted-by-an-attacker"
    assert store.peek("planted-by-an-attacker") is None


def test_a_cookie_signed_with_another_secret_costs_no_store_lookup():
    middleware, store = make()
    sid = sid_of(visit(middleware, "/set")[1])
    store.reset()
    _, _, body = visit(middleware, "/read", sid, secret="another-secret")
    assert b"new=True" in body and store.stats()["gets"] == 0


def test_a_rotated_secret_still_reads_the_old_cookie():
    old = SessionMiddleware(app, "old-secret-0123456789", CountingStore())
    sid = sid_of_secret = None
    _, headers, _ = visit(old, "/set")
    [line] = cookies_of(headers)
    sid_of_secret = session_id_from(line.split(";")[0], "old-secret-0123456789")
    rotated = SessionMiddleware(app, ["new-secret-0123456789", "old-secret-0123456789"], old.store)
    _, _, body = visit(rotated, "/read", sid_of_secret, secret="old-secret-0123456789")
    assert body.endswith(b"new=False n=1")
    assert sid is None


def test_the_cookie_name_is_configurable():
    middleware, _ = make(name="app_sid")
    _, headers, _ = visit(middleware, "/set")
    [line] = cookies_of(headers)
    assert line.startswith("app_sid=s%3A")
    sid = session_id_from(line.split(";")[0], SECRET, name="app_sid")
    _, _, body = wsgi_request(middleware, "/read", headers={"Cookie": f"app_sid={cookie_value(sid, SECRET)}"})
    assert body.endswith(b"new=False n=1")
    _, headers, _ = wsgi_request(middleware, "/destroy", headers={"Cookie": f"app_sid={cookie_value(sid, SECRET)}"})
    assert cookies_of(headers) == [clear_cookie_header("app_sid")], "the cookie cleared is the one of that name"


def test_destroy_removes_the_record_and_clears_the_cookie():
    middleware, store = make()
    sid = sid_of(visit(middleware, "/set")[1])
    _, headers, _ = visit(middleware, "/destroy", sid)
    assert cookies_of(headers) == [clear_cookie_header()]
    assert store.peek(sid) is None and store.stats()["destroys"] == 1


def test_destroying_a_new_session_only_clears_the_cookie():
    middleware, store = make()
    _, headers, _ = visit(middleware, "/destroy")
    assert cookies_of(headers) == [clear_cookie_header()]
    assert store.stats()["destroys"] == 0 and store.stats()["sets"] == 0


@pytest.mark.parametrize("method", ["get", "set", "touch", "destroy"])
def test_a_store_that_is_down_is_a_503_with_no_cookie(method):
    middleware, store = make()
    sid = sid_of(visit(middleware, "/set")[1])
    path = {"get": "/read", "set": "/set", "touch": "/read", "destroy": "/destroy"}[method]
    with store.failing(method):
        status, headers, body = visit(middleware, path, sid)
    assert status == storedown.STATUS and body == (storedown.MESSAGE + "\n").encode()
    assert cookies_of(headers) == []
    assert store.peek(sid) == {"n": 1}, "nothing half-done"


def test_an_unfinished_exercise_in_the_store_is_not_a_503():
    class Todo(CountingStore):
        def get(self, sid):
            raise NotImplementedError("todo")

        def set(self, sid, data, ttl=None):
            raise NotImplementedError("todo")

    middleware = SessionMiddleware(app, SECRET, Todo())
    with pytest.raises(NotImplementedError):
        visit(middleware, "/set")
    with pytest.raises(NotImplementedError):
        visit(middleware, "/read", "some-id")


def test_the_handler_runs_once_and_its_errors_are_its_own():
    middleware, store = make()
    with pytest.raises(RuntimeError, match="the handler failed"):
        visit(middleware, "/boom")
    assert store.stats()["sets"] == 0


def test_a_missing_or_bad_secret_is_refused_when_the_middleware_is_made():
    with pytest.raises(ValueError):
        SessionMiddleware(app, "")
    with pytest.raises(ValueError):
        SessionMiddleware(app, ["ok", None])
    assert isinstance(SessionMiddleware(app, SECRET).store.get("x"), type(None))


def test_the_default_store_is_a_fresh_memory_store_per_middleware():
    first, second = SessionMiddleware(app, SECRET), SessionMiddleware(app, SECRET)
    assert first.store is not second.store
    assert COOKIE_NAME == "sid"


def test_a_store_that_is_down_is_logged_with_its_error(caplog):
    import logging
    middleware, store = make()
    with caplog.at_level(logging.WARNING, logger="course.kit.sessions"):
        with store.failing("set"):
            visit(middleware, "/set")
    assert [r.getMessage() for r in caplog.records if r.name == "course.kit.sessions"] == [
        "the session store failed: StoreUnavailable: the session store is down (CountingStore told to fail on set)"]


def test_run_buffered_hands_on_the_apps_exc_info():
    import sys

    def failing(environ, start_response):
        try:
            raise ValueError("boom")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"error page"]

    status, headers, body, exc_info = run_buffered(failing, {})
    assert status.startswith("500") and body == [b"error page"] and exc_info[0] is ValueError
