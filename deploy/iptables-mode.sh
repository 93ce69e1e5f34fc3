#!/bin/sh
# Chooses the iptables backend the host already uses, then runs the given command (picket).
#
# A node's firewall is either iptables-legacy or iptables-nft; rules written with the other one
# form a second firewall that the host's tools never show. As kube-proxy's images do, count the
# rules each backend holds (kube-proxy's and the kubelet's chains are there on every node) and
# take the one with more; with none anywhere, nft (the default of current distributions).
#   iptables-mode [--print] COMMAND [ARG...]
# --print only prints the choice (legacy or nft) and exits: for tests.
set -eu

count() {
    # Rules, and chains of kube-proxy, the kubelet and Picket, in both families of one backend;
    # built-in chains do not count (a loaded legacy module shows them empty). 0 without the tool.
    total=0
    for tool in "iptables-$1-save" "ip6tables-$1-save"; do
        if command -v "$tool" >/dev/null 2>&1; then
            n=$("$tool" 2>/dev/null | grep -c -e '^-A' -e '^:KUBE-' -e '^:PICKET-' || true)
            total=$((total + ${n:-0}))
        fi
    done
    echo "$total"
}

legacy=$(count legacy)
nft=$(count nft)
if [ "$legacy" -gt "$nft" ]; then mode=legacy; else mode=nft; fi

if [ "${1:-}" = "--print" ]; then
    echo "$mode"
    exit 0
fi

for tool in iptables ip6tables; do
    update-alternatives --set "$tool" "/usr/sbin/$tool-$mode" >/dev/null
done
echo "iptables-mode: using iptables-$mode (rules found: legacy $legacy, nft $nft)" >&2
exec "$@"
