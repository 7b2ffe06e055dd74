"""The sandbox host: inside the sandbox, as the copy's own user, it imports one lesson's app.py and
answers the grader's requests (``python -m course.tools.grading.host --fd N --target DIR --slug SLUG``).

It is the only code of the course that runs next to a student's code, and it trusts nothing it
gets back from it: what it sends the grader are values, never results. The grader connects to
the listening socket it was handed (``--fd``, made by the grader in a folder the sandbox cannot
see); each connection says first what it is for:

* ``rpc``: requests from the grader's tests, one at a time: ``load``, ``getattr``, ``setattr``,
  ``call``, ``serve`` (a WSGI app of the host's, answered on ``http`` connections, or with
  ``listen`` on a loopback port of the host's own), ``unserve`` and ``probe`` (the named checks a
  test needs inside the sandbox: a ``hmac.compare_digest`` spy, ``random.seed``);
* ``callbacks``: one connection on which the host calls the grader's objects (a test's clock or
  counting store handed to ``create_app``);
* ``http`` with an app number: one HTTP connection, relayed by the grader from a loopback port.

``listen`` is for a host in the grader's test process's own network namespace (the default: a
network of that one copy's, course.tools.grading.sandbox.private_network), where the tests can
connect to the host's port directly: no relay thread in the grader for each of the thousands of
connections a copy's tests open. Where the host is on the machine's network (``--trust-services``)
the grader relays, so that no other copy can reach this copy's apps.

Before anything of the student's is imported, the host caps its own CPU, memory, processes,
files and file sizes; those caps hold for everything it starts.
"""
from __future__ import annotations

import argparse
import hmac
import logging
import os
import random
import resource
import secrets
import socket
import threading
import time
import traceback
import warnings

from course.tools.grading import wire

LIMITS = {                                   # resource: (soft, hard)
    "RLIMIT_CPU": (600, 610),                # seconds: a backstop only, the grader times each test
    "RLIMIT_AS": (1 << 30, 1 << 30),         # per process; the tmpfs of its scratch and /tmp hold the rest
    "RLIMIT_NPROC": (64, 64),                # of this copy's user, threads included: for all its processes
    "RLIMIT_FSIZE": (64 << 20, 64 << 20),
    "RLIMIT_NOFILE": (1024, 1024),
    "RLIMIT_CORE": (0, 0),
}


def limit_myself(cpu_seconds: float | None = None) -> None:
    for name, (soft, hard) in LIMITS.items():
        if name == "RLIMIT_CPU" and cpu_seconds:
            soft, hard = int(cpu_seconds), int(cpu_seconds) + 10
        resource.setrlimit(getattr(resource, name), (soft, hard))


class Host:
    def __init__(self, target: str, slug: str):
        self.target, self.slug = target, slug
        self.module = None
        self.objects = wire.Objects()
        self.codec = wire.Codec("$h", "$g", self.objects, self._remote)
        self.apps: dict[int, object] = {}
        self.listeners: dict[int, socket.socket] = {}
        self.callbacks: socket.socket | None = None
        self.send_lock = threading.Lock()
        self.waiting: dict[int, list] = {}
        self.log_lines: dict[str, list[str]] = {}
        self.log_handlers: dict[str, tuple] = {}
        self.next_id = 0
        self.digest_calls: list | None = None
        self.real_compare_digest = hmac.compare_digest

    # -------------------------------------------------------------- the grader's objects, called back

    def _remote(self, key: int) -> wire.Remote:
        return wire.Remote(self.codec, key, self.call_grader)

    def call_grader(self, op: str, **fields):
        if self.callbacks is None:
            raise RuntimeError("the grader's objects cannot be reached")
        event, box = threading.Event(), []
        with self.send_lock:
            self.next_id += 1
            ident = self.next_id
            self.waiting[ident] = [event, box]
            wire.send(self.callbacks, {"id": ident, "op": op, **self._encode_fields(fields)})
        if not event.wait(120):
            raise TimeoutError("the grader did not answer a call back in 120 s")
        answer = box[0]
        if "err" in answer:
            wire.raise_error(answer["err"])
        return self.codec.decode(answer.get("ok"))

    def _encode_fields(self, fields: dict) -> dict:
        """A call back's arguments: a dict of a class of the copy's (a ``Session``) goes as its items, as
        a value (the grader's store JSON-copies it, as in-process), not as a handle of an object here."""
        out = dict(fields)
        if "args" in out:
            out["args"] = [self.codec.encode(each, plain_dicts=True) for each in out["args"]]
        if "kwargs" in out:
            out["kwargs"] = {k: self.codec.encode(v, plain_dicts=True) for k, v in out["kwargs"].items()}
        if "value" in out:
            out["value"] = self.codec.encode(out["value"], plain_dicts=True)
        return out

    def read_callbacks(self, sock: socket.socket) -> None:
        self.callbacks = sock
        while True:
            try:
                answer = wire.receive(sock)
            except (wire.WireError, OSError, ValueError):
                return
            waiter = self.waiting.pop(answer.get("id"), None)
            if waiter:
                waiter[1].append(answer)
                waiter[0].set()

    # -------------------------------------------------------------- the grader's requests

    def serve_rpc(self, sock: socket.socket) -> None:
        while True:
            try:
                request = wire.receive(sock)
            except (wire.WireError, OSError, ValueError):
                return
            answer = self.answer(request)
            try:
                wire.send(sock, answer)
            except OSError:
                return                   # the grader went (a request it sent without waiting: ``tell``)
            except (TypeError, ValueError) as exc:
                wire.send(sock, wire.error_frame(TypeError(f"the answer cannot be sent back: {exc}")))

    def answer(self, request: dict) -> dict:
        zone = os.environ.get("TZ")
        for name, value in (request.get("env") or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = str(value)
        if os.environ.get("TZ") != zone:
            time.tzset()                 # the test's time zone, for what the code under test stamps from now on
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                answer = {"ok": self.codec.encode(self.do(request))}
            except BaseException as exc:     # everything the student's code raises goes back
                answer = wire.error_frame(exc, traceback.format_exc())
        answer["warnings"] = [[w.category.__name__, wire.builtin_bases(w.category), str(w.message)] for w in caught]
        return answer

    def target_of(self, request: dict):
        key = request.get("target")
        return self.module if key is None else self.objects.get(key)

    def do(self, request: dict):
        op = request.get("op")
        if op == "load":
            return self.load()
        if self.module is None:
            raise RuntimeError("the lesson is not loaded")
        args = [self.codec.decode(each) for each in request.get("args") or []]
        kwargs = {k: self.codec.decode(v) for k, v in (request.get("kwargs") or {}).items()}
        name = request.get("name")
        if op == "getattr":
            if not wire.allowed_name(name):
                raise AttributeError(name)
            return getattr(self.target_of(request), name)
        if op == "setattr":
            if not wire.allowed_name(name):
                raise AttributeError(name)
            setattr(self.target_of(request), name, self.codec.decode(request.get("value")))
            return None
        if op == "call":
            return wire.call_on(self.target_of(request), name, args, kwargs)
        if op == "serve":
            key = self.serve(self.objects.get(request.get("app")), int(request.get("port") or 80),
                             request.get("url_scheme"))
            return [key, self.listen(key)] if request.get("listen") else key
        if op == "unserve":
            listener = self.listeners.pop(int(request.get("key") or 0), None)
            if listener is not None:
                try:
                    listener.shutdown(socket.SHUT_RDWR)   # wakes its accept(): close() alone does not, on Linux
                except OSError:
                    pass
                listener.close()
            return None
        if op == "probe":
            return self.probe(name, args)
        raise ValueError(f"unknown request {op!r}")

    def load(self) -> None:
        if self.module is None:
            from course.tools.loader import load_app_module
            self.module = load_app_module(self.target, self.slug)

    def probe(self, name: str, args: list):
        """The named checks a test needs inside the sandbox (course.tools.testing asks for them)."""
        if name == "compare_digest_spy":
            calls, real = [], self.real_compare_digest

            def spy(a, b):
                calls.append((a, b))
                return real(a, b)

            self.digest_calls = calls
            hmac.compare_digest = secrets.compare_digest = spy
            if hasattr(self.module, "compare_digest"):
                self.module.compare_digest = spy
            return None
        if name == "compare_digest_calls":
            return list(self.digest_calls or [])
        if name == "compare_digest_off":
            hmac.compare_digest = secrets.compare_digest = self.real_compare_digest
            if hasattr(self.module, "compare_digest"):
                self.module.compare_digest = self.real_compare_digest
            self.digest_calls = None
            return None
        if name == "build":
            from course.tools import testing
            return testing.BUILDERS[args[0]](self.module, *args[1:])
        if name == "seed_random":
            random.seed(args[0])
            return None
        if name == "log_capture":
            return self.capture_log(str(args[0]))
        if name == "log_messages":
            lines = list(self.log_lines.get(str(args[0]), []))
            broken = [line for line in lines if isinstance(line, BrokenRecord)]
            if broken:                   # caplog's getMessage() raises for it in the test's process too
                raise TypeError(f"a log record's arguments do not format: {broken[0].text}")
            return lines

        if name == "log_release":
            return self.release_log(str(args[0]))
        raise ValueError(f"unknown probe {name!r}")

    def capture_log(self, logger_name: str) -> None:
        """Record the messages of ``logger_name`` at INFO and above, as pytest's caplog does out there
        (``caplog.set_level(INFO, logger=...)``: the logger at INFO, and a handler that keeps INFO and
        above only, whatever level a child logger is set to)."""
        self.release_log(logger_name)
        lines = self.log_lines[logger_name] = []
        handler = ListHandler(lines)
        handler.setLevel(logging.INFO)
        logger = logging.getLogger(logger_name)
        self.log_handlers[logger_name] = (handler, logger.level)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def release_log(self, logger_name: str) -> None:
        handler, level = self.log_handlers.pop(logger_name, (None, None))
        if handler is not None:
            logger = logging.getLogger(logger_name)
            logger.removeHandler(handler)
            logger.setLevel(level)

    # -------------------------------------------------------------- HTTP

    def serve(self, app, port: int, url_scheme: str | None = None) -> int:
        from wsgiref.simple_server import WSGIServer

        if url_scheme:
            app = with_url_scheme(app, str(url_scheme))
        server = WSGIServer(("127.0.0.1", 0), None, bind_and_activate=False)
        server.server_name, server.server_port = "127.0.0.1", port
        server.setup_environ()
        server.set_app(app)
        key = len(self.apps) + 1
        self.apps[key] = server
        return key

    def listen(self, key: int) -> int:
        """App ``key`` answering on a loopback port of this host's (its number): see the module's docstring."""
        listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        port = listener.getsockname()[1]
        self.apps[key].server_port = port
        self.apps[key].setup_environ()                   # SERVER_PORT: the port the tests connect to
        self.listeners[key] = listener
        if not _start_thread(self.accept_http, listener, key):
            listener.close()
            raise RuntimeError("the copy's processes and threads are all in use (64): no thread to serve the app")
        return port

    def accept_http(self, listener: socket.socket, key: int) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:                              # unserve closed it
                return
            if not _start_thread(self.serve_http, sock, key):
                self.serve_http(sock, key)               # no thread to be had: served here, the others wait

    def serve_http(self, sock: socket.socket, key) -> None:
        from course.lesson.server import QuietHandler

        server = self.apps.get(key)
        if server is None:
            sock.close()
            return
        try:
            QuietHandler(sock, ("127.0.0.1", 0), server)
        except Exception:
            traceback.print_exc()
        finally:
            try:
                sock.close()
            except OSError:
                pass

    # -------------------------------------------------------------- connections

    def accept_forever(self, listener: socket.socket) -> None:
        while True:
            sock, _ = listener.accept()
            if not _start_thread(self.greet, sock):
                sock.close()                             # the grader's side reports the host as gone

    def greet(self, sock: socket.socket) -> None:
        try:
            hello = wire.receive(sock)
        except (wire.WireError, OSError, ValueError):
            sock.close()
            return
        kind = hello.get("kind")
        if kind == "rpc":
            self.serve_rpc(sock)
        elif kind == "callbacks":
            self.read_callbacks(sock)
        elif kind == "http":
            self.serve_http(sock, hello.get("app"))
        else:
            sock.close()


class BrokenRecord:
    """A record whose message and arguments do not format (``"x %s" % ()``): no line a log would show."""

    def __init__(self, text: str):
        self.text = text


class ListHandler(logging.Handler):
    """A logging handler that keeps each record's message in a list (``record.getMessage()``)."""

    def __init__(self, lines: list):
        super().__init__()
        self.lines = lines

    def emit(self, record) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception as exc:                   # a record whose arguments do not format
            self.lines.append(BrokenRecord(f"{type(exc).__name__}: {exc} ({str(record.msg)[:200]!r})"))


def with_url_scheme(app, scheme: str):
    """``app`` as a server that speaks TLS itself would serve it (the pytest plugin's ``serve_app(url_scheme=)``)."""
    def scheme_app(environ, start_response):
        environ["wsgi.url_scheme"] = scheme
        return app(environ, start_response)
    return scheme_app


def _start_thread(target, *args, tries: int = 40) -> bool:
    """Start a daemon thread, waiting for one to be free: the copy's user has 64 processes and threads
    in all (RLIMIT_NPROC), and the threads of connections a test left open end a moment later. An
    exception here ended the host (exit code 1) in the middle of a correct copy's test, now and then."""
    for _ in range(tries):
        try:
            threading.Thread(target=target, args=args, daemon=True).start()
            return True
        except RuntimeError:                             # "can't start new thread"
            time.sleep(0.05)
    return False


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course.tools.grading.host")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--slug", required=True)
    parser.add_argument("--cpu", type=float, default=None)
    args = parser.parse_args(argv)
    limit_myself(args.cpu)
    listener = socket.socket(fileno=args.fd)
    Host(args.target, args.slug).accept_forever(listener)


if __name__ == "__main__":
    main()
