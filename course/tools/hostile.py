"""Sending the hostile-input corpus (tests/hostile/corpus.toml) to a lesson, and what came back.

The corpus is data: targets (a lesson and a mode), Cookie headers, other headers, raw requests and
bodies. :func:`run_target` serves one target's app on a free port, finds its routes on its own
``GET /`` page (links and forms), makes a real session (its GET routes, and a login where the
target has one), then sends every entry over a raw socket (so any byte can be sent) and measures
each request: status, wall time, and the server CPU the app spent on it (``time.thread_time`` in
the handling thread, which is where the quadratic cookie parsing of CVE-2024-7592 shows).
"""
from __future__ import annotations

import gc
import re
import socket
import threading
import time
import tomllib
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

import requests

from course.lesson.server import serve

CORPUS = Path(__file__).resolve().parents[2] / "tests" / "hostile" / "corpus.toml"
WALL_LIMIT = 2.0          # seconds a request may take, end to end
CPU_LIMIT = 0.5           # seconds of server CPU a request may cost
BAD_STATUSES = (500, 503)  # a crash, or a crash dressed as "the store is down"


def load(path: Path = CORPUS) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def entry_text(entry: dict, key: str) -> str:
    """An entry's string: ``entry[key]``, or its ``repeat`` = [prefix, unit, count, suffix]."""
    if "repeat" in entry:
        prefix, unit, count, suffix = entry["repeat"]
        return prefix + unit * count + suffix
    return entry[key]


@dataclass
class Result:
    why: str
    request: str            # method and path (and the category)
    status: int | None
    wall: float
    cpu: float | None
    body: bytes = b""

    def problem(self) -> str | None:
        if self.status is None and ((self.cpu is not None and not self.body) or self.wall > WALL_LIMIT):
            # The app ran and no answer came, or the server hung. (Python's HTTP server answers
            # HTTP/0.9 with a bare body, and garbage or HTTP/9.9 request lines without a status
            # line or not at all, before any app runs: the server's business, and harmless.)
            return "no HTTP answer (the connection broke or timed out)"
        if self.status in BAD_STATUSES:
            return f"HTTP {self.status}"
        if b"Traceback (most recent call last)" in self.body:
            return "a traceback in the body"
        if self.wall > WALL_LIMIT:
            return f"took {self.wall:.2f} s (limit {WALL_LIMIT} s)"
        if self.cpu is not None and self.cpu > CPU_LIMIT:
            return f"cost {self.cpu:.2f} s of server CPU (limit {CPU_LIMIT} s)"
        return None

    def describe(self) -> str:
        return f"{self.request} with {self.why}: {self.problem()}"


_GC = threading.local()


def _count_gc(phase, info):
    """gc.callbacks: the CPU this thread spends collecting garbage (the whole test process's heap)."""
    if phase == "start":
        _GC.started = time.thread_time()
    elif getattr(_GC, "started", None) is not None:
        _GC.spent = getattr(_GC, "spent", 0.0) + time.thread_time() - _GC.started
        _GC.started = None


@dataclass
class CpuMeter:
    """WSGI wrapper: the CPU each request cost the thread that served it.

    Minus the garbage collector's: a full collection walks every object of the test process (a
    suite's worth), which is not the request's cost; it once put a 400 answer at 0.58 s.
    """
    app: object
    seconds: list = field(default_factory=list)

    def __call__(self, environ, start_response):
        _GC.spent, _GC.started = 0.0, None
        started = time.thread_time()
        try:
            body = self.app(environ, start_response)
            try:
                chunks = list(body)
            finally:
                if hasattr(body, "close"):
                    body.close()
        finally:
            self.seconds.append(time.thread_time() - started - _GC.spent)
        return chunks


def send_raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[int | None, bytes, float]:
    """Send ``data`` as it is, read until the server closes; (status, body, wall seconds)."""
    started = time.monotonic()
    chunks = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)       # the server sees the end of a short body
            except OSError:
                pass                                # it may answer (431, 400) before reading it all
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        pass
    wall = time.monotonic() - started
    raw = b"".join(chunks)
    statuses = re.findall(rb"^HTTP/\d\.\d (\d{3})", raw, re.M)
    status = next((int(s) for s in statuses if s != b"100"), None)
    # HTTP/0.9 answers have no status line and no headers: the whole answer is the body.
    body = raw.partition(b"\r\n\r\n")[2] if status is not None else raw
    return status, body, wall


def request_bytes(method: str, path: str, port: int, headers: dict[str, str], body: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    merged = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
    merged.update(headers)
    if method == "POST" and not any(k.lower() == "content-length" for k in merged):
        merged["Content-Length"] = str(len(body.encode("latin-1")))
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("latin-1")


def find_routes(html: str, extra=()) -> list[tuple[str, str]]:
    """The (method, path) pairs a lesson page offers (its links and forms, ``GET /`` first), and ``extra``."""
    routes = [("GET", "/"), *extra]
    for path in re.findall(r'<a href="(/[^"]*)"', html):
        routes.append(("GET", unescape(path)))
    for method, path in re.findall(r'<form method="(\w+)" action="(/[^"]*)"', html):
        routes.append((method.upper(), unescape(path)))
    unique = list(dict.fromkeys(routes))
    # Routes that replace or end the session go last, so the entries before them carry a live one.
    return sorted(unique, key=lambda r: r[0] == "POST" and any(w in r[1] for w in ("login", "logout", "reset",
                                                                                     "revoke")))


def make_session(base: str, routes, login: dict | None, headers: dict) -> str:
    """The Cookie header of a real session: every GET route visited, then a login if any."""
    with requests.Session() as browser:
        browser.headers.update(headers)
        for method, path in routes:
            if method == "GET":
                browser.get(base + path, timeout=10)
        if login:
            page = browser.get(base + "/login", headers={"Accept": "text/html"}, timeout=10).text
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
            fields.update(login)
            browser.post(base + "/login", data=fields, timeout=10,
                         headers={"Origin": base, "Sec-Fetch-Site": "same-origin"})
        return "; ".join(f"{c.name}={c.value}" for c in browser.cookies)


def run_target(create_app, target: dict, corpus: dict, options: dict) -> tuple[list[Result], int]:
    """Every corpus entry against one target; (the results with a problem, requests sent)."""
    meter = CpuMeter(create_app(**options))
    gc.callbacks.append(_count_gc)              # taken out again below
    context = serve(meter)
    base = context.__enter__()
    port = int(base.rsplit(":", 1)[1])
    try:
        fixed = dict(target.get("headers", {}))
        html = requests.get(base + "/", headers=fixed, timeout=10).text
        routes = find_routes(html, [tuple(r) for r in target.get("routes", [])])
        session = make_session(base, routes, target.get("login"), fixed)
        results = []

        def send(why: str, label: str, data: bytes) -> None:
            meter.seconds.clear()
            status, body, wall = send_raw(port, data)
            cpu = max(meter.seconds) if meter.seconds else None
            results.append(Result(why, label, status, wall, cpu, body[:4096]))

        for method, path in routes:
            empty_form = {"Content-Type": "application/x-www-form-urlencoded"} if method == "POST" else {}
            for entry in corpus["cookie"]:
                cookie = entry_text(entry, "value").replace("{session}", session)
                send(entry["why"], f"{method} {path} [cookie]",
                     request_bytes(method, path, port, {**fixed, **empty_form, "Cookie": cookie}))
            for entry in corpus["header"]:
                headers = {**fixed, **empty_form, "Cookie": session, **entry["headers"]}
                send(entry["why"], f"{method} {path} [header]", request_bytes(method, path, port, headers))
            if method != "POST":
                continue
            for entry in corpus["body"]:
                headers = {**fixed, "Cookie": session}
                if entry["type"]:
                    headers["Content-Type"] = entry["type"]
                send(entry["why"], f"{method} {path} [body]",
                     request_bytes(method, path, port, headers, entry_text(entry, "body")))
        for entry in corpus["raw"]:
            send(entry["why"], "[raw request]", entry["request"].encode("latin-1"))
        # Still standing: the lesson page answers after all of it.
        after = requests.get(base + "/", headers=fixed, timeout=10)
        if after.status_code != 200:
            results.append(Result("the corpus", "GET / afterwards", after.status_code, 0.0, None))
        return [r for r in results if r.problem()], len(results)
    finally:
        context.__exit__(None, None, None)
        gc.callbacks.remove(_count_gc)
