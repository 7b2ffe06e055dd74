"""The student's loop, timed: ``python -m course.tools.loop_bench [--rounds 5] [--lessons 01,08]``.

It builds two copies of the lessons in a temporary folder, the shipped starters (an untouched clone)
and the reference solutions (a clone with every lesson solved), and runs what a student runs on each,
``python -m course check NN`` and ``python -m course list``, as separate processes, ``--rounds``
times, alternating the copies. It prints the median wall time and the median CPU time (user + system
of the command and everything it started) per command and copy.

The commands run as in a student's shell: Python writes its bytecode caches (this machine's CI sets
PYTHONDONTWRITEBYTECODE, which makes every run compile every module again), and one warm-up run of
each command comes first, as the student's first check after a clone does. A student's check follows
an edit, not another check: ``--pause`` seconds (default 2) of quiet come before each timed command,
without which a check right after ``list`` (two cores busy for seconds) took 0.4-0.6 s longer.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from course import ROOT
from course.lesson import manifest
from course.tools.teeth import shipped_starter


def copies(folder: Path, lessons) -> dict[str, Path]:
    """``{"untouched": ..., "solved": ...}``: each a folder of lessons, as ``--target`` takes it."""
    made = {}
    for kind in ("untouched", "solved"):
        target = folder / kind
        for lesson in lessons:
            (target / lesson.slug).mkdir(parents=True)
            for path in (ROOT / "lessons" / lesson.slug).iterdir():
                if path.is_file():
                    (target / lesson.slug / path.name).write_bytes(path.read_bytes())
            app = shipped_starter(lesson.slug) if kind == "untouched" else \
                (ROOT / "solutions" / lesson.slug / "app.py").read_bytes()
            (target / lesson.slug / "app.py").write_bytes(app)
        made[kind] = target
    return made


def timed(command: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (the process and its reaped children) and the exit code of ``command``."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, process.returncode


def measure(rounds: int, lessons, pause: float = 2.0) -> list[tuple[str, str, float, float, set[int]]]:
    """Rows of (command, copy, median wall, median CPU, exit codes)."""
    commands = [(f"check {lesson.id}", ["check", lesson.id]) for lesson in lessons] + [("list", ["list"])]
    with tempfile.TemporaryDirectory(prefix="course-loop-bench-") as tmp:
        targets = copies(Path(tmp), lessons)
        times: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        for round_number in range(rounds + 1):                # round 0 warms the caches up, and is not counted
            for label, args in commands:
                for kind, target in targets.items():
                    time.sleep(pause if round_number else 0)
                    result = timed([sys.executable, "-m", "course", *args, "--target", str(target)])
                    if round_number:
                        times.setdefault((label, kind), []).append(result)
    return [(label, kind, statistics.median(w for w, _, _ in runs), statistics.median(c for _, c, _ in runs),
             {code for _, _, code in runs}) for (label, kind), runs in times.items()]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.tools.loop_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each command on each copy (default 5)")
    parser.add_argument("--lessons", help="e.g. 01,08 (default: every lesson)")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds of quiet before each timed command")
    args = parser.parse_args(argv)
    lessons = manifest.lessons() if not args.lessons else [manifest.lesson(key) for key in args.lessons.split(",")]
    before = load_average()
    rows = measure(args.rounds, lessons, args.pause)
    print(f"median of {args.rounds} runs, {args.pause:g} s apart; load average before {before}, "
          f"after {load_average()}; {os.cpu_count()} cores")
    print(f"{'command':<10} {'copy':<10} {'wall s':>7} {'CPU s':>7}  exit")
    for label, kind, wall, cpu, codes in rows:
        print(f"{label:<10} {kind:<10} {wall:>7.2f} {cpu:>7.2f}  {','.join(map(str, sorted(codes)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
