import KubeModel
import PolicyEvaluator
import Testing

/// Nodes, pods that are not endpoints, address families, invalid policies and errors.
@Suite struct EdgeCaseTests {
    @Test("pods on the same node and on different nodes are treated alike")
    func sameNodeVsCrossNode() {
        let policy = makePolicy("x", "p") {
            $0.ingress = [rule([.init(podSelector: labels(["app": "a"]), namespaceSelector: labels(["team": "y"]))])]
        }
        for node in ["node-a", "node-b"] {
            let e = makeEvaluator([policy]) { pods in
                for i in pods.indices where pods[i].key == key("y/a") { pods[i].nodeName = node }
            }
            #expect(e.allows(pod("y/a"), pod("x/a")), "y/a on \(node) -> x/a on node-a")
            #expect(e.allows(pod("y/a"), pod("x/b")), "y/a on \(node) -> x/b on node-b")
            #expect(!e.allows(pod("y/b"), pod("x/a")))
            #expect(!e.allows(pod("y/b"), pod("x/b")))
        }
    }

    @Test("a node always reaches its own pods; other nodes are just addresses")
    func nodeToLocalPod() throws {
        let e = makeEvaluator([makePolicy("x", "deny-all") { $0.policyTypes = ["Ingress", "Egress"] }])
        let v = try e.verdict(Flow(from: nodeA, to: pod("x/a"), proto: .tcp, port: 8080))
        #expect(v.allowed)
        #expect(v.exemption == .ownNode("node-a"))
        #expect(!v.ingress.allows)  // the policies alone would deny it
        #expect(e.allows(nodeA, pod("x/a"), .icmp))
        #expect(e.allows(nodeB, pod("x/b")))
        #expect(!e.allows(nodeA, pod("x/b")))
        #expect(!e.allows(nodeB, pod("x/a")))
        // Pods to their node are governed by their egress like any address.
        #expect(!e.allows(pod("x/a"), nodeA))

        let open = makeEvaluator([makePolicy("x", "from-nodes") { $0.ingress = [rule([block("172.16.0.0/24")])] }])
        #expect(open.allows(nodeA, pod("x/b")))
        #expect(open.allows(nodeB, pod("x/a")))
        #expect(!open.allows(outside, pod("x/a")))
    }

    @Test("a pod always reaches itself")
    func samePod() throws {
        let e = makeEvaluator([makePolicy("x", "deny-all") { $0.policyTypes = ["Ingress", "Egress"] }])
        let v = try e.verdict(Flow(from: pod("x/a"), to: pod("x/a"), proto: .tcp, port: 80))
        #expect(v.allowed)
        #expect(v.exemption == .samePod)
        #expect(!e.allows(pod("x/a"), pod("x/b")))
    }

    @Test("hostNetwork pods are neither selected nor matched by pod selectors; they are their node")
    func hostNetworkPods() throws {
        let pods: (inout [Pod]) -> Void = {
            $0.append(makePod("x", "h", "172.16.0.1") { $0.hostNetwork = true; $0.labels["app"] = "b" })
            $0.append(makePod("x", "h2", "172.16.0.2") { $0.hostNetwork = true; $0.nodeName = "node-b"; $0.labels["app"] = "b" })
        }
        let e = makeEvaluator([makePolicy("x", "from-b") { $0.ingress = [rule([.init(podSelector: labels(["app": "b"]))])] }], pods: pods)
        #expect(e.isolation(of: key("x/h")) == ([], []))
        #expect(e.allows(outside, pod("x/h")))  // not protected although podSelector is {}
        #expect(e.allows(pod("x/b"), pod("x/a")))
        #expect(!e.allows(pod("x/h2"), pod("x/a")))  // app=b, but not an endpoint pod
        let local = try e.verdict(Flow(from: pod("x/h"), to: pod("x/a"), proto: .tcp, port: 80))
        #expect(local.allowed)
        #expect(local.exemption == .ownNode("node-a"))
        #expect(local.sourceAddress == ip("172.16.0.1"))
        #expect(e.endpoint(for: ip("172.16.0.1")) == nodeA)
        #expect(e.pod(withAddress: ip("172.16.0.1")) == nil)

        let egress = makeEvaluator([makePolicy("x", "to-b") {
            $0.policyTypes = ["Egress"]
            $0.egress = [rule([.init(podSelector: labels(["app": "b"]))])]
        }], pods: pods)
        #expect(egress.allows(pod("x/a"), pod("x/b")))
        #expect(!egress.allows(pod("x/a"), pod("x/h")))  // the source's egress still decides
        #expect(!egress.allows(pod("x/a"), pod("x/h2")))
    }

    @Test("finished pods are neither selected nor matched by pod selectors, only by address")
    func finishedPods() {
        let pods: (inout [Pod]) -> Void = {
            $0.append(makePod("x", "done", "10.0.1.9") { $0.phase = "Succeeded"; $0.labels["app"] = "b" })
            $0.append(makePod("x", "failed", "10.0.1.10") { $0.phase = "Failed" })
        }
        let e = makeEvaluator([makePolicy("x", "p") {
            $0.ingress = [rule([.init(podSelector: labels(["app": "b"]))]), rule([block("10.0.1.8/29")], ports: [port(443)])]
        }], pods: pods)
        #expect(e.isolation(of: key("x/done")) == ([], []))
        #expect(e.allows(outside, pod("x/done")))
        #expect(e.allows(pod("y/a"), pod("x/failed")))
        #expect(!e.allows(pod("x/done"), pod("x/a"), .port(.tcp, 80)))  // app=b, but finished
        #expect(e.allows(pod("x/done"), pod("x/a"), .port(.tcp, 443)))  // 10.0.1.9 in the block
        #expect(e.allows(pod("x/b"), pod("x/a"), .port(.tcp, 80)))
        #expect(e.endpoint(for: ip("10.0.1.9")) == .address(ip("10.0.1.9")))
    }

    @Test("a pod without an address cannot be a flow end")
    func podWithoutAddress() {
        let e = makeEvaluator([]) { $0.append(makePod("x", "pending") { $0.phase = "Pending" }) }
        #expect(e.isolation(of: key("x/pending")) == ([], []))
        #expect(throws: EvaluationError.self) { try e.verdict(Flow(from: pod("x/pending"), to: pod("x/a"), proto: .tcp, port: 80)) }
        do {
            _ = try e.verdict(Flow(from: pod("x/a"), to: pod("x/pending"), proto: .tcp, port: 80))
            Issue.record("a pod without address was accepted")
        } catch {
            #expect(error.code == .noAddress)
        }
    }

    @Test("dual-stack: pods use their address of the flow's family; an IPv4 ipBlock never admits IPv6")
    func dualStack() throws {
        let pods: (inout [Pod]) -> Void = { pods in
            for i in pods.indices {
                switch pods[i].key {
                case key("x/a"): pods[i].ips.append(ip("fd00::1:1"))
                case key("y/a"): pods[i].ips.append(ip("fd00::2:1"))
                default: break
                }
            }
        }
        let v4Block = makeEvaluator([makePolicy("x", "p") { $0.ingress = [rule([block("10.0.0.0/8")])] }], pods: pods)
        #expect(v4Block.allows(pod("y/a"), pod("x/a"), family: .v4))
        #expect(!v4Block.allows(pod("y/a"), pod("x/a"), family: .v6))
        #expect(v4Block.allows(pod("y/a"), pod("x/a")))  // family from the source's first address
        let everything = makeEvaluator([makePolicy("x", "p") { $0.ingress = [rule([block("0.0.0.0/0")])] }], pods: pods)
        #expect(!everything.allows(pod("y/a"), pod("x/a"), family: .v6))
        #expect(!everything.allows(.address(ip("2001:db8::1")), pod("x/a")))

        let v6Block = makeEvaluator([makePolicy("x", "p") { $0.ingress = [rule([block("fd00::2:0/112")])] }], pods: pods)
        #expect(v6Block.allows(pod("y/a"), pod("x/a"), family: .v6))
        #expect(!v6Block.allows(pod("y/a"), pod("x/a"), family: .v4))

        let byLabel = makeEvaluator([makePolicy("x", "p") { $0.ingress = [rule([.init(namespaceSelector: labels(["team": "y"]))])] }], pods: pods)
        #expect(byLabel.allows(pod("y/a"), pod("x/a"), family: .v4))
        #expect(byLabel.allows(pod("y/a"), pod("x/a"), family: .v6))

        let v = try byLabel.verdict(Flow(from: pod("y/a"), to: pod("x/a"), proto: .tcp, port: 80, family: .v6))
        #expect(v.family == .v6)
        #expect(v.sourceAddress == ip("fd00::2:1"))
        #expect(v.destinationAddress == ip("fd00::1:1"))
        #expect(byLabel.endpoint(for: ip("fd00::1:1")) == pod("x/a"))

        // y/b is IPv4 only.
        #expect(throws: EvaluationError.self) {
            try byLabel.verdict(Flow(from: pod("y/b"), to: pod("x/a"), proto: .tcp, port: 80, family: .v6))
        }
    }

    @Test("flows naming unknown pods or mixing families are errors")
    func errors() {
        let e = makeEvaluator()
        do {
            _ = try e.verdict(Flow(from: pod("x/ghost"), to: pod("x/a"), proto: .tcp, port: 80))
            Issue.record("unknown pod accepted")
        } catch {
            #expect(error.code == .unknownPod)
            #expect(error.description.contains("x/ghost"))
        }
        do {
            _ = try e.verdict(Flow(from: .address(ip("2001:db8::1")), to: pod("x/a"), proto: .tcp, port: 80, family: .v4))
            Issue.record("mixed families accepted")
        } catch {
            #expect(error.code == .familyMismatch)
        }
    }

    @Test("an invalid rule fails closed: the policy still isolates, that rule admits nothing")
    func invalidRule() throws {
        let bad = LabelSelector(matchExpressions: [.init(key: "app", operator: "Equals", values: ["b"])])
        let policy = makePolicy("x", "p") {
            $0.ingress = [rule([.init(podSelector: bad)]), rule([.init(podSelector: labels(["app": "b"]))], ports: [port(80)])]
        }
        #expect(policy.errors.map(\.field) == ["spec.ingress[0].from[0].podSelector.matchExpressions[0].operator"])
        let e = makeEvaluator([policy])
        #expect(e.isolation(of: key("x/a")).ingress == [key("x/p")])
        #expect(!e.allows(pod("x/b"), pod("x/a"), .port(.tcp, 81)))
        #expect(!e.allows(pod("y/a"), pod("x/a")))
        let v = try e.verdict(Flow(from: pod("x/b"), to: pod("x/a"), proto: .tcp, port: 80))
        #expect(v.allowed)
        #expect(v.ingress.admittedBy == [RuleReference(policy: key("x/p"), direction: .ingress, index: 1)])

        let onlyBad = makeEvaluator([makePolicy("x", "p") { $0.ingress = [rule([.init(podSelector: bad)])] }])
        #expect(!onlyBad.allows(pod("x/b"), pod("x/a")))
    }

    @Test("an invalid podSelector selects the whole namespace")
    func invalidPodSelector() {
        let policy = makePolicy("x", "p") {
            $0.podSelector = LabelSelector(matchExpressions: [.init(key: "app", operator: "Equals", values: ["a"])])
            $0.ingress = [rule([.init(podSelector: labels(["app": "b"]))])]
        }
        #expect(policy.errors.map(\.field) == ["spec.podSelector.matchExpressions[0].operator"])
        let e = makeEvaluator([policy])
        #expect(e.isolation(of: key("x/a")).ingress == [key("x/p")])
        #expect(e.isolation(of: key("x/b")).ingress == [key("x/p")])
        #expect(e.isolation(of: key("y/a")).ingress.isEmpty)
        #expect(e.allows(pod("x/b"), pod("x/a")))
        #expect(!e.allows(pod("y/a"), pod("x/b")))
    }

    @Test("an invalid policyTypes entry isolates both directions")
    func invalidPolicyTypes() {
        let e = makeEvaluator([makePolicy("x", "p") { $0.policyTypes = ["Sideways"]; $0.ingress = [rule()] }])
        #expect(e.isolation(of: key("x/a")) == ([key("x/p")], [key("x/p")]))
        #expect(e.allows(pod("y/a"), pod("x/a")))
        #expect(!e.allows(pod("x/a"), pod("y/a")))
    }

    @Test("addresses resolve to endpoint pods, then nodes, then bare addresses")
    func endpointForAddress() {
        let e = makeEvaluator()
        #expect(e.endpoint(for: ip("10.0.2.2")) == pod("y/b"))
        #expect(e.pod(withAddress: ip("10.0.2.2"))?.key == key("y/b"))
        #expect(e.endpoint(for: ip("172.16.0.2")) == nodeB)
        #expect(e.endpoint(for: ip("192.0.2.10")) == outside)
    }

    @Test("isolation(of:in:) and verdict(_:in:) work without an explicit Evaluator")
    func freeFunctions() throws {
        let snapshot = ClusterSnapshot(namespaces: makeNamespaces(), pods: makePods(), policies: [
            makePolicy("x", "deny-all") { $0.policyTypes = ["Ingress", "Egress"] },
            makePolicy("x", "web") { $0.podSelector = labels(["role": "web"]); $0.ingress = [rule()] },
        ])
        #expect(isolation(of: key("x/a"), in: snapshot) == ([key("x/deny-all"), key("x/web")], [key("x/deny-all")]))
        #expect(try verdict(Flow(from: pod("y/a"), to: pod("x/a"), proto: .tcp, port: 80), in: snapshot).allowed)
        #expect(try !verdict(Flow(from: pod("y/a"), to: pod("x/b"), proto: .tcp, port: 80), in: snapshot).allowed)
    }
}
