"""Lesson 02: signed cookies, tamper-evident values.

Lesson 01's server believed any ``visits`` cookie. Here the server signs the value it sends with
an HMAC, a keyed hash only the holder of the secret can compute, and ignores any value whose
signature does not match. The format is express's (``cookie-signature``):

    visits = encodeURIComponent("s:" + value + "." + base64(HMAC-SHA256(secret, value)))

The client can still *read* the count (signing is not encryption), but it can no longer change it.

Run it:  make run LESSON=02   then open http://127.0.0.1:8080/ (it restarts when you save)
Check it: make check LESSON=02
"""
import base64  # base64, hashlib and hmac: for 02.1 and 02.2
import hashlib
import hmac
import re

from bottle import request, response

from course.kit.cookies import cookie_header, decode_value, encode_value, first_cookie
from course.lesson.page import Route, render
from course.lesson.server import lesson_main
from course.lesson.web import new_app, text, todo

TITLE = "Signed cookies: tamper-evident values"
# For trying the lesson on your own machine only. Anybody who knows the secret can sign any value,
# and this one is published with the course. A real app reads its own from the environment.
DEVELOPMENT_SECRET = "lesson-02 development secret: never use it in production"
PREFIX = "s:"                     # marks a signed cookie value, as express does
COOKIE = "visits"
ONE_YEAR = 365 * 24 * 60 * 60     # seconds, for Max-Age
MAX_VISITS = 999_999_999          # a count is at most nine ASCII digits (as in lesson 01)


def sign(value, secret):
    """Exercise 02.1: ``value + "." + base64(HMAC-SHA256(secret, value))``, without ``=`` padding.

    >>> sign("apple", "keyboard cat")
    'apple.D8Y+pkTAmeR0PobOhY4G97PRW+j7bUnP/5m6/On1MCU'
    """
    # TODO(02.1): compute hmac.new(key, message, hashlib.sha256).digest() - key and message are
    # bytes, so .encode() both strings - then encode the 32 bytes with *standard* base64
    # (base64.b64encode, not the URL-safe variant), turn them into str, drop the trailing "="
    # padding, and return value + "." + that signature.
    raise todo("02.1")


def unsign(signed, secrets):
    """Exercise 02.2: the value inside ``signed`` if one of ``secrets`` signed it, else None.

    ``signed`` is ``value.signature`` (no ``s:`` prefix); ``secrets`` is one secret or a list,
    newest first. Anything tampered, truncated, unsigned or signed with an unknown secret gives
    None, never an exception: it comes from the client.
    """
    # TODO(02.2):
    #   - return None when signed is not a str or holds no "." (it was never signed);
    #   - the value is everything before the LAST "." (a value may hold dots, a signature never);
    #   - secrets may be one str: make it a list first (a for loop over a str gives characters!);
    #   - for each secret, sign the value again and compare the result with signed using
    #     hmac.compare_digest on bytes (.encode() both), never ==; on a match return the value;
    #   - no secret matched: return None.
    raise todo("02.2")


def secret_list(secret):
    """Exercise 02.4: one secret or a list of them (newest first), as a non-empty list.

    Called once by ``create_app``: a configuration mistake must stop the app at start-up,
    not show up as odd behaviour at the first request.
    """
    # TODO(02.4): also accept a list or tuple of secrets (newest first), returned as a list;
    # raise ValueError, with a message that says what secret must be (but never shows the
    # secrets: error messages end up in logs), for an empty string, an empty list, a list
    # holding anything but non-empty strings, or anything else (None, 42).
    if isinstance(secret, str) and secret:   # the starter handles one non-empty string only
        return [secret]
    raise todo("02.4")

SIGNATURE_SHAPE = re.compile(r"[A-Za-z0-9+/]{1,64}")   # what sign() writes: 43 base64 characters


def read_count(value):
    """The count in a verified value, or 0 (as lesson 01: ASCII digits, at most MAX_VISITS)."""
    if value and value.isascii() and value.isdigit() and int(value) <= MAX_VISITS:
        return int(value)
    return 0


def cookie_sent(name):
    """The first ``name`` cookie in the request, percent-decoded; None when there is none.

    Two cookies of one name can arrive in one header (set for two paths, or forged): like
    express, the first one wins. Bottle's ``request.get_cookie`` keeps the last one instead, and
    drops every cookie when one piece of the header is junk, so this reads the header itself.
    """
    value = first_cookie(cookie_header(request.environ), name)
    return None if value is None else decode_value(value)


def create_app(secret=DEVELOPMENT_SECRET):
    """Build the lesson's app. ``secret``: a string, or a list of strings, newest first."""
    secrets = secret_list(secret)
    app = new_app()

    @app.get("/")
    def index():
        return render(
            lesson_id="02", title=TITLE,
            intro="The visits cookie is signed: change one character of it and the server notices.",
            routes=[Route("GET", "/visits", "count your visits in the signed cookie `visits`"),
                    Route("GET", "/forge", "play the attacker: set visits to 1000000, keeping the signature"),
                    Route("GET", "/forget", "delete the `visits` cookie")],
            cookie_header=cookie_header(request.environ),
            decode=lambda name, value: describe_cookie(name, value, secrets),
        )

    @app.get("/visits")
    def visits():
        """Exercise 02.3: count this visit in the signed ``visits`` cookie."""
        # TODO(02.3):
        #   - read the cookie with cookie_sent(COOKIE) (it may be None);
        #   - only a value that starts with PREFIX ("s:") is signed: unsign what follows the
        #     prefix with ALL the secrets; anything else counts as no cookie at all;
        #   - read_count() the verified value (a valid signature is still not a count), add one;
        #   - sign str(count) with the NEWEST secret, secrets[0], put PREFIX in front, and
        #     percent-encode it with encode_value() as express does;
        #   - send it with response.set_cookie(COOKIE, ..., path="/", max_age=ONE_YEAR,
        #     httponly=True) and answer text(f"You have visited {count} times").
        raise todo("02.3")

    @app.get("/forge")
    def forge():
        """Ready-made: what an attacker tries, a bigger count with the old signature."""
        sent = cookie_sent(COOKIE) or ""
        signature = sent.rpartition(".")[2] if sent.startswith(PREFIX) and "." in sent else ""
        if not SIGNATURE_SHAPE.fullmatch(signature):
            signature = "forged"        # not a signature of ours (too long, not base64): a made-up one
        forged = f"{PREFIX}1000000.{signature}"
        response.set_cookie(COOKIE, encode_value(forged), path="/", max_age=ONE_YEAR, httponly=True)
        return text(f"Your visits cookie now says {forged}. "
                    "Visit /visits and see whether the server believes it.")

    @app.get("/forget")
    def forget():
        """Ready-made: delete the cookie (as in lesson 01)."""
        response.delete_cookie(COOKIE, path="/")
        return text("Forgot your visits: the next one counts as the first")

    return app


def describe_cookie(name, value, secrets):
    """What the inspector on ``GET /`` says about each cookie the browser sent."""
    if name != COOKIE:
        return None
    value = decode_value(value)
    if not value.startswith(PREFIX):
        return "unsigned: ignored, the count restarts at 1"
    claimed = value[len(PREFIX):].rpartition(".")[0]
    verified = unsign(value[len(PREFIX):], secrets)
    if verified is None:
        return f"signature does not match (tampered, or an unknown secret): claims {claimed[:40]!r}, ignored"
    newest = unsign(value[len(PREFIX):], secrets[0]) is not None
    which = "the newest secret" if newest else "an older secret (re-signed at the next visit)"
    return (f"valid, signed with {which}: {read_count(verified)} visits "
            "(anyone can read it: signed, not encrypted)")


app = create_app()


def main(argv=None):
    lesson_main(create_app, argv, title=f"Lesson 02: {TITLE}")


if __name__ == "__main__":
    main()
