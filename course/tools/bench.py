"""What a session costs: a paired benchmark under gunicorn, and a small load generator for loopback.

The benchmark (``python -m course bench``) serves a lesson under gunicorn (N sync workers) twice -
once with its sessions in the store at ``--store``, once with the session machinery taken out
(the same app and routes: the baseline) - and loads both in alternating rounds with ``wrk``
(Debian's ``wrk`` package; without it, the Python client below), all on 127.0.0.1::

    python -m course bench 08 --store redis://127.0.0.1:6379/0            # 2 workers, c=16, 5 rounds
    python -m course bench 08 --store postgresql://postgres@127.0.0.1/test --rounds 3 --seconds 4
    python -m course bench 04 --workers 1                                   # course/kit/sessions.py, memory
    python -m course bench 08 --store redis://... --compare http://127.0.0.1:3000/visits --compare-pid PID

It prints, per round and as medians over the rounds, requests/s, p50/p99 latency and the server's
CPU time per request (user + system of the gunicorn master and its workers, read from /proc: the
number least disturbed by other jobs on the machine), the paired ratio to the baseline of the same
round, and the load average. ``--compare URL`` puts another server (express-session, say) in the
same rotation (its own sessions are made first; ``--compare-pid`` names its process for the CPU).
Bounded: at most 20 rounds of at most 60 s, loopback only; gunicorn is stopped at the end.

The load generator, from the shell::

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


# ---------------------------------------------------------------- the paired benchmark under gunicorn

class _NoBeakerSession(dict):
    """What ``get_session()`` finds when the benchmark takes Beaker out: a dict whose save() does nothing."""

    def save(self):
        pass


class NoBeakerSessions:
    """Stands in for ``HardenedSessions``: a fresh empty session per request, nothing loaded or kept."""

    def __init__(self, app, *args, **kwargs):
        self.app = app

    def __call__(self, environ, start_response):
        environ["beaker.session"] = _NoBeakerSession()
        return self.app(environ, start_response)


def gunicorn_app():
    """The WSGI app gunicorn serves (``course.tools.bench:gunicorn_app()``), described by the environment.

    ``COURSE_BENCH_TARGET`` / ``COURSE_BENCH_SLUG``: the lesson; ``COURSE_BENCH_OPTIONS``: JSON for
    ``create_app(**options)``; ``COURSE_BENCH_NO_SESSION=1``: the session middleware taken out.
    """
    import os

    from course.tools.loader import load_app_module

    module = load_app_module(os.environ["COURSE_BENCH_TARGET"], os.environ["COURSE_BENCH_SLUG"])
    if os.environ.get("COURSE_BENCH_NO_SESSION") == "1":
        if hasattr(module, "HardenedSessions"):
            module.HardenedSessions = NoBeakerSessions
        elif hasattr(module, "SessionMiddleware"):
            module.SessionMiddleware = NoSession
        else:
            raise SystemExit("this lesson has no session middleware to take out")
    return module.create_app(**json.loads(os.environ.get("COURSE_BENCH_OPTIONS") or "{}"))


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """``gunicorn -w N`` serving a lesson on a free loopback port, in its own process group."""

    def __init__(self, slug: str, target: str, options: dict, workers: int, no_session: bool, threads: int = 1):
        import os
        import shutil
        import subprocess

        from course import ROOT

        if not shutil.which("gunicorn", path=os.path.dirname(sys.executable)) and not _has_module("gunicorn"):
            raise SystemExit("gunicorn is not installed: run make venv (it is pinned in requirements.txt)")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "COURSE_BENCH_SLUG": slug, "COURSE_BENCH_TARGET": target,
               "COURSE_BENCH_OPTIONS": json.dumps(options), "COURSE_BENCH_NO_SESSION": "1" if no_session else "0",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.setdefault("SESSION_SECRET", "benchmark-secret-0123456789abcdef0123")
        from course.tools.grading.sandbox import spawn, wrap
        argv, env, cwd = wrap(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
             *(["-k", "gthread", "--threads", str(threads)] if threads > 1 else ["-k", "sync"]),
             "--log-level", "warning", "--backlog", "2048", "course.tools.bench:gunicorn_app()"],
            env, str(ROOT))                                  # in the copy's sandbox, when grading
        self.proc = spawn(lambda: subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE, start_new_session=True))
        from course.tools.faults import OutputTail
        self.errors = OutputTail(self.proc.stderr)       # read as it comes: a full pipe would block the app
        try:
            self._wait(workers)
        except BaseException:            # Ctrl-C while it starts: nobody holds it yet, so nobody else stops it
            self.stop()
            raise

    def _wait(self, workers: int, seconds: float = 30.0):
        import socket
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            if self.proc.poll() is not None:
                raise SystemExit("gunicorn stopped at start-up:\n" + self.errors.text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                if len(_children(self.master())) >= workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"gunicorn did not answer on port {self.port} within {seconds:g} s")

    def master(self) -> int:
        """gunicorn's master process: ours, or, in the grader's sandbox, the first below bwrap's."""
        import os

        from course.tools.grading.sandbox import descendants
        for pid in [self.proc.pid] + descendants(self.proc.pid):
            try:
                if os.path.basename(os.readlink(f"/proc/{pid}/exe")) != "bwrap":
                    return pid
            except OSError:
                pass
        return self.proc.pid

    def pids(self) -> list[int]:
        """The master, then its workers, as this process sees them."""
        master = self.master()
        return [master] + _children(master)

    def outside_pid(self, pid: int) -> int | None:
        """One of ``pids()``, from its number as the app sees it (``os.getpid()``: another in a PID namespace)."""
        from pathlib import Path
        for mine in self.pids():
            try:
                status = Path(f"/proc/{mine}/status").read_text()
            except OSError:
                continue
            spaces = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [str(mine)])
            if spaces and spaces[-1] == str(pid):
                return mine
        return None

    def stop(self):
        """Kill the master and its workers at once: a benchmark's or a test's server has nothing to
        finish, and gunicorn's own shutdown (SIGTERM or SIGQUIT) takes a second each time."""
        import os
        import signal
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def _has_module(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    from pathlib import Path
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (Linux /proc; a process gone counts 0)."""
    import os
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])          # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


def load_average() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


_WRK_SCRIPT = """
local cookies = {%s}
local i = 0
request = function()
  i = i %% #cookies + 1
  return wrk.format("GET", nil, {["Cookie"] = cookies[i]})
end
"""


def _wrk(url: str, cookies: list[str], connections: int, seconds: float) -> dict:
    import re
    import subprocess
    import tempfile
    lua = _WRK_SCRIPT % ", ".join(json.dumps(c) for c in cookies) if cookies else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "--latency"]
        if lua:
            cmd += ["-s", script.name]
        out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30).stdout

    def ms(label):
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not found:
            return float("nan")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    seconds_taken = float(done.group(2)) * {"ms": 0.001, "s": 1, "m": 60}[done.group(3)] if done else seconds
    requests = int(done.group(1)) if done else 0
    return {"requests": requests, "rps": requests / seconds_taken if seconds_taken else 0.0,
            "p50_ms": ms("50"), "p99_ms": ms("99"),
            "errors": (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)}


def _python_load(url: str, cookies: list[str], connections: int, seconds: float) -> dict:
    result = run(url, requests=10**7, concurrency=connections, cookies=cookies or None, warmup=0,
                 deadline=seconds)
    return {"requests": result.requests, "rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
            "errors": result.errors}


def _loopback(url: str) -> str:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"the benchmark only loads servers on this machine (127.0.0.1), not {url}")
    return url


def _median(values):
    import statistics
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def benchmark(slug: str, target: str = "solutions", store: str | None = None, workers: int = 2,
              connections: int = 16, rounds: int = 5, seconds: float = 5.0, sessions: int = 50,
              path: str = "/visits", compare: str | None = None, compare_pids: list[int] | None = None,
              threads: int = 1, out=sys.stdout) -> dict:
    """Alternating paired rounds: the lesson with its store, without sessions, and ``compare``; medians."""
    import shutil
    if not (1 <= rounds <= 20 and 1 <= seconds <= 60 and 1 <= connections <= 256 and 1 <= workers <= 16
            and 1 <= threads <= 64):
        raise SystemExit("bounded: 1-20 rounds of 1-60 s, 1-256 connections, 1-16 workers, 1-64 threads")
    if compare:
        _loopback(compare)
    load = _wrk if shutil.which("wrk") else _python_load
    if load is _python_load:
        print("wrk not found (Debian: apt-get install wrk): using the Python client, which shares the CPU "
              "with the servers; compare the ratios, not the rates", file=out)
    options = {"store_url": store} if store else {}
    servers = {}
    try:
        servers["no session"] = Gunicorn(slug, target, options, workers, no_session=True, threads=threads)
        servers["sessions"] = Gunicorn(slug, target, options, workers, no_session=False, threads=threads)
        cookies = {"sessions": make_sessions(servers["sessions"].url + path, sessions)}
        cookies["no session"] = cookies["sessions"]        # the same request bytes, ignored
        urls = {name: server.url + path for name, server in servers.items()}
        pids = {name: server.pids for name, server in servers.items()}
        if compare:
            urls["compare"] = _loopback(compare)
            cookies["compare"] = make_sessions(compare, sessions)
            pids["compare"] = lambda: [p for pid in (compare_pids or []) for p in [pid] + _children(pid)]
        label = f"{slug} on {stores_label(store)}"
        kind = f"gthread, {threads} threads each" if threads > 1 else "sync"
        print(f"{label}: gunicorn -w {workers} ({kind}), wrk -c {connections}, {sessions} sessions, "
              f"{rounds} rounds of {seconds:g} s; load average {load_average()}", file=out)
        if workers > 1 and in_process_store(slug, store):
            print(f"note: the sessions live in each worker's own memory: a request that reaches another "
                  f"worker than the one that made its session starts a new one (about {workers - 1} in "
                  f"{workers}), so this measures a mix; --workers 1 measures the middleware alone", file=out)
        names = list(urls)
        rows: dict[str, list[dict]] = {name: [] for name in names}
        for number in range(rounds):
            order = names if number % 2 == 0 else names[::-1]
            for name in order:
                load(urls[name], cookies[name], connections, 1.0)           # warm-up, not measured
                procs = pids[name]()
                before = cpu_seconds(procs)
                measured = load(urls[name], cookies[name], connections, seconds)
                used = cpu_seconds(procs) - before
                measured["cpu_us"] = (used / measured["requests"] * 1e6 if measured["requests"] and procs
                                      else float("nan"))
                measured["load"] = load_average()
                rows[name].append(measured)
            line = "  ".join(f"{name}: {rows[name][-1]['rps']:7.0f}/s {rows[name][-1]['cpu_us']:5.0f} µs"
                             for name in names)
            print(f"round {number + 1}: {line}  (load {load_average()})", file=out)
        summary = {}
        for name in names:
            runs = rows[name]
            ratio = [r["rps"] / b["rps"] for r, b in zip(runs, rows["no session"], strict=False) if b["rps"]]
            extra = [r["cpu_us"] - b["cpu_us"] for r, b in zip(runs, rows["no session"], strict=False)]
            summary[name] = {"rps": _median([r["rps"] for r in runs]), "p50_ms": _median([r["p50_ms"] for r in runs]),
                             "p99_ms": max(r["p99_ms"] for r in runs), "cpu_us": _median([r["cpu_us"] for r in runs]),
                             "x_no_session": _median(ratio), "cpu_us_over_no_session": _median(extra),
                             "errors": sum(r["errors"] for r in runs), "rounds": runs}
        print(f"\n{'':12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11} {'x no-session':>13} "
              f"{'+CPU µs':>8} {'errors':>7}", file=out)
        for name in names:
            row = summary[name]
            print(f"{name:12} {row['rps']:8.0f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['cpu_us']:11.0f} "
                  f"{row['x_no_session']:13.2f} {row['cpu_us_over_no_session']:8.0f} {row['errors']:7d}", file=out)
        if compare:
            paired = [s["rps"] / c["rps"] for s, c in zip(rows["sessions"], rows["compare"], strict=False) if c["rps"]]
            summary["sessions"]["x_compare"] = _median(paired)
            print(f"sessions ÷ compare, paired per round: {_median(paired):.2f}x", file=out)
        print("(medians over the rounds; p99: the worst round; CPU: the app server's processes only, "
              f"not the store's; load average now {load_average()})", file=out)
        return summary
    finally:
        for server in servers.values():
            server.stop()


def in_process_store(slug: str, store: str | None) -> bool:
    """Whether the lesson keeps its sessions in each process's memory (lessons 03-07 by default)."""
    if store:
        return store.partition(":")[0].lower() == "memory"
    return "03" <= slug[:2] <= "07"


def stores_label(store: str | None) -> str:
    if not store:
        return "its default store"
    from course.kit.stores_beaker import redact
    return redact(store)


def command(args) -> int:
    """``python -m course bench LESSON ...`` (see the module docstring)."""
    from course.lesson import manifest
    try:
        lesson = manifest.lesson(args.lesson)
    except manifest.UnknownLesson as exc:
        raise SystemExit(str(exc)) from None
    summary = benchmark(lesson.slug, args.target, args.store, args.workers, args.connections, args.rounds,
                        args.seconds, args.sessions, args.path, args.compare,
                        [int(p) for p in args.compare_pid or []], args.threads)
    if args.json:
        print(json.dumps(summary))
    return 1 if any(row["errors"] for row in summary.values()) else 0


def add_arguments(parser) -> None:
    """The options of ``python -m course bench``."""
    parser.add_argument("lesson", help="lesson number or slug, e.g. 08")
    parser.add_argument("--store", metavar="URL", help="session store URL (lesson 08), e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--target", default="solutions", help="solutions (default) or lessons (your code)")
    parser.add_argument("--workers", "-w", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per worker: more than 1 uses gunicorn's gthread worker "
                             "(keep-alive; default 1: sync)")
    parser.add_argument("--connections", "-c", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds, order alternating (default 5)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of load per server per round (default 5)")
    parser.add_argument("--sessions", type=int, default=50, help="sessions the requests rotate over (default 50)")
    parser.add_argument("--path", default="/visits", help="the route to load (default /visits)")
    parser.add_argument("--compare", metavar="URL", help="another server in the same rounds, e.g. express-session")
    parser.add_argument("--compare-pid", action="append", metavar="PID",
                        help="its process (children included), for CPU")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")


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
