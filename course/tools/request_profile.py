"""Where one request's CPU goes, in-process: the floor, the session library, the kit, the store's round trips.

    python -m course.tools.request_profile 08 --store redis://127.0.0.1:6379/0
    python -m course.tools.request_profile 04                     # lesson 03-04's middleware, memory

It builds the lesson's app (``solutions/`` by default) and sends ``GET /visits`` straight into the
WSGI callable (no HTTP server, no client), rotating over 50 existing sessions, and reads this
process's user + system CPU (``os.times``) per request for each layer:

* **no session**: the session middleware taken out (the benchmark's baseline: Bottle and the app);
* **store stubbed** (Redis only): everything of the session, with ``RedisStore.command`` answered
  from a dict: the session library and the kit's backend, without a single system call;
* **sessions**: the real store;
* **round trips alone**: the same ``GET`` and ``SET ... EX`` in a tight loop (Redis only).

Then a cProfile of the stubbed (or, without Redis, the real) request and of the no-session one: own
time grouped by who spends it (Bottle and the app, the session library, the kit, the store's
driver; time in the standard library and builtins is charged to its caller's group); the
difference per group, scaled to the measured difference, splits the session's cost. The difference
between **sessions** and **store stubbed** beyond **round trips alone** is what the waits cost: while a
worker waits for the store, other processes run on its core and it comes back to cold caches.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import sys
import time
import uuid

GROUPS = [("bottle and the app", ("site-packages/bottle", "course/lesson/", "solutions/", "lessons/",
                                  "course/kit/storedown", "course/tools/request_profile")),
          ("Beaker", ("site-packages/beaker/", "http/cookies")),
          ("kit backend", ("course/kit/beaker_backends", "course/kit/stores_beaker", "course/kit/stores.py")),
          ("kit middleware", ("course/kit/beakerkit", "course/kit/cookies", "course/kit/sessions",
                              "course/kit/signing")),
          ("store driver and sockets", ("site-packages/redis/", "site-packages/pymysql/", "site-packages/psycopg/",
                                        "sqlite3", "socket"))]


def _environ(cookie: str | None) -> dict:
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/visits", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
           "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8080",
           "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr}
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def _call(app, cookie: str | None) -> list:
    answer = []
    for _ in app(_environ(cookie), lambda status, headers, exc_info=None: answer.extend(headers)):
        pass
    return answer


def _app(slug: str, target: str, store: str | None, no_session: bool):
    from course.tools import bench
    from course.tools.loader import load_app_module
    module = load_app_module(target, slug)
    if no_session:
        if hasattr(module, "HardenedSessions"):
            module.HardenedSessions = bench.NoBeakerSessions
        else:
            module.SessionMiddleware = bench.NoSession
    return module.create_app(**({"store_url": store} if store else {}))


def _cpu_per_request(app, cookies: list[str], requests: int) -> float:
    before = time.process_time()                  # this process's user + system CPU
    for i in range(requests):
        _call(app, cookies[i % len(cookies)])
    return (time.process_time() - before) / requests * 1e6


class _DictRedis:
    """Answers RedisStore.command from a dict: the session's path with no system call."""

    def __init__(self):
        self.data = {}

    def command(self, name, key, *rest):
        if name == "GET":
            return self.data.get(key)
        if name == "SET":
            self.data[key] = rest[0]
            return b"OK"
        return int(self.data.pop(key, None) is not None)


def _groups(profile: cProfile.Profile) -> dict[str, float]:
    """Own time per group; the standard library's and builtins' own time goes to their callers' groups."""
    stats = pstats.Stats(profile).stats

    def group(key) -> str | None:
        path = key[0] if key[0] != "~" else key[2]
        return next((name for name, marks in GROUPS if any(m in path for m in marks)), None)

    def shares(key, depth=0) -> dict[str, float]:
        found = group(key)
        if found or depth > 8:
            return {found or "other": 1.0}
        callers = stats.get(key, (0, 0, 0, 0, {}))[4]
        total = sum(v[2] for v in callers.values())
        if not total:
            return {"other": 1.0}
        out: collections.Counter = collections.Counter()
        for caller, v in callers.items():
            for name, share in shares(caller, depth + 1).items():
                out[name] += share * v[2] / total
        return out

    spent: collections.Counter = collections.Counter()
    for key, (_, _, own, _, _) in stats.items():
        for name, share in shares(key).items():
            spent[name] += own * share
    return dict(spent)


def measure(slug: str, target: str = "solutions", store: str | None = None, requests: int = 3000,
            rounds: int = 3, out=sys.stdout) -> dict:
    from course.kit import beaker_backends
    from course.lesson import manifest
    slug = manifest.lesson(slug).slug
    os.environ.setdefault("SESSION_SECRET", "benchmark-secret-0123456789abcdef0123")
    redis = bool(store and store.startswith(("redis://", "rediss://")))
    apps = {"no session": _app(slug, target, store, True), "sessions": _app(slug, target, store, False)}
    cookies = [_call(apps["sessions"], None) for _ in range(50)]
    cookies = [next(v for k, v in headers if k == "Set-Cookie").split(";")[0] for headers in cookies]
    real_store = beaker_backends.redis_store
    if redis:
        stub = _DictRedis()
        beaker_backends.redis_store = lambda url: stub
        try:
            apps["store stubbed"] = _app(slug, target, store, False)
            stub_cookies = [_call(apps["store stubbed"], None) for _ in range(50)]
        finally:
            beaker_backends.redis_store = real_store
        stub_cookies = [next(v for k, v in h if k == "Set-Cookie").split(";")[0] for h in stub_cookies]
    sent = {name: (stub_cookies if name == "store stubbed" else cookies) for name in apps}
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            _cpu_per_request(app, sent[name], requests // 10)           # warm
            cpu[name].append(_cpu_per_request(app, sent[name], requests))
    if redis:
        rs = real_store(store)
        key, value = f"beaker_cache:{uuid.uuid4().hex}:session", b'{"visits":1,"_creation_time":1.0}'
        trips = []
        for _ in range(rounds):
            before = time.process_time()
            for _ in range(requests):
                rs.command("GET", key)
                rs.command("SET", key, value, "EX", 60)
            trips.append((time.process_time() - before) / requests * 1e6)
        rs.command("DEL", key)
        cpu["round trips alone"] = trips
    median = {name: sorted(values)[len(values) // 2] for name, values in cpu.items()}
    print(f"{slug} on {store or 'its default store'}: in-process CPU per GET /visits "
          f"(user + system, median of {rounds} rounds of {requests}); load average {_load()}", file=out)
    for name, value in median.items():
        print(f"  {name:20} {value:7.1f} µs   (rounds: {', '.join(f'{v:.1f}' for v in cpu[name])})", file=out)
    profiled = "store stubbed" if redis else "sessions"
    per_group = {}
    for name in ("no session", profiled):
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for i in range(requests // 3):
            _call(apps[name], sent[name][i % 50])
        profile.disable()
        per_group[name] = _groups(profile)
    extra = {group: per_group[profiled].get(group, 0.0) - per_group["no session"].get(group, 0.0)
             for group in set(per_group[profiled]) | set(per_group["no session"])}
    session_us = median[profiled] - median["no session"]
    scale = session_us / (sum(extra.values()) or 1.0)
    print(f"The session's {session_us:.1f} µs ('{profiled}' minus 'no session'), split by a cProfile of both "
          "(own time by group, the difference, scaled to the measured one):", file=out)
    for name, value in sorted(extra.items(), key=lambda kv: -kv[1]):
        if abs(value * scale) >= 0.05:
            print(f"  {name:26} ~{value * scale:6.1f} µs", file=out)
    if redis:
        waits = median["sessions"] - median["store stubbed"] - median["round trips alone"]
        print(f"Redis in the request: {median['sessions'] - median['store stubbed']:.1f} µs, of which the round "
              f"trips themselves {median['round trips alone']:.1f} µs and the waits' cold caches {waits:.1f} µs",
              file=out)
    return {"cpu_us": median, "rounds": cpu, "session_us_by_group": {k: v * scale for k, v in extra.items()}}


def _load() -> str:
    from course.tools.bench import load_average
    return load_average()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.tools.request_profile", description=__doc__.split("\n")[0])
    parser.add_argument("lesson", help="lesson number or slug: 04, 08")
    parser.add_argument("--store", metavar="URL", help="lesson 08's store URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--target", default="solutions")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not (100 <= args.requests <= 100_000 and 1 <= args.rounds <= 20):
        raise SystemExit("bounded: 100-100,000 requests, 1-20 rounds")
    measure(args.lesson, args.target, args.store, args.requests, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
