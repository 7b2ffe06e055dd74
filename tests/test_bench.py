"""``python -m course bench``: it runs end to end and its figures add up (no speed is asserted here).

A short run (one round of one second, lesson 04 in memory on one gunicorn worker) checks that the
servers start, the sessions are made, both servers answer every request without an error, the CPU
per request is read from /proc, and gunicorn is gone afterwards. The speeds themselves belong to a
benchmark on a quiet machine, not to a test.
"""
import io
import json
import os
import shutil
import sys

import pytest

from course.tools import bench

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the benchmark reads /proc")


def test_a_short_benchmark_runs_both_servers_and_reports_per_request_cpu(monkeypatch):
    started = []
    real_init = bench.Gunicorn.__init__

    def remember(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(bench.Gunicorn, "__init__", remember)
    out = io.StringIO()
    summary = bench.benchmark("04_session_options", workers=1, connections=2, rounds=1, seconds=1, sessions=5,
                              out=out)
    text = out.getvalue()
    assert set(summary) == {"no session", "sessions"}, summary
    for name, row in summary.items():
        assert row["errors"] == 0, f"{name}: {row}\n{text}"
        assert row["rps"] > 0 and row["rounds"][0]["requests"] > 0, (name, row)
        assert 0 < row["cpu_us"] < 1_000_000, f"{name}: CPU per request not read from /proc: {row}"
    assert summary["no session"]["x_no_session"] == 1.0
    assert "load average" in text and "CPU µs/req" in text, text
    assert len(started) == 2 and all(server.proc.poll() is not None for server in started), \
        "both gunicorn servers are stopped at the end"
    assert ("wrk not found" in text) == (shutil.which("wrk") is None)


def test_a_store_in_each_workers_memory_is_named_as_such():
    # Two workers with their own memory stores: a session made by one is unknown to the other, so
    # about half the requests start new sessions, and the figure is not the middleware's alone.
    assert bench.in_process_store("04_session_options", None) and bench.in_process_store("08_x", "memory:")
    assert not bench.in_process_store("08_store_backends", None), "lesson 08's default is a SQLite file"
    assert not bench.in_process_store("04_session_options", "redis://127.0.0.1:6379/0")


def test_the_benchmark_only_loads_this_machine():
    with pytest.raises(SystemExit, match="127.0.0.1"):
        bench.benchmark("04_session_options", compare="http://example.org/visits", rounds=1, seconds=1)


def test_the_benchmark_is_bounded():
    with pytest.raises(SystemExit, match="bounded"):
        bench.benchmark("04_session_options", rounds=100)


def test_the_no_session_app_serves_lesson_08_without_beaker(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_BENCH_TARGET", "solutions")
    monkeypatch.setenv("COURSE_BENCH_SLUG", "08_store_backends")
    options = {"store_url": f"sqlite:///{tmp_path}/s.db", "secret": "bench-test-secret-0123456789abcdef"}
    monkeypatch.setenv("COURSE_BENCH_OPTIONS", json.dumps(options))
    monkeypatch.setenv("COURSE_BENCH_NO_SESSION", "1")
    app = bench.gunicorn_app()
    answer = {}
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/visits", "SERVER_NAME": "x", "SERVER_PORT": "80",
                         "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
                         "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": ""},
                        lambda status, headers, exc=None: answer.update(status=status, headers=headers)))
    assert answer["status"].startswith("200") and b"visited 1 times" in body
    assert not any(name == "Set-Cookie" for name, _ in answer["headers"]), "no session, no cookie"
    assert not os.path.exists(tmp_path / "s.db"), "and nothing stored"


def test_the_request_profile_splits_exactly_the_measured_cost_of_the_session():
    from course.tools import request_profile
    out = io.StringIO()
    result = request_profile.measure("04", requests=150, rounds=1, out=out)
    cpu = result["cpu_us"]
    assert set(cpu) == {"no session", "sessions"}, "no Redis: neither the stub nor the round trips"
    split = result["session_us_by_group"]
    assert "kit middleware" in split and "Beaker" not in split, "lesson 04 is the kit's middleware, not Beaker"
    assert sum(split.values()) == pytest.approx(cpu["sessions"] - cpu["no session"])
    assert "04_session_options on its default store" in out.getvalue()


def test_the_request_profile_on_redis_measures_the_stub_and_the_round_trips():
    from course.tools import request_profile, services
    url = services.require("redis")
    result = request_profile.measure("08", store=url, requests=150, rounds=1, out=io.StringIO())
    assert set(result["cpu_us"]) == {"no session", "sessions", "store stubbed", "round trips alone"}
    assert {"Beaker", "kit backend", "kit middleware"} <= set(result["session_us_by_group"])
    assert "store driver and sockets" not in result["session_us_by_group"], "the stubbed request has no socket"


def test_a_gunicorn_interrupted_while_it_starts_is_stopped_not_left_running(monkeypatch):
    # Ctrl-C during a check can come while a test's gunicorn starts: the fixture never holds it then,
    # and a gunicorn left behind (its own session, no terminal's Ctrl-C) restarts its workers for ever.
    from course import ROOT

    spawned = []

    def interrupted(self, workers, seconds=30.0):
        spawned.append(self.proc)
        raise KeyboardInterrupt

    monkeypatch.setattr(bench.Gunicorn, "_wait", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            bench.Gunicorn("01_raw_cookies", str(ROOT / "solutions"), {}, workers=1, no_session=False)
        assert spawned and spawned[0].poll() is not None, "a gunicorn interrupted while it started was left running"
    finally:
        for proc in spawned:
            if proc.poll() is None:                    # this test's failure must not leave it behind either
                os.killpg(proc.pid, 9)
                proc.wait(10)
