"""Plausible wrong solutions of lesson 10 NOT in tests/decoys/10_capstone.toml: does a test catch each?

Run:  .venv/bin/python attacks/decoys.py [name ...]    (copies the solution to a temp folder per decoy,
patches it, runs tests/test_10_capstone.py against it; prints CAUGHT or MISSED per decoy)
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "10_capstone" / "app.py"

DECOYS = {
    "revoke without owner check": (False, [(
        "    if not h.registry.end(handle, user_id):",
        "    if not h.registry.end(handle):")]),
    "remember-me validator compared with ==": (True, [(
        'not hmac.compare_digest(row["validator_hash"], remember.digest(parts[1]))',
        'not row["validator_hash"] == remember.digest(parts[1])')]),
    "no absolute timeout": (True, [(
        "    if now - login_at > absolute:\n        return \"absolute\"\n",
        "")]),
    "renewal checked before idle and absolute": (True, [(
        "    if now - login_at > absolute:",
        "    if now - renewed_at > renew:\n        return \"renew\"\n    if now - login_at > absolute:")]),
    "a known device is exempt from every per-account limit": (True, [(
        "    own = (\"device:\" + device) if device else (\"account:\" + username[:64].lower())\n"
        "    return max(by_client, failures.retry_after(own, limits[\"per_account\"], window))",
        "    if device:\n        return by_client\n"
        "    return max(by_client, failures.retry_after(\"account:\" + username[:64].lower(), limits[\"per_account\"],"
        " window))")]),
    "login CSRF check without Sec-Fetch-Site / Origin": (True, [(
        "    if csrf.is_cross_site(environ):\n        return False\n    sent = csrf.sent_token()",
        "    sent = csrf.sent_token()")]),
    "a new password leaves the remember-me tokens": (True, [(
        "    tokens.revoke_user(user_id)\n    return registry.end_all(user_id, keep)",
        "    if keep is None:\n        tokens.revoke_user(user_id)\n    return registry.end_all(user_id, keep)")]),
    "a password change with no new ID for this session": (False, [(
        "    renew_id(session, \"password changed\")          # a change of privilege: a new ID here too",
        "    pass")]),
}


def run(name):
    only_exercise, patches = DECOYS[name]
    text = SOLUTION.read_text(encoding="utf-8")
    for old, new in patches:
        assert text.count(old) == 1, f"{name}: {old!r} is not in the solution exactly once"
        text = text.replace(old, new)
    folder = Path(tempfile.mkdtemp(prefix="adv10-decoy-"))
    try:
        (folder / "10_capstone").mkdir()
        (folder / "10_capstone" / "app.py").write_text(text, encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "tests/test_10_capstone.py", "--target", str(folder), "-q",
                   "-p", "no:randomly", "-k", "not gunicorn and not sessions_live_in"]
        if only_exercise:
            command += ["-m", "exercise"]
        done = subprocess.run(["nice", "-n", "10", *command], cwd=ROOT, capture_output=True, text=True)
        failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
        verdict = "CAUGHT" if failed else "MISSED"
        print(f"{verdict}  {name}  ({'-m exercise' if only_exercise else 'whole file'}): {summary}")
        for line in failed:
            print("        ", line[:160])
        return verdict
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    for decoy in sys.argv[1:] or DECOYS:
        run(decoy)
