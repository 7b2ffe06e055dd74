"""``python -m course``: the student's and the instructor's command line.

    python -m course run 01 [--solution] [--port 8080] [--store URL]
    python -m course check 01
    python -m course freeze          (maintainers: record the shipped starters)
"""
from __future__ import annotations

import argparse
import sys

from course import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course", description="The web sessions course.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve a lesson (your code, or the reference with --solution)")
    run.add_argument("lesson", help="lesson number or slug, e.g. 01")
    run.add_argument("--solution", action="store_true", help="serve the reference solution instead of your code")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--store", help="session store URL (lesson 08 on), e.g. sqlite:///.sessions/s.db")
    run.set_defaults(handler=cli.run)

    check = commands.add_parser("check", help="check your work on a lesson")
    check.add_argument("lesson", help="lesson number or slug, e.g. 01")
    check.add_argument("--target", default="lessons", help=argparse.SUPPRESS)
    check.set_defaults(handler=cli.check)

    freeze = commands.add_parser("freeze", help="(maintainers) record lessons/*/app.py as the shipped starters")
    freeze.set_defaults(handler=cli.freeze)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
