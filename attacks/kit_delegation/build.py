"""Builds a copy whose lesson 02 exercises are one-line calls into course.kit.signing, the course's own
finished reference, which the sandbox shows the student's code (course/ is bound read-only).
Usage: python build.py DEST   (DEST/lessons/02_signed_cookies/app.py)"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
text = (ROOT / "lessons/02_signed_cookies/app.py").read_text()
text = text.replace('raise todo("02.1")', "return _kit.sign(value, secret)")
text = text.replace('raise todo("02.2")', "return _kit.unsign(signed, secrets)")
text = text.replace('raise todo("02.4")', "return _kit.secret_list(secret)")
text = text.replace('raise todo("02.3")',
                    "count = read_count(_kit.unsign_cookie(cookie_sent(COOKIE), secrets)) + 1\n"
                    "        response.set_cookie(COOKIE, encode_value(_kit.sign_cookie(str(count), secrets)), path='/',"
                    " max_age=ONE_YEAR, httponly=True)\n"
                    "        return text(f'You have visited {count} times')")
text = text.replace("import re\n", "import re\n\nimport course.kit.signing as _kit\n", 1)
dest = Path(sys.argv[1]) / "lessons/02_signed_cookies/app.py"
dest.parent.mkdir(parents=True, exist_ok=True)
dest.write_text(text)
