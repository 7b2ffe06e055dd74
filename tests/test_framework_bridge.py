"""The bridge to Flask, Django and FastAPI (Starlette), checked against the real frameworks.

Each lesson ends with "In Flask, Django and FastAPI": what its idea is called there and what their
defaults do. Every such claim that can be checked is a test here, against the versions pinned in
requirements.txt, so the bridge cannot rot: a new release that changes a default fails a test,
and the lesson text must follow.

- Flask, Flask-Session and Werkzeug run in this process with their test clients (an app object is
  no global state). Flask-Session keeps its records in cachelib's file store under ``tmp_path``.
- Django's settings are global to a process, so ``tests/fixtures/django_bridge.py`` configures and
  observes Django in a subprocess of its own (once per module) and the tests here assert on what
  it saw.
- FastAPI's sessions are Starlette's ``SessionMiddleware``: checked on Starlette, one ASGI call
  at a time (no HTTP client needed).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def b64decode_loose(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def set_cookie_of(headers, name: str) -> str:
    """The one Set-Cookie line for ``name`` among ``headers`` (a list of (key, value))."""
    lines = [v for k, v in headers if k.lower() == "set-cookie" and v.split("=", 1)[0] == name]
    assert len(lines) == 1, f"expected one Set-Cookie for {name}: {lines}"
    return lines[0]


def attributes(line: str) -> dict[str, str]:
    found = {}
    for part in line.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        found[key.lower()] = value
    return found


# ================================================================ Flask

@pytest.fixture
def flask_app():
    from flask import Flask, session

    app = Flask("bridge")
    app.config["SECRET_KEY"] = "the-flask-key"

    @app.get("/visits")
    def visits():
        session["visits"] = session.get("visits", 0) + 1
        return str(session["visits"])

    @app.get("/peek")
    def peek():
        return str(session.get("visits", 0))

    @app.post("/login")
    def login():
        session["user_id"] = 1
        return "in"

    @app.post("/logout")
    def logout():
        session.clear()
        return "out"

    @app.get("/whoami")
    def whoami():
        return str(session.get("user_id", "nobody"))

    @app.get("/theme")
    def theme():
        from flask import make_response
        response = make_response("set")
        response.set_cookie("theme", "dark")
        return response

    return app


def flask_session_cookie(response) -> str:
    return set_cookie_of(response.headers.to_wsgi_list(), "session")


def test_flask_session_is_a_signed_cookie_anybody_can_read_without_the_key(flask_app):
    """Lesson 02: Flask's default ``session`` is the whole session, signed (itsdangerous), not encrypted."""
    client = flask_app.test_client()
    client.get("/visits")
    value = flask_session_cookie(client.get("/visits")).split(";")[0].split("=", 1)[1]
    compressed = value.startswith(".")
    payload = b64decode_loose(value.lstrip(".").split(".")[0])
    data = json.loads(zlib.decompress(payload) if compressed else payload)
    assert data == {"visits": 2}, "read with base64 alone, no key"


def test_flask_ignores_a_tampered_session_cookie(flask_app):
    client = flask_app.test_client()
    line = flask_session_cookie(client.get("/visits"))
    value = line.split(";")[0].split("=", 1)[1]
    forged = base64.urlsafe_b64encode(b'{"visits":1000000}').rstrip(b"=").decode() + value[value.index("."):]
    client.set_cookie("session", forged)
    assert client.get("/peek").text == "0", "a changed payload with the old signature is no session"


def test_flask_refuses_to_write_a_session_without_secret_key():
    from flask import Flask, session

    app = Flask("nokey")

    @app.get("/visits")
    def visits():
        session["visits"] = 1
        return "1"

    app.config["TESTING"] = True
    with pytest.raises(RuntimeError, match="secret key"):
        app.test_client().get("/visits")


def test_flask_secret_key_fallbacks_accept_a_cookie_signed_with_the_old_key(flask_app):
    """Lesson 02's rotation: Flask 3.1's ``SECRET_KEY_FALLBACKS``."""
    client = flask_app.test_client()
    client.get("/visits")
    old_cookie = client.get_cookie("session").value
    flask_app.config.update(SECRET_KEY="the-new-key", SECRET_KEY_FALLBACKS=["the-flask-key"])
    rotated = flask_app.test_client()
    rotated.set_cookie("session", old_cookie)
    assert rotated.get("/peek").text == "1"
    flask_app.config["SECRET_KEY_FALLBACKS"] = []
    dropped = flask_app.test_client()
    dropped.set_cookie("session", old_cookie)
    assert dropped.get("/peek").text == "0", "without the fallback the old cookie is no session"


def test_one_flask_session_cookie_is_an_offline_test_of_any_guessed_key(flask_app):
    """Lesson 02: a weak key falls to a word list, tried offline against one cookie (no request)."""
    from flask.sessions import SecureCookieSessionInterface

    flask_app.config["SECRET_KEY"] = "changeme"
    client = flask_app.test_client()
    cookie = client.get("/visits") and client.get_cookie("session").value
    interface = SecureCookieSessionInterface()
    found = None
    for guess in ["secret", "password", "dev", "changeme", "keyboard cat"]:
        flask_app.config["SECRET_KEY"] = guess
        try:
            interface.get_signing_serializer(flask_app).loads(cookie)
        except Exception:
            continue
        found = guess
        break
    assert found == "changeme"


def test_one_course_signed_cookie_is_an_offline_test_of_any_guessed_secret():
    """The same holds for lesson 02's express format: sign again with each guess and compare."""
    from course.kit import signing

    cookie_value = signing.sign("3", "keyboard cat")       # what one visit hands out
    value, mac = cookie_value.rsplit(".", 1)
    guesses = ["secret", "changeme", "keyboard cat", "hunter2"]
    hits = [g for g in guesses
            if hmac.compare_digest(base64.b64encode(hmac.new(g.encode(), value.encode(), hashlib.sha256)
                                                    .digest()).decode().rstrip("="), mac)]
    assert hits == ["keyboard cat"]


def test_flask_session_cookie_defaults_httponly_path_slash_no_secure_no_samesite(flask_app):
    client = flask_app.test_client()
    attrs = attributes(flask_session_cookie(client.get("/visits")))
    assert "httponly" in attrs and attrs.get("path") == "/", attrs
    assert "secure" not in attrs and "samesite" not in attrs, attrs
    assert "expires" not in attrs and "max-age" not in attrs, "not permanent: a browser-session cookie"


def test_flask_permanent_session_lasts_31_days_and_is_refreshed_each_request(flask_app):
    from flask import session

    @flask_app.get("/remember")
    def remember():
        session.permanent = True
        session["r"] = 1
        return "ok"

    assert flask_app.permanent_session_lifetime.days == 31
    assert flask_app.config["SESSION_REFRESH_EACH_REQUEST"] is True
    client = flask_app.test_client()
    assert "expires" in attributes(flask_session_cookie(client.get("/remember")))
    assert "expires" in attributes(flask_session_cookie(client.get("/peek"))), \
        "a permanent session's cookie is sent again on a read (rolling)"


def test_flask_sends_no_cookie_for_a_session_nobody_wrote(flask_app):
    client = flask_app.test_client()
    response = client.get("/peek")
    assert not [v for k, v in response.headers.to_wsgi_list() if k.lower() == "set-cookie"]


def test_flask_logout_cannot_revoke_a_copied_session_cookie(flask_app):
    """Lessons 06-07: with the session in the cookie, a copy taken before logout still logs in."""
    client = flask_app.test_client()
    client.post("/login")
    copy = client.get_cookie("session").value
    client.post("/logout")
    assert client.get("/whoami").text == "nobody"
    thief = flask_app.test_client()
    thief.set_cookie("session", copy)
    assert thief.get("/whoami").text == "1", "nothing on the server knew the session had ended"


@pytest.mark.parametrize("framework", ["flask", "starlette"])
def test_set_cookie_defaults_to_path_slash_unlike_a_browser(flask_app, framework):
    """Lesson 01: the frameworks write ``Path=/`` themselves, so the browser's default never applies."""
    if framework == "flask":
        line = set_cookie_of(flask_app.test_client().get("/theme").headers.to_wsgi_list(), "theme")
        attrs = attributes(line)
        assert attrs.get("path") == "/" and "httponly" not in attrs and "samesite" not in attrs, line
    else:
        from starlette.responses import PlainTextResponse
        response = PlainTextResponse("set")
        response.set_cookie("theme", "dark")
        line = set_cookie_of([(k.decode(), v.decode()) for k, v in response.raw_headers], "theme")
        attrs = attributes(line)
        assert attrs.get("path") == "/" and attrs.get("samesite") == "lax" and "httponly" not in attrs, line


def test_werkzeug_hashes_passwords_with_scrypt_and_sizes_maxmem_for_the_cost():
    """Lesson 06: Werkzeug's default is scrypt n=2**15, r=8, p=1, beyond Python's default maxmem."""
    from werkzeug.security import check_password_hash, generate_password_hash

    stored = generate_password_hash("wonderland")
    assert stored.startswith("scrypt:32768:8:1$"), stored
    assert check_password_hash(stored, "wonderland") and not check_password_hash(stored, "wrong")


@pytest.mark.parametrize("header, scheme", [("https", "https"), ("https, http", "http"), ("http, https", "https")])
def test_werkzeug_proxyfix_counts_proxies_from_the_right(header, scheme):
    """Lesson 07: ``ProxyFix(x_proto=1)`` believes the value the last (your) proxy appended."""
    from flask import Flask, request
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = Flask("proxied")
    app.get("/")(lambda: request.scheme)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)
    assert app.test_client().get("/", headers={"X-Forwarded-Proto": header}).text == scheme
    plain = Flask("direct")
    plain.get("/")(lambda: request.scheme)
    assert plain.test_client().get("/", headers={"X-Forwarded-Proto": "https"}).text == "http", \
        "without ProxyFix the header is ignored"


# ---------------------------------------------------------------- Flask-Session: server-side

@pytest.fixture
def flask_server_side(flask_app, tmp_path):
    from cachelib import FileSystemCache
    from flask import session
    from flask_session import Session

    flask_app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache(str(tmp_path)),
                            SESSION_PERMANENT=False)
    Session(flask_app)

    @flask_app.post("/login-regenerate")
    def login_regenerate():
        flask_app.session_interface.regenerate(session)
        session["user_id"] = 1
        return "in"

    return flask_app


def test_flask_session_extension_keeps_only_an_id_in_the_cookie(flask_server_side):
    client = flask_server_side.test_client()
    client.get("/visits")
    sid = client.get_cookie("session").value
    assert "visits" not in sid and len(sid) >= 32, sid
    cache = flask_server_side.config["SESSION_CACHELIB"]
    assert cache.get("session:" + sid) == {"visits": 1}, "the data is on the server"


def test_flask_session_extension_never_adopts_an_unknown_id(flask_server_side):
    client = flask_server_side.test_client()
    client.set_cookie("session", "attacker-chosen-id-0123456789abcdef")
    client.get("/visits")
    assert client.get_cookie("session").value != "attacker-chosen-id-0123456789abcdef"


def test_flask_session_extension_regenerate_gives_a_new_id_and_drops_the_old_record(flask_server_side):
    client = flask_server_side.test_client()
    client.get("/visits")
    before = client.get_cookie("session").value
    client.post("/login-regenerate")
    after = client.get_cookie("session").value
    cache = flask_server_side.config["SESSION_CACHELIB"]
    assert after != before and cache.get("session:" + before) is None
    assert cache.get("session:" + after)["visits"] == 1, "the data moves to the new ID"


# ================================================================ Starlette (FastAPI)

def asgi_get(app, path: str) -> list[tuple[str, str]]:
    """One ``GET path`` through an ASGI app, without an HTTP client: the response's headers."""
    import asyncio

    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1),
             "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]


def test_starlette_session_middleware_is_a_signed_readable_cookie_for_14_days():
    """FastAPI's ``app.add_middleware(SessionMiddleware, secret_key=...)`` is this class."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def visits(request):
        request.session["visits"] = request.session.get("visits", 0) + 1
        return PlainTextResponse(str(request.session["visits"]))

    app = Starlette(routes=[Route("/visits", visits)],
                    middleware=[Middleware(SessionMiddleware, secret_key="the-starlette-key")])
    line = set_cookie_of(asgi_get(app, "/visits"), "session")
    attrs = attributes(line)
    assert attrs.get("max-age") == str(14 * 24 * 3600) and attrs.get("samesite") == "lax", line
    assert "httponly" in attrs and "secure" not in attrs and attrs.get("path") == "/", line
    value = line.split(";")[0].split("=", 1)[1]
    assert json.loads(base64.b64decode(value.split(".")[0] + "==")) == {"visits": 1}, "readable without the key"


# ================================================================ Django (in a subprocess)

@pytest.fixture(scope="module")
def django_seen():
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "fixtures" / "django_bridge.py")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, f"tests/fixtures/django_bridge.py failed:\n{run.stderr[-2000:]}"
    return json.loads(run.stdout)


def test_django_set_cookie_defaults_to_path_slash_without_httponly(django_seen):
    cookie = django_seen["plain_set_cookie"]
    assert cookie["path"] == "/" and cookie["httponly"] == "" and cookie["samesite"] == "", cookie


def test_django_default_session_engine_is_server_side_in_the_database(django_seen):
    assert django_seen["engine"] == "django.contrib.sessions.backends.db"
    assert django_seen["record_in_db"] and django_seen["record_data"] == {"visits": 1}
    assert len(django_seen["cookie"]["value"]) == 32, "the cookie carries only the session key"


def test_django_session_cookie_is_httponly_lax_not_secure_for_two_weeks(django_seen):
    cookie = django_seen["cookie"]
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax" and cookie["secure"] == ""
    assert cookie["max-age"] == 1209600 == django_seen["cookie_age"], \
        "persistent: 2 weeks, not a browser-session cookie"
    assert cookie["path"] == "/" and django_seen["expire_at_browser_close"] is False


def test_django_stores_and_sends_nothing_for_a_session_nobody_wrote(django_seen):
    assert django_seen["fresh_read_cookie"] is None
    assert django_seen["returning_read_cookie"] is None, "a read does not re-send the cookie"
    assert django_seen["save_every_request"] is False
    assert django_seen["returning_write_cookie"] is not None, "a write re-sends it with a fresh Max-Age"


def test_django_never_adopts_an_unknown_session_key(django_seen):
    assert django_seen["planted_id_after_write"] != "attackerchosen0123456789abcdefgh"


def test_django_login_cycles_the_session_key_and_keeps_the_data(django_seen):
    login = django_seen["login"]
    assert login["after"] != login["before"] and not login["old_record_left"]
    assert login["visits_kept"] == 2 and login["whoami"] == "alice"


def test_django_logout_flushes_the_record_and_expires_the_cookie(django_seen):
    out = django_seen["logout"]
    assert not out["old_record_left"] and out["replayed_whoami"] == "nobody"
    assert out["cookie"]["value"] == "" and out["cookie"]["max-age"] == 0


def test_django_csrf_middleware_refuses_a_post_without_the_token(django_seen):
    assert django_seen["csrf_post_without_token"] == 403


def test_django_trusts_x_forwarded_proto_only_when_configured_and_then_its_first_value(django_seen):
    secure = django_seen["is_secure"]
    assert django_seen["proxy_header_setting"] is None and secure["header_only"] is False
    assert secure["https"] is True and secure["https, http"] is True and secure["http, https"] is False


def test_django_signed_cookies_are_readable_and_secret_key_fallbacks_rotate(django_seen):
    assert django_seen["signed_cookie"].startswith("3:"), "signed, not encrypted: the value is in clear"
    assert django_seen["fallback_accepts_old"] is True and django_seen["without_fallback"] == "BadSignature"


def test_django_clearsessions_purges_expired_sessions_only(django_seen):
    assert django_seen["clearsessions"] == {"expired_left": False, "alive_left": True}


def test_django_hashes_passwords_with_pbkdf2_sha256(django_seen):
    assert django_seen["hasher"] == {"algorithm": "pbkdf2_sha256", "iterations": 1_000_000}
