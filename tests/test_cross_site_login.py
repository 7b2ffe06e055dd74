"""A page of another site (or another port of this host) can neither log a real Chromium in, nor out.

Login CSRF: an auto-submitting form on the attacker's page posts the attacker's own username and
password to ``/login``; if the browser ends up logged in as bob, what alice types next lands in
bob's account. Logout CSRF: the same form posting to ``/logout`` ends alice's session. Both are
refused by ``course.kit.csrf`` (Sec-Fetch-Site / Origin, and the login form's pre-session token).
The browser is a real headless Chromium; ``*.test`` names resolve to 127.0.0.1 inside it only.
"""
import pytest

from course.lesson.server import serve
from course.tools import browser
from course.tools.loader import load_app_module

LESSONS = ["06_login_logout", "07_cookie_security"]
ATTACKERS = {"another site": "evil.test", "another port of this host": "127.0.0.1"}


class AttackerSite:
    """Serves ``/?to=URL&fields=a=1,b=2``: a page whose form posts those fields to URL at once."""

    def __call__(self, environ, start_response):
        from urllib.parse import parse_qs
        query = parse_qs(environ.get("QUERY_STRING", ""))
        target = query.get("to", [""])[0]
        fields = [pair.split("=", 1) for pair in query.get("fields", [""])[0].split(",") if "=" in pair]
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields)
        body = (f'<!doctype html><form id="f" method="post" action="{target}">{inputs}</form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture(scope="module")
def chrome():
    with browser.chromium(browser.require_chromium("full"), test_hosts=True) as instance:
        yield instance


@pytest.fixture(scope="module")
def attacker():
    with serve(AttackerSite()) as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture
def victim(request, course_target, tmp_path):
    module = load_app_module(course_target, request.param)
    with serve(module.create_app(db_path=str(tmp_path / "users.sqlite3"))) as url:
        yield url


@pytest.fixture
def page(chrome):
    context = chrome.new_context()
    context.set_default_timeout(8000)
    try:
        yield context.new_page()
    finally:
        context.close()


def attack(page, attacker_port, host, target, fields):
    page.goto(f"http://{host}:{attacker_port}/?to={target}&fields={fields}")
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)               # the auto-submitted form's answer has arrived


def log_in_through_the_form(page, victim):
    page.goto(victim + "/login")
    page.fill("#username", "alice")
    page.fill("#password", "wonderland")
    page.click("#login")
    page.wait_for_load_state("load")
    page.goto(victim + "/dashboard")
    assert "user 1" in page.content(), "the login form of the lesson itself must work"


@pytest.mark.parametrize("victim", LESSONS, indirect=True)
@pytest.mark.parametrize("host", list(ATTACKERS.values()), ids=list(ATTACKERS))
def test_a_form_on_another_origin_cannot_log_the_browser_in(page, victim, attacker, host):
    attack(page, attacker, host, victim + "/login", "username=bob,password=builder")
    page.goto(victim + "/dashboard")
    assert "user 2" not in page.content(), "the attacker's form logged the browser in as bob"
    assert "Please log in" in page.content()


@pytest.mark.parametrize("victim", LESSONS, indirect=True)
@pytest.mark.parametrize("host", list(ATTACKERS.values()), ids=list(ATTACKERS))
def test_a_form_on_another_origin_cannot_log_the_browser_out(page, victim, attacker, host):
    log_in_through_the_form(page, victim)
    attack(page, attacker, host, victim + "/logout", "x=1")
    page.goto(victim + "/dashboard")
    assert "user 1" in page.content(), "the attacker's form logged alice out"


@pytest.mark.parametrize("victim", LESSONS, indirect=True)
def test_the_login_form_of_the_site_itself_still_logs_in_and_out(page, victim):
    log_in_through_the_form(page, victim)
    page.evaluate("fetch('/logout', {method: 'POST'})")
    page.wait_for_timeout(300)
    page.goto(victim + "/dashboard")
    assert "Please log in" in page.content()
