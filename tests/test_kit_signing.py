"""course.kit.signing on its own: express's cookie-signature format, secrets checked at the door.

The properties (any value round-trips, any change is refused) are in tests/test_kit_properties.py;
these pin the exact format and the edges a mutation of the module would move.
"""
import base64
import hashlib
import hmac

import pytest

from course.kit.signing import PREFIX, mac, secret_list, sign, sign_cookie, unsign, unsign_cookie

SECRET = "keyboard cat"


def test_sign_is_express_cookie_signature_byte_for_byte():
    # cookie-signature's own README example: sign('hello', 'tobiiscool')
    assert sign("hello", "tobiiscool") == "hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
    digest = hmac.new(SECRET.encode(), b"apple", hashlib.sha256).digest()
    assert mac("apple", SECRET) == base64.b64encode(digest).decode().rstrip("=")
    assert len(mac("apple", SECRET)) == 43, "32 bytes of HMAC are 43 base64 characters without the ="


def test_a_signed_cookie_is_s_colon_value_dot_mac():
    assert PREFIX == "s:"
    assert sign_cookie("apple", SECRET) == "s:" + sign("apple", SECRET)
    assert unsign_cookie(sign_cookie("apple", SECRET), SECRET) == "apple"


def test_the_newest_secret_signs_and_every_secret_reads():
    assert sign_cookie("v", ["new", "old"]) == "s:" + sign("v", "new")
    assert unsign(sign("v", "old"), ["new", "old"]) == "v"
    assert unsign(sign("v", "retired"), ["new", "old"]) is None


@pytest.mark.parametrize("secret", ["", [], [""], ["a", ""], ["a", 42], [None], 42, [b"bytes"]])
def test_a_missing_empty_or_non_string_secret_is_refused_at_once(secret):
    """An empty secret signs with a key everybody knows; a non-string one would fail at the first request."""
    with pytest.raises(ValueError, match="non-empty"):
        secret_list(secret)


def test_secret_list_keeps_the_order_newest_first():
    assert secret_list("one") == ["one"]
    assert secret_list(("new", "old")) == ["new", "old"]
    assert secret_list(["new", "old"]) is not None


def test_unsign_splits_at_the_last_dot_so_values_may_hold_dots():
    assert unsign(sign("a.b.c", SECRET), SECRET) == "a.b.c"
    assert unsign(sign("", SECRET), SECRET) == ""


@pytest.mark.parametrize("bad", [None, 42, b"x.y", "", "no-dot-at-all", ".", "apple."])
def test_unsign_refuses_what_is_not_a_signed_string_without_an_exception(bad):
    assert unsign(bad, SECRET) is None


def test_a_value_with_a_signature_of_its_own_but_no_prefix_is_refused():
    signed = sign("sid123", SECRET)
    assert unsign_cookie(signed, SECRET) is None, "an unsigned-looking cookie is never a signed one"
    assert unsign_cookie("xx" + signed, SECRET) is None, "two other characters are not the s: prefix"
    assert unsign_cookie("s" + signed, SECRET) is None
    assert unsign_cookie(":" + signed, SECRET) is None
    assert unsign_cookie("s:" + signed, SECRET) == "sid123"
    assert unsign_cookie("S:" + signed, SECRET) is None, "the prefix is case-sensitive"


@pytest.mark.parametrize("bad", [None, "", "s:", "s:.", "s:x"])
def test_unsign_cookie_refuses_empty_and_truncated_cookies(bad):
    assert unsign_cookie(bad, SECRET) is None


def test_a_signature_truncated_or_extended_by_one_character_is_refused():
    signed = sign("v", SECRET)
    assert unsign(signed[:-1], SECRET) is None
    assert unsign(signed + "A", SECRET) is None
    assert unsign(signed + "=", SECRET) is None, "the = padding is not part of the signature"


def test_unsign_compares_in_constant_time(monkeypatch):
    from course.tools.testing import compare_digest_calls
    calls = compare_digest_calls(monkeypatch)
    unsign(sign("v", "old"), ["new", "old"])
    assert len(calls) == 2, "one compare_digest per secret tried"
