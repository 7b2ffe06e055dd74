"""Faults on demand, against the real thing: a store that goes down and comes back, an app that restarts.

``Relay`` is a small TCP relay in front of a real server (Redis, PostgreSQL, MariaDB, memcached).
The app under test talks to the relay instead of the server; a test calls ``relay.cut()`` and the
store is "down" (every open connection is dropped and every new one is reset at once, as if the
server had died), then ``relay.restore()`` and it is back, with the data it held. Nothing is
mocked: the driver, its connection pool and Beaker see a real outage.

``AppProcess`` runs a lesson's app in a process of its own (its ``main(["--port", P, ...])`` as
``python app.py`` would, or ``create_app(**options)``), forked from the test process so that it
starts in milliseconds, and a test can kill it and start it again, or run two side by side.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from course import ROOT

# ---------------------------------------------------------------- the relay

def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0): the peer sees 'connection reset', not a clean goodbye."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Relay:
    """Forward 127.0.0.1:<port> to ``target`` (host, port) until ``cut()``; ``restore()`` undoes it.

    >>> with Relay(("127.0.0.1", 6379)) as relay:
    ...     url = relay.url_for("redis://127.0.0.1:6379/0")   # the same URL, through the relay
    ...     relay.cut(); ...; relay.restore()
    """

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1"):
        self.target = target
        self._listener = socket.create_server((host, 0), reuse_port=False)
        self._listener.settimeout(0.05)
        self.host, self.port = self._listener.getsockname()[:2]
        self._up = threading.Event()
        self._up.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self.connections = 0          # how many connections were forwarded (for a test's curiosity)
        self._thread = threading.Thread(target=self._accept_loop, name=f"relay-{self.port}", daemon=True)
        self._thread.start()

    @classmethod
    def for_url(cls, url: str, default_port: int) -> "Relay":
        parts = urlsplit(url)
        return cls((parts.hostname or "127.0.0.1", parts.port or default_port))

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by the relay's (user, path and query kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"{self.host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def cut(self) -> None:
        """The store is down: drop every open connection, reset every new one."""
        self._up.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def restore(self) -> None:
        """The store is back."""
        self._up.set()

    def close(self) -> None:
        self._closing.set()
        self.cut()
        self._thread.join(timeout=2)
        self._listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self._up.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.connections += 1
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair) -> None:
        client, upstream = pair
        sockets = [client, upstream]
        try:
            while self._up.is_set():
                readable, _, _ = select.select(sockets, [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _reset(client)
            _reset(upstream)


# ---------------------------------------------------------------- apps in processes of their own

_FORKING = threading.Lock()


def free_port() -> int:
    """A port nobody listens on now. Taken under the fork lock, so a forked child never inherits
    the probe socket (it would hold the port, and the app meant to listen there could not)."""
    with _FORKING, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Forked:
    """A child forked from this process, with the part of ``subprocess.Popen`` a test uses."""

    def __init__(self, pid: int, log_path: str):
        self.pid, self.returncode, self._log_path = pid, None, log_path

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def output(self) -> str:
        try:
            with open(self._log_path, encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""


def _fork_app(run, *, cwd, env: dict | None) -> Forked:
    """Fork a child that chdirs to ``cwd``, applies ``env`` (None deletes), calls ``run()`` and exits.

    A fork instead of a new interpreter: the child already has Bottle, Beaker and the drivers
    imported, so an app process starts in milliseconds instead of half a second of CPU. It is still
    a process of its own: its memory is its own, and a SIGKILL ends it with nothing saved.
    """
    log_fd, log_path = tempfile.mkstemp(prefix="course-app-", suffix=".log")
    with _FORKING:                       # no other thread holds a half-made socket when we fork
        pid = os.fork()
    if pid == 0:                                          # the child: never returns to the caller
        code = 1
        try:
            os.setpgid(0, 0)                              # its own group: the test runner's Ctrl-C is not its
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
            sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
            for name, value in (env or {}).items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            os.chdir(cwd or ROOT)
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int) and exc.code is not None:
                print(exc.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(log_fd)
    return Forked(pid, log_path)


class AppProcess:
    """A lesson app served by a process of its own on a free port: ``.url``, ``.kill()``, ``.stop()``.

    ``AppProcess.script(path, "--store", url)`` runs the app file's ``main(["--port", P, "--store",
    url])`` as ``python path ...`` would (the student's ``main()``); ``AppProcess.create_app(target,
    slug, store_url=...)`` serves ``create_app(**options)`` without going through ``main()``. Both
    fork this process (see ``_fork_app``) and import the app file afresh in the child; when the
    grader runs the tests, they start a new process inside the copy's sandbox instead.
    """

    def __init__(self, run, argv: list[str], *, port: int, cwd=None, env: dict | None = None,
                 ready_timeout: float = 60):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        from course.tools.grading import sandbox
        if sandbox.ACTIVE:        # grading: the copy's code runs in its sandbox, never in a fork of this process
            full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
            for name, value in list(full_env.items()):
                if value is None:
                    del full_env[name]
            argv, full_env, cwd = sandbox.wrap(argv, full_env, cwd or ROOT)
            self.proc = sandbox.spawn(lambda: subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                                               stderr=subprocess.STDOUT))
            self._tail = OutputTail(self.proc.stdout)
        else:
            self.proc = _fork_app(run, cwd=cwd, env=env)
        try:
            self._wait_ready(ready_timeout)
        except BaseException:            # the test's time limit, say: no one else would stop this process
            self.kill()
            raise

    @classmethod
    def script(cls, path, *args: str, cwd=None, env=None) -> "AppProcess":
        port = free_port()
        argv = ["--port", str(port), *args]

        def run():
            sys.argv = [str(path), *argv]
            _fresh_module(path).main(argv)
        return cls(run, [sys.executable, str(path), *argv], port=port, cwd=cwd, env=env)

    @classmethod
    def create_app(cls, target, slug: str, *, cwd=None, env=None, **options) -> "AppProcess":
        from course.tools.loader import app_path
        port = free_port()
        path = app_path(target, slug)

        def run():
            _serve(_fresh_module(path).create_app(**options), port)
        argv = [sys.executable, "-m", "course.tools.faults", "serve", str(target), slug, "--port", str(port),
                "--options", json.dumps(options)]
        return cls(run, argv, port=port, cwd=cwd, env=env)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with code {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"the app did not listen on {self.url} within {timeout} s:\n"
                                       f"{self.output()}") from None
                time.sleep(0.005)

    def output(self) -> str:
        if isinstance(self.proc, Forked):
            return self.proc.output()
        if self.proc.poll() is None:
            return "(still running)"
        return self._tail.text()

    def kill(self) -> None:
        """Stop it the hard way (SIGKILL): a crash, nothing gets a chance to clean up."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if isinstance(self.proc, Forked):
            try:
                os.unlink(self.proc._log_path)
            except OSError:
                pass
        elif self.proc.stdout:
            self._tail.thread.join(timeout=5)
            self.proc.stdout.close()


class OutputTail:
    """A process's output read as it comes, by a thread of its own, and only its end kept.

    A pipe nobody reads fills at 64 KB, and then the app blocks in its next print: an app that
    prints a lot at import (4 MB once, in a class's copy) would hang every test that starts it.
    Give it the pipe in bytes: bytes that are not UTF-8 are decoded (replaced) only in ``text()``,
    where a text-mode pipe would raise in the reader and leave the pipe unread again.
    """

    KEEP = 64 * 1024

    def __init__(self, stream):
        self.stream, self.kept, self.lock = stream, None, threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True, name="app-output")
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.stream.read1(8192) if hasattr(self.stream, "read1") else self.stream.read(8192):
                with self.lock:
                    self.kept = (chunk if self.kept is None else self.kept + chunk)[-self.KEEP:]
        except (OSError, ValueError):         # closed under it
            pass

    def text(self) -> str:
        """What it printed last (up to KEEP characters), once it has ended or after 5 s."""
        self.thread.join(timeout=5)
        with self.lock:
            kept = self.kept or ""
        return kept.decode(errors="replace") if isinstance(kept, bytes) else kept


def _fresh_module(path):
    """``path`` imported anew under a name of its own (the child must not reuse the parent's copy)."""
    import importlib.util

    from course.kit.beaker_import import import_beaker
    import_beaker()
    name = f"course_forked_app_{os.getpid()}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _serve(app, port: int) -> None:
    from course.lesson.server import make_threaded_server
    server = make_threaded_server(app, "127.0.0.1", port)
    print(f"serving on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever(poll_interval=0.05)


def _serve_command(argv=None) -> None:
    """``python -m course.tools.faults serve TARGET SLUG --port P --options JSON`` (the grader's sandbox
    starts app processes this way: it cannot fork the grader's own process)."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m course.tools.faults")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve TARGET/SLUG/app.py's create_app(**options)")
    serve.add_argument("target")
    serve.add_argument("slug")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--options", default="{}", help="create_app's keyword arguments, as JSON")
    args = parser.parse_args(argv)
    from course.tools.loader import load_app_module
    _serve(load_app_module(args.target, args.slug).create_app(**json.loads(args.options)), args.port)


if __name__ == "__main__":
    _serve_command()
