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

from course import ROOT
from course.lesson import manifest
from course.tools import teeth
from course.tools.grading import cpuacct, kitcheck, sandbox, worker
from course.tools.grading.find import Submission
from course.tools.grading.plan import Plan
from course.tools.term import Progress, unfinished

WALL_FACTOR = 5                                     # a sandboxed copy that waits is stopped after 5x its CPU budget
KEEP_OUTPUT = 32_000                                # bytes of a run's output kept, at each end
MAX_FILE = 10_000_000                               # files bigger than this are not copied from a submission
LESSON_FILES, LESSON_BYTES, LESSON_DEPTH = 1000, 50_000_000, 8      # what is copied of a lesson's folder at most
NOT_COPIED = "not copied in full:"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".sessions", ".pytest_cache", ".ipynb_checkpoints")
NOT_STARTED = "not started: lessons/{slug}/app.py is the starter as the course ships it"
GRADER_FAILED = 3
"""pytest's exit code for an INTERNALERROR: an exception in a hook of the grader's own, not a test failing."""
GRADER_ERROR_NOTE = ("the grader itself failed while checking this copy (pytest's INTERNALERROR; the traceback is in "
                     "this student's log): the grade is not valid. Report it to the course's maintainers, then grade "
                     "this copy again with --merge.")
RESTARTED = "\n\n=== the test process ended early; the next lessons ran in a new one ===\n\n"


@dataclass
class Run:
    records: list[dict]
    status: str                 # ok, timeout, crashed, grader error
    exit_code: int | None
    duration: float
    output_bytes: int
    log: str
    stopped: str = ""           # why tests that never ran did not run
    todo: set[str] = field(default_factory=set)     # exercises its app.py files still mark todo("NN.K")
    not_run: dict[str, str] = field(default_factory=dict)   # why a test did not run, by test id
    notes: list[str] = field(default_factory=list)          # what the student must know about the run itself
    cpu: float = 0.0            # CPU seconds its workers spent, when sandboxed (what its time limit counts)


class Cancelled(Exception):
    """The batch was stopped (Ctrl-C): the running workers are killed, nothing is written."""


def copy_lessons(submission: Submission, lessons: list[manifest.Lesson], target: Path) -> list[str]:
    """The submission's folders of ``lessons`` into ``target``: regular files and folders only, without
    caches and huge files. A symlink is never followed (it could lead to the reference solution or
    anywhere else): it is left out, and named in the list returned, for the student's log."""
    target.mkdir(parents=True, exist_ok=True)
    dropped: list[str] = []
    source, refused = lessons_source(submission)
    if refused:
        return [refused]
    if source is None:
        return dropped
    root = os.path.realpath(submission.path)
    for lesson in lessons:
        folder = source / lesson.slug
        if folder.is_symlink():
            dropped.append(f"{_shown(folder, submission)}")
        elif folder.is_dir():
            _copy_folder(folder, target / lesson.slug, _shown(folder, submission), dropped, root)
    return dropped


def _shown(path: Path, submission: Submission) -> str:
    """``path`` as the student sees it: relative to the folder handed in."""
    try:
        return str(path.relative_to(submission.path))
    except ValueError:
        return str(path)


def lessons_source(submission: Submission) -> tuple[Path | None, str]:
    """The submission's folder of lessons, found without following a symlink; or why none is graded.

    The folder handed in may be anywhere, but not inside the course's ``solutions/`` or ``tests/``;
    every folder between it and the lessons must be a real folder: a ``lessons`` that is a symlink
    (unzip keeps them) to ``../../solutions`` would be graded as the reference."""
    root = Path(os.path.realpath(submission.path))
    for kept in ("solutions", "tests"):
        if root == ROOT / kept or (ROOT / kept) in root.parents:
            return None, f"{submission.path} is inside the course's {kept}/: it is not a student's copy"
    if submission.lessons_dir is None:
        return None, ""
    real = Path(os.path.realpath(submission.lessons_dir))
    if real != root and root not in real.parents:
        return None, f"{_shown(Path(submission.path) / 'lessons', submission)} (it leads outside the hand-in)"
    here = Path(submission.path)
    for part in real.relative_to(root).parts:
        here = here / part
        if here.is_symlink():
            return None, _shown(here, submission)
    if any((Path(submission.path) / name).is_symlink() for name in ("lessons",)):
        return None, _shown(Path(submission.path) / "lessons", submission)
    return here, ""


def _copy_folder(source: Path, target: Path, shown: str, dropped: list[str], root: str) -> None:
    """One lesson's folder, app.py first, then its files before its subfolders, folder by folder (never
    recursing: a copy may nest folders a thousand deep), within ``LESSON_FILES`` files and folders,
    ``LESSON_BYTES`` and ``LESSON_DEPTH`` levels: the copying is the grader's own work, charged to no
    copy, and the app.py that is graded is never what the limits leave out."""
    entries, size, limit = 0, 0, ""
    todo = [(source, target, shown, 0)]
    while todo and not limit:
        folder, into, where, depth = todo.pop(0)
        into.mkdir(mode=0o755)
        found = sorted(os.scandir(folder), key=lambda e: (e.name != "app.py", e.is_dir(follow_symlinks=False), e.name))
        skipped = set(IGNORE(str(folder), [entry.name for entry in found]))
        for entry in found:
            if entry.name in skipped:
                continue
            entries += 1
            if entries > LESSON_FILES:
                limit = f"more than {LESSON_FILES} files and folders"
                break
            if entry.is_symlink() or not os.path.realpath(entry.path).startswith(root + os.sep):
                dropped.append(f"{where}/{entry.name}")
            elif entry.is_dir(follow_symlinks=False):
                if depth + 1 >= LESSON_DEPTH:
                    limit = f"folders more than {LESSON_DEPTH} deep"
                    break
                todo.append((Path(entry.path), into / entry.name, f"{where}/{entry.name}", depth + 1))
            elif entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size <= MAX_FILE:
                size += entry.stat(follow_symlinks=False).st_size
                if size > LESSON_BYTES:
                    limit = f"more than {LESSON_BYTES // 1_000_000} MB"
                    break
                shutil.copyfile(entry.path, into / entry.name, follow_symlinks=False)
                os.chmod(into / entry.name, 0o644)        # readable by the sandbox's user, writable by nobody there
    if limit:
        dropped.append(f"{NOT_COPIED} {shown} holds {limit}: only what came first was copied")


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


class CpuMeter:
    """CPU seconds of a worker and everything below it (sandboxes, app servers, whatever the copy started
    in its PID namespace, ended ones included), and of the grader's thread that reads its output: a
    sandboxed copy's time limit is in CPU seconds, so 32 background spinners are charged, and so is
    a flood of output (9 GB through the pipe cost the grader 8 s), and a classmate slowed down by a
    loaded machine is not stopped for it. The kernel counts the worker's side in its cgroup
    (course.tools.grading.cpuacct), read at each look; where no cgroup could be made, /proc is
    walked, twice a second. Made in the thread that watches the worker."""

    def __init__(self, pid: int, account: cpuacct.Account | None = None):
        self.pid, self.account, self.worker, self.looked = pid, account, 0.0, 0.0
        self.reader_started = time.thread_time()

    @property
    def spent(self) -> float:
        return self.worker + time.thread_time() - self.reader_started

    def __call__(self) -> float:
        if self.account is not None:
            try:
                self.worker = max(self.worker, self.account.seconds())
            except (OSError, ValueError):
                pass
        elif time.monotonic() - self.looked >= 0.5:
            self.looked = time.monotonic()
            self.worker = max(self.worker, sandbox.cpu_seconds_of_tree(self.pid))
        return self.spent


def _watch(proc: subprocess.Popen, output: Output, budget: float, cancel: threading.Event,
           progress: Progress | None, cpu: CpuMeter | None = None) -> bool:
    """Read the process's output until it exits (True) or ``budget`` seconds pass (False): seconds of
    CPU with a ``cpu`` meter (and ``WALL_FACTOR`` times as many of wall time), else of wall time."""
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
        if cpu is None and time.monotonic() - started > budget:
            return False
        if cpu is not None and (cpu() > budget or time.monotonic() - started > WALL_FACTOR * budget):
            return False


def one_process(command: list[str], workdir: Path, tmp: Path, budget: float, cancel: threading.Event,
                progress: Progress | None, env: dict | None = None,
                by_cpu: bool = False) -> tuple[bool, int | None, int, str, float]:
    """Run one worker in a session of its own: (timed out, exit code, bytes of output, log, CPU seconds
    spent, when ``by_cpu``: then ``budget`` is CPU seconds, and the worker runs in a cgroup of its own
    where this machine allows one). ``env`` is added to the worker's environment; a name it gives as
    None is taken out."""
    env = {name: value for name, value in {**worker.environment(tmp), **(env or {})}.items() if value is not None}
    account = cpuacct.Account.create() if by_cpu else None
    if account is not None:
        command, env[cpuacct.ENV] = account.command(command), account.folder
    proc = subprocess.Popen(command, cwd=tmp, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    output = Output()
    cpu = CpuMeter(proc.pid, account) if by_cpu else None
    try:
        finished = _watch(proc, output, budget, cancel, progress, cpu)
    finally:
        _kill_group(proc.pid)            # the worker and anything it started: servers, children
        if account is not None:
            account.kill()               # and anything of it that left the group
        if cpu is not None:              # the last look, once nothing of it runs (a zombie's /proc still counts)
            cpu.looked = 0.0
            cpu()
        proc.wait()
        proc.stdout.close()
        if account is not None:
            account.close()
    return not finished, proc.returncode, output.total, output.text(), cpu.spent if cpu else 0.0


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
                   progress: Progress | None = None, not_started: set[str] = frozenset()) -> Run:
    """Run the course's tests against one submission, in a process group of its own, within limits.

    When the test process dies (``os._exit``, a crash of Python), the lesson it was in keeps what
    it had done, and the lessons after it are checked in a new process: a crash costs one lesson.

    ``not_started``: the exercises whose code is still the starter's (credit.unstarted). Their tests
    are not run: they earn nothing (fair credit then checks the exercises that build on them with
    the reference's code standing in for them: credit.recheck).
    """
    target = workdir / "lessons"
    dropped = copy_lessons(submission, plan.lessons, target)
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    slugs = [each.slug for each in plan.lessons]
    todo = set().union(*(unfinished(target / slug / "app.py") for slug in slugs))        # the student's files
    kit_flags = kitcheck.flags(target, slugs)
    attempts = _Attempts(plan, workdir, cancel, progress, not_run=_not_started_tests(plan, not_started))
    if plan.sandboxed:
        config = _sandbox_for(plan, workdir)
        attempts.sandbox_options = ["--course-sandbox", str(workdir / "sandbox.json"), "--basetemp",
                                    str(Path(config.scratch) / "pytest"), "-p", "no:cacheprovider"]
        attempts.prefix, attempts.env = sandbox.network_command(config), sandbox.network_environment(config)
        # Sandboxed, the test process runs only the course's own code (the copy's runs in the sandboxes),
        # so it keeps its compiled modules and pytest's rewritten tests in course/ and tests/, as any run
        # of the course does: without them every worker of every copy compiles them again (1.3 s each).
        attempts.env["PYTHONDONTWRITEBYTECODE"] = None
    run = attempts.run()
    run.todo = todo
    notes = [path if path.startswith(NOT_COPIED) else f"not copied, symlinks are never followed: {path}"
             if " is inside the course's " not in path else f"not graded: {path}" for path in dropped]
    notes += kit_flags
    run.notes = notes = notes + run.notes       # and what the attempts found (a failure of the grader's own)
    if not plan.sandboxed:
        notes.insert(0, sandbox.UNSAFE_WARNING)
    run.log = "".join(f"note: {note}\n" for note in notes) + ("\n" if notes else "") + run.log
    return run


NOT_STARTED_EXERCISE = ("not started: exercise {exercise} in lessons/{slug}/app.py is the starter's code "
                        "(its tests are not run: they earn nothing)")


def _not_started_tests(plan: Plan, not_started: set[str]) -> dict[str, dict]:
    """A failing record for each test of an exercise not started, by test id: those tests are not run."""
    return {t.nodeid: {"nodeid": t.nodeid, "exercise": t.exercise, "weight": t.weight, "outcome": "failed",
                       "message": NOT_STARTED_EXERCISE.format(exercise=t.exercise, slug=t.slug), "duration": 0}
            for t in plan.tests if t.exercise in not_started}


def _sandbox_for(plan: Plan, workdir: Path) -> sandbox.Config:
    """This copy's sandbox, written for the worker: a user of its own, and the one folder both sides write.

    The worker itself (the tests, its report and stream files in ``workdir``) stays outside: the
    sandbox sees the copy (read-only) and ``scratch`` (the tests' tmp_path), nothing else of ``workdir``.
    """
    scratch = workdir / "tmp" / "scratch"
    scratch.mkdir()
    os.chmod(scratch, 0o1777)        # the grader's, sticky: the copy adds files, but moves none of the grader's
    uid = secrets.randbelow(1 << 30) + (1 << 20)          # never a real user's, nor another copy's
    config = sandbox.Config(uid=uid, target=str(workdir / "lessons"), scratch=str(scratch),
                            network=[each.slug for each in plan.lessons if each.services],
                            trust_services=plan.trust_services,
                            services=sorted({name for each in plan.lessons for name in each.services}),
                            templates=dict(plan.templates))
    config.write(workdir / "sandbox.json")
    return config


class _Attempts:
    """The worker processes of one submission: one, or one more after each crash."""

    def __init__(self, plan: Plan, workdir: Path, cancel: threading.Event, progress: Progress | None,
                 not_run: dict[str, dict] | None = None):
        self.plan, self.workdir, self.cancel, self.progress = plan, workdir, cancel, progress
        self.not_run = not_run or {}         # tests not to run, with their records (exercises not started)
        self.logs: list[str] = []
        self.started = time.monotonic()
        self.sandbox_options: list[str] = []
        self.prefix: list[str] = []          # unshare --net: the worker's network of its own
        self.env: dict[str, str | None] = {}
        self.cpu_spent = 0.0                 # by the workers so far: a sandboxed copy's budget is CPU seconds

    def run(self) -> Run:
        target = self.workdir / "lessons"
        untouched, records = _not_started(self.plan, target)
        seen = {each["nodeid"] for each in records}
        records += [record for nodeid, record in self.not_run.items() if nodeid not in seen]
        left = {t.slug for t in self.plan.tests if t.nodeid not in self.not_run}
        pending = [each for each in self.plan.lessons if each.slug not in untouched and each.slug in left]
        run = Run(records, "ok", None, 0.0, 0, "")
        while pending:
            pending = self.attempt(run, pending)
        run.log = RESTARTED.join(self.logs)
        run.duration, run.cpu = time.monotonic() - self.started, self.cpu_spent
        return run

    def attempt(self, run: Run, pending: list[manifest.Lesson]) -> list[manifest.Lesson]:
        """One worker over the ``pending`` lessons; what is left to run in a new one (after a crash)."""
        plan, number = self.plan, len(self.logs) + 1
        report, stream = self.workdir / f"report-{number}.json", self.workdir / f"stream-{number}.jsonl"
        command = self.prefix + worker.command(
            plan.test_args(pending), self.workdir / "lessons", "--course-report", str(report),
            "--course-stream", str(stream),
            "--course-timeout", f"{plan.test_timeout:g}", "--capture=no", "-p", "no:terminal",
            "--continue-on-collection-errors", *self.sandbox_options,
            *(f"--deselect={t.nodeid}" for t in plan.tests if t.nodeid in self.not_run and
              t.slug in {each.slug for each in pending}))
        sandboxed = bool(self.sandbox_options)
        budget = plan.timeout - (self.cpu_spent if sandboxed else time.monotonic() - self.started)
        timed_out, code, size, log, cpu = one_process(command, self.workdir, self.workdir / "tmp", budget,
                                                      self.cancel, self.progress, self.env, sandboxed)
        self.cpu_spent += cpu
        run.output_bytes += size
        self.logs.append(log)
        run.exit_code = code if run.exit_code is None or run.status == "ok" else run.exit_code
        written = report.exists()
        run.records += (json.loads(report.read_text(encoding="utf-8"))["tests"] if written
                        else [line for line in worker.read_stream(stream) if "nodeid" in line])
        if code == GRADER_FAILED and not timed_out:      # pytest writes its report even after an INTERNALERROR
            run.status = "grader error"
            run.stopped = ("not graded: the grader's own test process failed (pytest's INTERNALERROR): a bug of "
                           "the course's grader, not of this copy")
            run.notes.append(GRADER_ERROR_NOTE)
            return []
        if written:
            return []
        if timed_out:
            run.status = "timeout"
            unit = "s of CPU" if self.sandbox_options else "s"
            run.stopped = (f"not run: grading of this submission was stopped after {plan.timeout:g} {unit} "
                           "(its time limit)")
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
