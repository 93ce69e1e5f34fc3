// The two small Python programs the kernel tests run inside network namespaces (python3 is the
// one scripting tool every test machine has). Both are bounded in time: the server exits after
// its lifetime or as soon as the test process that started it is gone, and every probe has a
// timeout.

/// Server: `python3 -c serverScript NAME READYFILE PORTS BINDS LIFETIME`.
///
/// Listens on TCP and UDP on every port of the comma-separated PORTS, on every address of the
/// comma-separated BINDS (`::` means all IPv4 and IPv6 addresses), and answers each connection or
/// datagram with NAME and a newline. Creates READYFILE once every socket is listening.
let serverScript = #"""
import os, selectors, signal, socket, sys, time
# A child of the test process inherits its blocked signals (Foundation's threads block SIGTERM):
# unblock them so that SIGTERM ends the server.
signal.pthread_sigmask(signal.SIG_UNBLOCK, set(signal.valid_signals()))
name = sys.argv[1].encode() + b"\n"
ready, ports, binds, lifetime = sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(","), float(sys.argv[5])
parent = os.getppid()
sel = selectors.DefaultSelector()
def listen(kind, address, port):
    if address == "::":
        try:
            s = socket.socket(socket.AF_INET6, kind)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        except OSError:
            s, address = socket.socket(socket.AF_INET, kind), "0.0.0.0"
    else:
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, int(port)))
    if kind == socket.SOCK_STREAM:
        s.listen(256)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, kind)
for port in ports:
    for address in binds:
        listen(socket.SOCK_STREAM, address, port)
        listen(socket.SOCK_DGRAM, address, port)
open(ready, "w").close()
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline and os.getppid() == parent:
    for key, _ in sel.select(timeout=0.5):
        try:
            if key.data == socket.SOCK_STREAM:
                conn, _ = key.fileobj.accept()
                conn.settimeout(1.0)
                conn.sendall(name)
                conn.close()
            else:
                _, peer = key.fileobj.recvfrom(2048)
                key.fileobj.sendto(name, peer)
        except OSError:
            pass
"""#

/// Prober: `python3 -c probeScript` with a JSON request on stdin:
/// `{"timeout": seconds, "probes": [{"dst": address, "proto": "tcp"|"udp", "port": n, "src": address|null}]}`.
///
/// Runs every probe concurrently (a connection for TCP, a datagram for UDP, each from a fresh
/// socket, so a fresh source port) and prints a JSON list in request order:
/// `{"ok": true, "answer": "<server name>", "ms": 1.2}` or
/// `{"ok": false, "detail": "timeout"|"refused"|..., "ms": 1000.3}`.
let probeScript = #"""
import concurrent.futures, json, socket, sys, time
request = json.load(sys.stdin)
timeout = float(request["timeout"])
def probe(p):
    started = time.monotonic()
    result = attempt(p)
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result
def attempt(p):
    family = socket.AF_INET6 if ":" in p["dst"] else socket.AF_INET
    kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    try:
        s.settimeout(timeout)
        if p.get("src"):
            s.bind((p["src"], 0))
        s.connect((p["dst"], p["port"]))
        if kind == socket.SOCK_DGRAM:
            s.send(b"probe\n")
        data = s.recv(256)
        if not data:
            return {"ok": False, "detail": "closed without an answer"}
        return {"ok": True, "answer": data.decode(errors="replace").strip()}
    except socket.timeout:
        return {"ok": False, "detail": "timeout"}
    except ConnectionRefusedError:
        return {"ok": False, "detail": "refused"}
    except OSError as e:
        return {"ok": False, "detail": "%s: %s" % (type(e).__name__, e.strerror or e)}
    finally:
        s.close()
probes = request["probes"]
with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(96, len(probes)))) as pool:
    results = list(pool.map(probe, probes))
json.dump(results, sys.stdout)
"""#
