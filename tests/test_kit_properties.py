"""Property-based tests (Hypothesis) of the kit's cookie reader and of sign/unsign.

The hostile-input corpus checks the inputs we thought of; these check the ones we did not: any
string at all goes into the cookie reader and into ``unsign`` without an exception, and what comes
out keeps the promises the lessons rely on.
"""
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from course.kit.cookies import cookie_header, first_cookie, parse_cookie_header
from course.kit.signing import sign, sign_cookie, unsign, unsign_cookie

# No deadline: a loaded CI machine must not turn a slow example into a failure.
settings.register_profile("kit", deadline=None, max_examples=60)
settings.load_profile("kit")

# Cookie names and values a server writes: RFC 6265 cookie-octets, no quotes, no separators.
NAME = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"),
               min_size=1, max_size=20)
VALUE = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'()*+-./:<=>?@[]^_`{|}~"),
                max_size=40)
SECRET = st.text(min_size=1, max_size=40)


@given(st.text(max_size=2000))
def test_any_text_parses_into_name_value_pairs_without_an_exception(header):
    for name, value in parse_cookie_header(header):
        assert name and ";" not in name and "=" not in name and ";" not in value
        assert name == name.strip(" \t")


@given(st.binary(max_size=2000))
def test_any_bytes_in_the_environ_give_a_header_and_never_an_exception(raw):
    header = cookie_header({"HTTP_COOKIE": raw.decode("latin-1")})
    assert isinstance(header, str)
    parse_cookie_header(header)


@given(st.lists(st.tuples(NAME, VALUE), max_size=30))
def test_the_pairs_a_server_writes_read_back_in_order_duplicates_kept(pairs):
    header = "; ".join(f"{name}={value}" for name, value in pairs)
    assert parse_cookie_header(header) == pairs


@given(st.lists(st.tuples(NAME, VALUE), min_size=1, max_size=10), st.text(max_size=50))
def test_the_first_cookie_of_a_name_wins_whatever_junk_follows(pairs, junk):
    header = "; ".join(f"{name}={value}" for name, value in pairs) + ";" + junk.replace(";", "")
    name, value = pairs[0]
    assert first_cookie(header, name) == value


@given(st.text(max_size=300))
def test_a_bare_token_or_junk_piece_never_hides_the_cookies_beside_it(junk):
    junk = junk.replace(";", "").replace("=", "")
    assert first_cookie(f"{junk}; sid=abc; {junk}", "sid") == "abc"


def _lines_run(function, *args) -> int:
    """How many lines of ``function`` run for these arguments (a count, not a time: load cannot change it)."""
    code, count = function.__code__, 0

    def trace(frame, event, arg):
        nonlocal count
        if frame.f_code is not code:
            return None
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        function(*args)
    finally:
        sys.settrace(None)
    return count


def test_reading_a_large_header_takes_linear_time():
    """10,000 cookies, a 1 MB header, 60 KB of backslashes, a million semicolons: a bounded number of
    lines per ``;``-piece, each of them a linear string method (split, partition, strip, a slice).
    A quadratic reader (re-scanning the header for every cookie, or a backtracking pattern) would
    run lines in proportion to the header's length times its pieces instead."""
    headers = ["; ".join(f"c{i}={i}" for i in range(10_000)), "a=" + "x" * 1_000_000,
               'a="' + "\\" * 61_000 + '"', ";" * 1_000_000]
    for header in headers:
        pieces = header.count(";") + 1
        assert _lines_run(parse_cookie_header, header) <= 8 * pieces + 4, header[:40]


@given(st.text(max_size=100), SECRET)
def test_unsign_gives_back_what_sign_signed(value, secret):
    assert unsign(sign(value, secret), secret) == value
    assert unsign_cookie(sign_cookie(value, [secret]), [secret]) == value


@given(st.text(max_size=100), SECRET, st.data())
def test_any_change_to_a_signed_value_is_refused(value, secret, data):
    signed = sign(value, secret)
    position = data.draw(st.integers(0, len(signed) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c != signed[position]))
    tampered = signed[:position] + replacement + signed[position + 1:]
    assert unsign(tampered, secret) is None, f"{tampered!r} passed as signed"


@given(st.text(max_size=100), SECRET, SECRET)
def test_a_value_signed_with_another_secret_is_refused(value, secret, other):
    if secret != other:
        assert unsign(sign(value, other), secret) is None


@given(st.text(max_size=500), st.lists(SECRET, min_size=1, max_size=3))
def test_unsign_never_raises_whatever_it_is_given(anything, secrets):
    assert unsign(anything, secrets) in (None, anything.rpartition(".")[0])
    assert unsign_cookie(anything, secrets) is None or anything.startswith("s:")


@settings(max_examples=50)
@given(st.text(max_size=100), st.lists(SECRET, min_size=2, max_size=4, unique=True))
def test_rotated_secrets_still_read_what_an_older_one_signed(value, secrets):
    assert unsign(sign(value, secrets[-1]), secrets) == value
