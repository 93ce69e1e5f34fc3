// `picket daemon` end to end: the test API server (HTTPS on 127.0.0.1) holds the x/y/z model;
// one daemon per node runs with `--netns` (its rules go into the node's network namespace, its
// API connections stay on this host's loopback); as pods, labels, namespaces and policies change
// through the API the reachability matrix follows, the evaluator as the oracle. Then the faults:
// every watch dropped mid-event, the API server stopped (rules stay, /healthz 503 with the
// reason) with history compacted meanwhile (410 on reconnect), a new pod's window measured, a
// burst of 1,000 pod events coalesced, and a daemon stopped with SIGTERM and started again while
// a stream of connections runs through its node.

import Foundation
import KubeClient
import KubeModel
import KubeTestSupport
import PolicyEvaluator
import Testing
import ToolRunner

/// One `picket daemon` under test, ended by its PID.
final class DaemonUnderTest: @unchecked Sendable {
    let node: String
    let port: Int
    let logPath: String
    private(set) var process: BackgroundTool
    private let arguments: [String]
    private let status: Transport

    init(node: String, kubeconfig: String, netns: String, workDir: String) throws {
        self.node = node
        port = try freeLoopbackPort()
        logPath = "\(workDir)/daemon-\(node).log"
        arguments = [
            "daemon", "--kubeconfig", kubeconfig, "--hostname-override", node, "--netns", netns,
            "--health-port", String(port), "--metrics-port", String(port), "--status-address", "127.0.0.1",
            "--iptables-sync-period", "1s", "--cache-sync-timeout", "30s", "--log-format", "json", "--log-level", "debug",
        ]
        process = try BackgroundTool(NetnsCluster.picket, arguments, logPath: logPath)
        status = Transport(connection: ClusterConnection(server: "http://127.0.0.1:\(port)", origin: "daemon \(node) status"))
    }

    /// Starts it again after it ended.
    func restart() throws {
        process = try BackgroundTool(NetnsCluster.picket, arguments, logPath: logPath)
    }

    /// GET of a status path: (status, body), nil when nothing answers.
    func get(_ path: String) -> (Int, String)? {
        do {
            let response = try status.perform(HTTPRequest(path: path, timeout: .seconds(5)), credential: Credential())
            return (response.status, String(decoding: response.body, as: UTF8.self))
        } catch {
            return nil
        }
    }

    /// The resourceVersion of `kind` the kernel enforces, from /healthz (nil unless healthy).
    func enforced(_ kind: String) -> Int? {
        guard let (code, body) = get("/healthz"), code == 200 else { return nil }
        guard let range = body.range(of: "\(kind)=") else { return nil }
        return Int(body[range.upperBound...].prefix { $0.isNumber })
    }

    /// The value of a metric line starting with `prefix` (summed over its matching lines).
    func metric(_ prefix: String) -> Double {
        guard let (_, body) = get("/metrics") else { return -1 }
        return body.split(separator: "\n").filter { $0.hasPrefix(prefix) }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            .reduce(0, +)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}


/// Polls `condition` every 20 ms for at most `timeout`; whether it held.
func eventually(_ timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

extension KernelSuite {
    @Suite("Kernel: picket daemon against the test API server", .timeLimit(.minutes(6)))
    struct DaemonTests {
        /// A pod in node-a's network namespaces that the API learns of only later.
        static let fresh = Pod(
            namespace: "z", name: "fresh", labels: ["pod": "fresh"], nodeName: "node-a", ports: UpstreamModel.containerPorts,
            ips: [IPAddress("10.244.1.40")!], phase: "Running")

        /// What the API server holds, as the evaluator reads it.
        struct ClusterState {
            var namespaces = UpstreamModel.namespaces()
            var pods = UpstreamModel.pods(dualStack: false)
            var policies: [String: String] = [:]

            func snapshot() throws -> ClusterSnapshot {
                var decoded: [Policy] = []
                for name in policies.keys.sorted() {
                    let set = ManifestDecoder.decode(policies[name]!, source: name)
                    guard !set.hasErrors else { throw HarnessError("policy \(name) is invalid: \(set.issues)") }
                    decoded += set.policies
                }
                return ClusterSnapshot(namespaces: namespaces, pods: pods, policies: decoded)
            }
        }

        static func json(_ pod: Pod) throws -> [String: Any] { try object(ClusterManifests.manifest(pod).compact) }
        static func json(_ namespace: Namespace) throws -> [String: Any] { try object(ClusterManifests.manifest(namespace).compact) }
        static func json(policy yaml: String) throws -> [String: Any] {
            guard let text = YAMLToJSON.stream(fromYAML: yaml) else { throw HarnessError("not YAML: \(yaml)") }
            return try object(text)
        }
        static func object(_ text: String) throws -> [String: Any] {
            guard let value = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw HarnessError("not an object: \(text)") }
            return value
        }

        @Test("the daemon follows the API: pods, labels, namespaces, policies; dropped streams, a stopped API server, 410, a new pod's window, a burst, SIGTERM")
        func daemonFollowsTheCluster() throws {
            var state = ClusterState()
            let cluster = try NetnsCluster.create(pods: state.pods + [Self.fresh], ports: [80, 81])
            defer {
                for problem in cluster.shutdown() { Issue.record(Comment(rawValue: "teardown: \(problem)")) }
            }
            let server = try TestAPIServer()
            defer { server.stop() }
            try server.apply(state.namespaces.map(Self.json) + [
                TestObjects.node("node-a", podCIDRs: [NodeLayout.all[0].podPrefix4], address: NodeLayout.all[0].underlay4),
                TestObjects.node("node-b", podCIDRs: [NodeLayout.all[1].podPrefix4], address: NodeLayout.all[1].underlay4),
            ])
            var version = try server.apply(state.pods.map(Self.json))
            let kubeconfig = cluster.workDir + "/kubeconfig"
            try server.writeKubeconfig(to: kubeconfig)
            let daemons = try cluster.nodes.map { node in
                try DaemonUnderTest(node: node.name, kubeconfig: kubeconfig, netns: "/run/netns/\(cluster.nodeNamespace[node.name]!)", workDir: cluster.workDir)
            }
            defer {
                for daemon in daemons { daemon.process.stop() }
            }
            let logs = { daemons.map { "--- \($0.node) ---\n\($0.log.suffix(4000))" }.joined(separator: "\n") }
            let flows = cluster.flows(.all, ports: [.tcp(80), .udp(81)]).filter { flow in
                flow.source.pod?.key != Self.fresh.key && flow.destination.pod?.key != Self.fresh.key
            }

            /// Waits until both daemons enforce `kind` at `version` or later, then probes the matrix.
            func check(_ title: String, kind: String) throws {
                let enforced = eventually { daemons.allSatisfy { ($0.enforced(kind) ?? 0) >= Int(version)! } }
                let health = daemons.map { "\($0.node): \($0.get("/healthz").map { "\($0.0) \($0.1)" } ?? "no answer")" }.joined(separator: "\n")
                try #require(enforced, "\(title): the daemons did not enforce \(kind) resourceVersion \(version):\n\(health)\n\(logs())")
                let result = try cluster.matrix(flows, timeout: OracleRun.timeout, oracle: Evaluator(snapshot: try state.snapshot()))
                print("KernelTests daemon: \(title): \(result.flows.count) probes, \(result.mismatches.count) mismatches")
                #expect(result.mismatches.isEmpty, "\(title):\n\(result.mismatches.prefix(20).map { "  \($0)" }.joined(separator: "\n"))\n\(logs())")
            }

            // 1. Start-up: both healthy, no policy yet.
            try #require(eventually(.seconds(60)) { daemons.allSatisfy { $0.get("/healthz")?.0 == 200 } }, "not healthy:\n\(logs())")
            try check("no policy", kind: "pods")

            // 2. Policies arrive.
            state.policies["x/deny"] = UpstreamModel.policy("x", "deny-ingress", "podSelector: {}\npolicyTypes: [Ingress]")
            state.policies["x/from-clients"] = UpstreamModel.policy("x", "from-clients", """
                podSelector: {}
                ingress:
                - from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]
                """)
            state.policies["z/from-blue"] = UpstreamModel.policy("z", "from-blue", """
                podSelector: {matchLabels: {pod: a}}
                ingress:
                - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
                  ports: [{port: 80}]
                """)
            version = try server.apply(try state.policies.keys.sorted().map { try Self.json(policy: state.policies[$0]!) })
            try check("three policies", kind: "networkPolicies")

            // 3. A pod's labels change.
            let zb = state.pods.firstIndex { $0.key.description == "z/b" }!
            state.pods[zb].labels["role"] = "client"
            version = try server.apply([try Self.json(state.pods[zb])])
            try check("z/b labelled role=client", kind: "pods")

            // 4. A namespace's labels change.
            let y = state.namespaces.firstIndex { $0.name == "y" }!
            state.namespaces[y] = Namespace(name: "y", labels: ["ns": "y", "team": "blue"])
            version = try server.apply([try Self.json(state.namespaces[y])])
            try check("namespace y labelled team=blue", kind: "namespaces")

            // 5. Every watch dropped mid-event, then a change.
            try server.control("/drop-streams?mid-event=1", [:])
            state.policies["x/deny"] = nil
            version = try server.delete([("NetworkPolicy", "x", "deny-ingress")])
            try check("streams dropped mid-event, x/deny-ingress deleted", kind: "networkPolicies")

            // 6. The API server goes away: rules stay, /healthz says why; changes meanwhile, history
            // compacted (410 on reconnect), then it comes back.
            try server.control("/stop", [:])
            let unhealthy = eventually { daemons.allSatisfy { $0.get("/healthz").map { $0.0 == 503 && $0.1.contains("connection refused") } ?? false } }
            #expect(unhealthy, "health while the API server is down: \(daemons.map { $0.get("/healthz").map { "\($0.0) \($0.1)" } ?? "none" })")
            let down = try cluster.matrix(flows, timeout: OracleRun.timeout, oracle: Evaluator(snapshot: try state.snapshot()))
            #expect(down.mismatches.isEmpty, "rules must stay in force while the API server is away: \(down.mismatches.prefix(10))")
            state.policies["x/deny"] = UpstreamModel.policy("x", "deny-ingress", "podSelector: {}\npolicyTypes: [Ingress]")
            try server.apply([try Self.json(policy: state.policies["x/deny"]!)])
            state.policies["x/from-clients"] = nil
            version = try server.delete([("NetworkPolicy", "x", "from-clients")])
            try server.control("/compact", [:])
            try server.control("/start", [:])
            try check("API server back after compaction", kind: "networkPolicies")

            // 7. A new pod: cut off until the API has it, then reachable. The window is measured
            // from the API write to the first connection that passes.
            let xb = cluster.podNamespace[state.pods.first { $0.key.description == "x/b" }!.key]!
            let probeFresh = { (try? cluster.probe(from: xb, [.init(dst: "10.244.1.40", proto: "tcp", port: 80, src: nil)], timeout: 0.3))?.first?.ok ?? false }
            #expect(!probeFresh(), "a pod the API does not have yet is reachable")
            let written = ContinuousClock.now
            version = try server.apply([try Self.json(Self.fresh)])
            let reached = eventually(.seconds(10)) { probeFresh() }
            let window = ContinuousClock.now - written
            #expect(reached, "the new pod never became reachable:\n\(logs())")
            print("KernelTests daemon: new pod reachable \(window) after the API write (probe interval included)")
            state.pods.append(Self.fresh)

            // 8. A burst of 1,000 pod events (pods of no network namespace) coalesces into few syncs.
            let before = daemons[0].metric("picket_syncs_total")
            let burst = (0..<1000).map { i in
                Pod(namespace: "y", name: String(format: "burst-%04d", i), labels: ["pod": "burst"], nodeName: i % 2 == 0 ? "node-a" : "node-b",
                    ips: [IPAddress("10.250.\(i / 250).\(i % 250 + 1)")!], phase: "Running")
            }
            version = try server.apply(try burst.map(Self.json))
            state.pods += burst
            try check("1,000 pods in one burst", kind: "pods")
            let syncs = daemons[0].metric("picket_syncs_total") - before
            print("KernelTests daemon: 1,000 pod events made \(Int(syncs)) syncs on node-a (periodic verifies included)")
            #expect(syncs >= 1 && syncs <= 60, "a burst of 1,000 pod events made \(syncs) syncs")

            // 9. SIGTERM and restart of node-a's daemon while connections run through node-a.
            let yb = state.pods.first { $0.key.description == "y/b" }!
            let stream = try BackgroundTool(
                "ip", ["netns", "exec", xb, cluster.python, "-c", Self.connectionStream, yb.ips[0].description, "80", "8"],
                logPath: cluster.workDir + "/stream.log")
            usleep(1_000_000)
            let stopping = ContinuousClock.now
            daemons[0].process.signal(SIGTERM)
            let exit = daemons[0].process.wait(timeout: .seconds(10))
            print("KernelTests daemon: SIGTERM to exit \(ContinuousClock.now - stopping), status \(exit.map(String.init) ?? "still running")")
            #expect(exit == 0, "the daemon did not stop cleanly within 10 s:\n\(daemons[0].log.suffix(3000))")
            usleep(1_000_000)
            try daemons[0].restart()
            #expect(eventually(.seconds(30)) { daemons[0].get("/healthz")?.0 == 200 }, "not healthy after the restart:\n\(daemons[0].log.suffix(3000))")
            _ = stream.wait(timeout: .seconds(20))
            let outcome = (try? String(contentsOfFile: cluster.workDir + "/stream.log", encoding: .utf8)) ?? ""
            print("KernelTests daemon: connection stream through the restart: \(outcome.trimmingCharacters(in: .whitespacesAndNewlines))")
            #expect(outcome.contains("\"failures\": 0") && !outcome.contains("\"connections\": 0,"), "connections failed across the restart: \(outcome)")
            try check("after the restart", kind: "pods")
        }

        /// New TCP connections to HOST PORT every 20 ms for SECONDS; prints counts as JSON.
        static let connectionStream = """
            import json, socket, sys, time
            host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
            end = time.time() + seconds
            ok = failures = 0
            while time.time() < end:
                try:
                    with socket.create_connection((host, port), timeout=1) as s:
                        if not s.recv(64):
                            raise OSError("no answer")
                    ok += 1
                except OSError:
                    failures += 1
                time.sleep(0.02)
            print(json.dumps({"connections": ok, "failures": failures}))
            """
    }
}
