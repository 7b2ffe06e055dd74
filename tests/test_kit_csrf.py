"""course.kit.csrf on its own: telling cross-site requests apart, and the login form's token."""
import hashlib
import hmac

import bottle
import pytest

from course.kit import csrf
from course.kit.csrf import (
    CROSS_SITE_REFUSED,
    LOGIN_COOKIE,
    TOKEN_FIELD,
    TOKEN_HEADER,
    is_cross_site,
    login_form_token,
    login_token_ok,
    own_origin,
    protect_login,
    refuse_cross_site,
)
from course.kit.security import SCHEME_KEY
from course.tools.testing import wsgi_request

SECRET = "kit-csrf-secret-0123456789"
VALUE = "v" * 43


def environ(**headers):
    env = {"wsgi.url_scheme": "http", "HTTP_HOST": "app.test:8080", "REQUEST_METHOD": "POST", "PATH_INFO": "/"}
    env.update({("HTTP_" + k.upper()): v for k, v in headers.items()})
    return env


@pytest.mark.parametrize("env, origin", [
    ({"wsgi.url_scheme": "http", "HTTP_HOST": "App.Test:8080"}, "http://app.test:8080"),
    ({"wsgi.url_scheme": "http", "HTTP_HOST": "app.test:80"}, "http://app.test"),
    ({"wsgi.url_scheme": "https", "HTTP_HOST": "app.test:443"}, "https://app.test"),
    ({"wsgi.url_scheme": "https", "HTTP_HOST": "app.test:80"}, "https://app.test:80"),
    ({"wsgi.url_scheme": "http", SCHEME_KEY: "https", "HTTP_HOST": "app.test:443"}, "https://app.test"),
    ({"wsgi.url_scheme": "http", "SERVER_NAME": "srv", "SERVER_PORT": "81"}, "http://srv:81"),
    ({"SERVER_NAME": "srv", "SERVER_PORT": "80"}, "http://srv"),
    ({"wsgi.url_scheme": "ftp", "HTTP_HOST": "h:80"}, "ftp://h:80"),
    ({"wsgi.url_scheme": "http", "HTTP_HOST": "\xc3\xa9.test"}, "http://é.test"),
    ({"wsgi.url_scheme": "http", "HTTP_HOST": "\xff.test"}, "http://\ufffd.test"),
    ({"wsgi.url_scheme": "http", "HTTP_HOST": "\u0100.test"}, "http://?.test"),
    ({"wsgi.url_scheme": "http", "HTTP_HOST": "a.test", "HTTP_X_FORWARDED_HOST": "evil.test"}, "http://a.test"),
])
def test_own_origin_is_the_scheme_and_host_the_browser_used(env, origin):
    assert own_origin(env) == origin


@pytest.mark.parametrize("headers, cross", [
    ({}, False),
    ({"Sec-Fetch-Site": "same-origin"}, False),
    ({"Sec-Fetch-Site": " None "}, False),
    ({"Sec-Fetch-Site": "same-site"}, True),
    ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Sec-Fetch-Site": "cross-site", "Origin": "http://app.test:8080"}, True),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.test"}, False),
    ({"Origin": "http://app.test:8080"}, False),
    ({"Origin": " HTTP://APP.TEST:8080 "}, False),
    ({"Origin": "http://app.test:8081"}, True),
    ({"Origin": "https://app.test:8080"}, True),
    ({"Origin": "null"}, True),
    ({"Origin": ""}, True),
])
def test_cross_site_is_what_the_browser_says(headers, cross):
    env = environ(**{k.replace("-", "_"): v for k, v in headers.items()})
    assert is_cross_site(env) is cross


def mac(value, secret=SECRET):
    return hmac.new(secret.encode(), b"login-csrf:" + value.encode(), hashlib.sha256).hexdigest()


def test_the_login_token_is_the_hmac_of_the_cookie_value():
    env = {"HTTP_COOKIE": f"{LOGIN_COOKIE}={VALUE}"}
    assert login_token_ok(SECRET, mac(VALUE), env)
    assert not login_token_ok("another-secret", mac(VALUE), env)
    assert not login_token_ok(SECRET, mac("w" * 43), env)
    assert not login_token_ok(SECRET, mac(VALUE)[:-1], env)
    assert not login_token_ok(SECRET, mac(VALUE).upper(), env)


@pytest.mark.parametrize("cookie", [None, "", "x" * 19, "x" * 101, "a b" * 10, "é" * 30, "x" * 20 + "!"])
def test_no_good_login_cookie_means_no_token_is_right(cookie):
    env = {} if cookie is None else {"HTTP_COOKIE": f"{LOGIN_COOKIE}={cookie}"}
    assert login_token_ok(SECRET, mac(cookie or ""), env) is False


def test_the_cookie_may_be_20_to_100_url_safe_characters():
    for value in ("x" * 20, "x" * 100, "aZ09_-" * 4):
        assert login_token_ok(SECRET, mac(value), {"HTTP_COOKIE": f"{LOGIN_COOKIE}={value}"}), value


def test_the_first_login_cookie_counts():
    env = {"HTTP_COOKIE": f"{LOGIN_COOKIE}={VALUE}; {LOGIN_COOKIE}={'w' * 43}"}
    assert login_token_ok(SECRET, mac(VALUE), env) and not login_token_ok(SECRET, mac("w" * 43), env)


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "é" * 64, "\ud800" * 64])
def test_a_missing_oversized_or_odd_token_is_refused_without_an_exception(sent):
    assert False is login_token_ok(SECRET, sent, {"HTTP_COOKIE": f"{LOGIN_COOKIE}={VALUE}"})


def test_a_token_of_128_characters_is_still_compared_and_129_is_not(monkeypatch):
    from course.tools.testing import compare_digest_calls
    calls = compare_digest_calls(monkeypatch)
    login_token_ok(SECRET, "x" * 128, {"HTTP_COOKIE": f"{LOGIN_COOKIE}={VALUE}"})
    assert len(calls) == 1
    login_token_ok(SECRET, "x" * 129, {"HTTP_COOKIE": f"{LOGIN_COOKIE}={VALUE}"})
    assert len(calls) == 1, "an oversized token costs no HMAC"
    login_token_ok(SECRET, mac(VALUE), {})
    assert len(calls) == 1, "no login cookie: nothing to compare with (never compare_digest(None, ...))"


def app():
    application = bottle.Bottle()

    @application.get("/login")
    def form():
        return login_form_token(SECRET)

    @application.post("/login")
    @protect_login(lambda: SECRET)
    def login():
        return "logged in"

    @application.post("/logout")
    @refuse_cross_site
    def logout():
        return "logged out"

    return application


def test_the_login_form_sets_a_cookie_once_and_reuses_a_good_one():
    status, headers, body = wsgi_request(app(), "/login")
    [line] = [v for n, v in headers if n == "Set-Cookie"]
    value = line.split(";")[0].split("=", 1)[1]
    assert line.startswith(f"{LOGIN_COOKIE}=") and len(value) == 43
    attributes = {part.strip().lower() for part in line.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict", "max-age=3600"} <= attributes
    assert body.decode() == mac(value)
    status, headers, body = wsgi_request(app(), "/login", headers={"Cookie": f"{LOGIN_COOKIE}={value}"})
    assert [v for n, v in headers if n == "Set-Cookie"] == [] and body.decode() == mac(value)
    _, headers, _ = wsgi_request(app(), "/login", headers={"Cookie": f"{LOGIN_COOKIE}=short"})
    assert len([v for n, v in headers if n == "Set-Cookie"]) == 1, "a bad cookie is replaced"


def post(path, headers=None, body=b""):
    headers = dict(headers or {})
    if body:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    status, _, text = wsgi_request(app(), path, method="POST", headers=headers, body=body)
    return int(status.split()[0]), text.decode().strip()


def test_protect_login_takes_the_right_token_from_the_field_or_the_header():
    cookie = {"Cookie": f"{LOGIN_COOKIE}={VALUE}"}
    assert post("/login", cookie, f"{TOKEN_FIELD}={mac(VALUE)}".encode()) == (200, "logged in")
    assert post("/login", {**cookie, TOKEN_HEADER: mac(VALUE)}) == (200, "logged in")
    assert post("/login", {**cookie, TOKEN_HEADER: mac(VALUE)}, f"{TOKEN_FIELD}=wrong".encode()) == \
        (200, "logged in"), "the header is read first"


def test_protect_login_refuses_a_wrong_token_and_a_cross_site_post():
    cookie = {"Cookie": f"{LOGIN_COOKIE}={VALUE}"}
    status, text = post("/login", cookie, f"{TOKEN_FIELD}={mac('w' * 43)}".encode())
    assert status == 403 and "reload the login page" in text
    assert post("/login", {"Sec-Fetch-Site": "cross-site"}) == (403, CROSS_SITE_REFUSED)
    assert post("/login", {}) == (200, "logged in"), "no token and no browser page: a script may log in"


def test_protect_login_leaves_a_body_it_refuses_to_the_route():
    assert post("/login", {"Content-Type": "application/json"}, b"{not json") == (200, "logged in")


def test_refuse_cross_site_guards_the_logout(caplog):
    assert post("/logout", {"Origin": "http://evil.test"}) == (403, CROSS_SITE_REFUSED)
    assert any("refused a cross-site POST /logout" in r.getMessage() for r in caplog.records)
    assert post("/logout", {"Sec-Fetch-Site": "same-origin"}) == (200, "logged out")
    assert post("/logout") == (200, "logged out")


def test_the_names_the_forms_use():
    assert (LOGIN_COOKIE, TOKEN_FIELD, TOKEN_HEADER) == ("login_csrf", "csrf_token", "X-CSRF-Token")
    assert csrf._LOGIN_TOKEN_AGE == 3600
