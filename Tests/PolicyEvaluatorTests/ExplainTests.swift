import KubeModel
import PolicyEvaluator
import Testing

/// The text `picket explain` prints, and evaluation speed.
@Suite struct ExplainTests {
    @Test("a denial names the isolating policies and the unmatched flow")
    func deniedText() throws {
        let e = makeEvaluator([makePolicy("x", "deny-all")])
        let v = try e.verdict(Flow(from: pod("y/b"), to: pod("x/a"), proto: .tcp, port: 80))
        #expect(v.description == """
            denied: x/a is isolated for ingress by x/deny-all; no ingress rule admits y/b on TCP/80
              flow: y/b (10.0.2.2) -> x/a (10.0.1.1) TCP/80, IPv4
              egress: y/b is not isolated for egress
              ingress: x/a is isolated for ingress by x/deny-all; no ingress rule admits y/b on TCP/80
            """)
    }

    @Test("an allowed flow names the admitting rules; a denial in both directions names both")
    func allowedAndDoubleDenialText() throws {
        let e = makeEvaluator([
            makePolicy("x", "deny-all") { $0.policyTypes = ["Ingress", "Egress"] },
            makePolicy("x", "web") { $0.podSelector = labels(["role": "web"]); $0.ingress = [rule(nil, ports: [port(80)])] },
        ])
        let allowed = try e.verdict(Flow(from: outside, to: pod("x/a"), proto: .tcp, port: 80))
        #expect(allowed.description == """
            allowed: 192.0.2.10 -> x/a on TCP/80
              flow: 192.0.2.10 (192.0.2.10) -> x/a (10.0.1.1) TCP/80, IPv4
              egress: 192.0.2.10 is not a pod, nothing isolates it
              ingress: x/a is isolated for ingress by x/deny-all, x/web; admitted by x/web ingress[0]
            """)
        let denied = try e.verdict(Flow.icmp(from: pod("x/b"), to: pod("x/a")))
        #expect(denied.description.hasPrefix("""
            denied: x/b is isolated for egress by x/deny-all; no egress rule admits x/a on ICMP; \
            and x/a is isolated for ingress by x/deny-all, x/web; no ingress rule admits x/b on ICMP
            """))
        let node = try e.verdict(Flow(from: nodeA, to: pod("x/a"), proto: .tcp, port: 10250))
        #expect(node.description.hasPrefix("allowed: node node-a always reaches its own pod x/a\n"))
    }

    @Test("10^5 flows of a small cluster evaluate quickly")
    func speed() throws {
        let pods = (0..<40).map { i in
            makePod(["x", "y", "z"][i % 3], "p\(i)", "10.1.\(i / 200).\(i % 200 + 1)") {
                $0.labels = ["app": "app\(i % 5)", "role": i % 2 == 0 ? "web" : "db"]
                $0.ports = [ContainerPort(name: "http", number: 8000 + i % 7)]
            }
        }
        let policies = ["x", "y", "z"].flatMap { ns in
            [
                makePolicy(ns, "deny-all") { $0.policyTypes = ["Ingress", "Egress"] },
                makePolicy(ns, "web") {
                    $0.podSelector = labels(["role": "web"])
                    $0.ingress = [rule([.init(namespaceSelector: labels(["team": "y"])), block("10.1.0.0/28")], ports: [port("http"), port(80)])]
                    $0.egress = [rule([.init(podSelector: labels(["app": "app1"]), namespaceSelector: LabelSelector())])]
                },
            ]
        }
        let e = Evaluator(snapshot: ClusterSnapshot(namespaces: makeNamespaces(), pods: pods, policies: policies))
        let flows = (0..<100_000).map { i in
            Flow(from: .pod(pods[i % 40].key), to: .pod(pods[(i / 40) % 40].key), proto: .tcp, port: 8000 + i % 9)
        }
        let clock = ContinuousClock()
        var allowed = 0
        let elapsed = try clock.measure {
            for flow in flows where try e.verdict(flow).allowed { allowed += 1 }
        }
        #expect(allowed > 0 && allowed < flows.count)
        // Well under a second in release builds; the bound leaves room for debug builds on busy CI.
        #expect(elapsed < .seconds(20), "\(elapsed)")
    }
}
