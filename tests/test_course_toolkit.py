"""The toolkit's own promises, the ones every lesson relies on."""
import pytest
import requests

from course.kit.cookies import cookie_header, parse_cookie_header
from course.lesson.web import guard, todo
from course.tools import teeth
from course.tools.loader import load_app_module


def test_an_unfinished_route_answers_501_naming_the_exercise_in_text_or_html(serve_app, tmp_path):
    # The shipped starter (from git, as the teeth check reads it): lessons/ may hold the student's work.
    try:
        starter = teeth.shipped_starter("01_raw_cookies")
    except teeth.StarterUnavailable as exc:
        pytest.skip(str(exc))
    (tmp_path / "01_raw_cookies").mkdir()
    (tmp_path / "01_raw_cookies" / "app.py").write_bytes(starter)
    url = serve_app(load_app_module(tmp_path, "01_raw_cookies").create_app())
    plain = requests.get(url + "/visits")
    assert plain.status_code == 501 and plain.headers["Content-Type"].startswith("text/plain")
    assert plain.text.startswith("Exercise 01.2 is not done yet: edit lessons/01_raw_cookies/app.py")
    page = requests.get(url + "/visits", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 501 and page.headers["Content-Type"].startswith("text/html")
    assert "Exercise 01.2 is not done yet" in page.text and "<h1>" in page.text


def test_todo_raised_in_middleware_is_a_501_too(serve_app):
    def middleware_not_written_yet(environ, start_response):
        raise todo("03.3")

    resp = requests.get(serve_app(guard(middleware_not_written_yet)) + "/anything")
    assert resp.status_code == 501 and "Exercise 03.3 is not done yet" in resp.text


def test_a_cookie_header_is_parsed_like_a_browser_does_junk_and_all():
    assert parse_cookie_header('null; sid=abc; theme="dark"; =x; sid=second') == [
        ("sid", "abc"), ("theme", "dark"), ("sid", "second")]
    assert cookie_header({"HTTP_COOKIE": "a=\xff\xfe"}) == "a=\ufffd\ufffd"   # bytes that are not UTF-8
    assert cookie_header({}) == ""
