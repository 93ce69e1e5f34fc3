import KubeModel
import PolicyEvaluator
import Testing

/// Who is isolated, in which direction, and what an isolated pod still admits.
@Suite struct IsolationTests {
    @Test("without policies every flow is allowed, ICMP and outside addresses included")
    func noPolicies() {
        let e = makeEvaluator()
        #expect(e.allows(pod("x/a"), pod("y/b")))
        #expect(e.allows(outside, pod("z/c"), .port(.udp, 53)))
        #expect(e.allows(pod("x/b"), outside, .icmp))
        #expect(e.isolation(of: key("x/a")) == ([], []))
    }

    @Test("default deny ingress: podSelector {} and nothing else isolates every pod of the namespace for ingress")
    func defaultDenyIngress() {
        let e = makeEvaluator([makePolicy("x", "deny-all")])
        #expect(e.isolation(of: key("x/a")) == ([key("x/deny-all")], []))
        #expect(e.isolation(of: key("x/b")) == ([key("x/deny-all")], []))
        #expect(e.isolation(of: key("y/a")) == ([], []))
        #expect(!e.allows(pod("x/b"), pod("x/a")))
        #expect(!e.allows(pod("y/a"), pod("x/a")))
        #expect(!e.allows(outside, pod("x/b")))
        #expect(!e.allows(pod("z/c"), pod("x/a"), .icmp))
        // Egress is untouched.
        #expect(e.allows(pod("x/a"), pod("y/a")))
        #expect(e.allows(pod("x/a"), outside, .port(.udp, 53)))
    }

    @Test("default deny egress: policyTypes [Egress] with no rules")
    func defaultDenyEgress() {
        let e = makeEvaluator([makePolicy("x", "deny-egress") { $0.policyTypes = ["Egress"] }])
        #expect(e.isolation(of: key("x/a")) == ([], [key("x/deny-egress")]))
        #expect(!e.allows(pod("x/a"), pod("y/a")))
        #expect(!e.allows(pod("x/a"), pod("x/b")))
        #expect(!e.allows(pod("x/b"), outside, .icmp))
        // Ingress stays open.
        #expect(e.allows(pod("y/a"), pod("x/a")))
        #expect(e.allows(outside, pod("x/b")))
    }

    @Test("allow-all ingress [{}] admits every source, port and protocol")
    func allowAllIngress() {
        let e = makeEvaluator([makePolicy("x", "allow-all") { $0.ingress = [rule()] }])
        #expect(e.isolation(of: key("x/a")).ingress == [key("x/allow-all")])
        #expect(e.allows(pod("y/b"), pod("x/a"), .port(.sctp, 9999)))
        #expect(e.allows(outside, pod("x/a"), .icmp))
        #expect(e.allows(nodeB, pod("x/a")))
    }

    @Test("ingress: [] isolates like a missing ingress; a rule opens it")
    func emptyIngressList() {
        let empty = makeEvaluator([makePolicy("x", "p") { $0.ingress = [] }])
        #expect(!empty.allows(pod("y/a"), pod("x/a")))
        #expect(empty.isolation(of: key("x/a")) == ([key("x/p")], []))
        let withRule = makeEvaluator([makePolicy("x", "p") { $0.ingress = [rule([.init(podSelector: labels(["app": "b"]))])] }])
        #expect(withRule.allows(pod("x/b"), pod("x/a")))
        #expect(!withRule.allows(pod("y/a"), pod("x/a")))
    }

    @Test("policyTypes defaults: always Ingress, Egress only when egress rules are present")
    func policyTypesDefaulting() {
        let egressRules = makeEvaluator([makePolicy("x", "p") { $0.egress = [rule([.init(podSelector: LabelSelector())])] }])
        #expect(egressRules.isolation(of: key("x/a")) == ([key("x/p")], [key("x/p")]))
        // Egress within x is admitted, ingress from anywhere denied, egress elsewhere denied.
        #expect(!egressRules.allows(pod("x/a"), pod("x/b")))  // x/b's ingress is isolated too
        #expect(!egressRules.allows(pod("x/a"), pod("y/a")))
        #expect(!egressRules.allows(pod("y/a"), pod("x/a")))

        let emptyEgress = makeEvaluator([makePolicy("x", "p") { $0.egress = [] }])
        #expect(emptyEgress.isolation(of: key("x/a")) == ([key("x/p")], []))
        #expect(emptyEgress.allows(pod("x/a"), pod("y/a")))

        let explicit = makeEvaluator([makePolicy("x", "p") {
            $0.policyTypes = ["Ingress", "Egress"]
            $0.ingress = [rule()]
        }])
        #expect(explicit.isolation(of: key("x/a")) == ([key("x/p")], [key("x/p")]))
        #expect(explicit.allows(pod("y/a"), pod("x/a")))
        #expect(!explicit.allows(pod("x/a"), pod("y/a")))
    }

    @Test("egress-only isolation leaves ingress open")
    func egressOnly() {
        let e = makeEvaluator([makePolicy("x", "to-y") {
            $0.policyTypes = ["Egress"]
            $0.egress = [rule([.init(namespaceSelector: labels(["team": "y"]))])]
        }])
        #expect(e.allows(pod("x/a"), pod("y/b")))
        #expect(!e.allows(pod("x/a"), pod("x/b")))
        #expect(!e.allows(pod("x/a"), outside))
        #expect(e.allows(pod("z/c"), pod("x/a")))
        #expect(e.allows(outside, pod("x/b"), .icmp))
    }

    @Test("a policy selects only pods of its own namespace, by podSelector")
    func selectionByLabels() {
        let e = makeEvaluator([makePolicy("x", "web") { $0.podSelector = labels(["role": "web"]) }])
        #expect(e.isolation(of: key("x/a")).ingress == [key("x/web")])
        #expect(e.isolation(of: key("x/b")).ingress.isEmpty)
        #expect(e.isolation(of: key("y/a")).ingress.isEmpty)  // same labels, other namespace
        #expect(!e.allows(pod("x/b"), pod("x/a")))
        #expect(e.allows(pod("x/a"), pod("x/b")))
        #expect(e.allows(pod("x/a"), pod("y/a")))
    }

    @Test("policies add up: the union of every selecting policy's rules")
    func unionOfPolicies() throws {
        let e = makeEvaluator([
            makePolicy("x", "from-b") { $0.ingress = [rule([.init(podSelector: labels(["app": "b"]))], ports: [port(80)])] },
            makePolicy("x", "from-y") {
                $0.podSelector = labels(["app": "a"])
                $0.ingress = [rule([.init(namespaceSelector: labels(["team": "y"]))], ports: [port(443)])]
            },
        ])
        #expect(e.isolation(of: key("x/a")).ingress == [key("x/from-b"), key("x/from-y")])
        #expect(e.isolation(of: key("x/b")).ingress == [key("x/from-b")])
        #expect(e.allows(pod("x/b"), pod("x/a"), .port(.tcp, 80)))
        #expect(!e.allows(pod("x/b"), pod("x/a"), .port(.tcp, 443)))
        #expect(e.allows(pod("y/b"), pod("x/a"), .port(.tcp, 443)))
        #expect(!e.allows(pod("y/b"), pod("x/a"), .port(.tcp, 80)))
        #expect(!e.allows(pod("y/b"), pod("x/b"), .port(.tcp, 443)))  // from-y does not select x/b
        let v = try e.verdict(Flow(from: pod("y/b"), to: pod("x/a"), proto: .tcp, port: 443))
        #expect(v.ingress.admittedBy == [RuleReference(policy: key("x/from-y"), direction: .ingress, index: 0)])
    }

    @Test("both directions must agree: the source's egress and the destination's ingress")
    func bothDirections() throws {
        let e = makeEvaluator([
            makePolicy("x", "egress-to-y") {
                $0.policyTypes = ["Egress"]
                $0.egress = [rule([.init(namespaceSelector: labels(["team": "y"]))])]
            },
            makePolicy("y", "ingress-from-z") { $0.ingress = [rule([.init(namespaceSelector: labels(["team": "z"]))])] },
        ])
        let v = try e.verdict(Flow(from: pod("x/a"), to: pod("y/a"), proto: .tcp, port: 80))
        #expect(v.egress.allows)
        #expect(v.egress.admittedBy == [RuleReference(policy: key("x/egress-to-y"), direction: .egress, index: 0)])
        #expect(!v.ingress.allows)
        #expect(!v.allowed)
        #expect(e.allows(pod("z/c"), pod("y/a")))
        #expect(!e.allows(pod("x/a"), pod("z/c")))
    }
}
