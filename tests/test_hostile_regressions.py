"""What an adversarial review broke, kept as regressions (each test names the promise it checks).

A 5,000-digit Content-Length (int() refuses it: a 500), a lesson page printing the whole session
ID (with the published development secret, a page script rebuilds the HttpOnly cookie from it),
and a trusted TLS proxy whose https Origin was refused while an http one passed.
"""
import hashlib
import hmac
import re
import socket

import pytest
import requests

from course.kit.beakerkit import DEV_SECRET
from course.tools.loader import load_app_module

BODY_ROUTES = [("06_login_logout", "/login"), ("07_cookie_security", "/login"), ("08_store_backends", "/notes")]


def options_for(slug, tmp_path):
    if slug == "08_store_backends":
        return {"store_url": f"sqlite:///{tmp_path}/sessions.db"}
    return {"db_path": str(tmp_path / "users.sqlite3")}


def raw_status(url: str, data: bytes) -> int | None:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    found = re.match(rb"HTTP/1\.\d (\d{3})", answer)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize("slug, path", BODY_ROUTES, ids=[f"{s}{p}" for s, p in BODY_ROUTES])
def test_a_content_length_of_5000_digits_is_a_400_not_a_500(course_target, serve_app, tmp_path, slug, path):
    """Claim 1: int() refuses more than 4,300 digits (ValueError), and forms._content_length lets it out."""
    url = serve_app(load_app_module(course_target, slug).create_app(**options_for(slug, tmp_path)))
    host = url.split("//")[1]
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: {'0' * 5000}\r\n\r\n").encode()
    status = raw_status(url, request)
    assert status is not None and status < 500, f"POST {path} with a 5,000-digit Content-Length gave {status}"


@pytest.mark.parametrize("slug", ["05_beaker", "07_cookie_security", "08_store_backends"])
def test_the_inspector_does_not_hand_a_page_script_the_session_cookie(course_target, serve_app, tmp_path, slug,
                                                                      monkeypatch):
    """Claim 4: the page prints the session ID, and with the published development secret (what
    `make run` uses when SESSION_SECRET is unset) the ID alone rebuilds the whole HttpOnly cookie
    (HMAC-SHA1(secret, id) + id)."""
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    module = load_app_module(course_target, slug)
    options = {} if slug == "05_beaker" else options_for(slug, tmp_path)
    url = serve_app(module.create_app(**options))
    secret = getattr(module, "DEV_SECRET", DEV_SECRET)
    browser = requests.Session()
    browser.get(url + "/visits") if slug != "07_cookie_security" else browser.post(
        url + "/login", data={"username": "alice", "password": "wonderland"})
    cookie = browser.cookies.get("sid")
    page = browser.get(url + "/").text
    rebuilt = {hmac.new(secret.encode(), i.encode(), hashlib.sha1).hexdigest() + i
               for i in re.findall(r"\b[0-9a-f]{32}\b", page)}
    assert cookie not in rebuilt, "a script on the page can rebuild the HttpOnly session cookie from GET /"


def test_behind_a_trusted_proxy_the_browsers_https_origin_is_same_origin(course_target, serve_app, tmp_path):
    """Claim 3 (and csrf.own_origin's docstring): behind a trusted TLS proxy the browser's Origin is
    https://host, yet own_origin() builds http://host from wsgi.url_scheme, so the real origin is
    refused and the http:// one (a page a network attacker can inject) is accepted."""
    module = load_app_module(course_target, "07_cookie_security")
    url = serve_app(module.create_app(db_path=str(tmp_path / "users.sqlite3"), production=True,
                                      trust_proxy=True, secret="x" * 40))
    host = url.split("//")[1]
    login = {"username": "alice", "password": "wonderland"}
    proxy = {"X-Forwarded-Proto": "https"}
    real = requests.post(url + "/login", data=login, headers={**proxy, "Origin": f"https://{host}"})
    plain = requests.post(url + "/login", data=login, headers={**proxy, "Origin": f"http://{host}"})
    assert real.status_code == 200, f"the site's own https Origin was refused: {real.status_code} {real.text!r}"
    assert plain.status_code == 403, "an http:// page of the same host is another origin"
