#!/usr/bin/env bash
# Data-path benchmark: the performance test scheme of the seed (kube-router on TKE), on one node
# built out of network namespaces.
#
#   8,000 nginx pods behind 1,000 services (+ the test group: a server and a client pod on
#   bench-node), a policy selecting every pod with three ipBlock ingress rules (TCP 9090, 8080,
#   80), and ApacheBench (new connection per request) from the client pod to the server pod:
#   requests/s with Picket's rules (`picket apply`) against requests/s without (`picket cleanup`),
#   and the same for a kube-router-like per-pod list of 8,002 entries (tested pods last).
#
#   Variants groups-G: the seed's policy in EVERY namespace, G namespaces with pods on the measured
#   node (G ingress groups: G-1 namespaces with one local pod each, plus the test group's), so a
#   new connection's dispatch meets as many groups as a crowded node holds.
#
# Usage: bash Benchmarks/dataplane/run.sh   (as root; ~25 minutes plus the release build)
# Knobs (environment): ROUNDS (7), DURATION seconds per ab run (2), CONCURRENCY ("1 16 k16";
#   kN = ab -k, keep-alive with N connections: established packets only),
#   VARIANTS ("ipblock podpeer groups-1 groups-100 groups-1000 groups-4000"),
#   MARK_MASK (0xffff3ff0: 13 bits per direction, 8,190 groups, clear of kube-proxy's bits),
#   PODS_PER_SERVICE (8; the seed's curve used 2, 6 and 8),
#   CAL_ROUNDS (3; 0 skips the conntrack calibration), PIN_CPU (last CPU; "none" to not pin),
#   PAIRS (15; 0 skips the paired runs below), PAIR_DURATION seconds per paired ab run (1),
#   PICKET (a picket binary to use instead of building one), PLACE_CANDIDATES (64: names tried for
#   the test group's policy in groups-G, to put the measured connection deepest in the tree).
#
# Method. Conditions alternate within each round (order rotated every round) and each figure is
# the median over the rounds: single runs on this machine vary by up to 12%. Before every ab run
# conntrack is flushed in the node namespace. ab and nginx are pinned to one CPU (the whole
# request path then runs on that CPU, which makes a run reproducible to a few percent instead of
# bimodal). The node keeps a kube-proxy-like `-m conntrack --ctstate INVALID -j DROP` in FORWARD
# in every condition, as a real node running kube-proxy does; the conntrack calibration shows
# what conntrack itself costs compared with no netfilter rule at all.
#
# Paired runs. Rounds of apply/cleanup are slow to alternate (seconds per switch with thousands of
# pods), so slow drift of the machine lands between the conditions. After its rounds each
# variant also runs PAIRS pairs in which only what a packet can meet is switched: Picket's mangle
# table, where all its chains and hooks are (the whole nf_tables table, base chains included;
# only Picket uses mangle in this namespace), is taken out and put back (tens of milliseconds),
# while its sets stay. Off, no packet reaches anything of Picket's; on, the node holds exactly
# what `picket apply` wrote (checked: iptables-save equal before and after a cycle). The order
# within a pair alternates; the figure is the median of the per-pair losses. Needs nft (the
# nftables package) to drop the mangle table.
#
# Profile. This machine's run-to-run noise (10-20% between 1-s runs of one condition) is larger
# than the 2% to be shown, so each variant is also profiled: `perf record` on the pinned CPU during
# an ab run, hooked and unhooked (twice each, alternating), and the share of the CPU's samples in
# netfilter's rule evaluation (nf_hook_slow, nft_*, the x_tables matches and targets Picket uses,
# ip_set_*): the difference between hooked and unhooked is what Picket's rules take of the CPU
# that serves the requests, which is the throughput they cost, measured in the same second as the
# work itself and so free of the machine's speed changes. PROFILE_RUNS (4; even, 2 to 8) runs
# per condition, in the order unhooked, hooked, hooked, unhooked repeated; the figure is the
# difference of the medians. PROFILE=0 skips it (needs perf);
# PERF_KEEP=DIR keeps each profile there (VARIANT-cC-CONDITION-N.data) for `perf report -i`.
#
# Everything lives in network namespaces named pkd-<pid>-*, a temp dir and one nginx process;
# all of it is removed on exit (EXIT/INT/TERM).

set -euo pipefail

ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-2}
CONCURRENCY=${CONCURRENCY:-"1 16 k16"}
VARIANTS=${VARIANTS:-"ipblock podpeer groups-1 groups-100 groups-1000 groups-4000"}
MARK_MASK=${MARK_MASK:-0xffff3ff0}
PODS_PER_SERVICE=${PODS_PER_SERVICE:-8}
CAL_ROUNDS=${CAL_ROUNDS:-3}
PAIRS=${PAIRS:-15}
PAIR_DURATION=${PAIR_DURATION:-1}
PLACE_CANDIDATES=${PLACE_CANDIDATES:-64}
PROFILE=${PROFILE:-1}
PROFILE_RUNS=${PROFILE_RUNS:-4}
PERF_KEEP=${PERF_KEEP:-}
PIN_CPU=${PIN_CPU:-$(( $(nproc) - 1 ))}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

say() { printf '%s\n' "$*"; }
die() { printf 'dataplane bench: error: %s\n' "$*" >&2; exit 1; }
int_in() { [[ $1 =~ ^[0-9]+$ ]] && (( $1 >= $2 && $1 <= $3 )); }

# ---- bounds and preconditions ---------------------------------------------------------------
int_in "$ROUNDS" 1 15 || die "ROUNDS must be 1..15"
int_in "$DURATION" 1 10 || die "DURATION must be 1..10 (whole seconds: ab -t)"
int_in "$CAL_ROUNDS" 0 10 || die "CAL_ROUNDS must be 0..10"
int_in "$PAIRS" 0 60 || die "PAIRS must be 0..60"
int_in "$PLACE_CANDIDATES" 1 1000 || die "PLACE_CANDIDATES must be 1..1000"
int_in "$PAIR_DURATION" 1 10 || die "PAIR_DURATION must be 1..10 (whole seconds: ab -t)"
[[ $PROFILE == 0 || $PROFILE == 1 ]] || die "PROFILE must be 0 or 1"
int_in "$PROFILE_RUNS" 2 8 && (( PROFILE_RUNS % 2 == 0 )) || die "PROFILE_RUNS must be even, 2 to 8"
int_in "$PODS_PER_SERVICE" 1 20 || die "PODS_PER_SERVICE must be 1..20"
set -f; conc_list=($CONCURRENCY); variant_list=($VARIANTS); set +f
(( ${#conc_list[@]} >= 1 && ${#conc_list[@]} <= 4 )) || die "CONCURRENCY: 1 to 4 values"
for c in "${conc_list[@]}"; do int_in "${c#k}" 1 256 || die "concurrency $c not in 1..256 (kN: keep-alive)"; done
group_counts=()
for v in "${variant_list[@]}"; do
    if [[ $v =~ ^groups-([0-9]+)$ ]]; then
        g=${BASH_REMATCH[1]}
        int_in "$g" 1 8000 || die "$v: 1 to 8,000 groups"
        group_counts+=("$g")
    else
        [[ $v == ipblock || $v == podpeer ]] || die "unknown variant $v (ipblock, podpeer, groups-N)"
    fi
done
[[ $MARK_MASK =~ ^0x[0-9a-fA-F]{1,8}$ ]] || die "MARK_MASK must be hexadecimal (0x...)"
if [[ $PIN_CPU != none ]]; then int_in "$PIN_CPU" 0 $(( $(nproc) - 1 )) || die "PIN_CPU must be a CPU number or none"; fi

if [[ $(id -u) != 0 ]]; then
    say "dataplane bench: SKIPPED: needs root (network namespaces, iptables, ipset)."
    exit 0
fi

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v ab >/dev/null || missing+=(apache2-utils)
if (( PAIRS > 0 )) && iptables -V | grep -q nf_tables; then command -v nft >/dev/null || missing+=(nftables); fi
if (( PAIRS > 0 && PROFILE == 1 )); then command -v perf >/dev/null || missing+=(linux-perf); fi
if (( ${#missing[@]} )); then
    say "installing ${missing[*]} (apt-get install -y ${missing[*]}): the benchmark needs nginx and ab"
    # Keep the package from starting the system nginx (it would listen on :80 of the host).
    policy_rc=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy_rc=/usr/sbin/policy-rc.d
        trap 'rm -f "$policy_rc"' EXIT
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod +x "$policy_rc"
    fi
    rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } || rc=$?
    if [[ -n $policy_rc ]]; then rm -f "$policy_rc"; trap - EXIT; fi
    (( rc == 0 )) || die "apt-get install ${missing[*]} failed"
fi
for tool in ip iptables iptables-save iptables-restore ipset conntrack python3 taskset timeout nginx ab; do
    command -v "$tool" >/dev/null || die "$tool not found (run 'make deps' as root)"
done

if [[ -z ${PICKET:-} ]]; then
    say "building picket (release): swift build -c release --product picket"
    build_log=$(mktemp)
    if ! (cd "$REPO" && swift build -c release --product picket) >"$build_log" 2>&1; then
        tail -30 "$build_log"; rm -f "$build_log"; die "swift build failed"
    fi
    tail -1 "$build_log"; rm -f "$build_log"
    PICKET="$(cd "$REPO" && swift build -c release --show-bin-path)/picket"
fi
[[ -x $PICKET ]] || die "picket binary $PICKET not found"
# The rule counts come from picket-bench's walker over the same compiler: build it every time
# (incremental, seconds when nothing changed) so the counts never come from an older layout.
if [[ -z ${COST:-} ]]; then
    say "building picket-bench (release), for the rule counts: swift build -c release --product picket-bench"
    (cd "$REPO" && swift build -c release --product picket-bench) >/dev/null 2>&1 || die "swift build of picket-bench failed"
    COST="$(cd "$REPO" && swift build -c release --show-bin-path)/picket-bench"
fi
[[ -x $COST ]] || die "picket-bench binary $COST not found"

# ---- everything created from here on is removed by cleanup ---------------------------------
PREFIX="pkd-$$-"
NODE_NS="${PREFIX}node"; SRV_NS="${PREFIX}srv"; CLI_NS="${PREFIX}cli"
CREATED_NS=()
NGINX_PID=""
TMP=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill "$NGINX_PID" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    [[ -n $TMP && -d $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "/tmp/${PREFIX}XXXXXX")
GEN="$TMP/manifests"
START=$(date +%s)
pin=(); [[ $PIN_CPU != none ]] && pin=(taskset -c "$PIN_CPU")
on_node() { ip netns exec "$NODE_NS" "$@"; }
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

say "# Picket data-path benchmark"
say ""
say "machine: $(nproc) CPUs, kernel $(uname -r), $(iptables --version), $(nginx -v 2>&1 | sed 's/.*: //'), $(ab -V 2>/dev/null | sed -n 's/^This is ApacheBench, Version \([^ ]*\).*/ab \1/p'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "picket: $PICKET"
if awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    say "WARNING: the machine is busy (load average $(cut -d' ' -f1 /proc/loadavg) on $(nproc) CPUs): expect noisy figures; read the paired and best-round columns."
fi

# ---- 1. manifests ---------------------------------------------------------------------------
python3 "$HERE/generate.py" --out "$GEN" --services 1000 --pods-per-service "$PODS_PER_SERVICE" \
    --groups "$(IFS=,; echo "${group_counts[*]}")"
# shellcheck disable=SC1091
source "$GEN/topology.env"
# The worst place: a group's number, and so its place in the dispatch tree, follows from a hash
# of its policies' names, so in each groups-G variant the test group's policy is renamed to the
# name (of PLACE_CANDIDATES tried) that puts the measured connection deepest in the tree.
declare -A PLACED=()
for g in "${group_counts[@]}"; do
    (( g > 1 )) || continue
    placed=$("$COST" place --from "$GEN/groups-$g" --node "$NODE_NAME" --mark-mask "$MARK_MASK" --candidates "$PLACE_CANDIDATES" \
        --source bench/bench-client --destination bench/bench-server --policy bench/allow-bench-client) || die "picket-bench place failed for groups-$g"
    name=$(tail -n 1 <<<"$placed")
    [[ $name =~ ^allow-bench-client(-[0-9]+)?$ ]] || die "picket-bench place printed no policy name for groups-$g: $placed"
    sed -i "s/{name: allow-bench-client, namespace: bench}/{name: $name, namespace: bench}/" "$GEN/groups-$g/policies.yaml"
    grep -q "{name: $name, namespace: bench}" "$GEN/groups-$g/policies.yaml" || die "groups-$g: the test group's policy was not renamed"
    PLACED[$g]="$(head -n 1 <<<"$placed") -> bench/$name"
done
say "cluster: $(commas "$INTERFERENCE_PODS") pods in $(commas "$SERVICES") services of $PODS_PER_SERVICE (labels app=svc-N, role=nginx) + the test group (app=bench: bench-server $SERVER_IP, bench-client $CLIENT_IP) = $(commas "$TOTAL_PODS") pods in namespace default on $NODES nodes, 110 per node; $NODE_NAME holds $BENCH_NODE_PODS pods"
say "policies: default/npd, the seed's: podSelector {}, Ingress from ipBlock 14.215.0.0/16 on TCP 9090, 8080, 80 (it would block the client, so each variant adds a policy allowing it):"
say "  ipblock: + default/allow-bench-client: pods app=bench accept TCP 80 from podSelector bench-role=client (a 1-member pod peer set)"
say "  podpeer: + default/allow-from-nginx-pods: every pod accepts TCP 80 from podSelector role=nginx, carried by all $(commas "$TOTAL_PODS") pods (a pod peer set of $(commas "$TOTAL_PODS") members)"
say "per-pod list (kube-router-like): FORWARD -> KR-PODS, one '-d POD/32 -j KR-POD-n' per pod ($(commas "$KR_LIST_LEN") entries; bench-client second to last, bench-server last); each KR-POD-n: conntrack RELATED,ESTABLISHED accept, the 3 ipBlock rules, the variant's client rule (podpeer: -m set over the $(commas "$TOTAL_PODS") pods), DROP"

# ---- 2. topology ----------------------------------------------------------------------------
for ns in "$NODE_NS" "$SRV_NS" "$CLI_NS"; do
    CREATED_NS+=("$ns")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$NODE_NS" link add kube-bridge type bridge
ip -n "$NODE_NS" addr add "$GATEWAY_IP/$PREFIX_LEN" dev kube-bridge
ip -n "$NODE_NS" link set kube-bridge up
for pod in srv cli; do
    ns=$SRV_NS; addr=$SERVER_IP
    [[ $pod == cli ]] && { ns=$CLI_NS; addr=$CLIENT_IP; }
    ip -n "$NODE_NS" link add "veth-$pod" type veth peer name eth0 netns "$ns"
    ip -n "$NODE_NS" link set "veth-$pod" master kube-bridge
    ip -n "$NODE_NS" link set "veth-$pod" up
    ip -n "$ns" addr add "$addr/$PREFIX_LEN" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$GATEWAY_IP"
done
if ! on_node test -e /proc/sys/net/bridge/bridge-nf-call-iptables; then
    say "loading br_netfilter (modprobe br_netfilter)"
    modprobe br_netfilter || die "cannot load br_netfilter: bridged pod traffic would bypass iptables"
fi
on_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1
ip netns exec "$CLI_NS" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
# The baseline rule every condition keeps (kube-proxy installs the same); it also loads conntrack.
BASE_RULE=(FORWARD -m conntrack --ctstate INVALID -m comment --comment "kube-proxy-like baseline" -j DROP)
on_node iptables -A "${BASE_RULE[@]}"
# The conntrack table is one for the whole machine (nf_conntrack_max, shared by every namespace):
# tens of thousands of connections/s kept 120 s in TIME_WAIT would fill it within seconds and drop
# SYNs, here and in other namespaces. Short timeouts in this node namespace only, plus flushes.
on_node sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 net.netfilter.nf_conntrack_tcp_timeout_close=1 \
    net.netfilter.nf_conntrack_tcp_timeout_fin_wait=1 net.netfilter.nf_conntrack_tcp_timeout_last_ack=1 \
    net.netfilter.nf_conntrack_tcp_timeout_close_wait=1
say "topology: namespaces $NODE_NS (bridge kube-bridge $GATEWAY_IP/$PREFIX_LEN, br_netfilter on), $SRV_NS ($SERVER_IP), $CLI_NS ($CLIENT_IP); ab and nginx pinned to CPU $PIN_CPU"

# ---- 3. nginx -------------------------------------------------------------------------------
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
master_process off;
daemon off;
worker_processes 1;
user root;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 10000000;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen $SERVER_IP:80 backlog=4096;
        listen $SERVER_IP:8081 backlog=4096;   # a port no policy opens: the deny probe
        location / { return 200 "ok\n"; }
    }
}
EOF
ip netns exec "$SRV_NS" "${pin[@]}" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx/stdout.log" 2>&1 &
NGINX_PID=$!

# connects PORT: the client opens a TCP connection to the server (3 s at most).
connects() { ip netns exec "$CLI_NS" timeout 3 bash -c "exec 3<>/dev/tcp/$SERVER_IP/$1" 2>/dev/null; }
for _ in $(seq 50); do connects 80 && break; kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
if ! connects 80 || ! connects 8081; then
    cat "$TMP/nginx/stdout.log" "$TMP/nginx/error.log" 2>/dev/null || true
    die "nginx in $SRV_NS is not reachable from the client without rules"
fi
say "nginx: pid $NGINX_PID, $SERVER_IP:80 and :8081 reachable from the client without rules"

# ---- 4. measurement -------------------------------------------------------------------------
RESULTS="$TMP/results.tsv"; : >"$RESULTS"
PROFILES="$TMP/profiles.tsv"; : >"$PROFILES"
TIMES="$TMP/times.tsv"; : >"$TIMES"
PICKET_ON=0; LIST_ON=0

count() { grep -Ec "$@" || true; }
elapsed_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# manifests VARIANT: the --from arguments of a variant.
manifests() {
    if [[ $1 == groups-* ]]; then echo "--from $GEN/$1"; else echo "--from $GEN/cluster --from $GEN/$1"; fi
}
# The test group's namespace in a variant.
bench_namespace() { if [[ $1 == groups-* ]]; then echo bench; else echo default; fi; }
picket_apply() {
    local t0; t0=$(date +%s.%N)
    # shellcheck disable=SC2046
    if ! timeout 300 ip netns exec "$NODE_NS" "$PICKET" apply --node "$NODE_NAME" --mark-mask "$MARK_MASK" $(manifests "$1") \
        >"$TMP/apply.log" 2>&1; then
        say "PROBLEM: picket apply failed (variant $1):"; sed 's/^/    /' "$TMP/apply.log"
        exit 1
    fi
    printf 'apply\t%s\n' "$(elapsed_since "$t0")" >>"$TIMES"
}
picket_cleanup() {
    local t0; t0=$(date +%s.%N)
    if ! timeout 120 ip netns exec "$NODE_NS" "$PICKET" cleanup >"$TMP/cleanup.log" 2>&1; then
        say "PROBLEM: picket cleanup failed:"; sed 's/^/    /' "$TMP/cleanup.log"
        exit 1
    fi
    printf 'cleanup\t%s\n' "$(elapsed_since "$t0")" >>"$TIMES"
}
# set_condition none|picket|list VARIANT
set_condition() {
    if [[ $1 != list && $LIST_ON == 1 ]]; then on_node iptables -D FORWARD -j KR-PODS; LIST_ON=0; fi
    if [[ $1 != picket && $PICKET_ON == 1 ]]; then picket_cleanup; PICKET_ON=0; fi
    case $1 in
        picket) if [[ $PICKET_ON == 0 ]]; then picket_apply "$2"; PICKET_ON=1; fi ;;
        list) if [[ $LIST_ON == 0 ]]; then on_node iptables -I FORWARD 1 -j KR-PODS; LIST_ON=1; fi ;;
    esac
}
# measure VARIANT CONDITION ROUND [SECONDS]: one ab run per concurrency, appended to RESULTS; the
# figures are appended to LINE for the progress line.
measure() {
    local c out qps failed duration=${4:-$DURATION}
    LINE+=" | $2"
    for c in "${conc_list[@]}"; do
        on_node conntrack -F >/dev/null 2>&1 || true
        local keepalive=()
        [[ $c == k* ]] && keepalive=(-k)
        out=$(timeout $(( duration + 30 )) ip netns exec "$CLI_NS" "${pin[@]}" \
            ab -q -r -s 5 "${keepalive[@]}" -t "$duration" -n 10000000 -c "${c#k}" "http://$SERVER_IP/" 2>&1) || true
        qps=$(awk '/^Requests per second/ { print $4 }' <<<"$out")
        failed=$(awk '/^Failed requests/ { print $3 }' <<<"$out")
        if [[ -z $qps ]]; then
            say "PROBLEM: ab failed ($1, $2, c=$c):"; tail -5 <<<"$out" | sed 's/^/    /'
            exit 1
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$c" "$3" "$qps" "${failed:-0}" >>"$RESULTS"
        LINE+=" c$c=${qps%.*}"
    done
}
# expect CONDITION: the client reaches :80 and, with rules, not :8081 (proof the rules are on the path).
expect_enforced() {
    on_node conntrack -F >/dev/null 2>&1 || true
    connects 80 || { say "PROBLEM: with $1 the client cannot reach the server on TCP 80, which a policy allows"; exit 1; }
    if connects 8081; then say "PROBLEM: with $1 the client reaches the server on TCP 8081, which no policy allows"; exit 1; fi
}

# The node's filter and mangle tables without counters, for comparing states.
# With nf_tables, iptables-save prints every built-in chain whether or not it exists: the
# registered base chains are listed too, since each one costs every packet of its hook.
tables_now() {
    { on_node iptables-save -t filter; on_node iptables-save -t mangle 2>/dev/null; } | grep -v '^#' | sed -E 's/ \[[0-9]+:[0-9]+\]$//'
    if command -v nft >/dev/null && on_node iptables -V | grep -q nf_tables; then
        on_node nft list chains 2>/dev/null | awk '/^table/ { t = $2 " " $3 } /chain / { c = $2 } /hook/ { print t, c, $0 }' | sort
    fi
}
# hooks_off / hooks_on: take out and put back what a packet can meet of Picket's (see Paired runs).
hooks_off() {
    if on_node iptables -V | grep -q nf_tables; then on_node nft delete table ip mangle; else on_node iptables -t mangle -F; on_node iptables -t mangle -X; fi
}
hooks_on() {
    # Without the built-in chains' declarations: declared, each would be created as a base chain,
    # while rules create only the chains they are in (FORWARD and INPUT), as `picket apply` does.
    grep -Ev '^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ' "$TMP/mangle.save" | on_node iptables-restore --noflush
}
# set_hooked 0|1: Picket's mangle table out or in, only when it changes (a second hooks_on would
# append the hooks again: every packet would walk the tagging chain twice).
HOOKED=1
set_hooked() {
    if [[ $1 == 0 && $HOOKED == 1 ]]; then hooks_off; HOOKED=0; fi
    if [[ $1 == 1 && $HOOKED == 0 ]]; then hooks_on; HOOKED=1; fi
}
# run_pairs VARIANT: the paired runs (Picket applied meanwhile, hooked or not), as variant VARIANT/pairs.
run_pairs() {
    local variant=$1 p before
    set_condition picket "$variant"
    before=$(tables_now)
    # Picket's hooks are the first rules of mangle FORWARD and INPUT, and filter has none.
    for chain in FORWARD INPUT; do
        if [[ $(on_node iptables -t mangle -S "$chain" | sed -n 2p) != "-A $chain -m connlabel ! --label "*" -j PICKET-MARK-$chain" ]]; then
            say "PROBLEM: Picket's hook is not the first rule of mangle $chain ($variant)"; exit 1
        fi
    done
    if on_node iptables-save -t filter | grep -q PICKET; then say "PROBLEM: filter holds rules of Picket's ($variant)"; exit 1; fi
    on_node iptables-save -t mangle >"$TMP/mangle.save"
    HOOKED=1
    set_hooked 0
    on_node conntrack -F >/dev/null 2>&1 || true
    connects 8081 || { say "PROBLEM: with Picket unhooked the client cannot reach :8081 ($variant)"; exit 1; }
    set_hooked 1
    [[ $(tables_now) == "$before" ]] || { say "PROBLEM: a hook cycle did not restore the tables exactly ($variant)"; diff <(echo "$before") <(tables_now) | head -20; exit 1; }
    expect_enforced "Picket re-hooked ($variant)"
    say "pairs: $PAIRS x (unhooked, hooked) x ${PAIR_DURATION}s per concurrency; a hook cycle restores the tables exactly, unhooked :8081 is reachable, hooked it is not"
    for p in $(seq "$PAIRS"); do
        LINE="pair $p/$PAIRS:"
        local order=(none picket); (( p % 2 == 0 )) && order=(picket none)
        for cond in "${order[@]}"; do
            if [[ $cond == none ]]; then set_hooked 0; else set_hooked 1; fi
            measure "$variant/pairs" "$cond" "$p" "$PAIR_DURATION"
        done
        say "$LINE"
    done
    set_hooked 1
    if (( PROFILE == 1 )); then profile "$variant"; fi
    [[ $(tables_now) == "$before" ]] || { say "PROBLEM: after the pairs and profiles the tables differ from what picket apply wrote ($variant)"; diff <(echo "$before") <(tables_now) | head -20; exit 1; }
    set_condition none "$variant"
}
# The kernel functions of netfilter's rule evaluation (not conntrack, which every condition has).
NETFILTER_SYMBOLS='^(nf_hook_slow|nft_|__nft_|nf_tables_|ipt_do_table|xt_|ip_set_|hash_ip|hash_net|mark_mt|mark_tg|connmark_|conntrack_mt|set_match|set_target|comment_mt)'
# netfilter_share FILE: the percentage of the samples in NETFILTER_SYMBOLS.
netfilter_share() {
    perf report -i "$1" --no-children --sort symbol --stdio 2>/dev/null |
        awk -v re="$NETFILTER_SYMBOLS" '$1 ~ /%$/ && $2 == "[k]" && $3 ~ re { sum += $1 } END { printf "%.2f", sum }'
}
# profile VARIANT: hooked and unhooked, PROFILE_RUNS each, per concurrency; appended to PROFILES.
profile() {
    local variant=$1 c cond share perf_cpu=(-C "$PIN_CPU")
    [[ $PIN_CPU == none ]] && perf_cpu=(-a)
    for c in "${conc_list[@]}"; do
        local shares="" keepalive=()
        [[ $c == k* ]] && keepalive=(-k)
        local n=0 conds=()
        for _ in $(seq $(( PROFILE_RUNS / 2 ))); do conds+=(none picket picket none); done
        for cond in "${conds[@]}"; do
            n=$(( n + 1 ))
            if [[ $cond == none ]]; then set_hooked 0; else set_hooked 1; fi
            on_node conntrack -F >/dev/null 2>&1 || true
            perf record -q "${perf_cpu[@]}" -F 4999 -o "$TMP/perf.data" -- \
                timeout 40 ip netns exec "$CLI_NS" "${pin[@]}" ab -q -r -s 5 "${keepalive[@]}" -t 3 -n 10000000 -c "${c#k}" "http://$SERVER_IP/" \
                >"$TMP/perf-ab.log" 2>&1 || true
            grep -q '^Requests per second' "$TMP/perf-ab.log" || { say "PROBLEM: ab under perf failed ($variant, $cond, c=$c):"; tail -5 "$TMP/perf-ab.log"; exit 1; }
            share=$(netfilter_share "$TMP/perf.data")
            printf '%s\t%s\t%s\t%s\n' "$variant" "$c" "$cond" "$share" >>"$PROFILES"
            shares+=" $cond=$share%"
            if [[ -n $PERF_KEEP ]]; then mkdir -p "$PERF_KEEP" && cp "$TMP/perf.data" "$PERF_KEEP/${variant}-c${c}-${cond}-${n}.data"; fi
        done
        set_hooked 1
        say "profile c$c: share of the samples (CPU $PIN_CPU) in netfilter rule evaluation:$shares"
    done
    rm -f "$TMP/perf.data"
}

if (( CAL_ROUNDS > 0 )); then
    say ""
    say "## Calibration: conntrack alone, and the cost of the established path's shape ($CAL_ROUNDS rounds x ${DURATION}s per concurrency)"
    say "   bare: no netfilter rule; ct: the kube-proxy-like conntrack rule; hooks: ct plus the one rule an established packet"
    say "   meets of Picket's (mangle FORWARD, a base chain of its own, whose first rule tests a conntrack label and jumps only"
    say "   when it is missing; here it never is missing: the chain jumped to is never entered), on every packet"
    # Created for the hooks condition only, and removed after it with the whole table: the
    # other conditions run without a mangle table. Picket's hook jumps when the label is
    # missing and its flows carry it; setting it would take a rule of its own, so the shape tests
    # the inverse (jump when present) of a label no flow carries: the same one match, no jump.
    HOOK_RULES=(
        "-t mangle -N CAL-EMPTY"
        "-t mangle -I FORWARD 1 -m connlabel --label 126 -j CAL-EMPTY"
    )
    for r in $(seq "$CAL_ROUNDS"); do
        LINE="round $r/$CAL_ROUNDS:"
        conds=(bare ct hooks); (( r % 3 == 1 )) && conds=(ct hooks bare); (( r % 3 == 2 )) && conds=(hooks bare ct)
        for cond in "${conds[@]}"; do
            if [[ $cond == bare ]]; then on_node iptables -D "${BASE_RULE[@]}"; fi
            if [[ $cond == hooks ]]; then
                # shellcheck disable=SC2086
                for rule in "${HOOK_RULES[@]}"; do on_node iptables $rule; done
            fi
            measure calibration "$cond" "$r"
            if [[ $cond == bare ]]; then on_node iptables -A "${BASE_RULE[@]}"; fi
            if [[ $cond == hooks ]]; then
                # The whole table goes, base chain included, as in the paired runs.
                if on_node iptables -V | grep -q nf_tables; then on_node nft delete table ip mangle; else on_node iptables -t mangle -F; on_node iptables -t mangle -X; fi
            fi
        done
        say "$LINE"
    done
fi

declare -A COUNTS COSTS
for variant in "${variant_list[@]}"; do
    say ""
    say "## Variant $variant ($ROUNDS rounds x 3 conditions x ${DURATION}s per concurrency)"
    # The per-pod list, loaded once and not hooked: unreferenced chains cost no packet anything.
    t0=$(date +%s.%N)
    if [[ $variant == podpeer ]]; then on_node ipset restore -file "$GEN/kr-podpeer.ipset"; fi
    on_node iptables-restore --noflush "$GEN/kr-$variant.iptables"
    kr_load=$(elapsed_since "$t0")
    kr_rules=$(on_node iptables-save -t filter | count '^-A KR-')
    kr_members=0
    if [[ $variant == podpeer ]]; then kr_members=$(on_node ipset save kr-nginx | count '^add '); fi

    set_condition picket "$variant"
    saved=$(on_node iptables-save -t mangle)
    COUNTS[$variant]="Picket: $(count '^-A PICKET-' <<<"$saved") rules in $(count '^:PICKET-' <<<"$saved") chains + $(count '^-A (FORWARD|INPUT) .*-j PICKET-' <<<"$saved") hooks, $(on_node ipset list -n | count '^picket-') sets with $(commas "$(on_node ipset save | count '^add picket-')") members (apply output: $(count '^set created' "$TMP/apply.log") sets created, $(count '^chain written' "$TMP/apply.log") chains written); per-pod list: $(commas "$kr_rules") rules, $(commas "$kr_members") set members (iptables-restore load ${kr_load}s)"
    say "applied: ${COUNTS[$variant]}"
    ns=$(bench_namespace "$variant")
    # shellcheck disable=SC2046
    COSTS[$variant]=$("$COST" cost --node "$NODE_NAME" --mark-mask "$MARK_MASK" $(manifests "$variant") \
        --source "$ns/bench-client" --destination "$ns/bench-server" --port 80 2>&1 | sed 's/^/    /')
    if [[ $variant == groups-* && -n ${PLACED[${variant#groups-}]:-} ]]; then
        COSTS[$variant]+=$'\n'"    test group's place: ${PLACED[${variant#groups-}]}"
    fi
    say "counted from the rules:"; say "${COSTS[$variant]}"
    sed -n 's/^set created: /    set /p' "$TMP/apply.log"
    expect_enforced "Picket ($variant)"
    set_condition list "$variant"; expect_enforced "the per-pod list ($variant)"
    set_condition none "$variant"
    on_node conntrack -F >/dev/null 2>&1 || true
    connects 8081 || { say "PROBLEM: without rules the client cannot reach :8081 ($variant)"; exit 1; }
    say "checks: client -> server TCP 80 allowed and TCP 8081 denied under Picket and under the list; both allowed without rules"

    conditions=(none picket list)
    for r in $(seq "$ROUNDS"); do
        LINE="round $r/$ROUNDS:"
        for i in 0 1 2; do
            cond=${conditions[$(( (i + r - 1) % 3 ))]}
            set_condition "$cond" "$variant"
            measure "$variant" "$cond" "$r"
        done
        say "$LINE"
    done
    set_condition none "$variant"
    if (( PAIRS > 0 )); then run_pairs "$variant"; fi
    # Remove the list: flush and delete every chain (this namespace is ours), keep the baseline.
    on_node iptables -F; on_node iptables -X
    on_node iptables -A "${BASE_RULE[@]}"
    if [[ $variant == podpeer ]]; then on_node ipset destroy kr-nginx; fi
    leftover=$(on_node ipset list -n | count .)
    (( leftover == 0 )) || say "PROBLEM: $leftover ipsets left after picket cleanup: $(on_node ipset list -n | tr '\n' ' ')"
done

# ---- 5. report ------------------------------------------------------------------------------
say ""
say "## Results"
say ""
say "Setup: $(commas "$INTERFERENCE_PODS") pods / $(commas "$SERVICES") services + test group, policy selecting every pod; ab -c C -t ${DURATION} (no -k) client pod -> server pod on $NODE_NAME (bridged, FORWARD once); medians of $ROUNDS alternating rounds; baseline 'without' = no policy rules (conntrack on, as on any kube-proxy node)."
for variant in "${variant_list[@]}"; do say "- $variant: ${COUNTS[$variant]}"; say "${COSTS[$variant]}"; done
python3 "$HERE/report.py" "$RESULTS" "$INTERFERENCE_PODS" "$SERVICES" "$TIMES" "$PROFILES"
say ""
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total $(( $(date +%s) - START ))s (without the build)"
