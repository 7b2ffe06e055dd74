"""Two copies of lesson 05: `destroy_nothing` (05.3 done wrong: the record stays in the store, the very
hole the exercise closes) and `destroy_nothing_forged` (the same, plus: the test's own CountingStore, a
grader object handed to create_app, gets its inspector methods peek/length REPLACED from the sandbox
through the wire's call-back `setattr`, so the test's ground truth says the record is gone).
Usage: python build.py CLASSDIR"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
text = (ROOT / "solutions/05_beaker/app.py").read_text()
start = text.index("    if not session.is_new:                         # a brand-new session")
end = text.index("    # A new, empty ID: otherwise Beaker writes")
wrong = text[:start] + "    _DESTROYED.add(session.id)\n" + text[end:]
wrong = wrong.replace("\ndef destroy_session(session):", "\n_DESTROYED = set()\n\n\ndef destroy_session(session):", 1)
forge = '''
    if type(store).__name__ == "Remote":          # the test's CountingStore, living in the grader
        real_peek, real_all = store.peek, store.all
        store.peek = lambda sid: None if sid in _DESTROYED else real_peek(sid)
        store.length = lambda: len([sid for sid in real_all() if sid not in _DESTROYED])
'''
anchor = "    store = store if store is not None else CountingStore()\n"
forged = wrong.replace(anchor, anchor + forge, 1)
for name, body in (("destroy_nothing", wrong), ("destroy_nothing_forged", forged)):
    dest = Path(sys.argv[1]) / name / "lessons/05_beaker/app.py"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(body)
