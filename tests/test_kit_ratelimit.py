"""course.kit.ratelimit, called directly: failure counting, device cookies, the client's address,
and InvalidIdGuard as plain WSGI (no server: each request is an environ and a start_response)."""
import hashlib
import hmac
import logging
import math

from course.kit import ratelimit
from course.kit.idlog import id_hash
from course.kit.ratelimit import KEEP, TOO_MANY, FailureCounter, InvalidIdGuard, address_prefix, client_address
from course.kit.security import FakeClock

SECRET = "ratelimit test secret"
NAME = "app_sid"                     # not the default "sid": a dropped argument would show


# ---------------------------------------------------------------- FailureCounter

def test_failures_older_than_a_day_are_forgotten_for_that_key_only(tmp_path):
    clock = FakeClock(1000.0)
    failures = FailureCounter(tmp_path / "f.db", clock)
    failures.add("account:alice")
    failures.add("account:bob")
    clock.advance(KEEP + 1)
    failures.add("account:alice")
    assert failures.count("account:alice", 10 * KEEP) == 1, "the day-old failure went when a new one came"
    assert failures.count("account:bob", 10 * KEEP) == 1, "another key's old failures wait for its own next one"


def test_the_wait_is_whole_seconds_and_never_less_than_one(tmp_path):
    clock = FakeClock(1000.0)
    failures = FailureCounter(tmp_path / "f.db", clock)
    failures.add("k")
    clock.advance(59.5)
    assert failures.retry_after("k", 1, 60) == 1, "half a second left: wait 1 s"
    clock.advance(-30)
    assert failures.retry_after("k", 1, 60) == 31, "30.5 s left: 31"


def test_the_wait_is_one_second_even_when_rounding_says_zero(tmp_path):
    now = [math.nextafter(2.0**31 - 1, math.inf)]   # 2038: a failure just inside the window,
    failures = FailureCounter(tmp_path / "f.db", lambda: now[0])
    failures.add("k")
    now[0] = 2.0**31                                # where at + window - now rounds to 0.0
    assert failures.retry_after("k", 1, 1.0) == 1, "still in the window: a wait of 1 s, not 0 (go ahead)"


# ---------------------------------------------------------------- device cookies

def _mac(username, nonce):
    return hmac.new(SECRET.encode(), f"device:{username.lower()}:{nonce}".encode(), hashlib.sha256).hexdigest()[:32]


def test_a_device_token_is_a_16_character_nonce_and_32_hex_of_hmac():
    token = ratelimit.device_token(SECRET, "Alice")
    nonce, mac = token.split(".")
    assert len(nonce) == 16 and mac == _mac("alice", nonce), token
    assert ratelimit.device_token(SECRET, "\ud800").count(".") == 1, "any username, even a lone surrogate"


def test_a_device_cookie_may_be_100_characters_not_101():
    for length, expected in ((100, True), (101, False)):
        nonce = "n" * (length - 33)
        value = f"{nonce}.{_mac('alice', nonce)}"
        assert len(value) == length
        assert (ratelimit.device_of(SECRET, "alice", value) == nonce) is expected, length


def test_a_device_cookie_with_bytes_that_are_not_text_is_refused():
    assert ratelimit.device_of(SECRET, "alice", "abc.\udcff\udcfe") is None


# ---------------------------------------------------------------- the client

def test_a_bad_or_missing_forwarded_address_falls_back_to_remote_addr():
    environ = {"REMOTE_ADDR": "10.0.0.1"}
    for forwarded in ("1.2.3.4, ", "", "1" * 46, "a" * 40 + "-" + "1"):
        assert client_address({**environ, "HTTP_X_FORWARDED_FOR": forwarded}, True) == "10.0.0.1", forwarded
    assert client_address(environ, True) == "10.0.0.1", "no X-Forwarded-For at all"
    longest = "abcd:" * 8 + "12345"                 # 45 characters
    assert client_address({**environ, "HTTP_X_FORWARDED_FOR": longest}, True) == longest
    assert client_address({**environ, "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, True) == "203.0.113.9"
    assert client_address({}) == "unknown" and client_address({"REMOTE_ADDR": ""}) == "unknown"


def test_the_sessions_page_shows_a_prefix_of_every_kind_of_address():
    assert address_prefix("::ffff:192.0.2.1") == "::ffff::/48", "an IPv4-mapped IPv6 address is IPv6"
    assert address_prefix("unknown") == "unknown"
    assert address_prefix("x" * 30) == "x" * 20


# ---------------------------------------------------------------- InvalidIdGuard, as WSGI

def signed(session_id):
    return hmac.new(SECRET.encode(), session_id.encode(), hashlib.sha1).hexdigest() + session_id


class Answer:
    """A start_response that keeps what it was given, and the bytes written through write()."""

    def __init__(self):
        self.status, self.headers, self.written = None, [], []

    def __call__(self, status, headers, exc_info=None):
        self.status, self.headers = status, list(headers)
        return self.written.append

    def cookies(self):
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


def app_setting(*headers):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain"), *headers])
        write(b"written ")
        return [b"ok"]
    return app


def request(guard, cookie=None, path="/notes"):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": "198.51.100.1"}
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    answer = Answer()
    body = b"".join(guard(environ, answer))
    return answer, b"".join(answer.written) + body


def guard_for(tmp_path, app=None, clock=None, **options):
    failures = FailureCounter(tmp_path / "f.db", clock or FakeClock(1000.0))
    return InvalidIdGuard(app or app_setting(), failures, NAME, SECRET, "salt", **options), failures


def test_a_made_up_id_is_counted_logged_and_its_cookie_expired(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="course.kit.ratelimit")
    guard, failures = guard_for(tmp_path)
    answer, body = request(guard, f"{NAME}=made-up-id", path="/x y")
    assert answer.status == "200 OK" and body == b"written ok", "the app answers; the guard only watches"
    assert answer.cookies() == [f"{NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"]
    assert failures.count("badid:198.51.100.1", 60) == 1, "counted under badid:<client>"
    assert [r.getMessage() for r in caplog.records] == [
        f'invalid session ID {id_hash("made-up-id", "salt")} from client 198.51.100.1 (GET "/x y")']


def test_a_secure_guard_expires_the_cookie_secure(tmp_path):
    guard, _ = guard_for(tmp_path, secure=True)
    assert guard.expired_cookie() == ("Set-Cookie", f"{NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax; Secure")


def test_a_throttled_client_gets_a_complete_429(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="course.kit.ratelimit")
    clock = FakeClock(1000.0)
    guard, _ = guard_for(tmp_path, clock=clock, limit=2, window=60)
    request(guard, f"{NAME}=one")
    clock.advance(5)
    request(guard, f"{NAME}=two")
    caplog.clear()
    answer, body = request(guard, f"{NAME}=three")
    assert body == (TOO_MANY + ": your browser sent a session cookie this server did not issue;"
                    " it has been cleared (or clear it yourself)\n").encode()
    assert answer.status == "429 Too Many Requests"
    assert answer.headers == [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "55"),
                              ("Cache-Control", "no-store"),
                              ("Set-Cookie", f"{NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"),
                              ("Content-Length", str(len(body)))]
    assert [r.getMessage() for r in caplog.records] == [
        "throttled client 198.51.100.1 for 55 s: too many invalid session IDs"]


def test_only_the_session_cookie_is_looked_at(tmp_path):
    guard, failures = guard_for(tmp_path)
    answer, _ = request(guard, "theme=dark; other=x")
    assert answer.cookies() == [] and failures.count("badid:198.51.100.1", 60) == 0
    answer, _ = request(guard, f"{NAME}={signed('a' * 32)}")
    assert answer.cookies() == [] and failures.count("badid:198.51.100.1", 60) == 0, "a signed ID passes"


def test_a_new_session_cookie_from_the_app_is_not_expired(tmp_path):
    login = app_setting(("Set-Cookie", f"{NAME}={signed('b' * 32)}; Path=/"))
    guard, _ = guard_for(tmp_path, app=login)
    answer, _ = request(guard, f"{NAME}=made-up")
    assert answer.cookies() == [f"{NAME}={signed('b' * 32)}; Path=/"], "the login's new cookie alone"


def test_other_cookies_or_headers_from_the_app_still_get_the_expiry(tmp_path):
    for header in (("Set-Cookie", "theme=dark"), ("Set-Cookie", f"{NAME}x=1"), ("Link", f"{NAME}=not-a-cookie")):
        guard, _ = guard_for(tmp_path / header[0] / header[1][:6], app=app_setting(header))
        answer, _ = request(guard, f"{NAME}=made-up")
        assert f"{NAME}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax" in answer.cookies(), header
