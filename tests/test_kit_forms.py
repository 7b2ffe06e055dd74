"""course.kit.forms on its own: every bad body a 4xx naming the problem, never a 500."""
import io
import json

import bottle
import pytest

from course.kit import forms
from course.kit.forms import (
    FORM_TYPES,
    MAX_BODY,
    FormError,
    from_browser_form,
    optional_field,
    read_credentials,
    read_fields,
    request_header,
)

FORM = "application/x-www-form-urlencoded"


def request(body=b"", ctype=FORM, length=None, **environ):
    env = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(body), "CONTENT_TYPE": ctype,
           "CONTENT_LENGTH": str(len(body)) if length is None else length}
    env.update(environ)
    return bottle.BaseRequest(env)


def refused(call):
    with pytest.raises(FormError) as caught:
        call()
    return caught.value.status_code, caught.value.message


def test_credentials_from_a_form_or_json():
    assert read_credentials(request(b"username=alice&password=wonder%20land")) == ("alice", "wonder land")
    body = json.dumps({"username": "alice", "password": "pw"}).encode()
    assert read_credentials(request(body, "application/json")) == ("alice", "pw")
    assert read_credentials(request(body, "application/vnd.api+json; charset=utf-8")) == ("alice", "pw")
    assert read_credentials(request(body, "Application/JSON")) == ("alice", "pw")


def test_multipart_forms_are_read_too():
    boundary = "XyZ"
    part = '--{b}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    body = (part.format(b=boundary, name="username", value="alice")
            + part.format(b=boundary, name="password", value="pw") + f"--{boundary}--\r\n").encode()
    assert read_credentials(request(body, f"multipart/form-data; boundary={boundary}")) == ("alice", "pw")
    assert refused(lambda: read_credentials(request(b"garbage", "multipart/form-data; boundary=q"))) == \
        (400, "Malformed form body")


@pytest.mark.parametrize("body, ctype, answer", [
    (b"username=alice", FORM, (400, "Missing field: password")),
    (b"username=alice&password=", FORM, (400, "Missing field: password")),
    (b"username=a&username=b&password=p", FORM, (400, "Field username was sent more than once")),
    (b"username=%FF&password=p", FORM, (400, "Field username is not valid text")),
    (b'{"username": "a", "password": 1}', "application/json", (400, "Field password must be a string")),
    (b'{"username": "a", "password": null}', "application/json", (400, "Field password must be a string")),
    (b'{"username": "a", "password": ""}', "application/json", (400, "Missing field: password")),
    (b'{"username": "a", "username": "b", "password": "p"}', "application/json",
     (400, "Field username was sent more than once")),
    (b'{"username": "a",', "application/json", (400, "Malformed JSON body")),
    (b"\xff\xfe", "application/json", (400, "Malformed JSON body")),
    (b"[" * 5000 + b"]" * 5000, "application/json", (400, "Malformed JSON body")),
    (b'["username"]', "application/json", None),
    (b'{"username": "\\ud800", "password": "p"}', "application/json", (400, "Field username is not valid text")),
    (b"", "application/json", (400, "Missing field: username")),
    (b"username=a&password=p", "text/plain", (415, None)),
])
def test_each_bad_body_is_a_4xx_naming_the_problem(body, ctype, answer):
    status, message = refused(lambda: read_credentials(request(body, ctype)))
    if answer is None:
        assert status == 400 and message.startswith("The JSON body must be an object")
    elif answer[1] is None:
        assert status == answer[0] and "application/x-www-form-urlencoded" in message
    else:
        assert (status, message) == answer


def test_a_body_over_the_limit_is_a_413_read_and_dropped():
    big = b"username=" + b"a" * MAX_BODY
    stream = io.BytesIO(big)
    req = request(big)
    req.environ["wsgi.input"] = stream
    assert refused(lambda: read_credentials(req)) == (413, f"Request body too large: at most {MAX_BODY} bytes")
    assert stream.tell() == len(big), "the refused body was read, so the client gets its answer"
    assert refused(lambda: read_credentials(req))[0] == 413, "a second reader is refused too, without reading"
    assert MAX_BODY == 16384


def test_exactly_max_body_bytes_is_accepted():
    body = b"password=p&username=" + b"a" * (MAX_BODY - 20)
    assert len(body) == MAX_BODY
    assert read_fields(["username"], request(body))["username"] == "a" * (MAX_BODY - 20)
    assert refused(lambda: read_fields(["username"], request(body + b"a")))[0] == 413


def test_the_drain_reads_at_most_a_megabyte():
    stream = io.BytesIO(b"x" * (3 * 1024 * 1024))
    forms._drain({"wsgi.input": stream}, 3 * 1024 * 1024)
    assert stream.tell() == 1024 * 1024
    env = {"wsgi.input": io.BytesIO(b"xx")}
    forms._drain(env, 10)
    assert env["wsgi.input"].tell() == 2, "a body shorter than announced ends the drain"
    forms._drain({}, 10)


@pytest.mark.parametrize("length", ["abc", "-1", "1" * 19, "١٢", "1 2", "  ", "\t"])
def test_a_content_length_that_is_not_a_plain_number_is_a_400(length):
    assert refused(lambda: read_credentials(request(b"", length=length))) == (400, "Bad Content-Length header")


def test_a_content_length_with_blanks_around_it_is_a_number():
    body = b"username=alice&password=pw"
    assert read_credentials(request(body, length=f" {len(body)}\t")) == ("alice", "pw")


def test_a_content_length_of_18_digits_is_a_number():
    assert refused(lambda: read_credentials(request(b"", length="9" * 18)))[0] == 413


def test_an_unknown_type_without_a_body_is_a_missing_field():
    assert refused(lambda: read_credentials(request(b"", "text/plain")))[0] == 400
    assert refused(lambda: read_credentials(request(b"", "")))[0] == 400


def test_optional_fields_are_none_when_not_sent():
    assert optional_field("csrf_token", request(b"username=a")) is None
    assert optional_field("csrf_token", request(b"csrf_token=")) == ""
    assert optional_field("csrf_token", request(b"csrf_token=t")) == "t"
    assert optional_field("csrf_token", request(b'{"csrf_token": "t"}', "application/json")) == "t"
    assert refused(lambda: optional_field("t", request(b'{"t": 1}', "application/json"))) == \
        (400, "Field t must be a string")
    assert read_fields(["a"], request(b"a=1&b=2"), optional=["b", "c"]) == {"a": "1", "b": "2", "c": None}


def test_a_json_body_is_still_readable_after_reading_it():
    req = request(b'{"username": "a", "password": "p"}', "application/json")
    read_credentials(req)
    assert req.body.read() == b'{"username": "a", "password": "p"}'


def test_form_error_keeps_the_headers_the_route_set():
    bottle.response.bind()
    bottle.response.set_header("Cache-Control", "no-store")
    bottle.response.set_header("Content-Type", "text/html")
    error = FormError(400, "bad")
    assert error.status_code == 400 and error.body == "bad\n" and error.message == "bad"
    assert error.headers["Cache-Control"] == "no-store"
    assert error.content_type == "text/plain; charset=utf-8"
    bottle.response.bind()


@pytest.mark.parametrize("raw, value", [("abc", "abc"), ("a\tb", "a\tb"), ("\xc3\xa9", "é"), ("", "")])
def test_a_header_is_read_as_utf8_text(raw, value):
    assert request_header("X-Thing", {"HTTP_X_THING": raw}) == value


def test_content_type_and_length_are_read_from_their_cgi_names():
    assert request_header("Content-Type", {"CONTENT_TYPE": "a/b"}) == "a/b"
    assert request_header("content-length", {"CONTENT_LENGTH": "5"}) == "5"
    assert request_header("X-Missing", {}) is None


@pytest.mark.parametrize("raw, problem", [("\xff", "is not UTF-8 text"), ("a\x00b", "holds control characters"),
                                          ("a\x1fb", "holds control characters"), ("a\x7f", "holds control characters"),
                                          ("a\nb", "holds control characters")])
def test_a_header_with_bad_bytes_is_a_400_naming_it(raw, problem):
    assert refused(lambda: request_header("X-Thing", {"HTTP_X_THING": raw})) == (400, f"The X-Thing header {problem}")


@pytest.mark.parametrize("ctype, accept, browser", [
    (FORM, "text/html,application/xhtml+xml", True),
    ("multipart/form-data; boundary=x", "text/html", True),
    ("Application/X-WWW-Form-Urlencoded ; charset=utf-8", "text/html", True),
    (FORM, "*/*", False),
    ("application/json", "text/html", False),
    ("", "text/html", False),
])
def test_a_browser_form_is_a_form_type_that_accepts_html(ctype, accept, browser):
    env = {"CONTENT_TYPE": ctype, "HTTP_ACCEPT": accept}
    assert from_browser_form(bottle.BaseRequest(env)) is browser
    assert from_browser_form(bottle.BaseRequest({"CONTENT_TYPE": FORM})) is False
    assert FORM_TYPES == (FORM, "multipart/form-data")


def test_form_error_drops_the_routes_content_length():
    bottle.response.bind()
    bottle.response.set_header("Content-Length", "999")
    bottle.response.set_header("X-Kept", "yes")
    error = FormError(400, "bad")
    assert [v for n, v in error.headerlist if n == "Content-Length"] in ([], ["4"]), "the route's length is not ours"
    assert error.headers["X-Kept"] == "yes"
    bottle.response.bind()


class CountingStream(io.BytesIO):
    """A request body that records the size of each read."""

    def __init__(self, data):
        super().__init__(data)
        self.reads = []

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)


def test_the_drain_reads_64_kib_at_a_time_up_to_the_announced_length():
    stream = CountingStream(b"x" * 70000)
    forms._drain({"wsgi.input": stream}, 65537)
    assert stream.reads == [65536, 1] and stream.tell() == 65537


def test_a_refused_body_is_drained_once_per_request():
    big = b"username=" + b"a" * MAX_BODY
    stream = CountingStream(big)
    req = request(big)
    req.environ["wsgi.input"] = stream
    refused(lambda: read_credentials(req))
    reads = len(stream.reads)
    assert refused(lambda: read_credentials(req))[0] == 413
    assert len(stream.reads) == reads, "the second refusal reads nothing more"


@pytest.mark.parametrize("length", [{}, {"CONTENT_LENGTH": ""}], ids=["absent", "empty"])
def test_a_request_without_content_length_has_an_empty_body(length):
    env = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(b"username=a&password=p"), "CONTENT_TYPE": FORM,
           **length}
    assert refused(lambda: read_credentials(bottle.BaseRequest(env))) == (400, "Missing field: username")


def test_a_body_without_a_content_type_is_read_as_a_form():
    body = b"username=alice&password=pw"
    env = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    assert read_credentials(bottle.BaseRequest(env)) == ("alice", "pw")


@pytest.mark.parametrize("ctype", ["text/x+json", "image/svg+json", "+json"])
def test_only_application_types_ending_in_json_are_json(ctype):
    body = json.dumps({"username": "alice", "password": "pw"}).encode()
    assert refused(lambda: read_credentials(request(body, ctype)))[0] == 415


def chunked(body: bytes, size: int = 4096) -> bottle.BaseRequest:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    return bottle.BaseRequest({"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(wire), "CONTENT_TYPE": FORM,
                               "HTTP_TRANSFER_ENCODING": "chunked"})


def test_a_chunked_body_is_limited_by_its_size_as_read():
    body = b"password=p&username=" + b"a" * (MAX_BODY - 20)
    assert read_fields(["username"], chunked(body))["username"] == "a" * (MAX_BODY - 20)
    assert refused(lambda: read_fields(["username"], chunked(body + b"a"))) == \
        (413, f"Request body too large: at most {MAX_BODY} bytes")
    assert refused(lambda: read_fields(["username"], chunked(b"username=abc"), max_body=11))[0] == 413
