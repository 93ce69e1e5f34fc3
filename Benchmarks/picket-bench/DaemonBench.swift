import Foundation
#if canImport(Glibc)
import Glibc
#endif
import KubeClient
import KubeModel
import KubeTestSupport
import Synchronization
import ToolRunner

// `picket-bench daemon [--sizes 10k,50k] [--picket PATH]`: the real `picket daemon` process
// against the test API server holding a synthetic cluster (real-shaped pods, as the informer
// benchmark loads it). The daemon runs for the node with the most pods, with `--netns` (its rules
// go into a scratch network namespace, `pkbd-<pid>-<size>`; its API and status traffic stay on
// this host's 127.0.0.1) and `--iptables-sync-period=1s`, the seed's setting. Measured per size:
//
// - start-up: process start to the first 200 from /healthz (lists, first compile, cold apply);
//   resident memory (VmRSS, and the peak VmHWM) once it has settled;
// - idle CPU: utime + stime from /proc/PID/stat over a window with no API change (nothing polls
//   the daemon meanwhile; bookmarks still arrive), as a share of one core;
// - event to enforcement: a write through the control surface, then /healthz polled about every
//   millisecond until it reports an enforced resourceVersion of that kind at least the write's;
//   taken from the write's response to that answer. Pod adds (a copy of a node pod's labels, so
//   the pod joins the group sets that pod is in, with a fresh address of the node's range) and
//   policy adds (selecting an app with pods on the node, letting another app of its namespace in
//   on a port of its own, so every policy changes the rules). Samples are spaced by a seeded
//   random pause, so that they do not lock onto the verify period;
// - a burst of pod events (label changes that move pods of the node in and out of selections),
//   written once as one control request and once as one request per event: the syncs it took
//   (picket_sync_duration_seconds counts applies and verifies apart) and the time until the last
//   event was enforced.
//
// Everything is bounded: each wait has a timeout, each phase a fixed count. The daemon and the
// test API server are ended by their PIDs; the namespace and the work directory are removed on
// every path out, SIGINT and SIGTERM included.

enum DaemonBench {
    /// What the command line asks for.
    struct Options {
        var sizes = ClusterSize.all.filter { $0.label == "10k" }
        var picket: String?
        var logLevel = "info"
        var keepLog: String?
        var podSamples = 100
        var policySamples = 50
        var burst = 1_000
        var idle: Duration = .seconds(20)

        static let usage = """
            usage: picket-bench daemon [--sizes 10k,50k] [--picket PATH] [--log-level LEVEL] [--keep-log DIR]
                [--pods N] [--policies N] [--burst N] [--idle SECONDS]
              --sizes      cluster sizes (1k, 10k, 50k; default 10k)
              --picket     the picket executable (default: the one next to picket-bench)
              --log-level  the daemon's --log-level (default info; debug logs every sync)
              --keep-log   copy each daemon's log into DIR (daemon-SIZE.log)
              --pods, --policies, --burst  samples of each (default 100, 50, 1000; pods at most 140,
                           the free addresses of the node's /24)
              --idle       the idle CPU window in seconds (default 20)
            """

        static func parse(_ arguments: [String]) throws(BenchError) -> Options {
            var options = Options()
            var rest = arguments[...]
            while let argument = rest.popFirst() {
                if argument == "--help" || argument == "-h" { throw BenchError("help") }
                guard let value = rest.popFirst() else { throw BenchError("\(argument) needs a value") }
                switch argument {
                case "--sizes":
                    let labels = value.split(separator: ",").map(String.init)
                    let sizes = labels.compactMap { label in ClusterSize.all.first { $0.label == label } }
                    guard sizes.count == labels.count, !sizes.isEmpty else { throw BenchError("--sizes: one or more of 1k, 10k, 50k") }
                    options.sizes = sizes
                case "--picket": options.picket = value
                case "--log-level": options.logLevel = value
                case "--keep-log": options.keepLog = value
                case "--pods", "--policies", "--burst", "--idle":
                    guard let n = Int(value), (1...100_000).contains(n) else { throw BenchError("\(argument): a count from 1 to 100000") }
                    switch argument {
                    case "--pods": options.podSamples = min(n, 140)  // the free addresses of a /24 after 110 pods
                    case "--policies": options.policySamples = n
                    case "--burst": options.burst = n
                    default: options.idle = .seconds(min(n, 600))
                    }
                default: throw BenchError("unknown argument \(argument)")
                }
            }
            return options
        }
    }

    /// Latency samples of one kind of event.
    struct Latencies {
        var samples: [Duration] = []
        var timeouts = 0
        /// The daemon's own picket_event_to_enforcement_seconds over the same events (mean).
        var daemonMean: Duration?
        /// Mean duration of the apply syncs over the same events.
        var applyMean: Duration?
        var applies = 0
        var verifies = 0
        /// The conntrack walks of those syncs (flagging established flows, after the commit).
        var conntrackMean: Duration?
        var conntrackWalks = 0

        func percentile(_ p: Double) -> Duration? {
            guard !samples.isEmpty else { return nil }
            let sorted = samples.sorted()
            let rank = Int((p * Double(sorted.count)).rounded(.up))
            return sorted[min(max(rank, 1), sorted.count) - 1]
        }
    }

    /// One burst's outcome.
    struct Burst {
        var title: String
        var events: Int
        var written: Duration
        var enforced: Duration?
        var applies: Int
        var verifies: Int
    }

    /// Everything measured for one size.
    struct Result {
        var label: String
        var policies: Int
        var node: String
        var nodePods: Int
        var rules: Int
        var members: Int
        var serverLoad: Duration
        var firstSync: Duration
        var rss: Int
        var peakRSS: Int
        var idleCPU: Double
        var idleVerifies: Int
        var verifyMean: Duration?
        var podAdds: Latencies
        var policyAdds: Latencies
        var bursts: [Burst]
    }

    /// Runs the benchmark for each size; the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        let options: Options
        do {
            options = try Options.parse(arguments)
        } catch {
            if error.description == "help" {
                print(Options.usage)
                return 0
            }
            printErr("picket-bench daemon: error: \(error)\n\n\(Options.usage)")
            return 2
        }
        guard geteuid() == 0 else {
            printErr("picket-bench daemon: needs root (a network namespace and the daemon's rules in it)")
            return 1
        }
        let picket = options.picket ?? siblingPicket()
        guard FileManager.default.isExecutableFile(atPath: picket) else {
            printErr("picket-bench daemon: \(picket) is not an executable (build it: swift build -c release --product picket, or pass --picket)")
            return 1
        }
        let cleanup = SignalCleanup()
        defer { cleanup.cancel() }
        var results: [Result] = []
        var status: Int32 = 0
        for size in options.sizes {
            do {
                results.append(try measure(size, picket: picket, options: options, cleanup: cleanup))
            } catch {
                printErr("picket-bench daemon: \(size.label): \(error)")
                status = 1
                break
            }
        }
        report(results, options: options)
        return status
    }

    // MARK: - One size

    private static func measure(_ size: ClusterSize, picket: String, options: Options, cleanup: SignalCleanup) throws -> Result {
        progress("\(size.label): generating the cluster")
        var generator = ClusterGenerator()
        let cluster = generator.cluster(size)
        // The node with the most pods (every node has 110 but the last; ties go to the first name).
        var perNode: [String: Int] = [:]
        for pod in cluster.pods { if let node = pod.nodeName { perNode[node, default: 0] += 1 } }
        guard let node = perNode.max(by: { ($0.value, $1.key) < ($1.value, $0.key) })?.key else { throw BenchError("the cluster has no scheduled pods") }
        let nodePods = cluster.pods.filter { $0.nodeName == node && $0.phase == "Running" && !$0.hostNetwork && !$0.ips.isEmpty }
        guard let firstIP = nodePods.first?.ips.first, firstIP.family == .v4 else { throw BenchError("\(node) has no IPv4 pod") }
        // The generator gives each node a /24 and its pods .2-.111 of it; new pods take .112 on.
        let prefix = firstIP.description.split(separator: ".").prefix(3).joined(separator: ".")
        let used = Set(nodePods.map { $0.ips.first!.description })

        progress("\(size.label): loading \(Format.count(cluster.pods.count)) real-shaped pods into the test API server")
        let loadStart = ContinuousClock.now
        let server = try TestAPIServer(objects: ClusterExport.list(cluster, realShaped: true))
        let serverLoad = ContinuousClock.now - loadStart
        let serverToken = cleanup.add { server.stop() }
        defer { cleanup.run(serverToken) }
        let writer = ControlWriter(server: server)
        _ = try writer.apply([TestObjects.node(node, podCIDRs: ["\(prefix).0/24"], address: "172.18.0.10")])

        let directory = NSTemporaryDirectory() + "picket-bench-daemon-\(getpid())-\(size.label)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let directoryToken = cleanup.add { try? FileManager.default.removeItem(atPath: directory) }
        defer { cleanup.run(directoryToken) }
        let kubeconfig = directory + "/kubeconfig"
        try server.writeKubeconfig(to: kubeconfig)

        let namespace = "pkbd-\(getpid())-\(size.label)"
        try ip(["netns", "add", namespace])
        let namespaceToken = cleanup.add { _ = runTool("ip", ["netns", "delete", namespace], timeout: 30) }
        defer { cleanup.run(namespaceToken) }
        try ip(["-n", namespace, "link", "set", "lo", "up"])

        let port = try freeLoopbackPort()
        let logPath = directory + "/daemon.log"
        let arguments = [
            "daemon", "--kubeconfig", kubeconfig, "--hostname-override", node, "--netns", "/run/netns/\(namespace)",
            "--health-port", String(port), "--metrics-port", String(port), "--status-address", "127.0.0.1",
            "--iptables-sync-period", "1s", "--cache-sync-timeout", "5m", "--log-format", "json", "--log-level", options.logLevel,
        ]
        progress("\(size.label): starting picket daemon for \(node) (\(nodePods.count) pods)")
        let started = ContinuousClock.now
        let daemon = try BackgroundTool(picket, arguments, logPath: logPath)
        let daemonToken = cleanup.add { daemon.stop(grace: .seconds(5)) }
        defer {
            cleanup.run(daemonToken)
            if let dir = options.keepLog {
                try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let target = dir + "/daemon-\(size.label).log"
                try? FileManager.default.removeItem(atPath: target)
                try? FileManager.default.copyItem(atPath: logPath, toPath: target)
            }
        }
        let status = StatusClient(port: port)
        let logTail = { () -> String in
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            return String(text.suffix(3000))
        }

        // 1. Start-up: the first 200 from /healthz is the first successful sync.
        var healthy = false
        let startDeadline = started + .seconds(600)
        while ContinuousClock.now < startDeadline {
            if daemon.exitStatus != nil { break }
            if status.get("/healthz")?.status == 200 {
                healthy = true
                break
            }
            usleep(2_000)
        }
        let firstSync = ContinuousClock.now - started
        guard healthy else {
            throw BenchError("the daemon did not become healthy (exit status \(daemon.exitStatus.map(String.init) ?? "none, still running")):\n\(logTail())")
        }
        progress("\(size.label): healthy after \(Format.ms(firstSync)); settling, then \(Int(options.idle.milliseconds / 1000)) s idle")

        // 2. Settle (a few verifies), then the idle window: nothing is written and nothing polls.
        sleep(5)
        let idleBefore = try status.metrics()
        guard let cpuBefore = cpuTicks(daemon.pid) else { throw BenchError("cannot read /proc/\(daemon.pid)/stat") }
        let idleStart = ContinuousClock.now
        Thread.sleep(forTimeInterval: options.idle.milliseconds / 1000)
        guard let cpuAfter = cpuTicks(daemon.pid) else { throw BenchError("cannot read /proc/\(daemon.pid)/stat") }
        let idleTook = ContinuousClock.now - idleStart
        let idleAfter = try status.metrics()
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let idleCPU = Double(cpuAfter - cpuBefore) / ticksPerSecond / (idleTook.milliseconds / 1000) * 100
        let (rss, peakRSS) = memory(daemon.pid)
        let idleVerifies = Int(idleAfter.count("verify") - idleBefore.count("verify"))
        let verifyMean = idleAfter.meanDuration("verify", since: idleBefore)
        let rules = Int(idleAfter.value("picket_programmed_rules") ?? -1)
        let members = Int(idleAfter.value("picket_programmed_set_members") ?? -1)

        // Pods of the node selected by a policy of their namespace with a non-empty podSelector:
        // a copy of their labels joins the group sets they are in.
        let policiesByNamespace = Dictionary(grouping: cluster.policies, by: { $0.key.namespace })
        let templates = nodePods.filter { pod in
            policiesByNamespace[pod.key.namespace, default: []].contains { !$0.podSelector.isEverything && $0.podSelector.matches(pod.labels) }
        }
        guard !templates.isEmpty else { throw BenchError("no pod of \(node) is selected by a policy with a podSelector") }
        var rng = SplitMix64(state: SyntheticCluster.seed ^ 0xDAE)

        // 3. Pod adds.
        progress("\(size.label): \(options.podSamples) pod adds")
        var freeHosts = (2...254).filter { !used.contains("\(prefix).\($0)") }[...]
        var added: [Pod] = []
        let podsBefore = try status.metrics()
        var podAdds = Latencies()
        for i in 0..<options.podSamples {
            guard let host = freeHosts.popFirst() else { break }
            let template = templates[i % templates.count]
            let pod = Pod(
                namespace: template.key.namespace, name: "bench-\(template.labels["app"] ?? "pod")-\(i)", labels: template.labels,
                nodeName: node, ports: template.ports, ips: [IPAddress("\(prefix).\(host)")!], phase: "Running")
            added.append(pod)
            var json = ""
            ClusterExport.realShapedPod(pod, index: 60_000 + i, into: &json)
            let version = try writer.apply(json: Array(json.utf8))
            sample(&podAdds, kind: "pods", version: version, status: status)
            usleep(UInt32(20_000 + rng.below(80_000)))
        }
        let podsAfter = try status.metrics()
        podAdds.annotate(from: podsBefore, to: podsAfter)

        // 4. Policy adds, in namespaces of the node's pods.
        progress("\(size.label): \(options.policySamples) policy adds")
        let appsByNamespace = Dictionary(grouping: nodePods, by: { $0.key.namespace }).mapValues { pods in
            Array(Set(pods.compactMap { $0.labels["app"] })).sorted()
        }
        let allApps = Dictionary(grouping: cluster.pods, by: { $0.key.namespace }).mapValues { pods in
            Array(Set(pods.compactMap { $0.labels["app"] })).sorted()
        }
        let namespaces = appsByNamespace.keys.sorted()
        let policiesBefore = try status.metrics()
        var policyAdds = Latencies()
        for i in 0..<options.policySamples {
            let ns = namespaces[i % namespaces.count]
            let apps = appsByNamespace[ns]!
            let app = apps[(i / namespaces.count) % apps.count]
            let peers = allApps[ns] ?? [app]
            let peer = peers[(i + 1) % peers.count]
            let policy: [String: Any] = [
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": ["namespace": ns, "name": "bench-allow-\(i)"],
                "spec": [
                    "podSelector": ["matchLabels": ["app": app]], "policyTypes": ["Ingress"],
                    "ingress": [["from": [["podSelector": ["matchLabels": ["app": peer]]]], "ports": [["protocol": "TCP", "port": 9_000 + i]]]],
                ],
            ]
            let version = try writer.apply([policy])
            sample(&policyAdds, kind: "networkPolicies", version: version, status: status)
            usleep(UInt32(20_000 + rng.below(80_000)))
        }
        let policiesAfter = try status.metrics()
        policyAdds.annotate(from: policiesBefore, to: policiesAfter)

        // 5. Bursts: label changes of the pods added in 3, in rounds: odd rounds move each pod out
        // of its app (app=<app>-moved), even rounds back, so every event changes set members.
        var bursts: [Burst] = []
        var round = 0
        for batched in [true, false] {
            progress("\(size.label): burst of \(options.burst) pod events, \(batched ? "one request" : "one request per event")")
            var bodies: [String] = []
            for i in 0..<options.burst {
                if i % added.count == 0 { round += 1 }
                var pod = added[i % added.count]
                if round % 2 == 1 { pod.labels["app"] = (pod.labels["app"] ?? "pod") + "-moved" }
                var json = ""
                ClusterExport.realShapedPod(pod, index: 60_000 + i % added.count, into: &json)
                bodies.append(json)
            }
            sleep(2)  // leave the previous phase's syncs behind
            let before = try status.metrics()
            let start = ContinuousClock.now
            var version = ""
            if batched {
                version = try writer.apply(json: Array(bodies.joined(separator: "\n").utf8))
            } else {
                for body in bodies { version = try writer.apply(json: Array(body.utf8)) }
            }
            let written = ContinuousClock.now - start
            let target = Int(version) ?? Int.max
            var enforced: Duration?
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline {
                if let v = status.enforced("pods"), v >= target {
                    enforced = ContinuousClock.now - start
                    break
                }
                usleep(1_000)
            }
            // Syncs still running when the last event is enforced are counted too: wait a little.
            usleep(200_000)
            let after = try status.metrics()
            bursts.append(Burst(
                title: batched ? "one request" : "\(Format.count(options.burst)) requests", events: options.burst, written: written, enforced: enforced,
                applies: Int(after.count("apply") - before.count("apply")), verifies: Int(after.count("verify") - before.count("verify"))))
        }

        // The daemon ends by its PID (SIGTERM: it leaves the rules, the namespace goes next).
        let stopStart = ContinuousClock.now
        daemon.stop(grace: .seconds(10))
        progress("\(size.label): daemon stopped in \(Format.ms(ContinuousClock.now - stopStart)) (exit status \(daemon.exitStatus.map(String.init) ?? "?"))")
        if options.logLevel == "debug" || options.logLevel == "trace" {
            progress("\(size.label): daemon log: \(logPath) (removed at exit; --keep-log DIR keeps it)")
        }
        return Result(
            label: size.label, policies: cluster.policies.count, node: node, nodePods: nodePods.count, rules: rules, members: members,
            serverLoad: serverLoad, firstSync: firstSync, rss: rss, peakRSS: peakRSS, idleCPU: idleCPU, idleVerifies: idleVerifies,
            verifyMean: verifyMean, podAdds: podAdds, policyAdds: policyAdds, bursts: bursts)
    }

    /// One event-to-enforcement sample: from now (the write's response has arrived) until
    /// /healthz reports `kind` enforced at `version` or later, polled about every millisecond,
    /// at most 10 s.
    private static func sample(_ latencies: inout Latencies, kind: String, version: String, status: StatusClient) {
        let written = ContinuousClock.now
        guard let target = Int(version) else {
            latencies.timeouts += 1
            return
        }
        let deadline = written + .seconds(10)
        while ContinuousClock.now < deadline {
            if let v = status.enforced(kind), v >= target {
                latencies.samples.append(ContinuousClock.now - written)
                return
            }
            usleep(1_000)
        }
        latencies.timeouts += 1
    }

    // MARK: - Report

    private static func report(_ results: [Result], options: Options) {
        guard !results.isEmpty else { return }
        print("picket daemon (release) against the test API server (real-shaped pods, HTTPS on 127.0.0.1), rules in a scratch network namespace, --iptables-sync-period=1s:")
        print("")
        print("| cluster | node (running pods) | rules | set members | server load | start to first sync | RSS settled | peak RSS | idle CPU (\(Int(options.idle.milliseconds / 1000)) s) | verifies in window | verify (mean) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results {
            print("| \(r.label) pods / \(Format.count(r.policies)) policies | \(r.node) (\(r.nodePods)) | \(Format.count(r.rules)) | \(Format.count(r.members)) "
                + "| \(String(format: "%.1f s", r.serverLoad.milliseconds / 1000)) | \(Format.ms(r.firstSync)) | \(Format.mebibytes(r.rss)) | \(Format.mebibytes(r.peakRSS)) "
                + "| \(String(format: "%.1f%%", r.idleCPU)) of one core | \(r.idleVerifies) | \(r.verifyMean.map(Format.ms) ?? "-") |")
        }
        print("")
        print("Event to enforcement: from the write's response to /healthz reporting that resourceVersion enforced (polled every ~1 ms); enforced means committed, in force for new connections; the conntrack walk that flags established flows follows it within the same sync:")
        print("")
        print("| cluster | event | n | p50 | p99 | max | timeouts (10 s) | daemon's own event to enforcement (mean) | apply syncs (mean) | then conntrack walks (mean) | verifies meanwhile |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results {
            for (title, l) in [("pod add", r.podAdds), ("policy add", r.policyAdds)] {
                print("| \(r.label) | \(title) | \(l.samples.count) | \(l.percentile(0.5).map(Format.ms) ?? "-") | \(l.percentile(0.99).map(Format.ms) ?? "-") "
                    + "| \(l.percentile(1).map(Format.ms) ?? "-") | \(l.timeouts) | \(l.daemonMean.map(Format.ms) ?? "-") "
                    + "| \(l.applies) x \(l.applyMean.map(Format.ms) ?? "-") | \(l.conntrackWalks) x \(l.conntrackMean.map(Format.ms) ?? "-") | \(l.verifies) |")
            }
        }
        print("")
        print("(p99 is the nearest rank: with 50 samples, the largest.)")
        print("")
        print("Bursts of pod events (label changes moving the node's added pods in and out of selections), written as fast as the control surface takes them:")
        print("")
        print("| cluster | events | written as | writes took | last enforced after (from the first write) | apply syncs | verifies meanwhile |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for r in results {
            for b in r.bursts {
                print("| \(r.label) | \(Format.count(b.events)) | \(b.title) | \(Format.ms(b.written)) | \(b.enforced.map(Format.ms) ?? "not within 120 s") | \(b.applies) | \(b.verifies) |")
            }
        }
    }

    // MARK: - Helpers

    private static func progress(_ text: String) { printErr("picket-bench daemon: \(text)") }

    /// The picket executable in this one's directory (both are products of one build).
    private static func siblingPicket() -> String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("picket").path
    }

    /// Runs `ip` (at most 30 s); throws its output when it fails.
    private static func ip(_ arguments: [String]) throws {
        let result = runTool("ip", arguments, timeout: 30)
        guard result.status == 0 else { throw BenchError("ip \(arguments.joined(separator: " ")): \(result.status) \(result.stderr)\(result.stdout)") }
    }

    /// utime + stime of `pid` in clock ticks, from /proc/PID/stat (fields 14 and 15, counted
    /// after the parenthesised command name, which may hold spaces).
    private static func cpuTicks(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3), so utime (14) is fields[11] and stime (15) fields[12].
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }

    /// VmRSS and VmHWM of `pid` in bytes, from /proc/PID/status.
    private static func memory(_ pid: pid_t) -> (Int, Int) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (0, 0) }
        func field(_ name: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return (line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? 0) * 1024
        }
        return (field("VmRSS"), field("VmHWM"))
    }
}

extension DaemonBench.Latencies {
    /// Fills in what the daemon's metrics say about the same phase.
    mutating func annotate(from before: DaemonMetrics, to after: DaemonMetrics) {
        daemonMean = after.meanDuration(of: "picket_event_to_enforcement_seconds", labels: [""], since: before)
        applyMean = after.meanDuration("apply", since: before)
        applies = Int(after.count("apply") - before.count("apply"))
        verifies = Int(after.count("verify") - before.count("verify"))
        conntrackMean = after.meanDuration(of: "picket_conntrack_recheck_seconds", labels: [""], since: before)
        conntrackWalks = Int((after.samples["picket_conntrack_recheck_seconds_count"] ?? 0) - (before.samples["picket_conntrack_recheck_seconds_count"] ?? 0))
    }
}

/// The daemon's /healthz and /metrics on 127.0.0.1 (one short connection per request, as the
/// status server answers).
struct StatusClient {
    private let transport: Transport

    init(port: Int) {
        transport = Transport(connection: ClusterConnection(server: "http://127.0.0.1:\(port)", origin: "the daemon's status server"))
    }

    /// GET of `path` (at most 5 s): status and body, nil when nothing answers.
    func get(_ path: String) -> (status: Int, body: String)? {
        do {
            let response = try transport.perform(HTTPRequest(path: path, timeout: .seconds(5)), credential: Credential())
            return (response.status, String(decoding: response.body, as: UTF8.self))
        } catch {
            return nil
        }
    }

    /// The resourceVersion of `kind` the kernel enforces, from a 200 of /healthz
    /// (`... as of resourceVersion namespaces=N pods=N networkPolicies=N node=N`).
    func enforced(_ kind: String) -> Int? {
        guard let (code, body) = get("/healthz"), code == 200, let range = body.range(of: " \(kind)=") else { return nil }
        return Int(body[range.upperBound...].prefix { $0.isNumber })
    }

    /// /metrics, parsed.
    func metrics() throws -> DaemonMetrics {
        guard let (code, body) = get("/metrics"), code == 200 else { throw BenchError("/metrics did not answer") }
        return DaemonMetrics(text: body)
    }
}

/// Prometheus text: each sample line's name with labels (as written) mapped to its value.
struct DaemonMetrics {
    var samples: [String: Double] = [:]

    init(text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
    }

    /// The value of a sample without labels.
    func value(_ name: String) -> Double? { samples[name] }

    /// The `check` labels of picket_sync_duration_seconds for syncs of `kind`: an apply is
    /// planned against memory (none), a verify checks the kernel (fingerprint or read_back).
    static func checks(_ kind: String) -> [String] { kind == "apply" ? ["none"] : kind == "read_back" ? ["read_back"] : ["fingerprint", "read_back"] }

    /// picket_sync_duration_seconds_count for syncs of `kind` (apply, verify or read_back).
    func count(_ kind: String) -> Double {
        Self.checks(kind).reduce(0) { $0 + (samples["picket_sync_duration_seconds_count{check=\"\($1)\"}"] ?? 0) }
    }

    /// The mean sync duration of `kind` between `before` and this.
    func meanDuration(_ kind: String, since before: DaemonMetrics) -> Duration? {
        meanDuration(of: "picket_sync_duration_seconds", labels: Self.checks(kind).map { "{check=\"\($0)\"}" }, since: before)
    }

    /// The mean of histograms (`NAME_sum`/`NAME_count` with each of `labels`) between `before`
    /// and this.
    func meanDuration(of name: String, labels: [String], since before: DaemonMetrics) -> Duration? {
        var count = 0.0
        var sum = 0.0
        for label in labels {
            count += (samples["\(name)_count\(label)"] ?? 0) - (before.samples["\(name)_count\(label)"] ?? 0)
            sum += (samples["\(name)_sum\(label)"] ?? 0) - (before.samples["\(name)_sum\(label)"] ?? 0)
        }
        guard count > 0 else { return nil }
        return .nanoseconds(Int64(sum / count * 1e9))
    }
}

/// Writes objects through the test API server's control surface, one connection per request. On
/// a reused connection a write took ~44 ms here, on a fresh one ~1.4 ms: the control surface
/// answers in two writes (headers, then body), the pattern in which Nagle's algorithm holds the
/// body until the client's delayed ACK.
struct ControlWriter {
    private let transport: Transport

    init(server: TestAPIServer) {
        transport = Transport(connection: ClusterConnection(server: server.controlURL, origin: "test API server control"))
    }

    /// POSTs JSON objects (one, a List or a stream) to /objects; the store's resourceVersion after them.
    func apply(json: [UInt8]) throws -> String {
        let request = HTTPRequest(method: "POST", path: "/objects", headers: ["Connection: close"], body: json, timeout: .seconds(120))
        let response = try transport.perform(request, credential: Credential())
        guard response.status == 200 else {
            throw BenchError("control /objects: \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        }
        let answer = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        return answer?["resourceVersion"] as? String ?? ""
    }

    /// POSTs JSON values.
    func apply(_ objects: [[String: Any]]) throws -> String {
        try apply(json: Array(try JSONSerialization.data(withJSONObject: ["items": objects])))
    }
}

/// What the daemon benchmark could not do.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Cleanup actions (stop the daemon, delete the namespace, ...) run once each: by the normal path
/// (`run`, from a `defer`), or all of them, newest first, on SIGINT or SIGTERM, after which the
/// process exits with 128 + signal.
final class SignalCleanup: @unchecked Sendable {
    private let actions = Mutex<[(id: Int, action: @Sendable () -> Void)]>([])
    private let nextID = Atomic<Int>(0)
    // Set once in init, then only cancelled (DispatchSource is thread-safe).
    private let sources: [any DispatchSourceSignal]

    init() {
        let signals = [SIGINT, SIGTERM]
        sources = signals.map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
        for (signo, source) in zip(signals, sources) {
            signal(signo, SIG_IGN)
            source.setEventHandler { [self] in
                let pending = actions.withLock { list in
                    let all = list
                    list.removeAll()
                    return all
                }
                for entry in pending.reversed() { entry.action() }
                printErr("picket-bench daemon: interrupted; cleaned up")
                exit(128 + signo)
            }
            source.resume()
        }
    }

    /// Registers `action`; the token for `run`.
    func add(_ action: @escaping @Sendable () -> Void) -> Int {
        let id = nextID.add(1, ordering: .relaxed).newValue
        actions.withLock { $0.append((id, action)) }
        return id
    }

    /// Runs the action of `token` now, unless a signal ran it already.
    func run(_ token: Int) {
        let action = actions.withLock { list -> (@Sendable () -> Void)? in
            guard let index = list.firstIndex(where: { $0.id == token }) else { return nil }
            return list.remove(at: index).action
        }
        action?()
    }

    /// Stops listening and restores the default handlers.
    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
