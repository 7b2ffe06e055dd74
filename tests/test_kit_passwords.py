"""course.kit.passwords on its own: scrypt with a salt per password, its cost stored with it.

Hashes here use a tiny cost (n=2**4) wherever the cost is not the point: the full cost is ~50 ms each.
"""
import hashlib

import pytest

from course.kit.passwords import (
    MAX_N,
    MAX_P,
    MAX_R,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    check_password,
    dummy_hash,
    dummy_like,
    hash_password,
    scrypt_maxmem,
)

CHEAP = {"n": 16, "r": 1, "p": 1}


def test_the_default_cost_is_stored_in_the_hash_and_checks():
    assert (SCRYPT_N, SCRYPT_R, SCRYPT_P) == (2 ** 14, 8, 1)
    stored = hash_password("wonderland")
    scheme, n, r, p, salt, key = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(key)) == 32
    assert check_password("wonderland", stored)


def test_the_hash_is_scrypt_of_the_password_and_salt():
    salt = bytes(range(16))
    stored = hash_password("pw", salt=salt, **CHEAP)
    key = hashlib.scrypt(b"pw", salt=salt, n=16, r=1, p=1, dklen=32)
    assert stored == f"scrypt$16$1$1${salt.hex()}${key.hex()}"


def test_equal_passwords_get_different_salts():
    assert hash_password("same", **CHEAP) != hash_password("same", **CHEAP)


def test_the_right_password_checks_and_any_other_does_not():
    stored = hash_password("wonderland", **CHEAP)
    assert check_password("wonderland", stored)
    for wrong in ("Wonderland", "wonderlan", "wonderland ", "", "é"):
        assert not check_password(wrong, stored), wrong
    assert check_password("é ü 🔑", hash_password("é ü 🔑", **CHEAP))


def test_a_hash_with_another_cost_still_checks():
    stored = hash_password("pw", n=32, r=2, p=2)
    assert stored.startswith("scrypt$32$2$2$") and check_password("pw", stored)


# A real hash of "pw" at CHEAP's cost, written out: the cases below are test ids, which must be the
# same in every xdist worker (a hash made at collection has a new salt each time).
GOOD = "scrypt$16$1$1$def9161daebe4df4c1c690a390b049f7$1d57a6cb59b77e61f925e3d10444b34c8155a2b54e4141b329135202d9cf8233"


def test_the_written_out_hash_is_a_real_one():
    assert check_password("pw", GOOD) and not check_password("px", GOOD)


def good(**change):
    parts = dict(zip(["scheme", "n", "r", "p", "salt", "key"], GOOD.split("$"), strict=True))
    parts.update(change)
    return "$".join(str(v) for v in parts.values())


@pytest.mark.parametrize("stored", [
    None, 42, "", "scrypt", "scrypt$16$1$1$00", "a$b$c$d$e$f", good(scheme="bcrypt"), good(n="x"), good(n=1),
    good(n=0), good(n=24), good(n=2 ** 21), good(r=0), good(r=33), good(p=0), good(p=17), good(salt=""),
    good(key=""), good(salt="zz"), good(key="0"), good(n=-16), good() + "$extra",
])
def test_a_malformed_or_absurd_hash_is_false_never_an_exception(stored):
    assert check_password("pw", stored) is False


def test_the_limits_are_inclusive():
    assert (MAX_N, MAX_R, MAX_P) == (2 ** 20, 32, 16)
    assert check_password("pw", hash_password("pw", n=2, r=1, p=1))
    assert check_password("pw", hash_password("pw", n=2, r=32, p=1))
    assert check_password("pw", hash_password("pw", n=2, r=1, p=16))


def test_a_password_that_is_not_text_is_false():
    stored = hash_password("pw", **CHEAP)
    assert check_password("\ud800", stored) is False, "a lone surrogate cannot be UTF-8"


def test_maxmem_is_what_openssl_needs_plus_a_mebibyte_capped_at_a_gibibyte():
    assert scrypt_maxmem(2 ** 14, 8, 1) == 128 * 8 * (2 ** 14 + 3) + 2 ** 20
    assert scrypt_maxmem(2 ** 20, 32, 16) == 2 ** 30
    hashlib.scrypt(b"x", salt=b"s", n=2 ** 15, r=8, p=1, maxmem=scrypt_maxmem(2 ** 15, 8, 1), dklen=32)


def test_a_stored_hash_asking_for_too_much_memory_is_refused_not_run():
    stored = good(n=2 ** 20, r=32)
    assert check_password("pw", stored) is False


def test_a_dummy_like_a_stored_hash_has_its_cost_and_is_made_once_per_cost():
    stored = hash_password("wonderland", n=16, r=1, p=1)
    dummy = dummy_like(stored)
    assert dummy.split("$")[:4] == ["scrypt", "16", "1", "1"] and dummy != stored
    assert not check_password("wonderland", dummy)
    assert dummy_like(hash_password("other", n=16, r=1, p=1)) == dummy, "one per cost"
    assert dummy_like(hash_password("other", n=32, r=1, p=1)).split("$")[1] == "32"
    assert [dummy_like(bad) for bad in ("", "md5$1$2", "scrypt$3$1$1$00$00")] == [None] * 3


def test_the_dummy_hash_is_made_once_per_hasher():
    calls = []

    def hasher(password):
        calls.append(password)
        return hash_password(password, **CHEAP)

    first = dummy_hash(hasher)
    assert dummy_hash(hasher) == first and len(calls) == 1
    assert first.startswith("scrypt$16$") and len(calls[0]) == 22, "128 random bits, URL-safe base64"


def test_a_real_hash_with_a_cost_over_the_limits_is_refused():
    """The limits hold even for a hash that is otherwise right: a tampered table cannot make a login cost more."""
    assert not check_password("pw", hash_password("pw", n=16, r=MAX_R + 1, p=1))
    assert not check_password("pw", hash_password("pw", n=16, r=1, p=MAX_P + 1))



@pytest.fixture
def scrypt_calls(monkeypatch):
    """The cost of each key derivation ``check_password`` asks hashlib for (it still derives it)."""
    calls = []
    real = hashlib.scrypt

    def counting(password, **options):
        calls.append((options["n"], options["r"], options["p"]))
        return real(password, **options)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


@pytest.mark.parametrize("stored", [
    good(scheme="bcrypt"), good(n=1), good(n=0), good(n=-16), good(n=24), good(n=6), good(n=2 ** 21), good(r=0),
    good(r=-1), good(r=33), good(p=0), good(p=-1), good(p=17), good(salt=""), good(key=""),
])
def test_an_absurd_hash_is_refused_before_any_key_is_derived(stored, scrypt_calls):
    assert check_password("pw", stored) is False
    assert scrypt_calls == [], "the parameters are checked first: a tampered row costs the server nothing"


def test_a_hash_at_the_limits_is_given_to_scrypt(scrypt_calls):
    """n = MAX_N passes the checks; OpenSSL itself then refuses n >= 2**16 with r = 1 (so this stays cheap)."""
    assert check_password("pw", good(n=MAX_N)) is False
    assert scrypt_calls == [(MAX_N, 1, 1)]
