import KubeModel
import PolicyEvaluator
import Testing

/// `from` / `to`: pod and namespace selectors, ipBlocks.
@Suite struct PeerTests {
    /// An ingress policy on x/a admitting `peers` on any port.
    private func ingressToXA(_ peers: [NetworkPolicy.Peer]) -> Evaluator {
        makeEvaluator([makePolicy("x", "p") {
            $0.podSelector = labels(["app": "a"])
            $0.ingress = [rule(peers)]
        }])
    }

    @Test("podSelector matchLabels picks pods of the policy's namespace only")
    func matchLabelsOwnNamespace() {
        let e = ingressToXA([.init(podSelector: labels(["role": "db"]))])
        #expect(e.allows(pod("x/b"), pod("x/a")))
        #expect(!e.allows(pod("y/b"), pod("x/a")))  // no role=db in y anyway
        let sameLabels = ingressToXA([.init(podSelector: labels(["app": "b"]))])
        #expect(sameLabels.allows(pod("x/b"), pod("x/a")))
        #expect(!sameLabels.allows(pod("y/b"), pod("x/a")))  // app=b, but in y
    }

    @Test("matchExpressions: In, NotIn (absent key matches), Exists, DoesNotExist")
    func matchExpressions() {
        let pods: (inout [Pod]) -> Void = {
            $0.append(makePod("x", "d", "10.0.1.4") { $0.labels = ["tier": "cache"] })
            $0.append(makePod("x", "e", "10.0.1.5") { $0.labels = [:] })
        }
        func evaluator(_ expression: LabelSelector.Expression) -> Evaluator {
            makeEvaluator([makePolicy("x", "p") {
                $0.podSelector = labels(["app": "a"])
                $0.ingress = [rule([.init(podSelector: LabelSelector(matchExpressions: [expression]))])]
            }], pods: pods)
        }
        let inList = evaluator(.init(key: "app", operator: "In", values: ["b", "d"]))
        #expect(inList.allows(pod("x/b"), pod("x/a")))
        #expect(!inList.allows(pod("x/d"), pod("x/a")))  // x/d has no app label
        #expect(!inList.allows(pod("x/e"), pod("x/a")))

        let notIn = evaluator(.init(key: "role", operator: "NotIn", values: ["db"]))
        #expect(!notIn.allows(pod("x/b"), pod("x/a")))
        #expect(notIn.allows(pod("x/d"), pod("x/a")))
        #expect(notIn.allows(pod("x/e"), pod("x/a")))

        let exists = evaluator(.init(key: "tier", operator: "Exists"))
        #expect(exists.allows(pod("x/d"), pod("x/a")))
        #expect(!exists.allows(pod("x/b"), pod("x/a")))

        let absent = evaluator(.init(key: "app", operator: "DoesNotExist"))
        #expect(absent.allows(pod("x/d"), pod("x/a")))
        #expect(absent.allows(pod("x/e"), pod("x/a")))
        #expect(!absent.allows(pod("x/b"), pod("x/a")))
    }

    @Test("namespaceSelector alone picks every pod of the matching namespaces")
    func namespaceSelector() {
        let e = ingressToXA([.init(namespaceSelector: labels(["env": "prod"]))])
        #expect(e.allows(pod("y/a"), pod("x/a")))
        #expect(e.allows(pod("y/b"), pod("x/a")))
        #expect(!e.allows(pod("z/c"), pod("x/a")))
        #expect(!e.allows(pod("x/b"), pod("x/a")))
        #expect(!e.allows(outside, pod("x/a")))
    }

    @Test("the automatic kubernetes.io/metadata.name label selects a namespace by name")
    func namespaceNameLabel() {
        let e = ingressToXA([.init(namespaceSelector: labels([Namespace.nameLabel: "z"]))])
        #expect(e.allows(pod("z/c"), pod("x/a")))
        #expect(!e.allows(pod("y/a"), pod("x/a")))
    }

    @Test("an empty namespaceSelector picks every pod of every namespace, and no outside address")
    func emptyNamespaceSelector() {
        let e = ingressToXA([.init(namespaceSelector: LabelSelector())])
        for source in ["x/b", "y/a", "y/b", "z/c"] {
            #expect(e.allows(pod(source), pod("x/a")), "\(source)")
        }
        #expect(!e.allows(outside, pod("x/a")))
        #expect(!e.allows(nodeB, pod("x/a")))
    }

    @Test("namespaceSelector and podSelector in one peer are ANDed")
    func bothSelectorsInOnePeer() {
        let e = ingressToXA([.init(podSelector: labels(["app": "b"]), namespaceSelector: labels(["team": "y"]))])
        #expect(e.allows(pod("y/b"), pod("x/a")))
        #expect(!e.allows(pod("y/a"), pod("x/a")))  // right namespace, wrong pod
        #expect(!e.allows(pod("x/b"), pod("x/a")))  // right pod labels, wrong namespace
        #expect(!e.allows(pod("z/c"), pod("x/a")))
    }

    @Test("two peers in one rule are ORed")
    func twoPeers() {
        let e = ingressToXA([.init(podSelector: labels(["app": "b"])), .init(namespaceSelector: labels(["team": "y"]))])
        #expect(e.allows(pod("y/b"), pod("x/a")))
        #expect(e.allows(pod("y/a"), pod("x/a")))  // via the namespace peer
        #expect(e.allows(pod("x/b"), pod("x/a")))  // via the pod peer (own namespace)
        #expect(!e.allows(pod("z/c"), pod("x/a")))
    }

    @Test("ipBlock with except matches pod addresses and outside addresses alike")
    func ipBlockExcept() {
        let e = ingressToXA([block("10.0.0.0/16", except: ["10.0.2.0/24", "10.0.1.2/32"])])
        #expect(e.allows(pod("z/c"), pod("x/a")))  // 10.0.3.1
        #expect(!e.allows(pod("x/b"), pod("x/a")))  // 10.0.1.2, excepted
        #expect(!e.allows(pod("y/a"), pod("x/a")))  // 10.0.2.1, excepted
        #expect(!e.allows(pod("y/b"), pod("x/a")))
        #expect(e.allows(.address(ip("10.0.200.7")), pod("x/a")))
        #expect(!e.allows(.address(ip("10.1.0.1")), pod("x/a")))
        #expect(!e.allows(outside, pod("x/a")))
    }

    @Test("ipBlock 0.0.0.0/0 admits every IPv4 source")
    func everythingBlock() {
        let e = ingressToXA([block("0.0.0.0/0")])
        #expect(e.allows(outside, pod("x/a")))
        #expect(e.allows(pod("y/b"), pod("x/a")))
        #expect(e.allows(nodeB, pod("x/a")))
        #expect(e.allows(.address(ip("255.255.255.255")), pod("x/a"), .icmp))
    }

    @Test("egress ipBlock: outside destinations by address; a pod destination by its address")
    func egressIPBlock() {
        let e = makeEvaluator([makePolicy("x", "p") {
            $0.policyTypes = ["Egress"]
            $0.egress = [rule([block("192.0.2.0/24")]), rule([block("10.0.2.2/32")], ports: [port(53, "UDP")])]
        }])
        #expect(e.allows(pod("x/a"), outside))
        #expect(!e.allows(pod("x/a"), .address(ip("198.51.100.1"))))
        #expect(e.allows(pod("x/a"), pod("y/b"), .port(.udp, 53)))
        #expect(!e.allows(pod("x/a"), pod("y/b"), .port(.tcp, 53)))
        #expect(!e.allows(pod("x/a"), pod("y/a"), .port(.udp, 53)))
    }

    @Test("pod peers follow labels, not addresses: a selector never matches an outside address")
    func podPeerIsIdentity() {
        let e = ingressToXA([.init(podSelector: labels(["app": "b"]))])
        #expect(e.allows(pod("x/b"), pod("x/a")))
        // The same address, seen as a bare address, is not the pod.
        #expect(!e.allows(.address(ip("10.0.1.2")), pod("x/a")))
        #expect(e.endpoint(for: ip("10.0.1.2")) == pod("x/b"))
    }

    @Test("a policy in another namespace neither selects nor is consulted")
    func otherNamespacePolicy() {
        let e = makeEvaluator([makePolicy("y", "deny-all") { $0.policyTypes = ["Ingress", "Egress"] }])
        #expect(e.allows(pod("x/a"), pod("x/b")))
        #expect(e.allows(pod("z/c"), pod("x/a")))
        #expect(!e.allows(pod("x/a"), pod("y/a")))
        #expect(!e.allows(pod("y/a"), pod("x/a")))
    }
}
