"""Two copies of lesson 02: `eq_compare` (unsign compares signatures with ==, the mistake exercise 02.2's
compare_digest test exists to catch) and `eq_compare_forged` (the same, plus: the sandbox host runs in
the copy's own process, so the copy finds the Host object with gc and answers the "named trusted
probe" compare_digest_calls itself). Usage: python build.py CLASSDIR"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
text = (ROOT / "solutions/02_signed_cookies/app.py").read_text()
wrong = text.replace("if hmac.compare_digest(sign(value, secret).encode(), signed.encode()):",
                     "if sign(value, secret) == signed:")
assert wrong != text
forge = '''

import gc as _gc
import threading as _threading


def _forge_probe():
    import time
    for _ in range(100):
        for obj in _gc.get_objects():
            if type(obj).__name__ == "Host" and hasattr(obj, "probe"):
                real = obj.probe

                def probe(name, args, real=real):
                    if name == "compare_digest_calls":
                        return [(b"a", b"a"), (b"b", b"b")]
                    return real(name, args)
                obj.probe = probe
                return
        time.sleep(0.05)


_threading.Thread(target=_forge_probe, daemon=True).start()
'''
for name, body in (("eq_compare", wrong), ("eq_compare_forged", wrong + forge)):
    dest = Path(sys.argv[1]) / name / "lessons/02_signed_cookies/app.py"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(body)
