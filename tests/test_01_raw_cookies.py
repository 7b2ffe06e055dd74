"""Lesson 01: a cookie is just a header.

Black-box over HTTP: each test serves the lesson on a free port and talks to it with requests.
A ``requests.Session`` (the ``client`` fixture) keeps cookies as a browser does; a raw
``Cookie`` header plays a client that sends whatever it likes.
"""
import pytest
import requests

from course.tools.testing import cookie_attributes, set_cookie_lines

GARBAGE_VISITS = {
    "letters": "abc",
    "negative": "-3",
    "decimal": "2.5",
    "exponent": "1e3",
    "huge": "9" * 40,
    "more digits than int() reads": "9" * 4301,
    "ten digits": "1000000000",
    "empty": "",
    "arabic-indic digits": "%D9%A3",   # "٣" percent-encoded, as a browser would send it
    "unbalanced quote": '"12',
    "quoted negative": '"-5"',
    "spaces inside": "1 2",
}


# ---------------------------------------------------------------- 01.1 read_count

@pytest.mark.exercise("01.1")
@pytest.mark.parametrize("value, expected", [("0", 0), ("1", 1), ("41", 41), ("999999999", 999_999_999)],
                         ids=["zero", "one", "forty-one", "nine digits"])
def test_read_count_accepts_small_non_negative_integers(app_module, value, expected):
    assert app_module.read_count(value) == expected


@pytest.mark.exercise("01.1")
@pytest.mark.parametrize("value", [None, "", "abc", "-3", "2.5", "1e3", "9" * 40, "1000000000", "٣", "１２", " 7",
                                   '"12', "9" * 4301, "1" * 100_000],
                         ids=["none", "empty", "letters", "negative", "decimal", "exponent", "huge",
                              "ten digits", "arabic-indic", "fullwidth", "leading space", "quote",
                              "4301 digits", "100,000 digits"])
def test_read_count_treats_anything_else_as_zero(app_module, value):
    assert app_module.read_count(value) == 0, f"read_count({value!r}) should be 0: it is not a small count"


@pytest.mark.exercise("01.2")   # over HTTP: needs /visits too
@pytest.mark.parametrize("value", list(GARBAGE_VISITS.values()), ids=list(GARBAGE_VISITS))
def test_a_garbage_visits_cookie_counts_as_zero_never_a_500(base_url, value):
    resp = requests.get(base_url + "/visits", headers={"Cookie": f"visits={value}"})
    assert resp.status_code == 200, f"Cookie visits={value!r} gave {resp.status_code}: bad input must not crash"
    assert "You have visited 1 times" in resp.text


# ---------------------------------------------------------------- 01.2 /visits

@pytest.mark.exercise("01.2")
def test_first_visit_counts_one_and_sets_the_cookie(base_url, client):
    resp = client.get(base_url + "/visits")
    assert resp.status_code == 200
    assert "You have visited 1 times" in resp.text
    assert client.cookies.get("visits") == "1"


@pytest.mark.exercise("01.2")
def test_each_visit_counts_up(base_url, client):
    bodies = [client.get(base_url + "/visits").text for _ in range(3)]
    counted = ["You have visited %d times" % n in body for n, body in zip((1, 2, 3), bodies, strict=True)]
    assert counted == [True] * 3, bodies


@pytest.mark.exercise("01.2")
def test_visits_cookie_has_path_max_age_and_httponly(base_url):
    resp = requests.get(base_url + "/visits")
    lines = set_cookie_lines(resp, "visits")
    assert len(lines) == 1, f"expected one Set-Cookie for visits, got {lines}"
    attrs = [part.strip().lower() for part in lines[0].split(";")[1:]]
    assert "path=/" in attrs, f"Path=/ missing in {lines[0]!r}"
    assert "max-age=31536000" in attrs, f"Max-Age of a year (31536000 s) missing in {lines[0]!r}"
    assert "httponly" in attrs, f"HttpOnly missing in {lines[0]!r}"


@pytest.mark.exercise("01.2")
def test_the_server_believes_a_forged_count(base_url):
    # The lesson's point: a plain cookie is whatever the client says it is.
    resp = requests.get(base_url + "/visits", headers={"Cookie": "visits=1000000"})
    assert "You have visited 1000001 times" in resp.text


# ---------------------------------------------------------------- 01.3 /forget

@pytest.mark.exercise("01.3")
def test_forget_deletes_the_cookie_and_counting_restarts(base_url, client):
    client.get(base_url + "/visits")
    client.get(base_url + "/visits")
    resp = client.get(base_url + "/forget")
    assert resp.status_code == 200
    lines = set_cookie_lines(resp, "visits")
    assert lines, "GET /forget sent no Set-Cookie for visits: nothing tells the browser to drop it"
    assert "visits" not in client.cookies, f"the browser still holds visits={client.cookies.get('visits')!r}"
    assert "You have visited 1 times" in client.get(base_url + "/visits").text


@pytest.mark.exercise("01.3")
def test_forget_answers_with_a_line_of_text(base_url):
    resp = requests.get(base_url + "/forget")
    assert resp.status_code == 200 and resp.text.strip(), (
        f"GET /forget answered {resp.status_code} with {resp.text!r}: answer with a line of text saying what "
        "happened (return text(...)), or the visitor sees a blank page")


@pytest.mark.exercise("01.3")
def test_forget_uses_the_same_path_as_the_cookie(base_url):
    resp = requests.get(base_url + "/forget")
    line = set_cookie_lines(resp, "visits")[0].lower()
    assert "path=/" in line.replace(" ", ""), (
        "delete the cookie with path='/', the path it was set with: a deletion must name the cookie's path "
        f"(from /forget a deletion without Path happens to reach Path=/, from a deeper URL it would not): {line!r}")


# ---------------------------------------------------------------- 01.4 /theme

@pytest.mark.exercise("01.4")
def test_theme_is_light_by_default(base_url):
    resp = requests.get(base_url + "/theme")
    assert resp.status_code == 200
    assert "Your theme is light" in resp.text


@pytest.mark.exercise("01.4")
@pytest.mark.parametrize("theme", ["dark", "light"])
def test_theme_can_be_set_and_is_remembered(base_url, client, theme):
    resp = client.get(base_url + "/theme", params={"set": theme})
    assert resp.status_code == 200 and f"Your theme is {theme}" in resp.text
    assert client.cookies.get("theme") == theme
    assert f"Your theme is {theme}" in client.get(base_url + "/theme").text


@pytest.mark.exercise("01.4")
@pytest.mark.parametrize("bad", ["blue", "DARK", "", "<script>alert(1)</script>"])
def test_an_unknown_theme_is_400_and_changes_nothing(base_url, client, bad):
    client.get(base_url + "/theme", params={"set": "dark"})
    resp = client.get(base_url + "/theme", params={"set": bad})
    assert resp.status_code == 400, f"?set={bad!r} gave {resp.status_code}, expected 400"
    assert "light" in resp.text and "dark" in resp.text, "the 400 should say which themes there are"
    assert not set_cookie_lines(resp, "theme"), "a rejected theme must not set the cookie"
    assert "Your theme is dark" in client.get(base_url + "/theme").text


@pytest.mark.exercise("01.4")
def test_a_forged_theme_cookie_is_never_echoed(base_url):
    resp = requests.get(base_url + "/theme", headers={"Cookie": "theme=<b>pwned</b>"})
    assert resp.status_code == 200
    assert "pwned" not in resp.text
    assert "Your theme is light" in resp.text


# ---------------------------------------------------------------- ready-made parts

def test_index_page_lists_the_routes_and_shows_the_cookie_header(base_url):
    resp = requests.get(base_url + "/", headers={"Cookie": "visits=7; theme=dark"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    for path in ("/visits", "/forget", "/theme"):
        assert f'href="{path}' in resp.text
    assert "theme=dark" in resp.text, "the inspector shows the Cookie header"
    assert "7 visits" in resp.text, "the inspector says what the server makes of visits"


def test_the_inspector_never_shows_the_value_of_an_httponly_cookie(base_url):
    """The page is same-origin: a script could fetch('/') and read whatever it prints."""
    secret = "s3cr3t-visits-value-9"
    resp = requests.get(base_url + "/", headers={"Cookie": f"visits={secret}; sid=another-apps-session"})
    assert secret not in resp.text and "another-apps-session" not in resp.text
    assert "visits" in resp.text and "sid" in resp.text, "names are shown"


def test_index_page_escapes_what_the_browser_sent(base_url):
    resp = requests.get(base_url + "/", headers={"Cookie": "x=<script>alert(1)</script>"})
    assert resp.status_code == 200
    assert "<script>alert(1)" not in resp.text


def test_index_page_survives_a_cookie_header_that_is_not_utf8(base_url):
    # A client may send any bytes; Bottle's request.get_header raises on non-UTF-8 ones.
    resp = requests.get(base_url + "/", headers={"Cookie": b"visits=\xff\xfe; theme=dark"})
    assert resp.status_code == 200
    assert "theme=dark" in resp.text


@pytest.mark.exercise("01.4")
@pytest.mark.parametrize("forged", ["blue", "Dark", "light2", "darkdark"])
def test_a_theme_cookie_that_is_not_one_of_the_themes_reads_as_light(base_url, forged):
    """Only the two known values count: any other, however harmless it looks, is not echoed."""
    resp = requests.get(base_url + "/theme", headers={"Cookie": f"theme={forged}"})
    assert resp.status_code == 200 and "Your theme is light" in resp.text and forged not in resp.text


@pytest.mark.exercise("01.4")
def test_the_theme_cookie_is_readable_by_scripts_and_kept_for_a_year_on_every_page(base_url):
    resp = requests.get(base_url + "/theme?set=dark")
    line = set_cookie_lines(resp, "theme")[0]
    attributes = cookie_attributes(line)
    assert "httponly" not in attributes, "a page script styles the page from the theme: no HttpOnly"
    assert attributes.get("path") == "/", "Path=/: every page needs the theme"
    assert int(attributes.get("max-age", "0")) >= 30 * 24 * 3600, "kept when the browser closes: Max-Age"
