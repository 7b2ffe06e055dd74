"""Each copy's private PostgreSQL and MariaDB, started in its test process's own network (see
course.tools.grading.sandbox.private_network), so lessons 08-10's database checks are graded
without the machine's servers.

Once per grading run, ``make_templates`` makes a data directory of each (``initdb``, then a
database ``test``; ``mariadb-install-db``, root without a password, a database ``test``: what
``course.tools.services.DEFAULT_URLS`` point at), as a user id of its own, in a sandbox that sees
the system only. The templates are then made the grader's and read-only. Each copy's server
(``server_argv``) copies its template into its sandbox's own tmpfs and runs from there as a uid of
the copy's own, on 127.0.0.1 at the standard port, with fsync off: nothing it writes outlives it,
and nothing a copy does with it (a superuser's ``COPY ... TO PROGRAM``, ``LOAD_FILE``) sees more
than that sandbox: the system, read-only, its own ``/tmp``, a network with only the copy in it.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATABASES = {"postgres": 5432, "mysql": 3306}
"""The database servers each copy gets a private one of, and their standard ports."""
PACKAGES = {"postgres": "postgresql", "mysql": "mariadb-server"}
DATA_BYTES = 256 << 20
"""The size of each database server's own /tmp (a tmpfs), where its copy of the template lives."""
TEMPLATE = "/template"
"""Where a database server's sandbox sees its template (read-only)."""
PROCESSES = 256
"""Processes and threads of each database server (its uid's RLIMIT_NPROC): backends, threads, what a copy starts."""
POSTGRES_OPTIONS = ["-c", "listen_addresses=127.0.0.1", "-p", "5432", "-c", "unix_socket_directories=/tmp",
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "shared_buffers=16MB", "-c", "max_connections=100", "-c", "max_wal_size=64MB",
                    "-c", "logging_collector=off", "-c", "log_min_messages=fatal", "-c", "autovacuum=off"]
MARIADB_OPTIONS = ["--no-defaults", "--skip-name-resolve", "--skip-log-bin", "--innodb-log-file-size=4M",
                   "--innodb-buffer-pool-size=16M", "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                   "--innodb-temp-data-file-path=ibtmp1:1M:autoextend", "--tmpdir=/tmp"]
MARIADB_SERVE = ["--socket=/tmp/mysqld.sock", "--pid-file=/tmp/mysqld.pid", "--bind-address=127.0.0.1", "--port=3306",
                 "--innodb-flush-method=nosync", "--skip-performance-schema", "--max-connections=100",
                 "--secure-file-priv=/tmp", "--log-warnings=0"]


def postgres_binary(name: str) -> str | None:
    """Debian's ``/usr/lib/postgresql/N/bin/NAME`` of the newest N installed (or NAME on the PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return found[-1] if found else shutil.which(name)


def binaries(name: str) -> dict[str, str] | str:
    """The programs that make and run ``name``'s server, or why they are missing (one line)."""
    if name == "postgres":
        wanted = {each: postgres_binary(each) for each in ("initdb", "postgres")}
    else:
        wanted = {each: shutil.which(each) or next((p for p in (f"/usr/sbin/{each}", f"/usr/bin/{each}")
                                                    if os.path.exists(p)), None)
                  for each in ("mariadb-install-db", "mariadbd")}
    missing = [each for each, path in wanted.items() if path is None]
    if missing:
        return f"{', '.join(missing)} is not installed (Debian: apt-get install {PACKAGES[name]})"
    return wanted


def make_templates(names: set[str]) -> tuple[str | None, dict[str, str], dict[str, str]]:
    """``(folder, templates, problems)``: a data directory per server of ``names`` that can be made,
    in ``folder`` (the caller removes it when the grading run ends), and why each other could not."""
    names = {each for each in names if each in DATABASES}
    if not names:
        return None, {}, {}
    folder = tempfile.mkdtemp(prefix="course-databases-")
    try:
        templates, problems = _make_in(folder, names)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, templates, problems


def _make_in(folder: str, names: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    from course.tools.grading import sandbox

    templates: dict[str, str] = {}
    problems: dict[str, str] = {}
    uid = secrets.randbelow(1 << 30) + (1 << 20)       # a user of its own: no copy's, nobody's
    os.chmod(folder, 0o755)
    os.chown(folder, uid, uid)
    passwd = Path(folder) / "passwd"        # initdb wants its user's name: the machine's users plus this one
    passwd.write_text(Path("/etc/passwd").read_text(encoding="utf-8")
                      + f"course-databases:x:{uid}:{uid}::/tmp:/usr/sbin/nologin\n", encoding="utf-8")
    config = sandbox.Config(uid=uid, target="/nonexistent", scratch="/nonexistent")
    binds = ["--bind", folder, folder, "--ro-bind", str(passwd), "/etc/passwd"]

    def run(argv: list[str], stdin: str | None = None) -> str | None:
        try:
            proc = subprocess.run(sandbox.server_command(config, argv, binds), env=sandbox.environment(),
                                  input=stdin, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{os.path.basename(argv[0])} could not run: {exc}"
        if proc.returncode != 0:
            return f"{os.path.basename(argv[0])} failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
        return None

    def make(name: str) -> str | None:
        programs = binaries(name)
        if isinstance(programs, str):
            return programs
        data = os.path.join(folder, name)
        if name == "postgres":
            return run([programs["initdb"], "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                        "--locale=C", "--no-instructions", "--wal-segsize=1"]) or \
                run([programs["postgres"], "--single", "-D", data, "-F", "postgres"], "CREATE DATABASE test;\n")
        (Path(folder) / "test.sql").write_text("CREATE DATABASE test;\n", encoding="utf-8")
        return run([programs["mariadb-install-db"], *MARIADB_OPTIONS, f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db", f"--extra-file={folder}/test.sql"])

    with ThreadPoolExecutor(max_workers=len(names)) as pool:          # both at once: half the wait
        for name, problem in zip(sorted(names), pool.map(make, sorted(names)), strict=True):
            if problem:
                problems[name] = problem
            else:
                templates[name] = os.path.join(folder, name)
    for top, _dirs, files in os.walk(folder):          # the grader's now, and read-only for every copy's server
        for each in [top] + [os.path.join(top, f) for f in files]:
            os.chown(each, 0, 0, follow_symlinks=False)
            if not os.path.islink(each):
                os.chmod(each, 0o755 if os.path.isdir(each) else 0o644)
    return templates, problems


def server_argv(name: str) -> list[str]:
    """The command, run in a server sandbox with its template bound read-only at ``TEMPLATE``, that
    copies the template into the sandbox's own /tmp and serves it on 127.0.0.1 at the standard port."""
    programs = binaries(name)
    if isinstance(programs, str):
        raise FileNotFoundError(programs)
    if name == "postgres":
        serve = [programs["postgres"], "-D", "/tmp/data", *POSTGRES_OPTIONS]
        prepare = f"cp -R {TEMPLATE} /tmp/data && chmod 700 /tmp/data"     # postgres wants its data 0700, its own
    else:
        serve = [programs["mariadbd"], *MARIADB_OPTIONS, "--datadir=/tmp/data", *MARIADB_SERVE]
        prepare = f"cp -R {TEMPLATE} /tmp/data"
    return ["/bin/sh", "-c", f"{prepare} && exec \"$@\"", "sh", *serve]


def ready(name: str, timeout: float = 0.5) -> bool:
    """Does the server on its standard port take a login now? (PostgreSQL opens its port before it
    accepts logins: a startup message as ``postgres`` to ``test`` must get an authentication answer.)"""
    try:
        with socket.create_connection(("127.0.0.1", DATABASES[name]), timeout=timeout) as sock:
            if name == "mysql":
                return len(sock.recv(1)) == 1            # the server's greeting: it is serving
            body = struct.pack("!I", 196608) + b"user\0postgres\0database\0test\0\0"
            sock.sendall(struct.pack("!I", len(body) + 4) + body)
            return sock.recv(1) == b"R"                  # authentication (trust: ok); "E" while starting up
    except OSError:
        return False
