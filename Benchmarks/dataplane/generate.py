#!/usr/bin/env python3
"""Manifests and reference rules for the data-path benchmark (Benchmarks/dataplane/run.sh).

The cluster of the seed's performance test scheme: SERVICES "services" (Deployments, label
app=svc-N) of PODS_PER_SERVICE nginx pods each in namespace `default` (1,000 x 8 = 8,000 pods by
default; the seed's curve went from 1,000 x 2 to 1,000 x 8), scheduled 110 per node, plus the test
group, app=bench: one server pod and one client pod on node `bench-node`.

Writes into OUT:
  cluster/pods.yaml           Namespace default and every pod (a kubectl-style List)
  ipblock/policies.yaml       variant "ipblock": the seed's policy (every pod isolated, three
                              ipBlock rules 14.215.0.0/16 on TCP 9090/8080/80) plus a policy
                              letting the client (bench-role=client) reach the test group on TCP 80
  podpeer/policies.yaml       variant "podpeer": the seed's policy plus a policy admitting, on every
                              pod, TCP 80 from podSelector role=nginx, a label every pod carries
                              (a pod peer set with one member per pod of the cluster)
  kr-ipblock.iptables         the "kube-router-like" reference layout of each variant: chain
  kr-podpeer.iptables         KR-PODS with one `-d POD/32 -j KR-POD-n` per pod (the client second
  kr-podpeer.ipset            to last, the server last), each KR-POD-n chain holding conntrack
                              RELATED,ESTABLISHED accept, the three ipBlock rules, the variant's
                              client rule and a DROP; not hooked (run.sh hooks it from FORWARD)
  groups-G/cluster.yaml       variant "groups-G" (--groups G,...): the seed's policy in EVERY
  groups-G/policies.yaml      namespace, G-1 namespaces with one pod each on bench-node plus the
  kr-groups-G.iptables        test group in namespace `bench` (its own seed policy and the client
                              rule): G ingress groups on the measured node at least, the other
                              pods spread over those namespaces on other nodes; and its per-pod list
  topology.env                addresses and counts, sourced by run.sh

Deterministic: a fixed seed drives the "scheduler" shuffle, so every run generates the same bytes.
"""

import argparse
import os
import random

NAMESPACE = "default"
IPBLOCK = "14.215.0.0/16"
SEED_PORTS = (9090, 8080, 80)


def node_cidr(index):
    """Pod CIDR of node `index`: 10.244.0.0/24, 10.244.1.0/24, ... (carrying into 10.245...)."""
    return "10.%d.%d" % (244 + index // 256, index % 256)


def pod_yaml(name, labels, node, ip, namespace=NAMESPACE):
    label_text = ", ".join("%s: %s" % (k, v) for k, v in labels.items())
    return (
        "- apiVersion: v1\n"
        "  kind: Pod\n"
        "  metadata: {name: %s, namespace: %s, labels: {%s}}\n"
        "  spec:\n"
        "    nodeName: %s\n"
        "    containers: [{name: nginx, image: nginx, ports: [{name: http, containerPort: 80, protocol: TCP}]}]\n"
        "  status: {phase: Running, podIP: %s, podIPs: [{ip: %s}]}\n"
    ) % (name, namespace, label_text, node, ip, ip)


def seed_policy(namespace=NAMESPACE):
    """The seed's policy, verbatim in meaning: every pod of a namespace, ipBlock on 9090/8080/80."""
    rules = "".join(
        "  - from:\n"
        "    - ipBlock: {cidr: %s}\n"
        "    ports:\n"
        "    - {protocol: TCP, port: %d}\n" % (IPBLOCK, port)
        for port in SEED_PORTS
    )
    return (
        "apiVersion: networking.k8s.io/v1\n"
        "kind: NetworkPolicy\n"
        "metadata: {name: npd, namespace: %s}\n"
        "spec:\n"
        "  podSelector: {}\n"
        "  policyTypes: [Ingress]\n"
        "  ingress:\n%s" % (namespace, rules)
    )


def allow_policy(name, selector, peer, namespace=NAMESPACE):
    return (
        "apiVersion: networking.k8s.io/v1\n"
        "kind: NetworkPolicy\n"
        "metadata: {name: %s, namespace: %s}\n"
        "spec:\n"
        "  podSelector: %s\n"
        "  policyTypes: [Ingress]\n"
        "  ingress:\n"
        "  - from:\n"
        "    - podSelector: %s\n"
        "    ports:\n"
        "    - {protocol: TCP, port: 80}\n" % (name, namespace, selector, peer)
    )


def kr_layout(pods, client_rule, tested):
    """iptables-restore text of the per-pod list; `pods` in list order, (name, ip, labels)."""
    lines = ["*filter", ":KR-PODS - [0:0]"]
    lines += [":KR-POD-%d - [0:0]" % i for i in range(len(pods))]
    lines += ["-A KR-PODS -d %s/32 -j KR-POD-%d" % (ip, i) for i, (_, ip, _) in enumerate(pods)]
    rules = 0
    for i, (name, ip, labels) in enumerate(pods):
        chain = "KR-POD-%d" % i
        lines.append("-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" % chain)
        for port in SEED_PORTS:
            lines.append("-A %s -s %s -p tcp -m tcp --dport %d -j ACCEPT" % (chain, IPBLOCK, port))
        rules += 4
        if tested(labels):
            lines.append("-A %s %s -j ACCEPT" % (chain, client_rule))
            rules += 1
        lines.append("-A %s -j DROP" % chain)
        rules += 1
    lines.append("COMMIT")
    return "\n".join(lines) + "\n", len(pods) + rules


def write_groups_variant(out, groups, interference, server, client, bench_node):
    """The seed's policy in every namespace: G-1 namespaces with one pod on bench-node each (the
    rest of their pods elsewhere) and the test group in namespace `bench`."""
    if groups < 1 or groups > 16000:
        raise SystemExit("--groups: %d not in 1..16000" % groups)
    sub = os.path.join(out, "groups-%d" % groups)
    os.makedirs(sub, exist_ok=True)
    others = groups - 1
    placed = []  # (name, ip, labels, node, namespace)
    for name, ip, labels in (server, client):
        placed.append((name, ip, labels, bench_node, "bench"))
    # Local pods: one per namespace, in 10.250.0.0/16 (addresses the bench node never routes).
    for n in range(others):
        placed.append(("local-%d" % n, "10.250.%d.%d" % (n // 250, n % 250 + 2), {"app": "local", "role": "nginx"},
                       bench_node, "ns-%d" % n))
    # The cluster's other pods, on other nodes, spread over the same namespaces (or `default`).
    for i, (name, labels) in enumerate(interference):
        namespace = "ns-%d" % (i % others) if others else NAMESPACE
        placed.append((name, "10.251.%d.%d" % (i // 250, i % 250 + 2), labels, "node-%d" % (1 + i // 110), namespace))
    namespaces = sorted(set(p[4] for p in placed))
    with open(os.path.join(sub, "cluster.yaml"), "w") as f:
        f.write("apiVersion: v1\nkind: List\nitems:\n")
        for namespace in namespaces:
            f.write("- apiVersion: v1\n  kind: Namespace\n"
                    "  metadata: {name: %s, labels: {kubernetes.io/metadata.name: %s}}\n" % (namespace, namespace))
        for name, ip, labels, node, namespace in placed:
            f.write(pod_yaml(name, labels, node, ip, namespace))
    with open(os.path.join(sub, "policies.yaml"), "w") as f:
        f.write("\n---\n".join([seed_policy(namespace) for namespace in namespaces]
                                + [allow_policy("allow-bench-client", "{matchLabels: {app: bench}}",
                                                "{matchLabels: {bench-role: client}}", namespace="bench")]))
        f.write("\n")
    kr_pods = [(n, ip, l) for n, ip, l, _, _ in placed[2:]] + [client, server]
    text, _ = kr_layout(kr_pods, "-s %s/32 -p tcp -m tcp --dport 80" % client[1], lambda labels: labels.get("app") == "bench")
    with open(os.path.join(out, "kr-groups-%d.iptables" % groups), "w") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--pods-per-service", type=int, default=8)
    parser.add_argument("--pods-per-node", type=int, default=110)
    parser.add_argument("--node", default="bench-node")
    parser.add_argument("--seed", type=int, default=0x504B44)
    parser.add_argument("--groups", default="", help="comma-separated group counts for the groups-G variants")
    args = parser.parse_args()
    if args.pods_per_node < 3 or args.pods_per_node > 250:
        parser.error("--pods-per-node must be between 3 and 250")

    rng = random.Random(args.seed)
    interference = []  # (name, labels)
    for s in range(args.services):
        for r in range(args.pods_per_service):
            suffix = "%05x" % rng.getrandbits(20)
            interference.append(("svc-%d-%s-%d" % (s, suffix, r), {"app": "svc-%d" % s, "role": "nginx"}))
    scheduled = list(interference)
    rng.shuffle(scheduled)  # the scheduler: pods of many services share each node

    # bench-node (node 0): the server, the client, then interference pods up to pods-per-node.
    base = node_cidr(0)
    server = ("bench-server", "%s.2" % base, {"app": "bench", "bench-role": "server", "role": "nginx"})
    client = ("bench-client", "%s.3" % base, {"app": "bench", "bench-role": "client", "role": "nginx"})
    placed = []  # (name, ip, labels, node)
    for name, ip, labels in (server, client):
        placed.append((name, ip, labels, args.node))
    node, slot = 0, 2
    for name, labels in scheduled:
        if slot >= args.pods_per_node:
            node, slot = node + 1, 0
        node_name = args.node if node == 0 else "node-%d" % node
        placed.append((name, "%s.%d" % (node_cidr(node), slot + 2), labels, node_name))
        slot += 1
    nodes = node + 1

    out = args.out
    for sub in ("cluster", "ipblock", "podpeer"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    with open(os.path.join(out, "cluster", "pods.yaml"), "w") as f:
        f.write("apiVersion: v1\nkind: List\nitems:\n")
        f.write("- apiVersion: v1\n  kind: Namespace\n"
                "  metadata: {name: %s, labels: {kubernetes.io/metadata.name: %s}}\n" % (NAMESPACE, NAMESPACE))
        for name, ip, labels, node_name in placed:
            f.write(pod_yaml(name, labels, node_name, ip))
    with open(os.path.join(out, "ipblock", "policies.yaml"), "w") as f:
        f.write(seed_policy())
        f.write("---\n")
        f.write(allow_policy("allow-bench-client", "{matchLabels: {app: bench}}",
                             "{matchLabels: {bench-role: client}}"))
    with open(os.path.join(out, "podpeer", "policies.yaml"), "w") as f:
        f.write(seed_policy())
        f.write("---\n")
        f.write(allow_policy("allow-from-nginx-pods", "{}", "{matchLabels: {role: nginx}}"))

    # The reference layout: interference pods first, the client second to last, the server last,
    # so the request (to the server) and the replies (to the client) both walk the whole list.
    kr_pods = [(n, ip, l) for n, ip, l, _ in placed[2:]] + [client, server]
    text, kr_rules_ipblock = kr_layout(kr_pods, "-s %s/32 -p tcp -m tcp --dport 80" % client[1],
                                       lambda labels: labels.get("app") == "bench")
    with open(os.path.join(out, "kr-ipblock.iptables"), "w") as f:
        f.write(text)
    text, kr_rules_podpeer = kr_layout(kr_pods, "-p tcp -m tcp --dport 80 -m set --match-set kr-nginx src",
                                       lambda labels: True)
    with open(os.path.join(out, "kr-podpeer.iptables"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "kr-podpeer.ipset"), "w") as f:
        f.write("create kr-nginx hash:ip family inet hashsize %d maxelem %d\n"
                % (max(1024, len(placed) // 2), max(65536, 2 * len(placed))))
        for _, ip, labels, _ in placed:
            if labels.get("role") == "nginx":
                f.write("add kr-nginx %s\n" % ip)

    for groups in [int(g) for g in args.groups.split(",") if g]:
        write_groups_variant(out, groups, interference, server, client, args.node)

    with open(os.path.join(out, "topology.env"), "w") as f:
        f.write("NODE_NAME=%s\n" % args.node)
        f.write("SERVER_IP=%s\n" % server[1])
        f.write("CLIENT_IP=%s\n" % client[1])
        f.write("GATEWAY_IP=%s.1\n" % base)
        f.write("PREFIX_LEN=24\n")
        f.write("SERVICES=%d\n" % args.services)
        f.write("PODS_PER_SERVICE=%d\n" % args.pods_per_service)
        f.write("INTERFERENCE_PODS=%d\n" % len(interference))
        f.write("TOTAL_PODS=%d\n" % len(placed))
        f.write("NODES=%d\n" % nodes)
        f.write("BENCH_NODE_PODS=%d\n" % sum(1 for p in placed if p[3] == args.node))
        f.write("KR_LIST_LEN=%d\n" % len(kr_pods))
        f.write("KR_RULES_IPBLOCK=%d\n" % kr_rules_ipblock)
        f.write("KR_RULES_PODPEER=%d\n" % kr_rules_podpeer)


if __name__ == "__main__":
    main()
