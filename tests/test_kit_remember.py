"""course.kit.remember: the shape of a remember-me token, and the table that keeps its hash."""
import hashlib

from course.kit import remember
from course.kit.remember import RememberStore
from course.kit.security import FakeClock


def test_digest_is_the_sha256_of_the_validator_whatever_its_text():
    assert remember.digest("validator") == hashlib.sha256(b"validator").hexdigest()
    assert remember.digest("\ud800") == hashlib.sha256(b"?").hexdigest(), "a lone surrogate is no error"


def test_a_selector_has_8_to_64_characters_and_a_validator_16_to_128():
    for selector in ("s" * 8, "s" * 64):
        for validator in ("v" * 16, "v" * 128):
            assert remember.split(f"{selector}.{validator}") == (selector, validator)
    for selector, validator in (("s" * 7, "v" * 16), ("s" * 65, "v" * 16), ("s" * 8, "v" * 15), ("s" * 8, "v" * 129)):
        assert remember.split(f"{selector}.{validator}") is None, (len(selector), len(validator))


def test_a_token_is_url_safe_base64_and_one_dot():
    assert remember.split("Ab-_0123.Zz-_456789abcdefgh") == ("Ab-_0123", "Zz-_456789abcdefgh")
    for bad in ("abcdefgh.0123456789abcde+", "abcdefgh.0123456789abcde/", "abcdefg=.0123456789abcdef",
                "abcdefgh0123456789abcdef", "abc.defgh.0123456789abcdef", None, ""):
        assert remember.split(bad) is None, bad


def test_revoking_says_how_many_and_all_rows_shows_what_is_left(tmp_path):
    tokens = RememberStore(tmp_path / "t.db", FakeClock(0.0))
    for selector, user_id, series in (("sel-1", 1, "a"), ("sel-2", 1, "a"), ("sel-3", 1, "b"), ("sel-4", 2, "c")):
        tokens.add(selector, remember.digest(selector), user_id, series)
    assert tokens.revoke_series("a") == 2 and tokens.revoke_series("a") == 0
    assert sorted(r["selector"] for r in tokens.all_rows()) == ["sel-3", "sel-4"]
    assert tokens.revoke_user(1) == 1 and [r["user_id"] for r in tokens.all_rows()] == [2]


def test_a_rotated_token_lives_until_the_series_cap_not_less(tmp_path):
    clock = FakeClock(0.0)
    tokens = RememberStore(tmp_path / "t.db", clock, lifetime=100, series_lifetime=150)
    tokens.add("selector-1", remember.digest("v1"), 1, "series")
    clock.advance(90)
    tokens.add("selector-2", remember.digest("v2"), 1, "series")      # 100 s more would be t=190; the cap is 150
    assert tokens.find("selector-2")["expires"] == 150.0
    clock.advance(59)
    assert tokens.find("selector-2") is not None, "t=149: still within the series' 150 s"
    tokens.add("selector-3", remember.digest("v3"), 1, "other")
    assert tokens.find("selector-3")["expires"] == 249.0, "a new series: the token's own lifetime"
