"""A small, bounded load generator for loopback: N requests over C connections, with cookies.

From the shell::

    python -m course.tools.bench http://127.0.0.1:8091/visits -n 2000 -c 4 --sessions 50
    python -m course.tools.bench http://127.0.0.1:8091/visits -n 2000 -c 16 --cookie 'sid=s%3A...'
    python -m course.tools.bench URL ... --json            # one JSON object instead of the table

and a quiet server for it to hit (another process, so client and server do not share a GIL)::

    python -m course.tools.bench serve 04_session_options [--target solutions] --port 8091 \\
        [--option resave=true --option max_age=60 ...] [--no-session]

``serve`` loads ``TARGET/SLUG/app.py``, calls ``create_app(**options)`` (values are parsed as JSON
when they can be: ``true``, ``60``, ``null``; otherwise kept as strings) and serves it with the
course's threaded server without a request log. ``--no-session`` swaps the lesson's
``SessionMiddleware`` for one that hands every request a fresh empty dict and stores nothing: the
same app and routes with no session machinery, the baseline a session's cost is measured against.

From Python::

    from course.tools.bench import run, make_sessions
    cookies = make_sessions("http://127.0.0.1:8091/visits", 50)   # Cookie header values
    result = run("http://127.0.0.1:8091/visits", requests=2000, concurrency=4, cookies=cookies)
    result.rps, result.p50_ms, result.p99_ms, result.errors, result.statuses, result.set_cookies

``run`` is bounded: exactly ``requests`` requests (after ``warmup`` ones that are not measured),
each with a ``timeout`` in seconds, and the whole run stops at ``deadline`` seconds (the rest count
as not sent). Each of the ``concurrency`` threads keeps its own connection (HTTP/1.1 keep-alive
when the server allows it; the stdlib server closes after each answer, and then each request
opens a new connection, as a browser without keep-alive would). ``cookies`` are used round-robin,
one per request, so 50 sessions are spread over the connections. A response with a status of 400
or more, or a request that raised, is an error. ``set_cookies`` counts responses that carried a
``Set-Cookie``: with cookies of existing sessions it should stay 0 (no request lost its session).

The client is Python too and costs CPU: on a 2-core machine the numbers are for comparing two
servers side by side in one run, not absolute capacity. waitress with its default 4 threads
collapses when an I/O-bound store meets more connections than threads (measured once on the course's
machine; this module does not repeat that run).
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    url: str
    requests: int                 # measured requests sent (warm-up excluded)
    concurrency: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    set_cookies: int
    statuses: dict = field(default_factory=dict)
    not_sent: int = 0             # requests left when the deadline passed

    def line(self) -> str:
        return (f"{self.url}  n={self.requests} c={self.concurrency}  {self.rps:8.0f} req/s  "
                f"p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  errors {self.errors}  "
                f"set-cookie {self.set_cookies}  statuses {self.statuses}"
                + (f"  NOT SENT {self.not_sent}" if self.not_sent else ""))


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class _Client:
    """One connection; reconnects when the server closed it."""

    def __init__(self, url: str, timeout: float):
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// URLs on loopback are supported, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.conn = None

    def get(self, cookie: str | None) -> tuple[int, bool]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Cookie": cookie} if cookie else {}
        try:
            self.conn.request("GET", self.path, headers=headers)
            resp = self.conn.getresponse()
            resp.read()
            if resp.will_close:
                self.close()
            return resp.status, resp.getheader("Set-Cookie") is not None
        except Exception:
            self.close()
            raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run(url: str, requests: int = 2000, concurrency: int = 4, cookies: list[str] | None = None,
        warmup: int = 100, timeout: float = 5.0, deadline: float = 120.0) -> Result:
    """Send ``requests`` GETs to ``url`` over ``concurrency`` connections; measure them."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    cookie_cycle = itertools.cycle(cookies) if cookies else itertools.repeat(None)
    lock = threading.Lock()
    state = {"left": warmup, "phase": "warmup"}
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    counters = {"errors": 0, "set_cookies": 0}
    stop_at = time.monotonic() + deadline

    def take() -> str | None | bool:
        with lock:
            if state["left"] <= 0 or time.monotonic() > stop_at:
                return False
            state["left"] -= 1
            return next(cookie_cycle)

    def worker(measure: bool):
        client = _Client(url, timeout)
        try:
            while (cookie := take()) is not False:
                start = time.perf_counter()
                try:
                    status, set_cookie = client.get(cookie)
                except Exception as exc:                     # refused, reset, timed out
                    status, set_cookie = type(exc).__name__, False
                elapsed = time.perf_counter() - start
                if not measure:
                    continue
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1
                    if not isinstance(status, int) or status >= 400:
                        counters["errors"] += 1
                    counters["set_cookies"] += set_cookie
        finally:
            client.close()

    def phase(measure: bool) -> float:
        threads = [threading.Thread(target=worker, args=(measure,), daemon=True) for _ in range(concurrency)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - began

    if warmup:
        phase(False)
    state["left"] = requests
    seconds = phase(True)
    return _result(url, requests, concurrency, seconds, latencies, statuses, counters)


def _result(url: str, requests: int, concurrency: int, seconds: float, latencies: list[float],
            statuses: dict, counters: dict) -> Result:
    ordered = sorted(latencies)
    done = len(ordered)
    return Result(
        url=url, requests=done, concurrency=concurrency, seconds=round(seconds, 3),
        rps=round(done / seconds, 1) if seconds else 0.0,
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 3), p90_ms=round(_percentile(ordered, 0.90) * 1000, 3),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 3), max_ms=round((ordered[-1] if ordered else 0) * 1000, 3),
        errors=counters["errors"], set_cookies=counters["set_cookies"],
        statuses={str(k): v for k, v in sorted(statuses.items(), key=str)}, not_sent=requests - done)


def make_sessions(url: str, count: int, timeout: float = 5.0) -> list[str]:
    """``count`` new sessions: GET ``url`` without a cookie, keep each ``Set-Cookie``'s name=value.

    ``url`` must be a route that stores the session (one that writes to it, or any route with
    save_uninitialized). Returns ``Cookie`` header values for ``run(cookies=...)``.
    """
    client = _Client(url, timeout)
    cookies = []
    try:
        for _ in range(count):
            client.conn = client.conn or http.client.HTTPConnection(client.host, client.port, timeout=timeout)
            client.conn.request("GET", client.path)
            resp = client.conn.getresponse()
            resp.read()
            header = resp.getheader("Set-Cookie")
            if resp.will_close:
                client.close()
            if not header:
                raise RuntimeError(f"GET {url} sent no Set-Cookie: use a route that stores the session")
            cookies.append(header.split(";", 1)[0])
    finally:
        client.close()
    return cookies


# ---------------------------------------------------------------- serve (the other process)

class NoSession:
    """Stands in for a lesson's SessionMiddleware: every request gets a new empty dict, nothing kept."""

    def __init__(self, app, *args, **kwargs):
        self.app = app

    def __call__(self, environ, start_response):
        environ["session"] = {}
        return self.app(environ, start_response)


def _option(text: str) -> tuple[str, object]:
    name, eq, value = text.partition("=")
    if not eq:
        raise argparse.ArgumentTypeError(f"--option wants name=value, not {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def serve(slug: str, target: str = "solutions", port: int = 8091, options: dict | None = None,
          no_session: bool = False) -> None:
    from course.lesson.server import make_threaded_server
    from course.tools.loader import load_app_module

    module = load_app_module(target, slug)
    if no_session:
        if not hasattr(module, "SessionMiddleware"):
            raise SystemExit(f"{slug} has no SessionMiddleware to replace")
        module.SessionMiddleware = NoSession          # create_app looks the name up when it runs
    server = make_threaded_server(module.create_app(**(options or {})), "127.0.0.1", port, quiet=True)
    print(f"serving {target}/{slug} {options or {}}{' with no session' if no_session else ''} "
          f"on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser(prog="python -m course.tools.bench serve",
                                         description="serve a lesson's app quietly for a load test")
        parser.add_argument("slug", help="e.g. 04_session_options")
        parser.add_argument("--target", default="solutions", help="solutions (default), lessons, or a folder")
        parser.add_argument("--port", type=int, default=8091)
        parser.add_argument("--option", type=_option, action="append", default=[], metavar="NAME=VALUE")
        parser.add_argument("--no-session", action="store_true", help="replace SessionMiddleware by a no-op")
        args = parser.parse_args(argv[1:])
        serve(args.slug, args.target, args.port, dict(args.option), args.no_session)
        return 0
    parser = argparse.ArgumentParser(prog="python -m course.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=4)
    parser.add_argument("--cookie", action="append", default=[], help="a Cookie header value (repeatable)")
    parser.add_argument("--sessions", type=int, default=0,
                        help="first create this many sessions by GETting the URL without a cookie")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cookies = list(args.cookie) + (make_sessions(args.url, args.sessions) if args.sessions else [])
    result = run(args.url, args.requests, args.concurrency, cookies or None, args.warmup, args.timeout, args.deadline)
    print(json.dumps(asdict(result)) if args.json else result.line())
    return 1 if result.errors or result.not_sent else 0


if __name__ == "__main__":
    sys.exit(main())
