"""``python -m course``: the student's and the instructor's command line.

Students (with the course's venv: .venv/bin/python -m course ..., or the make targets):
    python -m course list                  every lesson and exercise, checked now against your code
    python -m course run 01                serve lesson 01, restarted on every save (--solution: the
                                           reference; --port, --store, --option NAME=VALUE)
    python -m course check 01              the next exercise to do, what went wrong, and a hint
    python -m course hint 01.2             one more hint each time (hint 01: the next exercise's)
    python -m course watch 01              check again each time you save (Ctrl-C stops)
    python -m course diff 01               once lesson 01 passes: your code beside the reference

Instructors:
    python -m course grade submissions/* --out grades/ [--jobs 2] [--timeout S] [--lessons 01,02]

Maintainers:
    python -m course freeze                record lessons/*/app.py as the shipped starters
    python -m course bench 08 --store URL  what a session store costs: gunicorn, wrk, paired rounds
    python -m course mutate --lesson 03    mutation testing of lesson 03's solution (--kit signing: of the kit)
"""
from __future__ import annotations

import os
import signal
import sys


def _stopped_while_starting(signum, frame):
    """Ctrl-C before a command has started (its imports take a few tenths of a second): no traceback."""
    print("\nStopped.", file=sys.stderr, flush=True)
    os._exit(130)


def _stopped() -> None:
    """Ctrl-C once a command runs: "Stopped." and exit code 130, after what an exit runs (atexit).

    Not sys.exit(130): under load, about one Ctrl-C in 40 that came during the command's imports
    ended the process with SIGINT all the same (strace: "Stopped.", SystemExit(130) raised, then
    CPython's own kill(getpid(), SIGINT), which it sends when it believes a KeyboardInterrupt went
    unhandled). os._exit exits with the code given."""
    import atexit

    print("\nStopped.", file=sys.stderr)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _stopped_while_starting)

import argparse
import threading

NEEDED = ("bottle", "beaker", "pytest", "requests")
"""What every command needs; a Python without them is not the course's venv."""


def _missing_venv() -> str:
    """One line saying to use the venv, when this Python lacks the course's dependencies ("" if not)."""
    import importlib.util

    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if not missing:
        return ""
    venv = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", "python")
    where = ".venv/bin/python" if os.path.exists(venv) else "make venv  (once: it creates .venv), then .venv/bin/python"
    return (f"This Python ({sys.executable}) does not have the course's dependencies (no {', '.join(missing)}): "
            f"it is not the course's venv. Use {where} -m course ..., or the make targets (make check LESSON=01).")


if __name__ == "__main__" and _missing_venv():
    print(_missing_venv(), file=sys.stderr)
    sys.exit(2)

from course.lesson.server import option_pair, port_number
from course.tools import cli, results

EPILOG = """examples:
  python -m course list
  python -m course check 01
  python -m course hint 01.2
  python -m course grade submissions/* --out grades/ --jobs 2
"""


def seconds(text: str) -> float:
    """argparse type for a time limit: a number of seconds above 0, or one line saying what is wrong."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. 10)") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: a time limit is a number of seconds above 0 (e.g. 10)")
    return value


def _checks_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="lessons", help=argparse.SUPPRESS)
    parser.add_argument("--test-timeout", type=seconds, default=cli.DEFAULT_TEST_TIMEOUT, metavar="S",
                        help=f"fail a check that takes longer than S seconds (default {cli.DEFAULT_TEST_TIMEOUT:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course", description="The web sessions course.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="every lesson and exercise, checked now against your code")
    _checks_options(listing)
    listing.set_defaults(handler=cli.list_)

    run = commands.add_parser("run", help="serve a lesson (your code, or the reference with --solution)")
    run.add_argument("lesson", help="lesson number or slug, e.g. 01")
    run.add_argument("--solution", action="store_true", help="serve the reference solution instead of your code")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=port_number, default=8080)
    run.add_argument("--store", help="session store URL (lesson 08 on), e.g. sqlite:///.sessions/s.db")
    run.add_argument("--option", action="append", metavar="NAME=VALUE",
                     type=lambda text: option_pair(text) and text,
                     help="a keyword argument for the lesson's create_app (repeatable), e.g. --option max_age=60")
    run.add_argument("--no-reload", action="store_true", help="serve in this process, without restarting on save")
    run.add_argument("--target", default="lessons", help=argparse.SUPPRESS)
    run.set_defaults(handler=cli.run)

    check = commands.add_parser("check", help="check your work on a lesson: the next step, and a hint")
    check.add_argument("lesson", help="lesson number or slug, e.g. 01")
    _checks_options(check)
    check.set_defaults(handler=cli.check)

    hint = commands.add_parser("hint", help="one more hint each time you ask (NN.K), or for lesson NN's next exercise")
    hint.add_argument("exercise", help="an exercise, e.g. 01.2; or a lesson, e.g. 01, for its first exercise not done")
    hint.add_argument("--all", action="store_true", help="show every hint of the exercise at once")
    hint.add_argument("--reset", action="store_true", help="start the exercise's hints again from the first")
    _checks_options(hint)
    hint.set_defaults(handler=cli.hint)

    watch = commands.add_parser("watch", help="check a lesson again each time you save a file (Ctrl-C stops)")
    watch.add_argument("lesson", nargs="?", help="lesson number (default: the first one not complete)")
    watch.add_argument("--interval", type=float, default=0.5, metavar="S", help="seconds between looks (default 0.5)")
    watch.add_argument("--max-runs", type=int, default=0, help=argparse.SUPPRESS)
    _checks_options(watch)
    watch.set_defaults(handler=cli.watch)

    diff = commands.add_parser("diff", help="once a lesson passes: your app.py beside the reference")
    diff.add_argument("lesson", help="lesson number or slug, e.g. 01")
    diff.add_argument("--side-by-side", "-y", action="store_true", help="two columns instead of a unified diff")
    _checks_options(diff)
    diff.set_defaults(handler=cli.diff)

    grade = commands.add_parser(
        "grade", help="(instructors) grade students' copies with the course's tests",
        description="Grade each submission (a student's clone or unzipped copy; a folder holding several is "
                    "expanded) with the course's own tests, each in its own process with time limits.")
    grade.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="a student's copy (folder)")
    grade.add_argument("--out", required=True, metavar="DIR", help="where grades.csv, summary.md and the rest go")
    grade.add_argument("--jobs", "-j", type=int, default=2 * (os.cpu_count() or 1), metavar="N",
                       help="submissions graded at once (default: twice the number of CPUs: lessons 08-10 "
                            "wait on their servers more than they compute; time limits are CPU seconds, "
                            "so the grades do not change)")
    grade.add_argument("--timeout", type=seconds, default=None, metavar="S",
                       help="seconds a submission may take in all (default 60 per lesson graded)")
    limit = results.GRADE_TEST_TIMEOUT
    grade.add_argument("--test-timeout", type=seconds, default=limit, metavar="S",
                       help=f"CPU seconds the copy's code may spend in one test (default {limit:g}; the reference "
                            "solutions' heaviest check spends 2.5 to 4); after one test of an exercise times out, the "
                            "exercise's other tests are skipped")
    grade.add_argument("--lessons", action="append", metavar="NN[,NN]", help="grade only these lessons (default all)")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    grade.add_argument("--merge", action="store_true",
                       help="keep the students graded earlier into --out; replace only the rows of those graded now")
    grade.add_argument("--no-fair-credit", action="store_true",
                       help="do not re-check a failed exercise with the reference's version of the lesson's "
                            "other exercises (faster; an exercise then depends on the ones it builds on)")
    grade.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="grade without the sandbox (bubblewrap) where it cannot be made: the students' code "
                            "then runs in the grader's own process and can forge grades (a warning says so)")
    grade.add_argument("--trust-services", action="store_true",
                       help="let lessons 08 and 09's sandboxes reach this machine's PostgreSQL, MariaDB, Redis and "
                            "memcached (and every loopback port): a copy can then do there whatever those servers' "
                            "users may. Only with throwaway servers (make services). Without it, those checks are "
                            "'not graded'")
    grade.set_defaults(handler=cli.grade)

    freeze = commands.add_parser("freeze", help="(maintainers) record lessons/*/app.py as the shipped starters")
    freeze.set_defaults(handler=cli.freeze)

    bench = commands.add_parser("bench", help="what a session store costs: a lesson under gunicorn, loaded with "
                                              "wrk beside the same app without sessions, in alternating rounds")
    cli.bench_arguments(bench)
    bench.set_defaults(handler=cli.bench)

    mutate = commands.add_parser(
        "mutate", help="(maintainers) mutation testing: small wrong changes to the solutions or the kit, "
                       "and whether a test notices")
    cli.mutate_arguments(mutate)
    mutate.set_defaults(handler=cli.mutate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


def _exit(code: int) -> None:
    """Exit, even when the student's code left a non-daemon thread running (it would block exit)."""
    stray = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if stray:
        sys.stdout.flush()
        from course.tools.plugins import left_threads_note
        print(left_threads_note([t.name for t in stray]), file=sys.stderr)
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _quiet_broken_pipe() -> None:
    """``python -m course diff 01 | head``: the reader stopped reading, which is not an error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)     # started: Ctrl-C is a KeyboardInterrupt again
    try:
        _exit(main())
    except KeyboardInterrupt:
        _stopped()
    except BrokenPipeError:
        _quiet_broken_pipe()
        _exit(0)
