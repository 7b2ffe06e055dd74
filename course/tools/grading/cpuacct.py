"""A sandboxed copy's CPU, counted by the kernel: each test process runs in a cgroup of its own.

Walking /proc (sandbox.cpu_seconds_of_tree) adds up the processes that are there and the children
they reaped. A copy that ignores SIGCHLD has its children discarded by the kernel as they exit,
CPU and all, so a walk never sees what they spent (a copy spent 18 s against a 5 s budget and was
graded "ok"). A cgroup counts every task that ever ran in it, however it ended, and a process
cannot leave one without write access to another's ``cgroup.procs`` (root's, and not in the
sandbox's view): the grader puts each test process in a cgroup before it starts, and everything
that process starts is in it too.

``Account.create`` makes one where this machine lets it: cgroup v2 (``cpu.stat``, kept whether the
cpu controller is enabled or not), else v1's ``cpuacct`` controller; where neither can be made
(not root, a read-only cgroupfs) it returns None and the grader walks /proc as before, with a
warning (``problem``).
"""
from __future__ import annotations

import itertools
import os
import re
import signal
import time

ENV = "COURSE_CPU_ACCOUNT"
"""The worker's cgroup folder, in the test process's environment: its time limits read it too."""
PREFIX = "course-grade-"
_NUMBERS = itertools.count(1)


def _mounts() -> dict[str, str]:
    """Where this machine mounts cgroup v2 (``"v2"``) and v1's cpuacct controller (``"v1"``)."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as file:
            for line in file:
                fields = line.split()
                rest = fields[fields.index("-") + 1:]
                kind, options = rest[0], rest[2].split(",") if len(rest) > 2 else []
                if kind == "cgroup2":
                    found.setdefault("v2", fields[4])
                elif kind == "cgroup" and "cpuacct" in options:
                    found.setdefault("v1", fields[4])
    except (OSError, ValueError, IndexError):
        pass
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup in each hierarchy (``/proc/self/cgroup``): new ones are made below it."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as file:
            for line in file:
                number, controllers, path = line.rstrip("\n").split(":", 2)
                if number == "0" and controllers == "":
                    paths["v2"] = path
                elif "cpuacct" in controllers.split(","):
                    paths["v1"] = path
    except (OSError, ValueError):
        pass
    return paths


class Account:
    """One cgroup: a test process and all it starts, and the CPU seconds they have spent in all."""

    def __init__(self, folder: str):
        self.folder = folder
        self.v2 = os.path.exists(os.path.join(folder, "cgroup.controllers"))     # only cgroup v2 has it
        self.usage_file = os.path.join(folder, "cpu.stat" if self.v2 else "cpuacct.usage")

    @classmethod
    def create(cls, kinds: tuple[str, ...] = ("v2", "v1")) -> "Account | None":
        """A new cgroup below this process's own, of the first of ``kinds`` this machine allows, or None."""
        mounts, own = _mounts(), _own_paths()
        for kind in kinds:
            if kind not in mounts or kind not in own:
                continue
            parent = os.path.join(mounts[kind], own[kind].lstrip("/"))
            _remove_stale(parent)
            folder = os.path.join(parent, f"{PREFIX}{os.getpid()}-{next(_NUMBERS)}")
            try:
                os.mkdir(folder, 0o755)
            except OSError:
                continue
            account = cls(folder)
            if account.usable():
                return account
            account.close()
        return None

    def usable(self) -> bool:
        """Can this process move a process into it and read its usage? (A mkdir can succeed where that fails.)"""
        try:
            with open(os.path.join(self.folder, "cgroup.procs"), "a", encoding="ascii"):
                pass
            self.seconds()
            return True
        except (OSError, ValueError):
            return False

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` started inside this cgroup: the shell moves itself in, then becomes ``argv``, so not
        even the first instruction of the test process runs outside it."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(self.folder, "cgroup.procs"), *argv]

    def seconds(self) -> float:
        """CPU seconds spent in this cgroup since it was made, by every process that ever ran in it."""
        with open(self.usage_file, "rb") as file:
            text = file.read()
        if self.v2:
            found = re.search(rb"^usage_usec (\d+)", text, re.M)
            if found is None:
                raise ValueError(f"{self.usage_file} has no usage_usec")
            return int(found.group(1)) / 1e6
        return int(text) / 1e9

    def kill(self) -> None:
        """SIGKILL whatever still runs in it (v2's ``cgroup.kill``, else each listed process, until none is left)."""
        try:
            with open(os.path.join(self.folder, "cgroup.kill"), "w", encoding="ascii") as file:
                file.write("1")
            return
        except OSError:
            pass
        for _ in range(100):                # a process may fork while it is being killed: look again
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.folder, "cgroup.procs"), encoding="ascii") as file:
                return [int(each) for each in file.read().split()]
        except (OSError, ValueError):
            return []

    def close(self) -> None:
        """Kill what is left in it and remove it (the kernel removes a cgroup only once it is empty)."""
        self.kill()
        for _ in range(200):
            try:
                os.rmdir(self.folder)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def _remove_stale(parent: str) -> None:
    """Remove the empty cgroups a grader that was killed left behind (its pid is in their names)."""
    try:
        names = [name for name in os.listdir(parent) if name.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


def of_this_process() -> Account | None:
    """The cgroup the grader made for this test process (``COURSE_CPU_ACCOUNT``), if it made one."""
    folder = os.environ.get(ENV)
    return Account(folder) if folder and os.path.isdir(folder) else None


def problem() -> str | None:
    """A warning when no cgroup can be made here: a copy's CPU is then read from /proc, which misses
    children the kernel discarded (a copy that ignores SIGCHLD)."""
    account = Account.create()
    if account is not None:
        account.close()
        return None
    return ("no cgroup can be made on this machine (the grader needs root and a writable cgroup v2 or v1 cpuacct "
            "hierarchy): a copy's CPU is read from /proc, and a copy that ignores SIGCHLD can hide the CPU its "
            "children spend from its time limits")
