"""Lesson 02: signed cookies, tamper-evident values.

``sign`` and ``unsign`` are checked directly (``app_module``), against the known-answer vectors of
express's ``cookie-signature`` format; the ``/visits`` route is checked over HTTP, with cookies
this file signs itself (``mac`` below, independent of the lesson's code) and every kind of bad
input a client can send.
"""
import base64
import hashlib
import hmac
import re

import pytest
import requests

from course.kit.cookies import decode_value, encode_value
from course.tools.testing import compare_digest_calls, set_cookie_lines

SECRET = "test secret of lesson 02"
NEW, OLD, OTHER = "rotated-in secret 2026", "retiring secret 2025", "somebody else's secret"

# express-session's own tests (test/session.js in expressjs/session): secret "keyboard cat",
# the cookie value after "connect.sid=".
KNOWN_ANSWERS = {
    "apple": "s%3Aapple.D8Y%2BpkTAmeR0PobOhY4G97PRW%2Bj7bUnP%2F5m6%2FOn1MCU",
    "%": "s%3A%25.kzQ6x52kKVdF35Qh62AWk4ZekS28K5XYCXKa%2FOTZ01g",
    "/foo": "s%3A%2Ffoo.paEKBtAHbV5s1IB8B2zPnzAgYmmnRPIqObW4VRYj%2FMQ",
}


def mac(value, secret):
    """The signature, computed here without the lesson's code."""
    digest = hmac.new(secret.encode(), value.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def signed_cookie(value, secret=SECRET):
    """A ``visits`` cookie value as the server should write it: percent-encoded ``s:value.mac``."""
    return encode_value(f"s:{value}.{mac(value, secret)}")


def issued(resp):
    """The value of the one ``visits`` cookie the response sets (as it travels, percent-encoded)."""
    lines = set_cookie_lines(resp, "visits")
    assert len(lines) == 1, f"expected one Set-Cookie for visits, got {lines}"
    return lines[0].split(";", 1)[0].split("=", 1)[1]


def visit(url, cookie=None):
    """GET /visits with a raw Cookie header (str, or bytes for non-ASCII junk)."""
    headers = {} if cookie is None else {"Cookie": cookie}
    resp = requests.get(url + "/visits", headers=headers, timeout=5)
    assert resp.status_code == 200, (f"Cookie {cookie!r} gave {resp.status_code}, expected 200: "
                                     f"bad input must never crash the server\n{resp.text[:300]}")
    return resp


def count_of(resp):
    found = re.search(r"You have visited (\d+) times", resp.text)
    assert found, f"expected 'You have visited N times', got {resp.text[:200]!r}"
    return int(found.group(1))


def test_the_test_files_own_signature_matches_the_known_answers():
    for sid, expected in KNOWN_ANSWERS.items():
        assert signed_cookie(sid, "keyboard cat") == expected


# ---------------------------------------------------------------- 02.1 sign

@pytest.mark.exercise("02.1")
@pytest.mark.parametrize("sid", list(KNOWN_ANSWERS))
def test_sign_matches_express_known_answer_vectors(app_module, sid):
    got = encode_value("s:" + app_module.sign(sid, "keyboard cat"))
    assert got == KNOWN_ANSWERS[sid], (
        f"sign({sid!r}, 'keyboard cat'), with 's:' in front and percent-encoded, should be\n"
        f"  {KNOWN_ANSWERS[sid]}\nnot\n  {got}\n"
        "(HMAC-SHA256, standard base64 with + and /, no '=' padding)")


@pytest.mark.exercise("02.1")
@pytest.mark.parametrize("value, secret", [("1", SECRET), ("42", "another secret"), ("a.b.c", SECRET),
                                           ("café", "clé"), ("", SECRET)],
                         ids=["one", "other secret", "dots", "non-ascii", "empty"])
def test_sign_is_value_dot_hmac_sha256_in_base64_without_padding(app_module, value, secret):
    got = app_module.sign(value, secret)
    assert got == f"{value}.{mac(value, secret)}", f"sign({value!r}, {secret!r}) gave {got!r}"
    assert not got.endswith("="), "the '=' padding is removed"


@pytest.mark.exercise("02.1")
def test_a_different_secret_gives_a_different_signature(app_module):
    assert app_module.sign("7", "secret one") != app_module.sign("7", "secret two")
    assert app_module.sign("7", "secret one") == app_module.sign("7", "secret one"), "signing is deterministic"


# ---------------------------------------------------------------- 02.2 unsign

@pytest.mark.exercise("02.2")
@pytest.mark.parametrize("value", ["5", "apple", "a.b.c", "", "café"],
                         ids=["count", "word", "dots inside", "empty", "non-ascii"])
def test_unsign_returns_the_value_that_was_signed(app_module, value):
    signed = f"{value}.{mac(value, SECRET)}"
    assert app_module.unsign(signed, SECRET) == value, (
        f"unsign({signed!r}, SECRET) should give back {value!r}: the value is what comes before the LAST '.'")


@pytest.mark.exercise("02.2")
def test_unsign_accepts_any_secret_of_a_list(app_module):
    for secrets in ([NEW, OLD], (NEW, OLD), [OTHER, NEW, OLD]):
        for secret in (NEW, OLD):
            assert app_module.unsign(f"9.{mac('9', secret)}", secrets) == "9", \
                f"a value signed with {secret!r} should verify with the secrets {secrets!r}"


@pytest.mark.exercise("02.2")
def test_unsign_treats_a_string_as_one_secret(app_module):
    signed = f"9.{mac('9', SECRET)}"
    assert app_module.unsign(signed, SECRET) == "9", "a str is one secret, not a list of characters"
    assert app_module.unsign(f"9.{mac('9', 't')}", SECRET) is None, \
        "a value signed with one character of the secret must not verify"


# a value whose signature holds + or /, which base64url would write as - or _
URLSAFE_VALUE = next(v for v in map(str, range(100)) if set(mac(v, SECRET)) & set("+/"))
BAD_SIGNED = {
    "value changed": "1000000." + mac("5", SECRET),
    "signature changed": "5." + mac("5", SECRET)[:-1] + ("A" if mac("5", SECRET)[-1] != "A" else "B"),
    "signature truncated": "5." + mac("5", SECRET)[:-1],
    "signature dropped": "5.",
    "padding added": "5." + mac("5", SECRET) + "=",
    "no dot": "5",
    "empty": "",
    "dot only": ".",
    "unknown secret": "5." + mac("5", OTHER),
    "base64url signature": f"{URLSAFE_VALUE}." + base64.urlsafe_b64encode(
        hmac.new(SECRET.encode(), URLSAFE_VALUE.encode(), hashlib.sha256).digest()).decode().rstrip("="),
    "non-ascii": "é." + mac("5", SECRET),
    "non-ascii signature": "5." + mac("5", SECRET)[:-1] + "é",
    "huge": "9" * 5000 + "." + mac("5", SECRET),
}


@pytest.mark.exercise("02.2")
@pytest.mark.parametrize("signed", list(BAD_SIGNED.values()), ids=list(BAD_SIGNED))
def test_unsign_returns_none_for_anything_not_signed_with_a_known_secret(app_module, signed):
    for secrets in (SECRET, [SECRET, NEW]):
        try:
            got = app_module.unsign(signed, secrets)
        except Exception as exc:  # any exception at all: the point of the test
            pytest.fail(f"unsign({signed[:60]!r}, ...) raised {type(exc).__name__}: {exc}; "
                        "bad input returns None, never an exception")
        assert got is None, f"unsign({signed[:60]!r}, {secrets!r}) gave {got!r}, expected None"


@pytest.mark.exercise("02.2")
def test_unsign_returns_none_for_no_value_at_all(app_module):
    assert app_module.unsign(None, SECRET) is None


@pytest.mark.exercise("02.2")
def test_unsign_compares_signatures_with_hmac_compare_digest(app_module, monkeypatch):
    calls = compare_digest_calls(monkeypatch, app_module, function="unsign")
    assert app_module.unsign(f"5.{mac('5', SECRET)}", SECRET) == "5"
    assert app_module.unsign(f"6.{mac('5', SECRET)}", SECRET) is None
    assert len(calls) >= 2, ("compare signatures with hmac.compare_digest: '==' stops at the first "
                             "different character, and the time that takes tells an attacker how "
                             "much of a forged signature is right")


# ---------------------------------------------------------------- 02.3 signed /visits

@pytest.mark.exercise("02.3")
def test_first_visit_counts_one_and_sets_a_signed_cookie(server):
    resp = visit(server(secret=SECRET))
    assert count_of(resp) == 1
    assert issued(resp) == signed_cookie("1"), (
        f"the cookie should be encode_value('s:1.' + signature) = {signed_cookie('1')!r}, got {issued(resp)!r}")


@pytest.mark.exercise("02.3")
def test_each_visit_counts_up_and_the_browser_can_read_the_count(server, client):
    url = server(secret=SECRET)
    counts = [count_of(client.get(url + "/visits")) for _ in range(3)]
    assert counts == [1, 2, 3]
    # Signing is not encryption: the count is right there for anybody to read.
    assert decode_value(client.cookies["visits"]) == f"s:3.{mac('3', SECRET)}"


@pytest.mark.exercise("02.3")
def test_the_signed_cookie_keeps_path_max_age_and_httponly(server):
    line = set_cookie_lines(visit(server(secret=SECRET)), "visits")[0]
    attrs = [part.strip().lower() for part in line.split(";")[1:]]
    for wanted in ("path=/", "max-age=31536000", "httponly"):
        assert wanted in attrs, f"{wanted} missing in {line!r}"


@pytest.mark.exercise("02.3")
@pytest.mark.parametrize("count", [41, 1, 999])
def test_a_correctly_signed_count_is_believed_and_re_signed(server, count):
    resp = visit(server(secret=SECRET), f"visits={signed_cookie(str(count))}")
    assert count_of(resp) == count + 1, "a cookie the server signed itself must be believed"
    assert issued(resp) == signed_cookie(str(count + 1))


@pytest.mark.exercise("02.3")
def test_the_default_secret_signs_and_verifies(base_url, client):
    counts = [count_of(client.get(base_url + "/visits")) for _ in range(2)]
    assert counts == [1, 2], "create_app() with its default development secret must count"
    assert decode_value(client.cookies["visits"]).startswith("s:2.")


def _tampered():
    good = mac("5", SECRET)
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    return {
        "forged plain count": "1000000",
        "count changed, old signature": encode_value(f"s:1000000.{good}"),
        "one signature character flipped": encode_value(f"s:5.{flipped}"),
        "signature truncated": encode_value(f"s:5.{good[:-3]}"),
        "signature dropped": "s%3A5.",
        "no signature": "s%3A5",
        "prefix only": "s%3A",
        "unsigned but dotted": encode_value(f"5.{good}"),
        "unknown secret": signed_cookie("5", OTHER),
        "signed with the secret's first character": signed_cookie("5", SECRET[0]),
        "empty": "",
        "oversized": encode_value(f"s:{'9' * 6000}.{good}"),
        "quoted tampered": f'"{encode_value("s:1000000." + good)}"',
        "unbalanced quote": '"' + signed_cookie("5"),
        "stray percent": "s%3A5%.abc",
        "percent-encoded non-ascii": "s%3A%C3%A9." + good,
        "valid signature on a word": signed_cookie("abc"),
        "valid signature on a negative": signed_cookie("-3"),
        "valid signature on forty digits": signed_cookie("9" * 40),
        "valid signature on arabic-indic digits": signed_cookie("٣"),
    }


TAMPERED = _tampered()


@pytest.mark.exercise("02.3")
@pytest.mark.parametrize("value", list(TAMPERED.values()), ids=list(TAMPERED))
def test_a_bad_visits_cookie_is_ignored_never_a_500(server, value):
    resp = visit(server(secret=SECRET), f"visits={value}")
    assert count_of(resp) == 1, f"visits={value[:80]!r} must be ignored: the count restarts at 1"
    assert issued(resp) == signed_cookie("1"), "a fresh, correctly signed cookie replaces the bad one"


@pytest.mark.exercise("02.3")
@pytest.mark.parametrize("raw", ["visits=s:é.x".encode("utf-8"), b"visits=\xff\xfe",
                                 ("visits=s%3A5." + mac("5", SECRET)[:-1] + "é").encode("utf-8")],
                         ids=["utf-8 bytes", "invalid utf-8", "non-ascii in the signature"])
def test_non_ascii_bytes_in_the_cookie_are_ignored_never_a_500(server, raw):
    resp = visit(server(secret=SECRET), raw)
    assert count_of(resp) == 1


@pytest.mark.exercise("02.3")
def test_two_visits_cookies_the_first_one_wins_as_in_express(server):
    url = server(secret=SECRET)
    assert count_of(visit(url, f"visits={signed_cookie('41')}; visits={signed_cookie('7')}")) == 42
    assert count_of(visit(url, f"visits={signed_cookie('41')}; visits=garbage")) == 42
    assert count_of(visit(url, f"visits=garbage; visits={signed_cookie('41')}")) == 1, \
        "the first visits cookie wins (express's rule): a bad first one is a fresh start"


@pytest.mark.exercise("02.3")
def test_junk_elsewhere_in_the_header_does_not_lose_the_cookie(server):
    resp = visit(server(secret=SECRET), f"null; theme=dark; visits={signed_cookie('41')}; x")
    assert count_of(resp) == 42, "one junk token must not drop the other cookies"


# ---------------------------------------------------------------- 02.4 rotation

@pytest.mark.exercise("02.4")
@pytest.mark.parametrize("bad", ["", [], [""], [NEW, ""], [NEW, None], None, 42, [NEW, 42], (NEW, b"bytes")],
                         ids=["empty string", "empty list", "list of empty", "one empty", "None inside",
                              "None", "a number", "a number inside", "bytes inside"])
def test_an_unusable_secret_is_a_value_error_at_create_app(app_module, bad):
    with pytest.raises(ValueError) as caught:
        app_module.create_app(secret=bad)
    assert "secret" in str(caught.value), "say what is wrong: the message names the secret option"
    assert NEW not in str(caught.value), "never put a secret in an error message: they end up in logs"


@pytest.mark.exercise("02.4")
def test_a_cookie_signed_with_an_older_secret_is_accepted_and_re_signed_with_the_newest(server):
    resp = visit(server(secret=[NEW, OLD]), f"visits={signed_cookie('41', OLD)}")
    assert count_of(resp) == 42, "a cookie signed with an older secret of the list is still good"
    assert issued(resp) == signed_cookie("42", NEW), "the answer is signed with the newest secret alone"


@pytest.mark.exercise("02.4")
def test_a_tuple_of_secrets_works_too(server):
    resp = visit(server(secret=(NEW, OLD)), f"visits={signed_cookie('7', NEW)}")
    assert count_of(resp) == 8 and issued(resp) == signed_cookie("8", NEW)


@pytest.mark.exercise("02.4")
def test_rotation_keeps_visitors_and_then_retires_the_old_secret(server, client):
    # Cookies do not care about ports, so one browser visits all three apps.
    before, during, after = server(secret=OLD), server(secret=[NEW, OLD]), server(secret=[NEW])
    assert [count_of(client.get(before + "/visits")) for _ in range(2)] == [1, 2]
    assert count_of(client.get(during + "/visits")) == 3, "rotating the secret must not lose the visitor"
    assert decode_value(client.cookies["visits"]) == f"s:3.{mac('3', NEW)}", "re-signed with the newest"
    assert count_of(client.get(after + "/visits")) == 4, "once re-signed, the old secret can be dropped"
    assert count_of(visit(before, f"visits={client.cookies['visits']}")) == 1, \
        "an app holding only the old secret cannot verify a cookie signed with the new one"


@pytest.mark.exercise("02.4")
def test_a_secret_outside_the_list_is_still_rejected(server):
    resp = visit(server(secret=[NEW, OLD]), f"visits={signed_cookie('41', OTHER)}")
    assert count_of(resp) == 1


# ---------------------------------------------------------------- ready-made parts

def test_index_page_lists_the_routes_and_shows_the_cookie_header(base_url):
    resp = requests.get(base_url + "/", headers={"Cookie": "visits=s%3A7.abc; theme=dark"}, timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    for path in ("/visits", "/forge", "/forget"):
        assert f'href="{path}' in resp.text
    assert "theme=" in resp.text and "visits=" in resp.text, "the inspector names the cookies sent"
    assert "s%3A7.abc" not in resp.text, "visits is HttpOnly: the page (readable by any same-origin script) hides it"


def test_index_page_survives_bytes_that_are_not_utf_8(base_url):
    resp = requests.get(base_url + "/", headers={"Cookie": b"visits=\xff\xfe; theme=dark"}, timeout=5)
    assert resp.status_code == 200 and "theme=" in resp.text


def test_index_page_escapes_what_the_browser_sent(base_url):
    resp = requests.get(base_url + "/", headers={"Cookie": "visits=<script>alert(1)</script>"}, timeout=5)
    assert resp.status_code == 200 and "<script>alert(1)" not in resp.text


def test_forge_keeps_the_signature_and_claims_a_million(server):
    good = signed_cookie("5")
    resp = requests.get(server(secret=SECRET) + "/forge", headers={"Cookie": f"visits={good}"}, timeout=5)
    assert resp.status_code == 200
    assert issued(resp) == encode_value(f"s:1000000.{mac('5', SECRET)}")


def test_forget_deletes_the_cookie(base_url, client):
    client.get(base_url + "/forge")
    assert "visits" in client.cookies
    resp = client.get(base_url + "/forget")
    assert resp.status_code == 200 and "visits" not in client.cookies


@pytest.mark.exercise("02.2")
def test_the_inspector_tells_valid_tampered_and_unsigned_apart(server):
    url = server(secret=SECRET)
    cases = {signed_cookie("5"): "valid, signed with the newest secret: 5 visits",
             encode_value(f"s:1000000.{mac('5', SECRET)}"): "does not match",
             signed_cookie("5", OTHER): "does not match",
             "5": "unsigned"}
    for value, expected in cases.items():
        page = requests.get(url + "/", headers={"Cookie": f"visits={value}"}, timeout=5).text
        assert expected in page, f"the inspector should say {expected!r} for visits={value}"


@pytest.mark.exercise("02.4")
def test_the_inspector_tells_an_older_secret_apart(server):
    page = requests.get(server(secret=[NEW, OLD]) + "/", timeout=5,
                        headers={"Cookie": f"visits={signed_cookie('5', OLD)}"}).text
    assert "valid, signed with an older secret" in page


@pytest.mark.exercise("02.2")
def test_unsign_refuses_a_signature_with_its_letters_case_changed(app_module):
    """base64 is case-sensitive: a comparison of lower-cased strings accepts forgeries."""
    sig = mac("5", SECRET)
    assert app_module.unsign(f"5.{sig.swapcase()}", SECRET) is None
    assert app_module.unsign(f"5.{sig.lower()}", SECRET) is None or sig.lower() == sig


@pytest.mark.exercise("02.2")
def test_unsign_refuses_a_value_with_spaces_added(app_module):
    """What is signed is exactly the string before the last dot: nothing is stripped."""
    sig = mac("5", SECRET)
    for tampered in (f" 5.{sig}", f"5 .{sig}", f"5. {sig}", f"5.{sig} "):
        assert app_module.unsign(tampered, SECRET) is None, f"{tampered!r} verified"
