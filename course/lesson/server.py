"""Serve a WSGI app on 127.0.0.1: in the background for tests and notebooks, or in the foreground.

Why not ``bottle.run``? Its wsgiref server polls for shutdown every 0.5 s, so each test server
would cost half a second to stop, and it serves one request at a time. Here the standard
library's server gets threads (two tabs, two requests at once), a 10 ms shutdown poll, a quiet
log, and a listen backlog big enough for a small load test.

``run_reloading`` is ``make run``'s reloader: the server runs in a child process that is started
again whenever a ``.py`` file of the lesson's folder is saved (Bottle's own reloader works the
same way, but only with ``bottle.run``'s servers).
"""
from __future__ import annotations

import argparse
import ast
import errno
import os
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISREG
from typing import Callable, Iterator
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server


class _ServerHandler(ServerHandler):
    def log_exception(self, exc_info):
        if not isinstance(exc_info[1], SystemExit):     # a request thread the checks stopped (a loop)
            super().log_exception(exc_info)


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr: tests and notebooks stay readable."""

    def log_message(self, format, *args):
        pass

    def handle(self):
        """WSGIRequestHandler.handle, with a handler that prints no traceback for a SystemExit: the
        checks raise one in a request thread stuck in the student's endless loop, to end it."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False)
        handler.request_handler = self
        handler.run(self.server.get_app())


class LoggingHandler(WSGIRequestHandler):
    """One short line per request, for a student watching the server in a terminal."""

    def log_message(self, format, *args):
        sys.stderr.write("  %s\n" % (format % args))


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True          # a hung request never keeps the process alive
    request_queue_size = 128       # wsgiref's default of 5 drops connections under load
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """No traceback for a client that went away before its answer (a check that gave up on a
        route stuck in a loop, a browser tab closed), nor for a request thread the checks stopped
        (SystemExit, raised in it when its test ran out of time); anything else as socketserver prints it."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, SystemExit)) or \
                isinstance(getattr(exc, "__context__", None), SystemExit):
            return
        super().handle_error(request, client_address)


class PortInUse(SystemExit):
    """Raised instead of a traceback when the server cannot listen: the port is taken, or the host or
    port cannot be used. ``advice`` is the command to try instead; ``python -m course run`` gives it
    the student's whole command (``with_command``), so LESSON, SOLUTION and the rest are kept."""

    def __init__(self, problem: str, port: int, host: str | None = None):
        self.problem, self.port, self.host = problem, port, host
        super().__init__(self.with_command(f"make run {f'HOST={host} ' if host else ''}PORT={port}"))

    def with_command(self, command: str) -> str:
        return f"{self.problem} {command}"


def make_threaded_server(app, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> WSGIServer:
    handler = QuietHandler if quiet else LoggingHandler
    try:
        return make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"Port {port} on {host} is already in use (is another lesson still running?).\n"
                            "Stop the other server, or pick another port:", port + 1 if port < 65535 else 8081) \
                from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES, errno.EINVAL):
            raise PortInUse(f"Cannot listen on {host}:{port} ({exc.strerror or exc}). "
                            "Use 127.0.0.1 and a port from 1024 to 65535, e.g.", 8081, "127.0.0.1") from None
        raise
    except (OverflowError, UnicodeError) as exc:     # socket's own errors for a port or host out of range
        raise PortInUse(f"Cannot listen on {host}:{port} ({exc}). "
                        "Use 127.0.0.1 and a port from 1024 to 65535, e.g.", 8081, "127.0.0.1") from None


def port_number(text: str) -> int:
    """argparse type for ``--port``: a number from 0 to 65535, or one line saying what is wrong."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535, e.g. 8080)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: ports go from 0 to 65535 (try 8080)")
    return port


def option_pair(text: str) -> tuple[str, object]:
    """argparse type for ``--option KEY=VALUE``: a keyword argument for the lesson's create_app.

    The value is read as a Python literal when it is one (``60``, ``True``, ``None``, ``['a', 'b']``;
    ``true``/``false``/``none`` too), else kept as text: ``--option secret=abc``.
    """
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: write --option NAME=VALUE, e.g. --option max_age=60")
    words = {"true": True, "false": False, "none": None, "null": None}
    if raw.strip().lower() in words:
        return key, words[raw.strip().lower()]
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


@contextmanager
def serve(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` in a background thread; yield its base URL; always shut it down.

    >>> with serve(app) as url:
    ...     requests.get(url + "/visits")
    """
    server = make_threaded_server(app, host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              name=f"course-server-{server.server_port}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        stop(server)
        server.server_close()
        thread.join(timeout=5)


def stop(server) -> None:
    """``server.shutdown()``, without waiting out the poll interval: once the stop is asked for, one
    connection wakes the loop's ``select`` (a test server stops hundreds of times in a run)."""
    import socket

    stopping = threading.Thread(target=server.shutdown, daemon=True)
    stopping.start()
    while stopping.is_alive():
        try:
            socket.create_connection(server.server_address[:2], timeout=1).close()
        except OSError:
            pass
        stopping.join(0.002)


class BackgroundServer:
    """The same as ``serve`` without a ``with`` block, for a notebook cell: ``.url``, ``.stop()``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self._context = serve(app, host, port)
        self.url = self._context.__enter__()

    def stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve_forever(app, host: str = "127.0.0.1", port: int = 8080, title: str = "") -> None:
    """Serve in the foreground until Ctrl-C, printing where to look."""
    server = make_threaded_server(app, host, port, quiet=False)
    url = f"http://{host}:{server.server_port}/"
    print(f"{title + ': ' if title else ''}serving on {url}  (Ctrl-C to stop)", flush=True)
    serving = os.environ.get(SERVING_FILE)
    if serving:                          # for the reloader: from now on, an ending is the code's doing
        Path(serving).touch()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("\nStopped.")
    finally:
        server.server_close()


def lesson_main(create_app: Callable, argv=None, *, title: str = "",
                add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                options: Callable[[argparse.Namespace], dict] | None = None) -> None:
    """The ``main()`` every lesson's app.py calls: ``--host``, ``--port`` and the lesson's own flags.

    ``add_arguments(parser)`` adds the lesson's flags; ``options(args)`` turns them into keyword
    arguments for ``create_app``. ``--option NAME=VALUE`` (any number of times) passes any other
    keyword argument of ``create_app``, e.g. ``--option max_age=60``.
    """
    prog = "python -m course run NN" if sys.argv[0].endswith("__main__.py") else None
    parser = argparse.ArgumentParser(prog=prog, description=title or None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--option", type=option_pair, action="append", default=[], metavar="NAME=VALUE",
                        help="a keyword argument for the lesson's create_app (repeatable), e.g. max_age=60")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    chosen = {**(options(args) if options else {}), **dict(args.option)}
    _check_options(parser, create_app, chosen)
    app = create_app(**chosen)
    serve_forever(app, args.host, args.port, title=title)


def _check_options(parser: argparse.ArgumentParser, create_app: Callable, chosen: dict) -> None:
    """An option create_app does not take is one line naming the ones it does, not a TypeError."""
    import inspect

    try:
        parameters = inspect.signature(create_app).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(chosen) - set(parameters))
    if unknown:
        known = ", ".join(parameters) or "none"
        parser.error(f"create_app has no option {', '.join(unknown)}; its options are: {known}")
    for name, value in chosen.items():       # rolling=ture would be the text "ture", which is true
        default = parameters[name].default
        if isinstance(default, bool) and not isinstance(value, bool):
            parser.error(f"{name}={value!r}: {name} is true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and \
                (isinstance(value, bool) or not isinstance(value, (int, float))):
            parser.error(f"{name}={value!r}: {name} is a number (its default is {default!r})")


# ---------------------------------------------------------------- the reloader

RELOAD_WAIT = 3
"""A served child's exit code for "the lesson's code cannot start": the reloader waits for a save."""
SERVING_FILE = "COURSE_SERVING_FILE"
"""The file a served child creates once it is serving (``serve_forever``): when it ends after that,
whatever its exit code, the lesson's code ended it (``os._exit`` or a signal in a route), and the
reloader says so and waits for a save, where it used to end without a word."""


def _ended_while_serving(code: int) -> str:
    how = killed_by(-code) if code < 0 else f"exit code {code}"
    return (f"The server stopped while serving ({how}): the lesson's code ended its process "
            "(os._exit, os.kill or os.abort in a route?). A server must outlive every request.")


def killed_by(signum: int) -> str:
    """``it was killed by signal 9 (SIGKILL)``: how a process that a signal ended ended, for a person."""
    try:
        name = f" ({signal.Signals(signum).name})"
    except ValueError:                   # a real-time signal, or none of this system's
        name = ""
    return f"it was killed by signal {signum}{name}"


def snapshot(folder: Path, pattern: str = "*.py") -> dict[str, tuple[float, int]]:
    """Each matching file under ``folder`` with its (mtime, size): compared to see a save."""
    found = {}
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.rglob(pattern):
            if "__pycache__" in path.parts:
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if S_ISREG(stat.st_mode):        # not a FIFO: reading one to compare it waits for a writer
                found[str(path)] = (stat.st_mtime, stat.st_size)
    return found


def contents(found: dict[str, tuple[float, int]]) -> dict[str, str]:
    """The files of a ``snapshot`` by their content's hash: a file written again with the same bytes
    (an app.py that rewrites a file of its folder as it imports) is not a save."""
    import hashlib

    hashes = {}
    for name in found:
        try:
            hashes[name] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
        except OSError:
            hashes[name] = ""
    return hashes


def _after_start(folder: Path, before: dict, before_contents: dict) -> tuple[dict, dict]:
    """The folder as it is once the server has started, to compare the next saves with: the files the
    lesson's code wrote as it imported (a generated config with the time in it restarted the server
    for ever) are not saves. Unless app.py itself changed meanwhile: the student saved during the start."""
    now = snapshot(folder)
    app = str(Path(folder) / "app.py")
    if now.get(app) != before.get(app) and contents({app: None}) != {app: before_contents.get(app)}:
        return before, before_contents
    return now, contents(now)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_reloading(command: list[str], folder: Path, shown: str, interval: float = 0.3) -> int:
    """Run ``command`` (a server) in a child process; start it again after each save in ``folder``.

    A child that exits with ``RELOAD_WAIT`` (the lesson's code does not load, or crashed while
    starting; it said why) is started again at the next save. Any other exit (a port in use, a bad
    option: nothing a save would fix) ends the reloader with the child's exit code. Ctrl-C stops both.
    """
    print(f"Reloading on save: the server restarts whenever you save a .py file in {shown}/ "
          "(Ctrl-C stops it).", flush=True)
    child = None

    def terminated(signum, frame):           # `kill PID` of this process: the server goes with it
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    marks = tempfile.TemporaryDirectory(prefix="course-run-")
    serving = Path(marks.name) / "serving"
    try:
        while True:
            before = snapshot(folder)
            before_contents = contents(before)
            serving.unlink(missing_ok=True)
            child = subprocess.Popen(command, env={**os.environ, SERVING_FILE: str(serving)})
            waiting = started = False
            while True:
                code = child.poll()
                if not started and (code is not None or serving.exists()):
                    started = True           # what the lesson's code wrote as it started is not a save
                    before, before_contents = _after_start(folder, before, before_contents)
                if code is not None and not waiting:
                    if code != RELOAD_WAIT and not serving.exists():
                        return code          # before serving: a port in use, a bad option (a save fixes nothing)
                    if serving.exists():
                        print("\n" + _ended_while_serving(code), flush=True)
                    print(f"Waiting for you to save a fix in {shown}/ ...", flush=True)
                    waiting = True
                now = snapshot(folder)
                if now != before:
                    if contents(now) != before_contents:
                        break
                    before = now             # written with the same bytes: no restart (else it loops)
                time.sleep(interval)
            changed = sorted(name for name in set(now) | set(before) if now.get(name) != before.get(name))
            time.sleep(0.1)                                  # let the editor finish writing
            _stop(child)
            names = ", ".join(os.path.relpath(name, Path(folder).parent.parent) for name in changed[:3])
            print(f"\n{names} changed: restarting the server.", flush=True)
    except KeyboardInterrupt:
        if child is not None:
            try:
                child.wait(timeout=1)                        # from a terminal, it got the same Ctrl-C
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            _stop(child)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child is not None and child.poll() is None:
            _stop(child)
        marks.cleanup()
