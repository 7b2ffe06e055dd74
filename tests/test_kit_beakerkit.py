"""course.kit.beakerkit on its own: Beaker, hardened, called in-process (no server, milliseconds).

Lesson 05's tests check these gaps over HTTP against the student's code and the kit; this file
pins each piece of the kit: the config, the counting namespace, the cookie header handed to Beaker,
strict IDs, destroy and regenerate, and the middleware's save path.
"""
import base64
import hmac
import json
import pickle
import sys
import warnings
import zlib
from hashlib import sha1
from http.cookies import SimpleCookie

import bottle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from course.kit import beakerkit, storedown
from course.kit.beakerkit import (
    DEV_SECRET,
    CountingNamespace,
    CountingStore,
    HardenedSessions,
    InsecureSecretWarning,
    clean_cookie_header,
    destroy_session,
    get_session,
    real_session,
    regenerate_session,
    resolve_secret,
    session_config,
    session_id_from_cookie,
    stored_data,
)
from course.kit.stores import MemoryStore
from course.tools.testing import expired, wsgi_request

SECRET = "kit-beakerkit-secret-0123456789abcdef"


def signed(session_id, secret=SECRET):
    return hmac.new(secret.encode(), session_id.encode(), sha1).hexdigest() + session_id


def make(rolling=False, on_save_error=None, **options):
    """An app on HardenedSessions with a CountingStore; ``(wsgi, store)``."""
    store = options.pop("store", None) or CountingStore()
    app = bottle.Bottle()
    app.install(storedown.plugin)

    @app.get("/visits")
    def visits():
        session = get_session()
        session["visits"] = session.get("visits", 0) + 1
        session.save()
        return f"{session.id} {session['visits']}"

    @app.get("/read")
    def read():
        return f"{get_session().get('visits')}"

    @app.get("/nothing")
    def nothing():
        return "no session used"

    @app.get("/destroy")
    def destroy():
        destroy_session(get_session())
        return "destroyed"

    @app.get("/destroy-then-write")
    def destroy_then_write():
        session = get_session()
        destroy_session(session)
        session["after"] = 1
        return "destroyed"

    @app.get("/regenerate")
    def regenerate():
        session = get_session()
        regenerate_session(session)
        return real_session(session).id

    @app.get("/error")
    def error():
        session = get_session()
        session["x"] = 1
        session.save()
        bottle.response.status = 502
        return "upstream"

    config = session_config(secret=SECRET, store=store, **options)
    return HardenedSessions(app, config, rolling=rolling, on_save_error=on_save_error), store


def get(wsgi, path, cookie=None):
    status, headers, body = wsgi_request(wsgi, path, headers={"Cookie": cookie} if cookie is not None else {})
    return status, [v.strip() for n, v in headers if n == "Set-Cookie"], body.decode()


def sid_cookie(lines):
    [line] = [line for line in lines if line.startswith("sid=")]
    return line.split(";")[0]


# ---------------------------------------------------------------- the secret and the config

def test_resolve_secret_prefers_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("SESSION_SECRET", "from-the-environment")
    assert resolve_secret("given") == "given"
    assert resolve_secret(None) == "from-the-environment"
    assert resolve_secret("", production=True) == "from-the-environment"


def test_without_a_secret_it_warns_and_uses_the_development_one(monkeypatch):
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    with pytest.warns(InsecureSecretWarning, match="SESSION_SECRET is not set"):
        assert resolve_secret(None) == DEV_SECRET
    with pytest.warns(InsecureSecretWarning):
        assert resolve_secret(DEV_SECRET) == DEV_SECRET, "the published secret is no secret"
    monkeypatch.setenv("SESSION_SECRET", "")
    with pytest.warns(InsecureSecretWarning):
        assert resolve_secret(None) == DEV_SECRET


def test_in_production_a_missing_or_published_secret_stops_the_app(monkeypatch):
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        resolve_secret(None, production=True)
    with pytest.raises(ValueError):
        resolve_secret(DEV_SECRET, production=True)
    monkeypatch.setenv("SESSION_SECRET", DEV_SECRET)
    with pytest.raises(ValueError):
        resolve_secret(None, production=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_secret("a-real-one", production=True) == "a-real-one"


def test_the_warning_points_at_the_callers_line(monkeypatch):
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    def create_app():                  # what a lesson does: the warning names the line that made the app
        return session_config()

    with pytest.warns(InsecureSecretWarning) as caught:
        create_app()
    assert (caught[0].filename, caught[0].lineno) == (__file__, sys._getframe().f_lineno - 1)


def test_session_config_has_the_safe_defaults():
    store = CountingStore()
    config = session_config(secret=SECRET, store=store)
    assert config == {
        "session.type": "memory", "session.key": "sid", "session.secret": SECRET, "session.httponly": True,
        "session.samesite": "Lax", "session.secure": False, "session.timeout": None,
        "session.data_serializer": "json", "session.namespace_class": CountingNamespace, "session.store": store}


def test_each_memory_config_gets_a_store_of_its_own():
    first, second = session_config(secret=SECRET), session_config(secret=SECRET)
    assert isinstance(first["session.store"], CountingStore)
    assert first["session.store"] is not second["session.store"]


def test_other_types_get_no_counting_store_and_extra_options_are_prefixed():
    config = session_config(type="file", secret=SECRET, data_dir="/x", **{"session.auto": True}, timeout=60,
                            key="k", httponly=False, samesite=None, secure=True)
    assert "session.store" not in config and "session.namespace_class" not in config
    assert config["session.data_dir"] == "/x" and config["session.auto"] is True
    assert (config["session.type"], config["session.timeout"], config["session.key"]) == ("file", 60, "k")
    assert (config["session.httponly"], config["session.samesite"], config["session.secure"]) == (False, None, True)


@pytest.mark.parametrize("secret", ["", 42, b"bytes"])
def test_a_secret_that_is_not_a_string_is_refused(secret):
    with pytest.raises(ValueError, match="non-empty string"):
        session_config(secret=secret)


def test_a_short_secret_warns_and_sixteen_characters_do_not():
    with pytest.warns(InsecureSecretWarning, match="only 15 characters"):
        session_config(secret="x" * 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session_config(secret="x" * 16)


# ---------------------------------------------------------------- the counting namespace

def test_the_namespace_needs_a_store():
    with pytest.raises(ValueError, match="store=CountingStore"):
        CountingNamespace("sid")


def test_the_namespace_keeps_bytes_and_str_records_apart():
    store = CountingStore()
    ns = CountingNamespace("abc", store=store)
    ns["session"] = b"\x00\xffbytes"
    ns["other"] = "text"
    assert store.peek("abc") == {"session": ["bytes", "\x00\xffbytes"], "other": ["str", "text"]}
    assert ns["session"] == b"\x00\xffbytes" and ns["other"] == "text"
    assert "session" in ns and ns.has_key("other") and "missing" not in ns
    assert sorted(ns.keys()) == ["other", "session"]
    with pytest.raises(KeyError):
        ns["missing"]
    with pytest.raises(TypeError, match="bytes or str"):
        ns["session"] = 42


def test_deleting_the_last_key_destroys_the_record():
    store = CountingStore()
    ns = CountingNamespace("abc", store=store)
    ns["a"], ns["b"] = "1", "2"
    del ns["a"]
    assert store.peek("abc") == {"b": ["str", "2"]}
    del ns["missing"]
    del ns["b"]
    assert store.peek("abc") is None and store.stats()["destroys"] == 1
    ns["a"] = "1"
    ns.do_remove()
    assert store.peek("abc") is None


def test_set_value_passes_beakers_timeout_as_the_ttl():
    inner = MemoryStore(clock=lambda: 0.0)
    ns = CountingNamespace("abc", store=CountingStore(inner))
    ns.set_value("session", "x", expiretime=30)
    assert inner._records["abc"][1] == 30
    ns2 = CountingNamespace("def", store=CountingStore(inner))
    ns2["session"] = "x"
    assert inner._records["def"][1] == CountingStore.DEFAULT_TTL


def test_a_failing_store_fails_reads_and_keys_too():
    store = CountingStore()
    ns = CountingNamespace("abc", store=store)
    ns["session"] = "x"
    store.fail("get")
    for call in (lambda: "session" in ns, ns.keys, lambda: ns["session"]):
        with pytest.raises(storedown.StoreUnavailable):
            call()


def test_stored_data_decodes_json_and_only_local_pickles():
    store = CountingStore()
    assert stored_data(store, None) is None and stored_data(store, "none") is None
    record = base64.b64encode(zlib.compress(json.dumps({"visits": 2}).encode())).decode()
    store.set("j", {"session": ["str", record]})
    assert stored_data(store, "j") == {"visits": 2}
    store.set("p", {"session": ["bytes", base64.b64encode(pickle.dumps({"p": 1})).decode("latin-1")]})
    assert stored_data(store, "p") == {"p": 1}, "a pickle this process's Beaker wrote, in its own memory"
    store.set("bad", {"session": ["str", "%%% not base64"]})
    assert stored_data(store, "bad") == {"(stored)": "not a Beaker record"}
    store.set("enc", {"session": ["str", base64.b64encode(b"random bytes").decode()]})
    assert stored_data(store, "enc") == {"(stored)": "16 bytes, encrypted or not readable"}
    store.set("other", {"other": ["str", "x"]})
    assert stored_data(store, "other") is None


def test_stored_data_never_unpickles_from_a_store_outside_this_process(tmp_path):
    class Shared:                      # any store that is not the kit's MemoryStore
        def __init__(self):
            self.records = {}

        def get(self, sid):
            return self.records.get(sid)

        def set(self, sid, data, ttl=None):
            self.records[sid] = data

        def destroy(self, sid):
            self.records.pop(sid, None)

    marker = tmp_path / "ran"
    payload = pickle.dumps(type("P", (), {"__reduce__": lambda self: (open, (str(marker), "w"))})())
    store = CountingStore(Shared())
    store.set("p", {"session": ["bytes", base64.b64encode(payload).decode("latin-1")]})
    assert stored_data(store, "p")["(stored)"].endswith("encrypted or not readable")
    assert not marker.exists()


# ---------------------------------------------------------------- the Cookie header Beaker sees

@pytest.mark.parametrize("header, expected", [
    ("sid=abc", "sid=abc"),
    ("null; sid=abc", "sid=abc"),
    ('null; a(b=1; sid=abc; theme="dark"; sid=second', "sid=abc"),
    ("sid=first; sid=second", "sid=first"),
    ("other=1", ""),
    ("", ""),
    (None, ""),
    ("sid=", ""),
    ("sid=a b", ""),
    ("sid=x sid=FORGED", ""),
    ("sid=REAL x; sid=FORGED", ""),
    ("sid=a,b", ""),
    ('sid="abc"', "sid=abc"),
    ("sid=" + "a" * 4096, "sid=" + "a" * 4096),
    ("sid=" + "a" * 4097, ""),
    ("sid=a\\b", ""),
    ("sid=aé", ""),
])
def test_beaker_gets_its_own_cookie_alone(header, expected):
    assert clean_cookie_header(header) == expected


def test_the_key_names_the_cookie():
    assert clean_cookie_header("sid=a; app=b", key="app") == "app=b"


@given(st.text(max_size=200))
def test_what_beaker_reads_back_is_the_first_cookie_or_nothing(junk):
    """Whatever the header, Python's parser reads back exactly one sid, the first one sent: no smuggling."""
    header = f"sid=REAL; {junk}; sid=LATER"
    cleaned = clean_cookie_header(junk + "; " + header)
    parsed = SimpleCookie()
    parsed.load(cleaned)
    assert set(parsed) <= {"sid"}
    first = next((v for n, v in beakerkit.parse_cookie_header(junk + "; " + header) if n == "sid"), None)
    if "sid" in parsed:
        assert parsed["sid"].value == first and cleaned == f"sid={first}"


def test_session_id_from_cookie_checks_beakers_signature():
    sid = "a" * 32
    assert session_id_from_cookie(f"sid={signed(sid)}", secret=SECRET) == sid
    assert session_id_from_cookie(f"sid={signed(sid, 'other')}", secret=SECRET) is None
    assert session_id_from_cookie(f"sid={signed(sid)[:40]}", secret=SECRET) is None, "a signature with no ID"
    assert session_id_from_cookie(f"x=1; sid={signed(sid)}; sid=zz", secret=SECRET) == sid
    assert session_id_from_cookie(f"sid=zz; sid={signed(sid)}", secret=SECRET) is None, "the first sid counts"
    assert session_id_from_cookie("sid=plain") == "plain", "no secret: the value is the ID"
    assert session_id_from_cookie("sid=", secret=SECRET) is None
    assert session_id_from_cookie(None) is None
    assert session_id_from_cookie(f"k={signed(sid)}", key="k", secret=SECRET) == sid


# ---------------------------------------------------------------- the middleware

def test_a_new_session_is_saved_and_its_cookie_sent_once():
    wsgi, store = make()
    status, cookies, body = get(wsgi, "/visits")
    sid, visits = body.split()
    assert status == "200 OK" and visits == "1"
    assert sid_cookie(cookies) == f"sid={signed(sid)}"
    assert store.holds(sid)
    _, cookies, body = get(wsgi, "/visits", f"sid={signed(sid)}")
    assert body == f"{sid} 2" and cookies == [], "not rolling: no cookie for an existing session"


def test_a_page_that_never_touches_the_session_costs_no_store_call():
    wsgi, store = make()
    _, cookies, _ = get(wsgi, "/nothing", "sid=whatever")
    assert cookies == [] and store.stats()["gets"] == 0 and store.stats()["sets"] == 0


def test_the_raw_header_is_kept_for_the_cookie_reader():
    seen = {}

    def inner(environ, start_response):
        seen.update(raw=environ[beakerkit.RAW_COOKIE_KEY], sent=environ.get("HTTP_COOKIE"))
        start_response("200 OK", [])
        return [b""]

    wsgi = HardenedSessions(inner, session_config(secret=SECRET))
    wsgi_request(wsgi, headers={"Cookie": "null; a(b=1; sid=abc"})
    assert seen == {"raw": "null; a(b=1; sid=abc", "sent": "sid=abc"}
    wsgi_request(wsgi)
    assert seen == {"raw": "", "sent": None}


def test_junk_beside_the_cookie_keeps_the_session():
    wsgi, _ = make()
    sid = get(wsgi, "/visits")[2].split()[0]
    assert get(wsgi, "/visits", f'null; a(b=1; x="\\\\"; sid={signed(sid)}')[2] == f"{sid} 2"


def test_an_id_whose_record_is_gone_is_never_adopted():
    wsgi, store = make()
    planted = "f" * 32
    _, cookies, body = get(wsgi, "/visits", f"sid={signed(planted)}")
    sid, visits = body.split()
    assert sid != planted and visits == "1"
    assert sid_cookie(cookies) == f"sid={signed(sid)}"
    assert not store.holds(planted)


def test_rolling_resends_the_cookie_of_an_existing_session_only():
    wsgi, _ = make(rolling=True)
    status, cookies, body = get(wsgi, "/read")
    assert cookies == [], "a new, unsaved session: no cookie"
    sid = get(wsgi, "/visits")[2].split()[0]
    _, cookies, _ = get(wsgi, "/read", f"sid={signed(sid)}")
    assert sid_cookie(cookies) == f"sid={signed(sid)}"
    _, cookies, _ = get(wsgi, "/nothing", f"sid={signed(sid)}")
    assert cookies == [], "a page that does not use the session is not made to load it"


def test_destroy_removes_the_record_clears_the_cookie_and_writes_nothing_back():
    wsgi, store = make()
    sid = get(wsgi, "/visits")[2].split()[0]
    store.reset()
    _, cookies, _ = get(wsgi, "/destroy-then-write", f"sid={signed(sid)}")
    assert not store.holds(sid)
    assert store.stats()["sets"] == 0 and store.stats()["destroys"] == 1
    assert store.length() == 0, "nothing saved under a new ID either"
    [line] = cookies
    assert line.startswith("sid=") and expired(line), line
    _, _, body = get(wsgi, "/read", f"sid={signed(sid)}")
    assert body == "None", "replaying the old cookie: a new, empty session"


def test_destroying_a_brand_new_session_is_no_error():
    wsgi, store = make()
    status, _, body = get(wsgi, "/destroy")
    assert (status, body) == ("200 OK", "destroyed") and store.stats()["destroys"] == 0


def test_regenerate_gives_a_new_id_keeps_the_data_and_destroys_the_old_record():
    wsgi, store = make()
    old = get(wsgi, "/visits")[2].split()[0]
    _, cookies, new = get(wsgi, "/regenerate", f"sid={signed(old)}")
    assert new != old and sid_cookie(cookies) == f"sid={signed(new)}"
    assert not store.holds(old) and store.holds(new)
    assert get(wsgi, "/read", f"sid={signed(new)}")[2] == "1"
    assert get(wsgi, "/read", f"sid={signed(old)}")[2] == "None"


def test_a_store_that_fails_while_saving_is_the_503_with_no_cookie():
    wsgi, store = make()
    with store.failing("set"):
        status, cookies, body = get(wsgi, "/visits")
    assert status == storedown.STATUS and body == storedown.MESSAGE + "\n" and cookies == []


def test_a_store_that_fails_while_loading_is_the_plugins_503():
    wsgi, store = make()
    sid = get(wsgi, "/visits")[2].split()[0]
    with store.failing("get"):
        status, cookies, body = get(wsgi, "/read", f"sid={signed(sid)}")
    assert status == storedown.STATUS and cookies == []


def test_on_save_error_chooses_the_answer():
    wsgi, store = make(on_save_error=lambda exc, environ: ("507 Insufficient Storage", "full"))
    with store.failing("set"):
        status, _, body = get(wsgi, "/visits")
    assert (status, body) == ("507 Insufficient Storage", "full\n")


def test_an_answer_that_is_already_an_error_is_kept_without_its_cookie():
    wsgi, store = make()
    with store.failing("set"):
        status, cookies, body = get(wsgi, "/error")
    assert status.startswith("502") and body == "upstream" and cookies == []


def test_a_cookie_session_is_not_strict_and_destroy_clears_it():
    app = bottle.Bottle()

    @app.get("/set")
    def set_():
        get_session()["a"] = 1
        get_session().save()
        return "ok"

    @app.get("/destroy")
    def destroy():
        destroy_session(get_session())
        return "ok"

    config = session_config(type="cookie", secret=SECRET, validate_key=SECRET, encrypt_key=SECRET)
    wsgi = HardenedSessions(app, config)
    assert "session_class" not in wsgi.options
    _, cookies, _ = get(wsgi, "/set")
    _, cleared, _ = get(wsgi, "/destroy", sid_cookie(cookies))
    [line] = cleared
    assert line.startswith("sid=") and expired(line), line


def test_get_session_outside_the_middleware_says_what_to_do():
    with pytest.raises(RuntimeError, match="HardenedSessions"):
        get_session({})
    assert get_session({"beaker.session": "s"}) == "s"
    assert real_session("plain") == "plain"


def test_saving_that_fails_is_logged(caplog):
    import logging
    wsgi, store = make()
    with caplog.at_level(logging.ERROR, logger="course.kit.beakerkit"):
        with store.failing("set"):
            get(wsgi, "/visits")
    assert [r.getMessage() for r in caplog.records if r.name == "course.kit.beakerkit"] == ["saving the session failed"]


def test_the_short_secret_warning_points_at_the_caller():
    with pytest.warns(InsecureSecretWarning) as caught:
        session_config(secret="short")
    assert (caught[0].filename, caught[0].lineno) == (__file__, sys._getframe().f_lineno - 1)


def test_a_namespace_without_a_record_has_no_keys():
    ns = CountingNamespace("nobody", store=CountingStore())
    with pytest.raises(KeyError):
        ns["session"]
    assert ns.keys() == [] and "session" not in ns


def test_with_invalidate_corrupt_a_corrupt_record_is_a_new_session_but_a_dead_store_is_a_503():
    """Beaker's invalidate_corrupt treats any error while loading as corrupt; StrictSession only a real one."""
    wsgi, store = make(invalidate_corrupt=True)
    sid = get(wsgi, "/visits")[2].split()[0]
    with store.failing("get"):
        status, cookies, _ = get(wsgi, "/read", f"sid={signed(sid)}")
    assert status == storedown.STATUS and cookies == [], "a store that is down is not a corrupt record"
    assert get(wsgi, "/read", f"sid={signed(sid)}")[2] == "1", "and the session is back with the store"
    store.store.set(sid, {"session": ["str", "bm90IGpzb24="]})          # base64 of "not json"
    from beaker.exceptions import BeakerWarning  # (a RuntimeWarning)
    with pytest.warns(BeakerWarning, match="Invalidating corrupt session"):
        status, cookies, body = get(wsgi, "/visits", f"sid={signed(sid)}")
    new_sid, visits = body.split()
    assert status == "200 OK" and visits == "1" and new_sid != sid, "a corrupt record: a new session, new ID"


# ---------------------------------------------------------------- what the first mutation run showed

def stock_app(config, route):
    """``route(session)`` under Beaker's own SessionMiddleware (destroy and regenerate work there too)."""
    from beaker.middleware import SessionMiddleware
    app = bottle.Bottle()
    app.route("/", callback=lambda: route(get_session()))
    app.route("/visits", callback=lambda: _count(get_session()))
    return SessionMiddleware(app, config)


def _count(session):
    session["visits"] = session.get("visits", 0) + 1
    session.save()
    return f"{beakerkit.real_session(session).id} {session['visits']}"


def test_destroy_under_beakers_own_middleware_writes_nothing_back():
    store = CountingStore()
    config = session_config(secret=SECRET, store=store, session_class=beakerkit.StrictSession)

    def save_then_destroy(session):
        session["x"] = 1
        session.save()                         # a save earlier in the request no longer applies
        destroy_session(session)
        return "gone"

    wsgi = stock_app(config, save_then_destroy)
    sid = get(wsgi, "/visits")[2].split()[0]
    get(wsgi, "/", f"sid={signed(sid)}")
    assert store.length() == 0, f"nothing written back, under the old ID or a new one: {store.all()}"


def test_a_destroyed_session_is_empty_and_a_save_after_it_writes_nothing():
    app = bottle.Bottle()

    @app.get("/visits")
    def visits():
        return _count(get_session())

    @app.get("/destroy-then-save")
    def destroy_then_save():
        session = get_session()
        destroy_session(session)
        left = dict(session)
        session["after"] = 1
        session.save()
        return json.dumps(left)

    store = CountingStore()
    wsgi = HardenedSessions(app, session_config(secret=SECRET, store=store))
    sid = get(wsgi, "/visits")[2].split()[0]
    _, cookies, body = get(wsgi, "/destroy-then-save", f"sid={signed(sid)}")
    assert "visits" not in json.loads(body), "destroy_session empties the session at once"
    assert store.length() == 0, f"nothing is saved after destroy in the same request: {store.all()}"
    [line] = cookies
    assert expired(line)


def test_regenerate_keeps_what_the_request_changed_and_works_after_a_destroy():
    app = bottle.Bottle()

    @app.get("/visits")
    def visits():
        return _count(get_session())

    @app.get("/change-then-regenerate")
    def change_then_regenerate():
        session = get_session()
        session["changed"] = "yes"               # not saved by the route itself
        regenerate_session(session)
        return beakerkit.real_session(session).id

    @app.get("/real")
    def real():
        session = beakerkit.real_session(get_session())
        session["real"] = 1
        regenerate_session(session)              # Beaker's Session itself: saved at once
        return session.id

    @app.get("/destroy-then-regenerate")
    def destroy_then_regenerate():
        session = get_session()
        destroy_session(session)
        session["fresh"] = 1
        regenerate_session(session)
        return beakerkit.real_session(session).id

    store = CountingStore()
    wsgi = HardenedSessions(app, session_config(secret=SECRET, store=store))
    sid = get(wsgi, "/visits")[2].split()[0]
    new = get(wsgi, "/change-then-regenerate", f"sid={signed(sid)}")[2]
    assert stored_data(store, new)["changed"] == "yes"
    newer = get(wsgi, "/real", f"sid={signed(new)}")[2]
    assert stored_data(store, newer)["real"] == 1 and not store.holds(new)
    fresh = get(wsgi, "/destroy-then-regenerate", f"sid={signed(newer)}")[2]
    assert stored_data(store, fresh)["fresh"] == 1 and not store.holds(newer)


def test_a_cookie_session_regenerates_its_id_and_keeps_its_data():
    app = bottle.Bottle()

    @app.get("/set")
    def set_():
        get_session()["a"] = 1
        get_session().save()
        return get_session()["_id"]

    @app.get("/regenerate")
    def regenerate():
        session = get_session()
        old = session["_id"]
        regenerate_session(session)
        return f"{old} {session['_id']} {session['a']}"

    config = session_config(type="cookie", secret=SECRET, validate_key=SECRET, encrypt_key=SECRET)
    wsgi = HardenedSessions(app, config, rolling=True)
    _, cookies, first = get(wsgi, "/set")
    status, again, body = get(wsgi, "/regenerate", sid_cookie(cookies))
    old, new, data = body.split()
    assert status == "200 OK" and old == first and new != old and data == "1"
    assert sid_cookie(again) != sid_cookie(cookies), "the new cookie goes out"


def test_the_cookie_name_of_a_config_without_a_key_is_beakers_default():
    app = bottle.Bottle()
    app.route("/visits", callback=lambda: _count(get_session()))
    config = {"session.type": "memory", "session.secret": SECRET}
    wsgi = HardenedSessions(app, config)
    _, cookies, body = get(wsgi, "/visits")
    [line] = cookies
    assert line.startswith("beaker.session.id=")
    _, _, again = get(wsgi, "/visits", "null; " + line.split(";")[0])
    assert again.split()[1] == "2", "the header handed to Beaker keeps Beaker's own cookie"


def test_a_custom_cookie_name_is_the_one_handed_to_beaker():
    wsgi, _ = make(key="app_sid")
    _, cookies, body = get(wsgi, "/visits")
    [line] = cookies
    sid = body.split()[0]
    assert line.startswith("app_sid=")
    assert get(wsgi, "/visits", f"sid=x; app_sid={signed(sid)}")[2] == f"{sid} 2"


def test_the_middleware_is_a_well_behaved_wsgi_server_for_the_app():
    import sys
    seen, closed = {}, []

    class Body(list):
        def close(self):
            closed.append(True)

    def inner(environ, start_response):
        seen["get_session"] = environ["beaker.get_session"]
        try:
            raise ValueError("page error")
        except ValueError:
            write = start_response("500 Internal Server Error", [("X-App", "1")], sys.exc_info())
        write(b"written ")
        return Body([b"returned"])

    answer = {}
    wsgi = HardenedSessions(inner, session_config(secret=SECRET))
    body = wsgi({"REQUEST_METHOD": "GET", "PATH_INFO": "/"},
                lambda status, headers, exc_info=None: answer.update(status=status, headers=headers, exc=exc_info))
    assert b"".join(body) == b"written returned" and closed == [True]
    assert answer["exc"][0] is ValueError and ("X-App", "1") in answer["headers"]
    assert callable(seen["get_session"]) and seen["get_session"]() is not None


def test_an_error_answer_whose_save_fails_keeps_its_headers_but_no_cookie():
    app = bottle.Bottle()

    @app.get("/error")
    def error():
        get_session()["x"] = 1
        get_session().save()
        bottle.response.set_cookie("other", "1")
        bottle.response.status = 502
        return "upstream"

    store = CountingStore()
    wsgi = HardenedSessions(app, session_config(secret=SECRET, store=store))
    with store.failing("set"):
        status, headers, body = wsgi_request(wsgi, "/error")
    assert status.startswith("502") and body == b"upstream"
    assert not [v for n, v in headers if n.lower() == "set-cookie"]
    assert dict(headers)["Content-Type"].startswith("text/html")


def test_a_store_that_blinks_while_loading_is_a_503_even_with_invalidate_corrupt():
    """A store failing once is no corrupt record: never a silent new session (then the data would be lost)."""
    class Blinking(CountingStore):
        blinks = 0

        def check(self, method):
            if method == "get" and self.blinks:
                self.blinks -= 1
                raise storedown.StoreUnavailable("blinked")

    store = Blinking()
    wsgi, _ = make(store=store, invalidate_corrupt=True)
    sid = get(wsgi, "/visits")[2].split()[0]
    store.blinks = 1
    status, cookies, _ = get(wsgi, "/read", f"sid={signed(sid)}")
    assert status == storedown.STATUS and cookies == []
    assert get(wsgi, "/visits", f"sid={signed(sid)}")[2] == f"{sid} 2"


def test_a_corrupt_record_says_why_in_beakers_warning():
    from beaker.exceptions import BeakerWarning
    wsgi, store = make(invalidate_corrupt=True)
    sid = get(wsgi, "/visits")[2].split()[0]
    store.store.set(sid, {"session": ["str", "bm90IGpzb24="]})
    with pytest.warns(BeakerWarning, match=f"the stored session {sid} cannot be decoded: "):
        get(wsgi, "/visits", f"sid={signed(sid)}")


def test_the_counting_namespace_needs_no_creation_lock():
    lock = CountingNamespace("a", store=CountingStore()).get_creation_lock("session")
    assert lock.acquire_write_lock() is True


def test_an_empty_beaker_cookie_is_no_id():
    assert session_id_from_cookie("sid=") is None
    assert session_id_from_cookie(f"sid={signed('')}", secret=SECRET) is None, "a signature of nothing"


# ---------------------------------------------------------------- Beaker imported without two drivers

BEAKER_IN_A_FRESH_PROCESS = """
import json, sys
import course.kit.beakerkit
loaded = {name: name in sys.modules for name in ("pymongo", "bson", "redis")}
from beaker.cache import clsmap
redis_manager = clsmap["ext:redis"]
from beaker.ext import mongodb, redisnm
print(json.dumps({"loaded": loaded, "redis_class": redis_manager is redisnm.RedisNamespaceManager,
                  "mongo_class": clsmap["ext:mongodb"] is mongodb.MongoNamespaceManager,
                  "drivers": [mongodb.pymongo is not None, redisnm.redis is not None],
                  "cluster": clsmap["ext:rediscluster"].__name__, "memory": clsmap["memory"].__name__}))
"""


def test_the_kit_imports_beaker_without_pymongo_and_redis_py_and_beakers_backends_still_have_them():
    import subprocess

    out = subprocess.run([sys.executable, "-c", BEAKER_IN_A_FRESH_PROCESS], capture_output=True, text=True,
                         check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen["loaded"] == {"pymongo": False, "bson": False, "redis": False}, (
        f"importing the kit's Beaker layer loaded drivers no session asked for: {seen['loaded']}")
    assert seen["redis_class"] and seen["mongo_class"], "Beaker's table of backends gives its own classes"
    assert seen["drivers"] == [True, True], "Beaker's ext:mongodb and ext:redis see their drivers once used"
    assert (seen["cluster"], seen["memory"]) == ("RedisClusterNamespaceManager", "MemoryNamespaceManager")


def test_an_unknown_beaker_backend_is_still_beakers_own_error():
    from beaker.cache import clsmap

    with pytest.raises(KeyError):
        clsmap["ext:nonesuch"]
