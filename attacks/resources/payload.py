
# ---- attack: what the sandbox's limits leave: memory is capped per process (RLIMIT_AS 4 GB), not per
# copy, and up to 256 processes; files are capped at 64 MB each, not in total, in a scratch folder on
# the machine's disk. Measured at import in the host, reported through read_count's error message
# (a test's failure message lands in the student's feedback: an exfiltration channel as well).
import os as _os
import sys as _sys
import time as _time

_REPORT = []


def _measure():
    def rss_total(pids):
        total = 0
        for pid in pids:
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total // 1024
    kids = []
    for _ in range(3):                           # 3 x 1.5 GB = 4.5 GB > the "4 GB" memory cap
        pid = _os.fork()
        if pid == 0:
            block = bytearray(1536 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            _time.sleep(8)
            _os._exit(0)
        kids.append(pid)
    _time.sleep(6)
    _REPORT.append(f"RSS of 3 children: {rss_total(kids)} MB")
    for pid in kids:
        _os.waitpid(pid, 0)
    here = _os.getcwd()
    for place in ("/tmp", "/dev/shm", here):
        _REPORT.append(f"writable {place}: {_os.access(place, _os.W_OK)}")
    st = _os.statvfs(here)
    before = st.f_bavail * st.f_frsize
    written = 0
    names = []
    try:
        for i in range(16):                      # 16 x 63 MB = 1 GB on the machine's disk
            name = _os.path.join(here, f"fill-{i}")
            with open(name, "wb") as f:
                f.write(b"\0" * (63 << 20))
            names.append(name)
            written += 63
    except OSError as exc:
        _REPORT.append(f"write stopped: {exc}")
    st = _os.statvfs(here)
    _REPORT.append(f"wrote {written} MB into {here}; disk free went {before >> 20} -> "
                   f"{(st.f_bavail * st.f_frsize) >> 20} MB")
    for name in names:
        _os.unlink(name)
    _REPORT.append(f"uid {_os.getuid()}, pid {_os.getpid()}, nproc limit {__import__('resource').getrlimit(__import__('resource').RLIMIT_NPROC)}")


if _os.path.basename(_sys.argv[0]) == "host.py":
    _measure()
    _real_read_count = read_count          # noqa: F821  (the solution's)

    def read_count(value):                 # noqa: F811
        raise RuntimeError(" | ".join(_REPORT))
