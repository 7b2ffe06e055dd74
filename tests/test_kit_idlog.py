"""course.kit.idlog: session IDs in logs only as salted hashes, untrusted values kept on their line."""
import hashlib
import hmac

from course.kit.idlog import id_hash, loggable


def test_id_hash_is_the_first_16_hex_digits_of_the_hmac():
    expected = hmac.new(b"salt", b"the-id", hashlib.sha256).hexdigest()[:16]
    assert id_hash("the-id", "salt") == "h:" + expected
    assert id_hash("", "salt") == "h:-" and id_hash(None, "salt") == "h:-", "no ID: a dash, not a hash of nothing"
    assert id_hash(12345, "salt") == id_hash("12345", "salt")


def test_id_hash_takes_any_text_even_a_lone_surrogate():
    assert id_hash("\ud800", "salt") == "h:" + hmac.new(b"salt", b"?", hashlib.sha256).hexdigest()[:16]


def test_loggable_keeps_plain_words_and_quotes_everything_else():
    assert loggable("alice") == "alice" and loggable("X") == "X" and loggable("203.0.113.9") == "203.0.113.9"
    assert loggable("/notes/7") == "/notes/7" and loggable("h:abc") == "h:abc"
    for value, shown in (('a"b', '"a\\"b"'), ("a\\b", '"a\\\\b"'), ("a=b", '"a=b"'), ("a b", '"a b"'),
                         ("a\tb", '"a\\tb"'), ("\x1b[31m", '"\\u001b[31m"'), ("", '""')):
        assert loggable(value) == shown, value


def test_loggable_cuts_at_the_limit():
    assert loggable("x" * 300) == "x" * 200
    assert loggable("x" * 300, limit=10) == "x" * 10
    assert loggable("a b" * 100, limit=3) == '"a b"', "cut first, then quoted"
    assert loggable("x" * 200) == "x" * 200 and loggable("x" * 201) == "x" * 200
