"""course.kit.security on its own: Secure cookies only over HTTPS, derived keys, the save error, the clock."""
import hashlib
import hmac
import logging
import threading

import pytest
from beaker.exceptions import BeakerException

from course.kit import storedown
from course.kit.security import (
    COOKIE_TOO_LARGE,
    SCHEME_KEY,
    FakeClock,
    SecureCookieGate,
    derive_key,
    session_save_error,
)
from course.tools.testing import wsgi_request

COOKIES = [("Set-Cookie", "sid=1; Path=/; Secure; HttpOnly"), ("Set-Cookie", "plain=2; Path=/"),
           ("Set-Cookie", "upper=3; SECURE"), ("Set-Cookie", "secureish=4; Path=/secure"),
           ("Set-Cookie", "secure=5"), ("X-Other", "note; Secure")]


def app(environ, start_response):
    start_response("200 OK", list(COOKIES))
    return [environ.get(SCHEME_KEY, "-").encode()]


def test_secure_cookies_are_dropped_over_plain_http_and_the_rest_kept(caplog):
    asked = []
    gate = SecureCookieGate(app, lambda environ: asked.append(1) or False)
    with caplog.at_level(logging.WARNING, logger="course.kit.security"):
        status, headers, body = wsgi_request(gate, "/page")
    assert headers == [COOKIES[1], COOKIES[3], COOKIES[4], COOKIES[5]], \
        "Secure (any case, as an attribute) dropped; 'secure' in a path, a name or another header kept"
    assert body == b"http"
    assert any(r.getMessage().startswith("not sending 2 Secure cookie(s) over plain HTTP (GET /page); behind a proxy")
               for r in caplog.records)


def test_over_https_every_cookie_goes_out():
    _, headers, body = wsgi_request(SecureCookieGate(app, lambda environ: True))
    assert headers == COOKIES and body == b"https"


def test_is_https_is_asked_only_when_a_secure_cookie_goes_out_and_for_the_scheme():
    asked = []

    def plain(environ, start_response):
        start_response("200 OK", [("Set-Cookie", "a=1")])
        return [environ[SCHEME_KEY].encode()]

    _, headers, body = wsgi_request(SecureCookieGate(plain, lambda e: asked.append(e) or False), scheme="http")
    assert headers == [("Set-Cookie", "a=1")] and body == b"http"
    assert len(asked) == 1, "once for the scheme, not again for a response without Secure cookies"


def test_an_unfinished_is_https_leaves_the_servers_scheme():
    def todo(environ):
        raise NotImplementedError("07.4")

    def plain(environ, start_response):
        start_response("200 OK", [])
        return [environ.get(SCHEME_KEY, "unset").encode()]

    assert wsgi_request(SecureCookieGate(plain, todo), scheme="https")[2] == b"unset"


def test_derive_key_is_hmac_sha256_of_the_purpose():
    expected = hmac.new(b"secret", b"encrypt", hashlib.sha256).hexdigest()
    assert derive_key("secret", "encrypt") == expected
    assert derive_key("secret", "encrypt") != derive_key("secret", "validate")
    assert derive_key("secret", "encrypt") != derive_key("other", "encrypt")
    assert derive_key("sécret", "é") == hmac.new("sécret".encode(), "é".encode(), hashlib.sha256).hexdigest()


def test_a_cookie_too_long_is_a_413_and_anything_else_the_503():
    assert session_save_error(BeakerException("Cookie value is too long to store"), {}) == \
        ("413 Content Too Large", COOKIE_TOO_LARGE)
    assert session_save_error(BeakerException("something else"), {}) == storedown.answer()
    assert session_save_error(ValueError("too long"), {}) == storedown.answer()
    assert "4 KB" in COOKIE_TOO_LARGE


def test_the_fake_clock_moves_only_when_told():
    clock = FakeClock(100)
    assert clock() == 100.0 and isinstance(clock(), float)
    assert clock.advance(5) == 105.0 and clock() == 105.0
    assert clock.advance(-10) == 95.0
    assert repr(clock) == "FakeClock(95.0)"


def test_the_fake_clock_starts_at_the_real_time(monkeypatch):
    import course.kit.security as security
    monkeypatch.setattr(security.time, "time", lambda: 1234.5)
    assert FakeClock()() == 1234.5
    assert FakeClock(0)() == 0.0


def test_the_fake_clock_is_thread_safe():
    clock = FakeClock(0)
    threads = [threading.Thread(target=lambda: [clock.advance(1) for _ in range(1000)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clock() == 4000


@pytest.mark.parametrize("value, secure", [("a=1; Secure", True), ("a=1;secure", True), ("a=1; Secure=", False),
                                           ("Secure=1", False), ("a=1", False), ("a=1; HttpOnly;  secure ", True),
                                           ("Secure; Path=/", False), ("a=1; Path=/; Secure", True)])
def test_what_counts_as_a_secure_cookie(value, secure):
    from course.kit.security import _is_secure_cookie
    assert _is_secure_cookie(value) is secure


def test_without_a_url_scheme_the_scheme_is_http():
    seen = {}

    def inner(environ, start_response):
        seen.update(environ)
        return []

    SecureCookieGate(inner, lambda environ: False)({}, lambda *a: None)
    assert seen[SCHEME_KEY] == "http"


def test_the_scheme_falls_back_to_what_the_server_itself_spoke():
    def inner(environ, start_response):
        start_response("200 OK", [])
        return [environ[SCHEME_KEY].encode()]

    assert wsgi_request(SecureCookieGate(inner, lambda environ: False), scheme="https")[2] == b"https"
