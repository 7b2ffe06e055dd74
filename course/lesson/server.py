"""Serve a WSGI app on 127.0.0.1: in the background for tests and notebooks, or in the foreground.

Why not ``bottle.run``? Its wsgiref server polls for shutdown every 0.5 s, so each test server
would cost half a second to stop, and it serves one request at a time. Here the standard
library's server gets threads (two tabs, two requests at once), a 10 ms shutdown poll, a quiet
log, and a listen backlog big enough for a small load test.
"""
from __future__ import annotations

import argparse
import errno
import socketserver
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr: tests and notebooks stay readable."""

    def log_message(self, format, *args):
        pass


class LoggingHandler(WSGIRequestHandler):
    """One short line per request, for a student watching the server in a terminal."""

    def log_message(self, format, *args):
        sys.stderr.write("  %s\n" % (format % args))


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True          # a hung request never keeps the process alive
    request_queue_size = 128       # wsgiref's default of 5 drops connections under load
    allow_reuse_address = True


class PortInUse(SystemExit):
    """Raised instead of a traceback when the port is taken."""


def make_threaded_server(app, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> WSGIServer:
    handler = QuietHandler if quiet else LoggingHandler
    try:
        return make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"Port {port} on {host} is already in use (is another lesson still running?).\n"
                f"Stop the other server, or pick another port: make run PORT={port + 1}  "
                f"(or python -m course run LESSON --port {port + 1})"
            ) from None
        raise


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
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
    arguments for ``create_app``.
    """
    parser = argparse.ArgumentParser(description=title or None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    app = create_app(**(options(args) if options else {}))
    serve_forever(app, args.host, args.port, title=title)
