"""A class graded, timed: ``python -m course.tools.class_bench [--copies 30] [--jobs N] [--keep DIR]``.

It builds a class in a temporary folder from the course itself (tests/fixtures/submissions.py), in
the proportions of the grader's issue: of every 30 copies, 8 solved, 10 partly solved in different
ways, 4 untouched and 8 broken (a syntax error, an endless loop in a route, ``os._exit`` in an
exercise, a flood of output, each in one lesson, the rest solved). Then it runs
``python -m course grade`` on the class as an instructor would and prints:

- the wall time, and the CPU time of the whole machine while it ran (from /proc/stat: the
  sandboxes' processes are not all the grader's children, so its own rusage misses some), per copy;
- the load average before, and the highest seen while it ran (sampled every second);
- per kind of copy, the mean and the largest grading time (``duration_s`` of its json record) and
  the totals it got.

``--keep DIR`` keeps the class and the grades there (to grade the same class again, e.g. with the
machine loaded, and compare the gradebooks).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from course import ROOT
from course.lesson import manifest

KINDS_PER_30 = {"solved": 8, "partly": 10, "untouched": 4, "broken": 8}

BROKEN = ["syntax error", "endless loop", "os._exit", "flood"]


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since it booted (all cores; /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def kinds(copies: int) -> list[str]:
    """The kind of each copy, in the proportions of KINDS_PER_30, interleaved (a class is not sorted)."""
    counts = {kind: round(share * copies / 30) for kind, share in KINDS_PER_30.items()}
    counts["partly"] += copies - sum(counts.values())
    order = [kind for kind, count in counts.items() for _ in range(count)]
    random.Random(13).shuffle(order)
    return order


def build_class(folder: Path, copies: int) -> dict[str, str]:
    """The class in ``folder`` (one clone-like copy per student); student name -> kind."""
    sys.path.insert(0, str(ROOT))
    from tests.fixtures import submissions as build

    lessons = manifest.lessons()
    made, rng = {}, random.Random(7)
    for number, kind in enumerate(kinds(copies), start=1):
        name = f"s{number:02d}_{kind.replace(' ', '_')}"
        dest = folder / name / "lessons"
        broken_lesson = lessons[number % len(lessons)]
        how = BROKEN[number % len(BROKEN)]
        for lesson in lessons:
            ids = [exercise.id for exercise in lesson.exercises]
            if kind == "solved" or (kind == "broken" and lesson is not broken_lesson):
                build.solved(dest, lesson.slug)
            elif kind == "untouched":
                build.starter(dest, lesson.slug)
            elif kind == "partly":
                build.partly(dest, lesson.slug, rng.sample(ids, rng.randint(0, len(ids))))
            else:
                _broken(build, dest, lesson, how)
        made[name] = kind if kind != "broken" else f"broken ({how})"
    return made


def _broken(build, dest: Path, lesson, how: str) -> None:
    if how == "syntax error":
        build.patched(dest, lesson.slug, append="def (:\n")
    elif how == "flood":
        build.patched(dest, lesson.slug, append="import sys as _s\n_s.stdout.write('x' * 4_000_000)\n")
    else:
        text = build.solution_text(lesson.slug)
        functions = [name for name in lesson.exercises[0].names if f"def {name}(" in text] or ["create_app"]
        body = "while True:\n    pass" if how == "endless loop" else "import os\nos._exit(3)"
        build.patched(dest, lesson.slug, function=functions[0], body=body)


class LoadWatch:
    """The highest 1-minute load average seen while it runs (sampled every second)."""

    def __init__(self):
        self.highest, self.stop = os.getloadavg()[0], threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self.stop.wait(1.0):
            self.highest = max(self.highest, os.getloadavg()[0])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def grade(students: list[Path], out: Path, jobs: int | None) -> dict:
    command = [sys.executable, "-m", "course", "grade", *map(str, students), "--out", str(out), "--no-progress",
               *(["--jobs", str(jobs)] if jobs else [])]
    before_load = os.getloadavg()
    cpu_before, started = machine_cpu_seconds(), time.perf_counter()
    with LoadWatch() as load:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = process.communicate()
    wall, cpu = time.perf_counter() - started, machine_cpu_seconds() - cpu_before
    return {"wall": wall, "cpu": cpu, "load_before": before_load, "load_highest": load.highest,
            "code": process.returncode, "stdout": stdout, "stderr": stderr}


def report(made: dict[str, str], out: Path, measured: dict, jobs: int | None) -> str:
    copies = len(made)
    lines = [f"{copies} copies, {os.cpu_count()} cores, grade --jobs {jobs or 'default'}: "
             f"wall {measured['wall']:.1f} s, machine CPU {measured['cpu']:.1f} s "
             f"({measured['cpu'] / copies:.1f} s per copy); load average before "
             f"{measured['load_before'][0]:.2f}, highest while grading {measured['load_highest']:.2f}"]
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as file:
        totals = {row["student"]: float(row["total"]) for row in csv.DictReader(file)}
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for name, kind in made.items():
        record = json.loads((out / "json" / f"{name}.json").read_text(encoding="utf-8"))
        by_kind.setdefault(kind.split(" (")[0], []).append((record["duration_s"], totals[name]))
    lines.append(f"{'kind':<10} {'copies':>6} {'mean s':>7} {'max s':>6}  totals")
    for kind, rows in sorted(by_kind.items()):
        seconds = [row[0] for row in rows]
        lines.append(f"{kind:<10} {len(rows):>6} {statistics.mean(seconds):>7.1f} {max(seconds):>6.1f}  "
                     + ", ".join(f"{row[1]:g}" for row in sorted(rows, key=lambda row: row[1])))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.tools.class_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=None, help="grade --jobs (default: grade's own)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="build the class and write the grades here, and keep them")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="course-class-") as tmp:
        where = args.keep or Path(tmp)
        klass, out = where / "class", where / "grades"
        made = build_class(klass, args.copies)
        measured = grade(sorted(klass / name for name in made), out, args.jobs)
        if measured["code"] not in (0,):
            print(measured["stdout"][-2000:] + measured["stderr"][-2000:], file=sys.stderr)
            print(f"grade exited with {measured['code']}", file=sys.stderr)
            return 1
        print(report(made, out, measured, args.jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
