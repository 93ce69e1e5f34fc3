#!/usr/bin/env python3
"""Report of the data-path benchmark: medians, losses, a markdown table, one summary per variant.

Usage: report.py RESULTS.tsv PODS SERVICES [TIMES.tsv [PROFILES.tsv]]

Input: the TSV run.sh writes, one ab run a line:
    variant  condition  concurrency  round  requests_per_second  failed_requests
(concurrency `kN`: ab -k, keep-alive, N connections: the cost of established packets).
conditions: `none` (no policy rules; the node's kube-proxy-like conntrack rule only), `picket`
(picket apply), `list` (the kube-router-like per-pod list), and for the calibration variant
`bare` (no netfilter rule at all) and `ct` (the conntrack rule only).
"""

import statistics
import sys
from collections import defaultdict

def loss(with_rules, without):
    return 100.0 * (1.0 - with_rules / without) if without else float("nan")


def fmt(qps):
    return "{:,.0f}".format(qps) if qps == qps else "n/a"


def pct(value):
    return "%.1f%%" % value if value == value else "n/a"


def profile(path):
    """The profile table: per variant and concurrency, the share of the pinned CPU's samples in
    netfilter's rule evaluation, hooked and unhooked (medians of the runs), and the difference."""
    shares = defaultdict(lambda: defaultdict(list))  # (variant, concurrency) -> condition -> [share]
    order = []
    for line in open(path):
        variant, conc, condition, share = line.split()
        if (variant, conc) not in shares:
            order.append((variant, conc))
        shares[(variant, conc)][condition].append(float(share))
    if not order:
        return
    print("### Profile: what Picket's rules take of the CPU serving the requests\n")
    print("| variant | c | netfilter rule evaluation, unhooked | hooked | Picket's share of the CPU | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    verdicts = []
    for key in order:
        c = shares[key]
        off, on = statistics.median(c["none"]), statistics.median(c["picket"])
        print("| %s | %s | %.2f%% | %.2f%% | **%.2f%%** | %d + %d |" % (key[0], key[1], off, on, on - off, len(c["none"]), len(c["picket"])))
        verdicts.append("%s c=%s %.2f%% %s" % (key[0], key[1], on - off, "met" if on - off <= 2.0 else "NOT met"))
    print("\n(perf samples of the pinned CPU, which runs ab, nginx and the forwarding between them, during a 3 s ab run;"
          " the CPU is saturated, so the share of it Picket's rules take is the share of throughput they cost.)\n")
    print("Goal, Picket's share within 2%% (profile): %s\n" % "; ".join(verdicts))


def main():
    path, pods, services = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 5:
        profile(sys.argv[5])
    if len(sys.argv) > 4:  # picket apply/cleanup wall times: "apply|cleanup SECONDS" lines
        times = defaultdict(list)
        for line in open(sys.argv[4]):
            kind, secs = line.split()
            times[kind].append(float(secs))
        for kind in ("apply", "cleanup"):
            if times[kind]:
                v = times[kind]
                print("- picket %s (%s-pod manifests, release build): median %.2f s over %d runs (min %.2f, max %.2f)"
                      % (kind, fmt(pods), statistics.median(v), len(v), min(v), max(v)))
        print()
    runs = defaultdict(dict)  # (variant, concurrency) -> condition -> {round: qps}
    failed = defaultdict(int)
    order = []
    for line in open(path):
        variant, condition, conc, rnd, qps, fails = line.split()
        key = (variant, conc)  # "16", or "k16": ab -k (keep-alive) at 16
        if key not in runs:
            order.append(key)
        runs[key].setdefault(condition, {})[int(rnd)] = float(qps)
        failed[(variant, condition)] += int(fails)

    def paired(cond, base, by_cond):
        rounds = sorted(set(by_cond.get(cond, {})) & set(by_cond.get(base, {})))
        return [loss(by_cond[cond][r], by_cond[base][r]) for r in rounds]

    def spread(values):
        m = statistics.median(values)
        return 100.0 * (max(values) - min(values)) / m if m else float("nan")

    calibration = [k for k in order if k[0] == "calibration"]
    if calibration:
        print("### Calibration (not Picket): conntrack alone, and the shape of Picket's established path\n")
        print("| concurrency | no netfilter rule (req/s) | conntrack rule only (req/s) | cost of conntrack "
              "| + mangle FORWARD: one rule, one conntrack-label test (req/s) | its cost | rounds |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for key in calibration:
            c = runs[key]
            bare, ct = statistics.median(c["bare"].values()), statistics.median(c["ct"].values())
            hooks = statistics.median(c["hooks"].values()) if "hooks" in c else float("nan")
            print("| %s | %s | %s | %s | %s | %s | %d |" % (key[1], fmt(bare), fmt(ct), pct(loss(ct, bare)),
                                                          fmt(hooks), pct(loss(hooks, ct)), len(c["ct"])))
        print()

    variants = [k for k in order if k[0] != "calibration"]
    if not variants:
        return
    print("### Requests/s with and without the rules (medians of alternating rounds)\n")
    print("| variant | c | without (req/s) | Picket (req/s) | Picket loss | paired loss, median [min, max] "
          "| best-round loss | per-pod list (req/s) | list loss | noise (without: max-min) | rounds |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    summary = defaultdict(list)
    for key in variants:
        variant, conc = key
        c = runs[key]
        none = statistics.median(c["none"].values())
        pk = statistics.median(c["picket"].values())
        lst = statistics.median(c["list"].values()) if "list" in c else float("nan")
        pl = paired("picket", "none", c)
        best = loss(max(c["picket"].values()), max(c["none"].values()))
        print("| %s | %s | %s | %s | **%s** | %s [%s, %s] | %s | %s | %s | %.0f%% | %d |" % (
            variant, conc, fmt(none), fmt(pk), pct(loss(pk, none)),
            pct(statistics.median(pl)), pct(min(pl)), pct(max(pl)), pct(best),
            fmt(lst), pct(loss(lst, none)), spread(list(c["none"].values())), len(c["none"])))
        summary[variant].append((conc, none, pk, lst))
    print("\n(loss = 1 - with/without, from the medians; negative = faster with the rules, i.e. noise. "
          "paired loss: per round, against the 'without' run of the same round. best-round loss: best "
          "Picket round against best 'without' round; other load on the machine only ever slows a run "
          "down, so the best rounds are the least disturbed.)\n")

    bad = {k: v for k, v in failed.items() if v}
    if bad:
        print("WARNING: ab reported failed requests: " +
              ", ".join("%s/%s: %d" % (k[0], k[1], v) for k, v in sorted(bad.items())) + "\n")

    verdicts = []
    for variant, rows in summary.items():
        for conc, none, pk, lst in rows:
            value = loss(pk, none)
            verdicts.append("%s c=%s %s %s" % (variant, conc, pct(value), "met" if value <= 2.0 else "NOT met"))
    print("Goal, Picket's loss within 2%% (medians): %s\n" % "; ".join(verdicts))
    for variant, rows in summary.items():
        for conc, none, pk, lst in rows:
            listed = "" if lst != lst else ", per-pod-list layout %s req/s (loss %s)" % (fmt(lst), pct(loss(lst, none)))
            print("%s pods / %s services, policy selecting every pod (%s, c=%s): Picket %s req/s vs %s without "
                  "(loss %s)%s" % (fmt(pods), fmt(services), variant, conc, fmt(pk), fmt(none),
                                   pct(loss(pk, none)), listed))


if __name__ == "__main__":
    main()
