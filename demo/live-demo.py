#!/usr/bin/env python3
"""Picket live, on one machine: `make run`.

Builds a small node out of network namespaces (node-a: a bridge, and one namespace per pod of the
bundled demo cluster scheduled on node-a, each answering on its container ports), starts the
test API server over HTTPS on 127.0.0.1 with the demo cluster in it, and starts `picket daemon`
for node-a (its rules go into node-a's namespace, its API connections stay on loopback). It
prints the reachability matrix of node-a's pods, applies a policy change through the API,
waits until the daemon enforces it, and prints the matrix again. Everything it created is
removed on exit (namespaces by name, processes by PID), also on Ctrl-C or failure.

    python3 demo/live-demo.py PICKET_BINARY
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "Tests", "APIServer", "kube-test-apiserver.py")
DEMO = os.path.join(ROOT, "Fixtures", "demo", "input")
NODE = "node-a"
PREFIX = "pkt-demo-%d-" % os.getpid()
BRIDGE_ADDRESS = "10.244.1.1"
POD_CIDR = "10.244.1.0/24"

# What the demo changes through the API: web, so far open to every pod, admits only the backend
# namespace on port 80.
CHANGE = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "web-from-backend", "namespace": "frontend"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"tier": "backend"}}}],
                     "ports": [{"protocol": "TCP", "port": 80}]}],
    },
}

SERVE = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in sys.argv[2:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(64)
    sel.register(s, selectors.EVENT_READ)
name = sys.argv[1].encode() + b"\n"
while True:
    for key, _ in sel.select(timeout=1):
        try:
            conn, _ = key.fileobj.accept()
            conn.sendall(name)
            conn.close()
        except OSError:
            pass
"""

PROBE = r"""
import json, socket, sys
results = []
for target in json.loads(sys.argv[1]):
    try:
        with socket.create_connection((target[0], target[1]), timeout=0.4) as s:
            results.append(bool(s.recv(64)))
    except OSError:
        results.append(False)
print(json.dumps(results))
"""


class Demo:
    def __init__(self, picket):
        self.picket = picket
        self.namespaces = []
        self.processes = []
        self.work = tempfile.mkdtemp(prefix="picket-demo-")

    # set-up

    def ip(self, *args, netns=None):
        command = (["ip", "netns", "exec", netns] if netns else []) + ["ip", *args]
        subprocess.run(command, check=True)

    def add_namespace(self, name):
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.namespaces.append(name)
        self.ip("link", "set", "lo", "up", netns=name)

    def start(self, argv, log, netns=None):
        out = open(os.path.join(self.work, log), "w")
        command = (["ip", "netns", "exec", netns] if netns else []) + argv
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def demo_objects(self):
        objects = []
        for name in sorted(os.listdir(DEMO)):
            with open(os.path.join(DEMO, name)) as source:
                for document in yaml.safe_load_all(source):
                    if not isinstance(document, dict):
                        continue
                    items = document.get("items") if str(document.get("kind", "")).endswith("List") else [document]
                    for item in items or []:
                        if item.get("kind") in ("Namespace", "Pod", "NetworkPolicy"):
                            objects.append(item)
        return objects

    def build_node(self, pods):
        node = PREFIX + NODE
        self.add_namespace(node)
        self.ip("link", "add", "kube-bridge", "type", "bridge", netns=node)
        self.ip("addr", "add", BRIDGE_ADDRESS + "/24", "dev", "kube-bridge", netns=node)
        self.ip("link", "set", "kube-bridge", "up", netns=node)
        subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        subprocess.run(["modprobe", "br_netfilter"], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"], check=True)
        for i, pod in enumerate(pods):
            ns = PREFIX + "p%d" % i
            self.add_namespace(ns)
            self.ip("link", "add", "vp%d" % i, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=node)
            self.ip("link", "set", "vp%d" % i, "master", "kube-bridge", "up", netns=node)
            self.ip("addr", "add", pod["ip"] + "/24", "dev", "eth0", netns=ns)
            self.ip("link", "set", "eth0", "up", netns=ns)
            self.ip("route", "add", "default", "via", BRIDGE_ADDRESS, netns=ns)
            pod["netns"] = ns
            self.start([sys.executable, "-c", SERVE, pod["name"]] + [str(p) for p in pod["ports"]], "pod-%d.log" % i, netns=ns)
        return node

    def start_server(self, objects):
        certs = os.path.join(self.work, "certs")
        subprocess.run([sys.executable, SERVER, "make-certs", certs], check=True)
        objects_file = os.path.join(self.work, "objects.json")
        with open(objects_file, "w") as out:
            json.dump({"kind": "List", "apiVersion": "v1", "items": objects}, out)
        ready = os.path.join(self.work, "ready.json")
        self.start([sys.executable, SERVER, "serve", "--cert", certs + "/server.pem", "--key", certs + "/server-key.pem",
                    "--client-ca", certs + "/ca.pem", "--ready-file", ready, "--token", "demo-token=demo", "--objects",
                    objects_file, "--quiet"], "apiserver.log")
        for _ in range(300):
            if os.path.exists(ready):
                with open(ready) as source:
                    self.urls = json.load(source)
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the test API server did not start: see %s/apiserver.log" % self.work)
        kubeconfig = os.path.join(self.work, "kubeconfig")
        with open(kubeconfig, "w") as out:
            out.write("apiVersion: v1\nkind: Config\n"
                      "clusters: [{name: demo, cluster: {server: \"%s\", certificate-authority: \"%s/ca.pem\"}}]\n"
                      "users: [{name: demo, user: {token: demo-token}}]\n"
                      "contexts: [{name: demo, context: {cluster: demo, user: demo}}]\ncurrent-context: demo\n"
                      % (self.urls["api"], certs))
        return kubeconfig

    def control(self, path, body):
        request = urllib.request.Request(self.urls["control"] + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    # the show

    def health(self, port):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return None, ""

    def matrix(self, pods, title):
        print("\n%s\n" % title)
        targets = [(pod["ip"], port, pod) for pod in pods for port in pod["ports"]]
        width = max(len(p["label"]) for p in pods)
        print(" " * (width + 2) + "  ".join("%s:%d" % (t[2]["label"], t[1]) for t in targets))
        for source in pods:
            out = subprocess.run(["ip", "netns", "exec", source["netns"], sys.executable, "-c", PROBE,
                                  json.dumps([[t[0], t[1]] for t in targets])], capture_output=True, text=True, check=True)
            results = json.loads(out.stdout)
            cells = []
            for (ip, port, target), ok in zip(targets, results):
                cell = "-" if target is source else ("yes" if ok else "no")
                cells.append(cell.center(len("%s:%d" % (target["label"], port))))
            print(source["label"].ljust(width + 2) + "  ".join(cells))

    def run(self):
        objects = self.demo_objects()
        pods = []
        for obj in objects:
            if obj["kind"] != "Pod" or obj.get("spec", {}).get("nodeName") != NODE or obj.get("spec", {}).get("hostNetwork"):
                continue
            ip = obj.get("status", {}).get("podIP")
            ports = sorted({p["containerPort"] for c in obj["spec"].get("containers", []) for p in c.get("ports", [])
                            if p.get("protocol", "TCP") == "TCP"})
            if ip and ports and obj.get("status", {}).get("phase", "Running") == "Running":
                meta = obj["metadata"]
                pods.append({"name": "%s/%s" % (meta["namespace"], meta["name"]), "label": meta["labels"].get("app") or meta["labels"].get("k8s-app") or meta["name"],
                             "ip": ip, "ports": ports})
        print("node-a's pods:", ", ".join("%s (%s %s)" % (p["name"], p["ip"], ",".join(map(str, p["ports"]))) for p in pods))
        node = self.build_node(pods)
        objects.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
                        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}})
        kubeconfig = self.start_server(objects)
        port = free_port()
        daemon = self.start([self.picket, "daemon", "--kubeconfig", kubeconfig, "--hostname-override", NODE,
                             "--netns", "/run/netns/" + node, "--health-port", str(port), "--metrics-port", str(port),
                             "--status-address", "127.0.0.1", "--iptables-sync-period", "5s"],
                            "daemon.log")
        for _ in range(600):
            code, body = self.health(port)
            if code == 200:
                break
            if daemon.poll() is not None:
                raise RuntimeError("picket daemon exited: see %s/daemon.log" % self.work)
            time.sleep(0.05)
        else:
            raise RuntimeError("picket daemon did not become healthy: %s" % body)
        print("\npicket daemon for node-a is enforcing: %s" % body.strip())
        self.matrix(pods, "Reachability on node-a (TCP, source row -> destination column), the demo's policies:")
        version = int(self.control("/objects", {"items": [CHANGE]})["resourceVersion"])
        written = time.time()
        print("\nApplied through the API: NetworkPolicy frontend/web-from-backend (web admits only the backend namespace, on 80)")
        for _ in range(600):
            code, body = self.health(port)
            if code == 200 and int((body.split("networkPolicies=")[1].split()[0]) or 0) >= version:
                break
            time.sleep(0.01)
        print("enforced %.0f ms after the API write" % ((time.time() - written) * 1000))
        self.matrix(pods, "Reachability on node-a after the change:")
        with open(os.path.join(self.work, "daemon.log")) as log:
            lines = log.read().splitlines()
        print("\nThe daemon's log (last lines):\n  " + "\n  ".join(line[:200] for line in lines[-6:]))

    def cleanup(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", name], check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    if os.geteuid() != 0:
        sys.exit("make run needs root (network namespaces, iptables); `make dry-run` prints the rules without it")
    demo = Demo(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        demo.run()
    except KeyboardInterrupt:
        pass
    finally:
        demo.cleanup()


if __name__ == "__main__":
    main()
