"""Running the course's tests against one submission, in a process group of its own, within limits.

The submission's lessons are copied into a working folder (never its tests/ or course/, nor a
symlink), and one worker process runs the course's exercise tests against them; the copy's code
runs in sandboxes of a user id of its own (course.tools.grading.sandbox), which see the copy and
one scratch folder, never the worker's report and stream files next to them. The worker and everything it
started (servers, threads, children) is killed when it is done or over its time; of its output,
however much it prints, only the two ends are kept.
"""
from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from course.lesson import manifest
from course.tools import teeth
from course.tools.grading import sandbox, worker
from course.tools.grading.find import Submission
from course.tools.grading.plan import Plan
from course.tools.term import Progress, unfinished

KEEP_OUTPUT = 32_000                                # bytes of a run's output kept, at each end
MAX_FILE = 10_000_000                               # files bigger than this are not copied from a submission
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".sessions", ".pytest_cache", ".ipynb_checkpoints")
NOT_STARTED = "not started: lessons/{slug}/app.py is the starter as the course ships it"
RESTARTED = "\n\n=== the test process ended early; the next lessons ran in a new one ===\n\n"


@dataclass
class Run:
    records: list[dict]
    status: str                 # ok, timeout, crashed
    exit_code: int | None
    duration: float
    output_bytes: int
    log: str
    stopped: str = ""           # why tests that never ran did not run
    todo: set[str] = field(default_factory=set)     # exercises its app.py files still mark todo("NN.K")
    not_run: dict[str, str] = field(default_factory=dict)   # why a test did not run, by test id


class Cancelled(Exception):
    """The batch was stopped (Ctrl-C): the running workers are killed, nothing is written."""


def copy_lessons(submission: Submission, lessons: list[manifest.Lesson], target: Path) -> list[str]:
    """The submission's folders of ``lessons`` into ``target``: regular files and folders only, without
    caches and huge files. A symlink is never followed (it could lead to the reference solution or
    anywhere else): it is left out, and named in the list returned, for the student's log."""
    target.mkdir(parents=True, exist_ok=True)
    dropped: list[str] = []
    if submission.lessons_dir is None:
        return dropped
    for lesson in lessons:
        source = submission.lessons_dir / lesson.slug
        if source.is_dir() and not source.is_symlink():
            _copy_folder(source, target / lesson.slug, f"lessons/{lesson.slug}", dropped)
        elif source.is_symlink():
            dropped.append(f"lessons/{lesson.slug}")
    return dropped


def _copy_folder(source: Path, target: Path, shown: str, dropped: list[str]) -> None:
    target.mkdir(mode=0o755)
    skipped = set(IGNORE(str(source), [entry.name for entry in os.scandir(source)]))
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        if entry.name in skipped:
            continue
        if entry.is_symlink():
            dropped.append(f"{shown}/{entry.name}")
        elif entry.is_dir(follow_symlinks=False):
            _copy_folder(Path(entry.path), target / entry.name, f"{shown}/{entry.name}", dropped)
        elif entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size <= MAX_FILE:
            shutil.copyfile(entry.path, target / entry.name, follow_symlinks=False)
            os.chmod(target / entry.name, 0o644)        # readable by the sandbox's user, writable by nobody there


class Output:
    """A process's output as it comes: every byte is counted, and only the two ends are kept."""

    def __init__(self):
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(self.head) < KEEP_OUTPUT:
            self.head += chunk[: KEEP_OUTPUT - len(self.head)]
        self.tail += chunk
        if len(self.tail) > 2 * KEEP_OUTPUT:
            del self.tail[: len(self.tail) - KEEP_OUTPUT]

    def text(self) -> str:
        log = self.head.decode("utf-8", "replace")
        rest = self.total - len(self.head)
        if rest > 0:
            kept = min(rest, KEEP_OUTPUT)
            if rest > kept:
                log += f"\n\n[... {rest - kept} bytes of output not kept ...]\n\n"
            log += bytes(self.tail[-kept:]).decode("utf-8", "replace")
        return log


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _watch(proc: subprocess.Popen, output: Output, budget: float, cancel: threading.Event,
           progress: Progress | None) -> bool:
    """Read the process's output until it exits (True) or ``budget`` seconds pass (False)."""
    started = time.monotonic()
    fd = proc.stdout.fileno()
    eof = False
    exited_at = None
    while True:
        if not eof:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    output.add(chunk)
                else:
                    eof = True
        else:
            time.sleep(0.05)
        if progress:
            progress.tick()
        if proc.poll() is not None:
            exited_at = exited_at or time.monotonic()
            # its output may still be held open by a child it left behind: wait a moment only
            if eof or time.monotonic() - exited_at > 0.5:
                return True
        if cancel.is_set():
            raise Cancelled()
        if time.monotonic() - started > budget:
            return False


def one_process(command: list[str], workdir: Path, tmp: Path, budget: float, cancel: threading.Event,
                progress: Progress | None) -> tuple[bool, int | None, int, str]:
    """Run one worker in a session of its own: (timed out, exit code, bytes of output, log)."""
    proc = subprocess.Popen(command, cwd=tmp, env=worker.environment(tmp), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output = Output()
    try:
        finished = _watch(proc, output, budget, cancel, progress)
    finally:
        _kill_group(proc.pid)            # the worker and anything it started: servers, children
        proc.wait()
        proc.stdout.close()
    return not finished, proc.returncode, output.total, output.text()


def unchanged_starter(path: Path, slug: str) -> bool:
    """Is ``path`` the shipped starter of lesson ``slug``, byte for byte (course/tools/starters.json)?"""
    recorded = teeth.recorded_starters().get(slug)
    return recorded is not None and path.is_file() and teeth.blob_id(path.read_bytes()) == recorded


def _not_started(plan: Plan, target: Path) -> tuple[set[str], list[dict]]:
    """The lessons whose app.py is the shipped starter, byte for byte, and a failing record per test.

    The teeth check proves that every exercise test fails on the shipped starter, so such a lesson
    scores 0 without a test process spent on it.
    """
    untouched = {each.slug for each in plan.lessons if unchanged_starter(target / each.slug / "app.py", each.slug)}
    records = [{"nodeid": t.nodeid, "exercise": t.exercise, "weight": t.weight, "outcome": "failed",
                "message": NOT_STARTED.format(slug=t.slug), "duration": 0}
               for t in plan.tests if t.slug in untouched]
    return untouched, records


def run_submission(submission: Submission, plan: Plan, workdir: Path, cancel: threading.Event,
                   progress: Progress | None = None) -> Run:
    """Run the course's tests against one submission, in a process group of its own, within limits.

    When the test process dies (``os._exit``, a crash of Python), the lesson it was in keeps what
    it had done, and the lessons after it are checked in a new process: a crash costs one lesson.
    """
    target = workdir / "lessons"
    dropped = copy_lessons(submission, plan.lessons, target)
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    attempts = _Attempts(plan, workdir, cancel, progress)
    if plan.sandboxed:
        attempts.sandbox_options = _sandbox_for(plan, workdir)
    run = attempts.run()
    notes = [f"not copied, symlinks are never followed: {path}" for path in dropped]
    if not plan.sandboxed:
        notes.insert(0, sandbox.UNSAFE_WARNING)
    run.log = "".join(f"note: {note}\n" for note in notes) + ("\n" if notes else "") + run.log
    return run


def _sandbox_for(plan: Plan, workdir: Path) -> list[str]:
    """The worker's options for this copy's sandbox: a user of its own, and the one folder both sides write.

    The worker itself (the tests, its report and stream files in ``workdir``) stays outside: the
    sandbox sees the copy (read-only) and ``scratch`` (the tests' tmp_path), nothing else of ``workdir``.
    """
    scratch = workdir / "tmp" / "scratch"
    scratch.mkdir()
    os.chmod(scratch, 0o1777)        # the grader's, sticky: the copy adds files, but moves none of the grader's
    uid = secrets.randbelow(1 << 30) + (1 << 20)          # never a real user's, nor another copy's
    config = sandbox.Config(uid=uid, target=str(workdir / "lessons"), scratch=str(scratch),
                            network=[each.slug for each in plan.lessons if each.services])
    config.write(workdir / "sandbox.json")
    return ["--course-sandbox", str(workdir / "sandbox.json"), "--basetemp", str(scratch / "pytest"),
            "-p", "no:cacheprovider"]


class _Attempts:
    """The worker processes of one submission: one, or one more after each crash."""

    def __init__(self, plan: Plan, workdir: Path, cancel: threading.Event, progress: Progress | None):
        self.plan, self.workdir, self.cancel, self.progress = plan, workdir, cancel, progress
        self.logs: list[str] = []
        self.started = time.monotonic()
        self.sandbox_options: list[str] = []

    def run(self) -> Run:
        target = self.workdir / "lessons"
        untouched, records = _not_started(self.plan, target)
        pending = [each for each in self.plan.lessons if each.slug not in untouched]
        run = Run(records, "ok", None, 0.0, 0, "")
        while pending:
            pending = self.attempt(run, pending)
        run.todo = set().union(*(unfinished(target / lesson.slug / "app.py") for lesson in self.plan.lessons))
        run.log = RESTARTED.join(self.logs)
        run.duration = time.monotonic() - self.started
        return run

    def attempt(self, run: Run, pending: list[manifest.Lesson]) -> list[manifest.Lesson]:
        """One worker over the ``pending`` lessons; what is left to run in a new one (after a crash)."""
        plan, number = self.plan, len(self.logs) + 1
        report, stream = self.workdir / f"report-{number}.json", self.workdir / f"stream-{number}.jsonl"
        command = worker.command([str(each.test_file) for each in pending], self.workdir / "lessons", "--course-report",
                                 str(report), "--course-stream", str(stream), "--course-timeout",
                                 f"{plan.test_timeout:g}", "--capture=no", "-p", "no:terminal",
                                 "--continue-on-collection-errors", *self.sandbox_options)
        budget = plan.timeout - (time.monotonic() - self.started)
        timed_out, code, size, log = one_process(command, self.workdir, self.workdir / "tmp", budget,
                                                 self.cancel, self.progress)
        run.output_bytes += size
        self.logs.append(log)
        run.exit_code = code if run.exit_code is None or run.status == "ok" else run.exit_code
        if report.exists():
            run.records += json.loads(report.read_text(encoding="utf-8"))["tests"]
            return []
        run.records += [line for line in worker.read_stream(stream) if "nodeid" in line]
        if timed_out:
            run.status = "timeout"
            run.stopped = f"not run: grading of this submission was stopped after {plan.timeout:g} s (its time limit)"
            return []
        run.status = "crashed"
        return _after_crash(run, plan, pending, code)


def _after_crash(run: Run, plan: Plan, pending: list[manifest.Lesson], code: int | None) -> list[manifest.Lesson]:
    """The lesson the worker died in keeps what it did, its other tests did not run; the rest is pending."""
    seen = {r["nodeid"] for r in run.records}
    slugs = [each.slug for each in pending]
    missing = next((t for t in plan.tests if t.slug in slugs and t.nodeid not in seen), None)
    if missing is None:
        return []
    message = (f"not run: the test process ended (exit code {code}) in lesson {missing.slug[:2]} at or "
               "before this test; does the code call sys.exit/os._exit, or crash Python?")
    run.not_run.update({t.nodeid: message for t in plan.tests if t.slug == missing.slug and t.nodeid not in seen})
    return pending[slugs.index(missing.slug) + 1:]
