"""The grader's side of the sandbox: each lesson of a copy runs in a bubblewrap sandbox, as a user of
its own, and the grader's tests reach it through course.tools.grading.wire only.

``bwrap`` gives the host (course.tools.grading.host) its own PID, IPC and UTS namespaces, the test
process's own network (``private_network``: loopback, a private Redis and memcached; the machine's
only with ``--trust-services``), a private ``/tmp``, and a read-
only view of the system, the Python environment, the course's ``course/`` package and the copy
itself; the course's ``tests/`` and ``solutions/``, other copies, the grader's working folder and
output, and ``/root`` are not there. ``setpriv`` then drops to the copy's own uid, without
capabilities or supplementary groups, with ``no_new_privs``; the host caps CPU, memory, processes
and file sizes before it imports anything of the student's. bwrap runs with ``--die-with-parent``:
when the grader's test process ends, or kills a host, everything the copy started ends with it.

``Hosts`` holds the hosts of one test process, one per lesson, started when a test first needs
them; ``ModuleProxy`` is the ``app_module`` a test sees; ``serve`` gives an app the host serves a
loopback TCP port (the host's own, or a relay's: ``HostProcess.serve``), so the HTTP tests run
unchanged. What a test hands the code under test stays here; the copy calls only the methods
``HANDED_METHODS`` lists (``handed_method``).
"""
from __future__ import annotations

import inspect
import json
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course import ROOT
from course.tools.grading import cpuacct, wire

PASSED_ENV = ("SESSION_SECRET", "REDIS_URL", "POSTGRES_URL", "MYSQL_URL", "MEMCACHED_URL", "MONGODB_URL", "TZ")
"""The variables a lesson reads; their values in the test process go with every request (monkeypatch.setenv).
``TZ``: a test that runs the app in another time zone (lesson 08's purge); the host calls ``time.tzset()``."""
ETC = ("passwd", "group", "hosts", "nsswitch.conf", "localtime", "ssl", "ca-certificates", "ld.so.cache",
       "ld.so.conf", "ld.so.conf.d", "mime.types", "alternatives")
TEST_MODULES = ("tests.", "test_", "conftest")
TRUSTED_MODULES = ("course.", *TEST_MODULES)
"""Objects of the tests' own that may be handed to the code under test (as handles it calls back)."""
ACTIVE: list = []
"""The test process's Hosts, when it grades (set by the pytest plugin): app processes start in its sandboxes."""
UNSAFE_WARNING = ("WARNING: graded WITHOUT a sandbox (--unsafe-no-sandbox): the students' code ran in the "
                  "grader's own process, as the instructor's user; a hostile copy can forge its grade or "
                  "change other students' files.")


class SandboxUnavailable(Exception):
    """bubblewrap or setpriv is missing, or this machine refuses the namespaces it needs."""


@dataclass
class Config:
    """What the grader hands its test process (``--course-sandbox FILE``): one copy's sandbox."""
    uid: int
    target: str                 # the copy's folder of lessons: read-only in the sandbox
    scratch: str                # the tests' temporary files (tmp_path): the one folder both sides write
    network: list[str] = field(default_factory=list)   # lessons whose tests need the store servers
    trust_services: bool = False  # --trust-services: those lessons reach the machine's servers (see private_network)
    services: list[str] = field(default_factory=list)  # the servers those lessons need ("redis", "postgres"...)
    templates: dict[str, str] = field(default_factory=dict)  # database -> its template data dir (databases.py)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, path: str) -> "Config":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def _tool(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.path.exists(p)), None)


_PROBLEM: list = []


def problem() -> str | None:
    """Why no sandbox can be made on this machine (one line), or None; tried once per process."""
    if not _PROBLEM:
        _PROBLEM.append(_try_sandbox())
    return _PROBLEM[0]


def _try_sandbox() -> str | None:
    for name, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux"), ("prlimit", "util-linux"),
                          ("unshare", "util-linux"), ("mount", "mount")):
        if _tool(name) is None:
            return f"{name} is not installed (Debian: apt-get install {package})"
    if os.geteuid() != 0:
        return "the sandbox drops to a user of each copy's own, which needs the grader to run as root"
    with tempfile.TemporaryDirectory(prefix="course-sandbox-try-") as tmp:
        config = Config(uid=65000, target=tmp, scratch=tmp)
        try:
            proc = subprocess.run(command(config, False, ["/bin/true"]), env=environment(), capture_output=True,
                                  text=True, timeout=30)
            alone = subprocess.run(network_command(config) + ["/bin/true"], capture_output=True, text=True,
                                   timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap or unshare could not start: {exc}"
    if proc.returncode != 0:
        return f"bwrap refused to make a sandbox: {(proc.stderr or proc.stdout).strip()[:300]}"
    if alone.returncode != 0:
        return f"unshare refused a network and mounts of the test process's own: {alone.stderr.strip()[:300]}"
    return None


def _system_binds() -> list[str]:
    binds = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            binds += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            binds += ["--ro-bind", top, top]
    for name in ETC:
        binds += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for prefix in {sys.prefix, sys.base_prefix}:     # the venv, and the Python it was made from
        real = os.path.realpath(prefix)
        if not real.startswith("/usr/"):
            binds += ["--ro-bind", real, real]
            if real != prefix:
                binds += ["--symlink", real, prefix]
    return binds


def _folders_above(paths: list[str]) -> list[str]:
    """``--dir`` for each folder above the bound paths, readable by all (bwrap makes them 0700)."""
    above = sorted({str(parent) for path in paths for parent in Path(path).parents if str(parent) != "/"},
                   key=lambda p: p.count("/"))
    return [arg for folder in above for arg in ("--perms", "0755", "--dir", folder)]


def command(config: Config, network: bool, argv: list[str], cwd: str | None = None,
            lesson: str | None = None) -> list[str]:
    """``argv`` as the copy's user, in a sandbox of its own (see the module's docstring). With
    ``lesson``, the sandbox sees that lesson's folder of the copy only: fair credit's rounds hold the
    reference's code for other exercises, and one lesson's code read another lesson's hybrid (its
    reference code for an exercise, run with exec, earned lesson 07's 07.3 all its points)."""
    course = str(ROOT / "course")
    system = _system_binds()
    lessons = str(Path(config.target) / lesson) if lesson else config.target
    bound = [course, lessons, config.scratch] + [system[i + 2] for i, arg in enumerate(system)
                                                 if arg == "--ro-bind" and system[i + 2] != "/usr"]
    private = not config.trust_services                 # the test process's own network: see private_network
    return [_tool("bwrap"), "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            *([] if network or private else ["--unshare-net"]), "--die-with-parent", "--new-session",
            "--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp", *_folders_above(bound),
            *system,
            "--ro-bind", course, course, "--ro-bind-try", lessons, lessons,      # -try: a copy may lack a lesson
            "--bind", config.scratch, config.scratch, "--chdir", cwd or config.scratch,
            "--", _tool("setpriv"), f"--reuid={config.uid}", f"--regid={config.uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", *argv]


UNTRUSTED_SERVICES = ("postgres", "mysql", "mongodb")
"""Servers a copy never reaches without --trust-services: their users are superusers on this machine.
Each copy gets a private PostgreSQL and MariaDB instead (when the grader could make their templates:
``Config.templates``); there is no private MongoDB."""
PRIVATE_SERVICES = {"redis": 6379, "memcached": 11211, "postgres": 5432, "mysql": 3306}
"""Servers each copy gets a private one of, in its test process's own network, on the standard port."""
PRIVATE_URLS = {"redis": ("REDIS_URL", "redis://127.0.0.1:6379/0"),
                "memcached": ("MEMCACHED_URL", "memcached://127.0.0.1:11211"),
                "postgres": ("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
                "mysql": ("MYSQL_URL", "mysql://root@127.0.0.1:3306/test")}
"""Where a copy's tests find its private servers (course.tools.services.DEFAULT_URLS: the lessons' own defaults)."""


TMP_BYTES = 64 << 20
"""The size of each sandbox's own /tmp (a tmpfs)."""
SCRATCH_BYTES = 256 << 20
"""The size of the copy's one shared folder (its tests' tmp_path): a tmpfs, so all it writes has a cap."""


def network_command(config: Config) -> list[str]:
    """What the test process (the worker) is started under: ``unshare --mount --net``, mounts of its own (its
    scratch tmpfs goes with it) and a network of its own with nothing in it; unless the instructor
    trusts the services (``--trust-services``): then the machine's network."""
    return [_tool("unshare"), "--mount", *([] if config.trust_services else ["--net"]), "--"]


def scratch_space(config: Config) -> None:
    """The scratch folder as a tmpfs of ``SCRATCH_BYTES``, in the worker's own mount namespace (it ends
    with the worker): every byte the copy writes there, in all its processes, counts against one cap."""
    if os.readlink("/proc/self/ns/mnt") == os.environ.get("COURSE_MACHINE_MOUNTS"):
        raise SandboxUnavailable("the grader's test process shares the machine's mounts; it must run under "
                                 "`unshare --mount`")
    subprocess.run([_tool("mount") or "mount", "-t", "tmpfs", "-o", f"size={SCRATCH_BYTES},mode=1777", "tmpfs",
                    config.scratch], check=True, capture_output=True)


def network_environment(config: Config) -> dict[str, str]:
    """The worker's settings for its private servers, and the servers it must report as not graded."""
    mounts = {"COURSE_MACHINE_MOUNTS": os.readlink("/proc/self/ns/mnt")}
    if config.trust_services:
        return mounts
    private = [name for name in PRIVATE_SERVICES if name not in UNTRUSTED_SERVICES or name in config.templates]
    return {**mounts, **{PRIVATE_URLS[name][0]: PRIVATE_URLS[name][1] for name in private},
            "COURSE_UNTRUSTED_SERVICES": ",".join(each for each in UNTRUSTED_SERVICES if each not in private),
            "COURSE_MACHINE_NETWORK": os.readlink("/proc/self/ns/net")}      # the grader's, for private_network


def private_network(config: Config) -> list[subprocess.Popen]:
    """In the worker's own network namespace (``unshare --net``): loopback up, and a private Redis,
    memcached, PostgreSQL and MariaDB (those the lessons need: ``config.services``) on 127.0.0.1 at
    their standard ports, so lessons 08-10's tests run unchanged. Each database server starts from
    its grading run's template (course.tools.grading.databases), copied into its sandbox's tmpfs; one
    that does not answer in time leaves its checks not graded (``COURSE_UNTRUSTED_SERVICES``).

    The sandboxes share this namespace (bwrap without ``--unshare-net``): the tests reach the apps
    they start directly, and a copy reaches nothing of the machine's: not its PostgreSQL, MariaDB,
    Redis or memcached, not another copy's relays or app servers. Each server runs in a sandbox of
    its own, as a user of its own, with no view of the course or the copy. Refuses to go on when
    this process shares the machine's network (it was not started under ``network_command``)."""
    if config.trust_services:
        return []
    if os.readlink("/proc/self/ns/net") == os.environ.get("COURSE_MACHINE_NETWORK", os.readlink("/proc/self/ns/net")):
        raise SandboxUnavailable("the grader's test process shares the machine's network; it must run under "
                                 "`unshare --net` (or be given --trust-services)")
    _loopback_up()
    servers = []
    if not config.network:
        return servers        # no lesson of this run needs a store server
    argv = {"redis": ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no",
                      "--dir", "/tmp", "--protected-mode", "no", "--loglevel", "warning"],
            "memcached": ["memcached", "-l", "127.0.0.1", "-p", "11211", "-U", "0", "-m", "64"]}
    from course.tools.grading import databases

    wanted = set(config.services or PRIVATE_SERVICES)
    started = []
    for offset, name in enumerate(PRIVATE_SERVICES, start=1):
        if name not in wanted:
            continue
        binds: list[str] = []
        if name in databases.DATABASES:
            if name not in config.templates:
                continue      # not graded (network_environment), unless --trust-services
            binds = ["--ro-bind", config.templates[name], databases.TEMPLATE]
            full = [*limits(databases.PROCESSES), *databases.server_argv(name)]
            tmp_bytes = databases.DATA_BYTES
        else:
            binary = _tool(argv[name][0])
            if binary is None:
                continue      # its tests then skip: "not reachable", as on a machine without it
            full, tmp_bytes = [binary, *argv[name][1:]], TMP_BYTES
        own = Config(uid=config.uid + offset, target="/nonexistent", scratch="/nonexistent")   # a user per server
        servers.append(spawn(lambda c=own, a=full, b=binds, t=tmp_bytes: subprocess.Popen(
            server_command(c, a, b, t), env=environment(), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        started.append(name)
    for name in started:
        if name in databases.DATABASES:
            if not _wait_until(lambda n=name: databases.ready(n), 60):
                untrusted = os.environ.get("COURSE_UNTRUSTED_SERVICES", "")
                os.environ["COURSE_UNTRUSTED_SERVICES"] = f"{untrusted},{name}"     # neither a pass nor a failure
        else:
            _wait_for_port(PRIVATE_SERVICES[name])
    return servers


def server_command(config: Config, argv: list[str], binds: list[str] | None = None,
                   tmp_bytes: int = TMP_BYTES) -> list[str]:
    """``argv`` as ``config.uid`` in a sandbox that sees the system only (and ``binds``: bwrap's bind
    options): no course, copy or scratch. Its ``/tmp`` is a tmpfs of ``tmp_bytes`` it may write."""
    return [_tool("bwrap"), "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes),
            "--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755", "--dir", "/etc",
            *_system_binds(), *(binds or []), "--chdir", "/tmp", "--", _tool("setpriv"), f"--reuid={config.uid}",
            f"--regid={config.uid}", "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all",
            "--", *argv]


def _loopback_up() -> None:
    """``ip link set lo up``, without needing iproute2: SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, 0x8913, request))[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))


def _wait_for_port(port: int, seconds: float = 10) -> None:
    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    _wait_until(answers, seconds)


def _wait_until(ready, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.02)
    return False


def environment(extra: dict | None = None) -> dict[str, str]:
    """A scrubbed environment: no token, key or setting of the instructor's gets into the sandbox."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    env.update({name: os.environ[name] for name in PASSED_ENV if name in os.environ})
    env.update({k: v for k, v in (extra or {}).items() if v is not None})
    return env


_SPAWNS: "queue.Queue" = queue.Queue()
_SPAWNER: list[threading.Thread] = []
_SPAWNER_LOCK = threading.Lock()


def spawn(start):
    """``start()`` (a ``subprocess.Popen(...)``) in a thread that lives as long as this process.

    bwrap's ``--die-with-parent`` ends the sandbox when the *thread* that started it ends: an app
    server a test starts from a pool thread would die with that thread. The main thread, and the
    spawner thread, live until the process ends.
    """
    if threading.current_thread() is threading.main_thread():
        return start()
    with _SPAWNER_LOCK:
        if not _SPAWNER:
            _SPAWNER.append(threading.Thread(target=_spawn_forever, name="sandbox-spawner", daemon=True))
            _SPAWNER[0].start()
    done, box = threading.Event(), []
    _SPAWNS.put((start, box, done))
    done.wait()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _spawn_forever() -> None:
    while True:
        start, box, done = _SPAWNS.get()
        try:
            box.append((True, start()))
        except BaseException as exc:
            box.append((False, exc))
        done.set()


def wrap(argv: list[str], env: dict | None = None, cwd=None) -> tuple[list[str], dict | None, str | None]:
    """``(argv, env, cwd)`` for a process of the code under test (an app server a test starts): as given,
    or, when this process grades (``ACTIVE``), inside the copy's sandbox with the network (lessons 08
    and 09 start such processes to reach the store servers), a scrubbed environment plus what the
    test itself set, and its working folder if the sandbox can see it."""
    if not ACTIVE:
        return argv, env, cwd
    config = ACTIVE[0].config
    extra = {k: v for k, v in (env or {}).items()
             if k != "PYTHONPATH" and v is not None and (k in PASSED_ENV or os.environ.get(k) != v)}
    inside = cwd is not None and (Path(cwd) == Path(config.scratch) or Path(config.scratch) in Path(cwd).parents)
    scrubbed = environment(extra)
    for name in PASSED_ENV if env is not None else ():
        if name not in env:           # the test removed it (``env={"SESSION_SECRET": None}``): not put back
            scrubbed.pop(name, None)
    return (command(config, True, limits() + list(argv), str(cwd) if inside else None, _lesson_of(config, argv, env)),
            scrubbed, None)


def _lesson_of(config: Config, argv: list[str], env: dict | None) -> str | None:
    """The lesson a process of the code under test serves: the lesson folder of the copy that its
    arguments name (an app.py's path; ``serve TARGET SLUG``), else the bench's COURSE_BENCH_SLUG.
    Paths are compared resolved (a TMPDIR through a symlink). None: it sees the copy's whole folder."""
    target = os.path.realpath(config.target)

    def lesson(name) -> str | None:
        name = str(name)
        return name if name not in ("", ".", "..") and "/" not in name and os.path.isdir(
            os.path.join(target, name)) else None

    for at, value in enumerate(argv):
        real = os.path.realpath(str(value)) if str(value).startswith("/") else ""
        if real.startswith(target + os.sep) and lesson(real[len(target) + 1:].split(os.sep, 1)[0]):
            return real[len(target) + 1:].split(os.sep, 1)[0]
        if real == target and at + 1 < len(argv) and lesson(argv[at + 1]):      # serve TARGET SLUG (faults)
            return str(argv[at + 1])
    return lesson((env or {}).get("COURSE_BENCH_SLUG", ""))


def limits(processes: int | None = None) -> list[str]:
    """``prlimit`` with the host's limits (course.tools.grading.host.LIMITS), for the app servers a test
    starts; with ``processes``: only that many processes and threads (a database server's)."""
    from course.tools.grading.host import LIMITS
    if processes is not None:
        return [_tool("prlimit"), f"--nproc={processes}:{processes}", "--core=0:0", "--"]
    return [_tool("prlimit"), *(f"--{name[7:].lower()}={soft}:{hard}" for name, (soft, hard) in LIMITS.items()),
            "--"]


def trusted_object(value) -> bool:
    """May ``value`` be handed to the code under test, as a handle it calls back? Only the tests' own
    objects (a clock, a counting store) and their methods; a plain function only if a test defined it
    (a function of course/ could do anything with the arguments the copy chose)."""
    if isinstance(value, (type, type(os))):
        return False
    owner = getattr(value, "__self__", None)
    if owner is not None and not isinstance(owner, (type, type(os))):
        return trusted_object(owner)
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return str(getattr(value, "__module__", "")).startswith(TEST_MODULES)
    return type(value).__module__.startswith(TRUSTED_MODULES)


STORE_METHODS = frozenset({"get", "set", "touch", "destroy", "all", "length", "clear", "sweep", "peek", "holds",
                           "check"})
HANDED_METHODS = {
    "course.kit.stores.MemoryStore": STORE_METHODS,
    "course.kit.stores.CountingStore": STORE_METHODS,     # not fail, recover, reset: the test's controls
    "course.kit.users.UserDB": frozenset({"find", "username", "verify", "add"}),
    "course.kit.security.FakeClock": frozenset({"__call__"}),     # not advance: moving it is the test's
    "course.kit.remember.RememberStore": frozenset({"add", "find", "mark_used", "revoke_series", "revoke_user"}),
}
HANDED_ATTRIBUTES = {
    "course.kit.stores.CountingStore": frozenset({"store"}),      # the store it counts (itself handed)
}
"""The methods the code under test may call on the grader's objects of each course type handed to it.
A type of the course's not listed here cannot be used from the sandbox at all; a class a test
defines may be called through the public methods it defines itself (plus its listed bases')."""


class Refused(AttributeError):
    """A name of a grader's object the code under test may not reach (an AttributeError, so that
    ``getattr(store, "touch", None)`` still says "no such method")."""


def handed_method(target, name):
    """The method ``name`` of a grader's object handed to the code under test, or ``Refused``.

    Only the methods of ``HANDED_METHODS`` (or of a test's own class), looked up on the class, never
    on the instance; a handed function or method may only be called. There is no setattr, no
    delattr, no reading of data: nothing the copy sends changes a grader's object but through those
    methods. A method an instance hides (``store.touch = None``) stays hidden."""
    refused = Refused(f"{name!r} of the grader's {type(target).__name__} cannot be reached from the sandbox")
    if not isinstance(name, str) or not wire.allowed_name(name):
        raise refused
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target):
        if name != "__call__":
            raise refused
        return target
    if name in _allowed_names(type(target), HANDED_ATTRIBUTES):
        return getattr(target, name)               # read only: the op that asked is getattr (see _callback)
    if name not in _allowed_names(type(target)) or name in getattr(target, "__dict__", {}):
        raise refused
    try:
        found = inspect.getattr_static(type(target), name)
    except AttributeError:
        raise refused from None
    if isinstance(found, (staticmethod, classmethod)):
        found = found.__func__
    if not callable(found) or not hasattr(found, "__get__"):
        raise refused
    return found.__get__(target, type(target))


def _allowed_names(cls: type, table: dict | None = None) -> set[str]:
    allowed: set[str] = set()
    test_class = cls.__module__.startswith(TEST_MODULES)
    for klass in cls.__mro__:
        if table is not None:
            allowed |= table.get(f"{klass.__module__}.{klass.__qualname__}", set())
            continue
        listed = HANDED_METHODS.get(f"{klass.__module__}.{klass.__qualname__}")
        if listed is not None:
            allowed |= listed
        elif klass.__module__.startswith(TEST_MODULES) or (test_class and klass.__module__ == "builtins"
                                                            and klass is not object):
            allowed |= {n for n, v in vars(klass).items() if callable(v) and wire.allowed_name(n)}
    return allowed      # a test's dict (FakeSession) is changed by the code under test as a dict is


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")            # /proc's CPU times are in these


def cpu_seconds_of_tree(pid: int) -> float:
    """CPU seconds (user + system, with reaped children) of ``pid`` and all its descendants (Linux /proc).

    A test's time limit reads it at least once per test, and the tree of a lesson 08 copy is a few
    hundred files (each thread of each process lists its own children): plain ``os`` calls on bytes,
    not pathlib, make a walk about twice as cheap."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        base = f"/proc/{current}/"
        try:
            with open(base + "stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            for task in os.listdir(base + "task"):
                with open(f"{base}task/{task}/children", "rb") as file:
                    todo += [int(each) for each in file.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total / CLOCK_TICKS


def share_temporary_folders(config: Config) -> None:
    """The tests' tmp_path folders (made 0700 by pytest, in the scratch folder) are made writable by the
    copy too: a test hands such a folder to the app (``db_path=tmp_path / ...``) and reads what it left.

    They stay the grader's, sticky (1777, as ``/tmp``): the copy may add files, but not rename or
    delete the grader's, nor swap a folder for a symlink. It could still plant a symlink under a name
    a test writes later; with ``fs.protected_symlinks=1`` the kernel refuses to follow it (the grader
    warns when that is off: symlink_protection)."""
    from _pytest.tmpdir import TempPathFactory

    real, scratch = TempPathFactory.mktemp, Path(config.scratch)

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        path = real(self, basename, numbered)
        os.chmod(path, 0o1777)
        for folder in path.parents:
            if folder == scratch or scratch not in folder.parents:
                break
            os.chmod(folder, 0o755)
        return path

    TempPathFactory.mktemp = mktemp


def symlink_protection() -> str | None:
    """A warning when the kernel follows symlinks planted in shared sticky folders (fs.protected_symlinks=0)."""
    try:
        if Path("/proc/sys/fs/protected_symlinks").read_text().strip() == "1":
            return None
    except OSError:
        return None
    return ("fs.protected_symlinks is 0 on this machine: a copy could plant a symlink in its tests' temporary "
            "folder under a name a test later writes to. Debian's default is 1: sysctl -w fs.protected_symlinks=1")


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``, parents first (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                children = [int(each) for each in task.read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            todo += children
    return found


def keep_stopped_sandboxes_counted() -> None:
    """Make this process the reaper of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    A sandbox's CPU must stay counted once it is stopped. bwrap's outer process ends without
    reaping the sandbox's init (its PID 1), whose accounting holds everything that ran inside: that
    init went to the machine's init, and the copy's CPU with it (a copy that made its tests time
    out, each one stopping its sandboxes, spent 8 s of a 5 s budget and was never stopped).
    Adopted, it stays below this process, a zombie whose times /proc still shows, so
    cpu_seconds_of_tree goes on counting it, and counts it in this process's children once reaped."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:            # PR_SET_CHILD_SUBREAPER
        raise SandboxUnavailable(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")


def stop_sandbox(proc: subprocess.Popen) -> None:
    """Kill what runs in a sandbox, then let bwrap end: nothing of it is left, a detached daemon
    included. Its CPU stays counted where the caller adopts orphans (keep_stopped_sandboxes_counted)."""
    for pid in descendants(proc.pid):
        try:
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")) != "bwrap":
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class HostGone(RuntimeError):
    """The lesson's sandboxed process ended (the code under test called os._exit, crashed, or was stopped)."""


class HostProcess:
    """One lesson's host: its sandbox, its socket, the test threads' connections and the call-back reader."""

    def __init__(self, config: Config, slug: str, cpu_limit: float | None = None):
        self.slug = slug
        self.dir = tempfile.mkdtemp(prefix="course-host-")          # the grader's: not in any sandbox
        self.path = os.path.join(self.dir, "host.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(128)
        argv = [sys.executable, "-m", "course.tools.grading.host", "--fd", str(listener.fileno()),
                "--target", config.target, "--slug", slug, *(["--cpu", f"{cpu_limit:g}"] if cpu_limit else [])]
        self.proc = spawn(lambda: subprocess.Popen(command(config, slug in config.network, argv, lesson=slug),
                                                   env=environment(),
                                                   pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL))
        listener.close()
        self.objects = wire.Objects()
        self.codec = wire.Codec("$g", "$h", self.objects, lambda key: wire.Remote(self.codec, key, self.rpc),
                                trusted_object)
        self.codec.host = self
        self.local = threading.local()
        self.loaded = False
        self.relays: list[Relay | Listening] = []
        self.direct = not config.trust_services        # in the test process's own network: see serve()
        self.send_lock = threading.Lock()
        self.ended = threading.Event()
        self.callbacks = self._connect("callbacks")
        threading.Thread(target=self._serve_callbacks, daemon=True).start()

    def _connect(self, kind: str, **fields) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        wire.send(sock, {"kind": kind, **fields})
        return sock

    def alive(self, grace: float = 0) -> bool:
        """Is the host still there? Its call-back connection ends the moment it dies, before bwrap does."""
        return not self.ended.wait(grace) and self.proc.poll() is None

    def rpc(self, op: str, **fields):
        """One request to the host from this thread (each test thread has a connection of its own)."""
        sock = getattr(self.local, "sock", None)
        try:
            if sock is None:
                sock = self.local.sock = self._connect("rpc")
            for key in ("args",):
                if key in fields:
                    fields[key] = [self.codec.encode(each) for each in fields[key]]
            if "kwargs" in fields:
                fields["kwargs"] = {k: self.codec.encode(v) for k, v in fields["kwargs"].items()}
            if "value" in fields:
                fields["value"] = self.codec.encode(fields["value"])
            env = {name: os.environ.get(name) for name in PASSED_ENV}
            wire.send(sock, {"op": op, "env": env, **fields})
            answer = wire.receive(sock)
        except (OSError, wire.WireError):
            self.local.sock = None
            raise HostGone(self.gone()) from None
        except BaseException:              # a time limit fired mid-request: this connection is out of step
            self.local.sock = None
            if sock is not None:
                sock.close()
            raise
        for name, bases, message in answer.get("warnings") or []:
            category = wire.exception_class(str(name), [str(b) for b in bases])
            warnings.warn(str(message), category if issubclass(category, Warning) else UserWarning, stacklevel=3)
        if "err" in answer:
            wire.raise_error(answer["err"])
        return self.codec.decode(answer.get("ok"))

    def tell(self, op: str, **fields) -> None:
        """A request the host answers without this process waiting for it, on a connection of its own: a
        test's teardown must not wait on a host whose every thread the copy's code keeps busy."""
        if self.ended.is_set():
            return
        try:
            sock = self._connect("rpc")
            try:
                wire.send(sock, {"op": op, **fields})
            finally:
                sock.close()
        except OSError:
            pass                  # the host has ended: nothing of it is left to stop

    def gone(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        return (f"lesson {self.slug[:2]}'s process ended (exit code {code}) while a test used it: does the code "
                "call sys.exit/os._exit, or crash Python?")

    def _serve_callbacks(self) -> None:
        """The host calls the tests' objects (a clock, a counting store); each call in a thread of its own."""
        while True:
            try:
                request = wire.receive(self.callbacks)
            except (OSError, wire.WireError, ValueError):
                self.ended.set()
                return
            threading.Thread(target=self._callback, args=(request,), daemon=True).start()

    def _callback(self, request: dict) -> None:
        try:
            target = self.objects.get(request.get("target"))
            name = request.get("name")
            method = handed_method(target, name)
            if request.get("op") == "getattr":
                value = method
            elif request.get("op") == "call" and name in _allowed_names(type(target), HANDED_ATTRIBUTES):
                raise Refused(f"{name!r} of the grader's {type(target).__name__} is read, not called")
            elif request.get("op") == "call":
                args = [self.codec.decode(each) for each in request.get("args") or []]
                kwargs = {k: self.codec.decode(v) for k, v in (request.get("kwargs") or {}).items()}
                value = wire.call_on(target, name, args, kwargs) if name in wire.CALLABLE_DUNDERS \
                    else method(*args, **kwargs)
            else:
                raise PermissionError(f"{request.get('op')!r} on the grader's objects is refused: a copy may only "
                                      "call their methods")
            answer = {"ok": self.codec.encode(value)}
        except Exception as exc:
            answer = wire.error_frame(exc)
        answer["id"] = request.get("id")
        with self.send_lock:
            try:
                wire.send(self.callbacks, answer)
            except OSError:
                pass

    def serve(self, app: wire.Remote, url_scheme: str | None = None) -> "Relay | Listening":
        """``app`` (the host's) answering on a loopback port, with its ``url``: the host's own port when
        it is in this process's private network (course.tools.grading.host: ``listen``), else a relay's
        in this process (``--trust-services``: the host is on the machine's network, where other copies
        are too, and only this process may reach it)."""
        if self.direct:
            key, port = self.rpc("serve", app=app._wire_handle[1], url_scheme=url_scheme, listen=True)
            served: Relay | Listening = Listening(self, int(key), int(port))
        else:
            served = Relay(self)
            served.app = self.rpc("serve", app=app._wire_handle[1], port=served.port, url_scheme=url_scheme)
        self.relays.append(served)
        return served

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        if self.proc.poll() is None:
            stop_sandbox(self.proc)
        for sock in (self.callbacks, getattr(self.local, "sock", None)):
            if sock is not None:
                sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Listening:
    """An app the host answers on a loopback port of its own; ``close`` stops it listening."""

    def __init__(self, host: HostProcess, key: int, port: int):
        self.host, self.key, self.port = host, key, port
        self.url = f"http://127.0.0.1:{port}"
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.host.tell("unserve", key=self.key)


class Relay:
    """A loopback TCP port whose connections go to one app the host serves, byte for byte."""

    def __init__(self, host: HostProcess):
        self.host, self.app = host, None
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            upstream = self.host._connect("http", app=self.app)
        except OSError:
            client.close()
            return
        pair = (client, upstream)
        try:
            while True:
                ready, _, _ = select.select(pair, [], [], 1.0)
                if self.closed:
                    return
                for sock in ready:
                    data = sock.recv(1 << 16)
                    other = upstream if sock is client else client
                    if not data:
                        if sock is upstream:
                            return
                        other.shutdown(socket.SHUT_WR)
                        pair = (upstream,)
                        continue
                    other.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


class Hosts:
    """The hosts of one test process: one per lesson, started on first use, killed after a time limit."""

    def __init__(self, config: Config):
        self.config = config
        self.by_slug: dict[str, HostProcess] = {}
        self.lock = threading.Lock()
        self.account = cpuacct.of_this_process()
        self.spent = 0.0
        keep_stopped_sandboxes_counted()
        scratch_space(config)
        self.servers = private_network(config)

    def host(self, slug: str) -> HostProcess:
        with self.lock:
            host = self.by_slug.get(slug)
            if host is None or not host.alive():
                if host is not None:
                    self._close(host)
                host = self.by_slug[slug] = HostProcess(self.config, slug)
            return host

    def cpu_seconds(self) -> float:
        """CPU seconds of this test process and everything it started (the sandboxes, the app servers in
        them, a browser): a test's time limit counts them all, since a copy can make the tests' own side
        work too (an answer of 2.5 million one-byte chunks cost the test process 4 s, and no test).

        Read from this process's cgroup where the grader made one (course.tools.grading.cpuacct: it
        counts children the kernel discarded), else from /proc. It never goes down."""
        total = self.account.seconds() if self.account is not None else cpu_seconds_of_tree(os.getpid())
        self.spent = max(self.spent, total)
        return self.spent

    def _close(self, host: HostProcess) -> None:
        host.close()

    def ended(self, grace: float = 0) -> list[str]:
        """Why each host that has died since it was last asked ended (it is started again when next needed).

        ``grace`` is for all the hosts together, not for each: a failed test asks, and a grader that
        has loaded ten lessons' hosts must not wait ten times (it cost a half-solved copy 75 s)."""
        deadline = time.monotonic() + grace
        with self.lock:
            dead = {slug: host for slug, host in self.by_slug.items()
                    if not host.alive(max(0.0, deadline - time.monotonic()))}
            for slug, host in dead.items():
                del self.by_slug[slug]
                host.close()
            return [host.gone() for host in dead.values()]

    def close_lesson(self, slug: str) -> None:
        """Kill the host of a lesson whose tests are done, and with it all its sandbox holds: the
        processes a copy's code leaves there count against its user's limit (RLIMIT_NPROC, 64), and
        one lesson's sleeping children left the next lesson's correct code no process to run in."""
        with self.lock:
            host = self.by_slug.pop(slug, None)
        if host is not None:
            self._close(host)

    def reset(self) -> None:
        """Kill every host (after a test that ran over its time: its loop may still spin)."""
        with self.lock:
            for host in self.by_slug.values():
                self._close(host)
            self.by_slug.clear()

    def close(self) -> None:
        self.reset()
        for server in self.servers:
            stop_sandbox(server)


class ModuleProxy:
    """The lesson's app.py as a test sees it: each attribute read, call or assignment is a request."""

    __slots__ = ("_hosts", "_slug")      # no __dict__: monkeypatch.setattr then restores through the host
    course_sandboxed = True

    def __init__(self, hosts: Hosts, slug: str):
        object.__setattr__(self, "_hosts", hosts)
        object.__setattr__(self, "_slug", slug)

    def _rpc(self, op: str, **fields):
        host = self._hosts.host(self._slug)
        if not host.loaded:
            host.rpc("load")
            host.loaded = True
        return host.rpc(op, **fields)

    def load(self) -> None:
        self._rpc("load")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._rpc("getattr", target=None, name=name)

    def __setattr__(self, name, value):
        self._rpc("setattr", target=None, name=name, value=value)

    def course_source(self) -> str:
        """The lesson's app.py as the copy handed it in, read here, outside the sandbox ("" when there is
        none, or more than same.MAX_SOURCE to read)."""
        from course.tools.grading.same import read_source
        return read_source(Path(self._hosts.config.target) / self._slug / "app.py") or ""

    def course_probe(self, name: str, *args):
        """A named check inside the sandbox (course.tools.grading.host.Host.probe)."""
        return self._rpc("probe", name=name, args=list(args))

    def __repr__(self):
        return f"<lesson {self._slug} in a sandbox>"
