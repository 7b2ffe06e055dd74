"""course.kit.cookies on its own: the one cookie reader, and the value codec express uses.

Any-string properties are in tests/test_kit_properties.py; these pin each rule of the reader.
"""
import pytest

from course.kit.cookies import (
    RAW_COOKIE_KEY,
    cookie_header,
    decode_value,
    encode_value,
    first_cookie,
    parse_cookie_header,
    request_cookies,
)


@pytest.mark.parametrize("header, pairs", [
    ("a=1", [("a", "1")]),
    ("a=1; b=2", [("a", "1"), ("b", "2")]),
    ("a=1;b=2", [("a", "1"), ("b", "2")]),
    (" \ta = 1 \t; b=2", [("a", "1"), ("b", "2")]),
    ("a=1; a=2", [("a", "1"), ("a", "2")]),
    ("null; a=1", [("a", "1")]),
    ("=x; a=1", [("a", "1")]),
    ("a=", [("a", "")]),
    ("a=b=c", [("a", "b=c")]),
    ('a="quoted"', [("a", "quoted")]),
    ('a=""', [("a", "")]),
    ('a="', [("a", '"')]),
    ('a="x', [("a", '"x')]),
    ('a=x"', [("a", 'x"')]),
    ('a=""x""', [("a", '"x"')]),
    ("a b=1", [("a b", "1")]),
    ("", []),
    (None, []),
    (";;;", []),
])
def test_the_reader_splits_strips_and_unquotes_as_express_does(header, pairs):
    assert parse_cookie_header(header) == pairs


def test_the_first_cookie_of_a_name_wins_and_a_missing_one_is_none():
    assert first_cookie("sid=one; other=x; sid=two", "sid") == "one"
    assert first_cookie("sid=; sid=two", "sid") == "", "an empty first value still wins"
    assert first_cookie("other=x", "sid") is None
    assert first_cookie(None, "sid") is None
    assert first_cookie("SID=x", "sid") is None, "names are case-sensitive"


@pytest.mark.parametrize("value, encoded", [
    ("s:abc.def", "s%3Aabc.def"),
    ("a b", "a%20b"),
    ("!'()*-._~", "!'()*-._~"),
    ("é", "%C3%A9"),
    ("a+b/c=", "a%2Bb%2Fc%3D"),
    ("", ""),
])
def test_values_are_encoded_as_encodeURIComponent_and_decode_back(value, encoded):
    assert encode_value(value) == encoded
    assert decode_value(encoded) == value


@pytest.mark.parametrize("raw, decoded", [
    ("s%3Aabc", "s:abc"),
    ("s%3Aa%2Bb", "s:a+b"),
    ("s%3A", "s:"),
    ("100%", "100%"),
    ("%zz", "%zz"),
    ("plain", "plain"),
    ("S%3Aabc", "S:abc"),
])
def test_decode_undoes_the_escapes_and_keeps_a_stray_percent(raw, decoded):
    assert decode_value(raw) == decoded


def test_the_header_comes_from_the_environ_as_utf8_whatever_the_bytes():
    assert cookie_header({}) == ""
    assert cookie_header({"HTTP_COOKIE": "a=1"}) == "a=1"
    assert cookie_header({"HTTP_COOKIE": "n=\xc3\xa9"}) == "n=é", "WSGI's latin-1 undone, then UTF-8"
    assert cookie_header({"HTTP_COOKIE": "n=\xff"}) == "n=\ufffd", "bytes that are not UTF-8 are replaced"
    assert cookie_header({"HTTP_COOKIE": "n=\u0100"}) == "n=?", "a character WSGI cannot carry is replaced"


def test_the_raw_header_a_middleware_kept_is_read_before_the_rewritten_one():
    environ = {"HTTP_COOKIE": "sid=cleaned", RAW_COOKIE_KEY: "null; sid=sent; theme=dark"}
    assert cookie_header(environ) == "null; sid=sent; theme=dark"
    assert request_cookies(environ) == [("sid", "sent"), ("theme", "dark")]
    assert cookie_header({"HTTP_COOKIE": "a=1", RAW_COOKIE_KEY: ""}) == "", "an empty raw header is still the raw one"


def test_the_signed_session_cookie_is_decoded_without_unquote(monkeypatch):
    """Its one escape (``s%3A``) is undone by hand: unquote is the slow path, for anything else."""
    import course.kit.cookies as cookies
    calls = []
    real = cookies.unquote
    monkeypatch.setattr(cookies, "unquote", lambda value: calls.append(value) or real(value))
    assert decode_value("s%3Aabc.def") == "s:abc.def" and calls == []
    assert decode_value("s%3A%2Bb") == "s:+b" and calls == ["s%3A%2Bb"], "a second escape: unquote"
    assert decode_value("s%3Aab%2B") == "s:ab+" and len(calls) == 2
