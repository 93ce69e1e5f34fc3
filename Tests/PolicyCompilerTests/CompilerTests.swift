@testable import PolicyCompiler
import KubeModel
import Testing

/// Builders for unit tests: a pod or policy with defaults, adjusted by a closure.
func makePod(_ namespace: String, _ name: String, node: String = "node-a", ip: String, labels: [String: String] = [:],
             _ tweak: (inout Pod) -> Void = { _ in }) -> Pod {
    var pod = Pod(namespace: namespace, name: name, labels: labels, nodeName: node, ips: [IPAddress(ip)!])
    tweak(&pod)
    return pod
}

func makePolicy(_ namespace: String, _ name: String, _ tweak: (inout NetworkPolicy.Spec) -> Void = { _ in }) -> Policy {
    var spec = NetworkPolicy.Spec()
    tweak(&spec)
    return Policy(validating: NetworkPolicy(namespace: namespace, name: name, spec: spec))
}

@Suite struct CompilerTests {
    @Test("SHA-256 matches the FIPS 180-4 test vectors")
    func sha256() {
        func hex(_ s: String) -> String { SHA256.digest(Array(s.utf8)).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
        #expect(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(String(repeating: "a", count: 1000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test("names are stable, separated, prefixed and within the kernel's limits")
    func names() {
        let key = ObjectKey(namespace: "a-very-long-namespace-name-indeed", name: "and-an-even-longer-policy-name-too")
        let chain = Names.policyChain(key, .ingress)
        #expect(chain.count <= Names.maxChainLength && chain.hasPrefix("PICKET-POI-"))
        #expect(chain == Names.policyChain(key, .ingress))
        #expect(chain != Names.policyChain(key, .egress))
        // Separators: moving a character across the namespace/name boundary changes the name.
        #expect(Names.policyChain(ObjectKey(namespace: "ab", name: "c"), .ingress) != Names.policyChain(ObjectKey(namespace: "a", name: "bc"), .ingress))
        for family in IPAddress.Family.allCases {
            for kind in [Names.RuleSetKind.peers, .block, .namedPorts] {
                let set = Names.definedSet(kind, definition: "pods(shop;app=web)", family)
                #expect(set.count <= Names.maxSetLength && set.hasPrefix("picket-") && set.hasSuffix("-v\(family.rawValue)"))
            }
            for direction in Direction.allCases { #expect(Names.dispatchSet(direction, family).count <= Names.maxSetLength) }
        }
        #expect(Names.groupChain(.egress, policies: [key]).count <= Names.maxChainLength)
        // Pinned: a name change would orphan what a running node has applied.
        #expect(Names.policyChain(ObjectKey(namespace: "nsa", name: "npa"), .ingress) == "PICKET-POI-" + Names.hash(["policy", "nsa", "npa", "ingress"]))
    }

    @Test("port lists fold into multiport matches of at most 15 slots")
    func portFolding() {
        let ports = (1...20).map { Policy.Port(proto: .tcp, range: .range($0 * 10, $0 * 10)) }
            + [Policy.Port(proto: .tcp, range: .range(1000, 2000)), Policy.Port(proto: .udp, range: .range(53, 53)),
               Policy.Port(proto: .tcp, range: .range(11, 19))]
        let policy = makePolicy("x", "p") { spec in
            spec.ingress = [.init(ports: ports.map { port in
                switch port.range {
                case .range(let a, let b):
                    NetworkPolicy.Port(protocol: port.proto.rawValue, port: .number(a), endPort: a == b ? nil : b)
                default: NetworkPolicy.Port()
                }
            })]
        }
        let snapshot = ClusterSnapshot(pods: [makePod("x", "a", ip: "10.0.0.1")], policies: [policy])
        let rules = compile(snapshot, node: "node-a").ipv4.chains.first { $0.name.hasPrefix("PICKET-POI-") }!.rules
        let dports = rules.compactMap { rule in rule.firstIndex(of: "--dports").map { rule[$0 + 1] } }
        // Adjacent and overlapping entries merge (10, 11:19 and 20 become 10:20); a range takes two slots.
        #expect(dports == ["10:20,30,40,50,60,70,80,90,100,110,120,130,140,150", "160,170,180,190,200,1000:2000"])
        #expect(rules.contains { $0.starts(with: ["-p", "udp", "-m", "udp", "--dport", "53"]) })
    }

    @Test("only what the node's pods need is emitted")
    func localOnly() {
        let snapshot = ClusterSnapshot(
            pods: [makePod("x", "here", ip: "10.244.1.2", labels: ["app": "a"]), makePod("x", "there", node: "node-b", ip: "10.244.2.2", labels: ["app": "b"])],
            policies: [makePolicy("x", "selects-b") { $0.podSelector = LabelSelector(matchLabels: ["app": "b"]) }])
        let onA = compile(snapshot, node: "node-a")
        let onB = compile(snapshot, node: "node-b")
        #expect(onA.ipv4.chains.map(\.name) == [
            "PICKET-MARK-FORWARD", "PICKET-MARK-INPUT", "PICKET-MARK-FORWARD-RECHECK", "PICKET-MARK-INPUT-RECHECK",
            "PICKET-INGRESS", "PICKET-EGRESS",
        ])
        #expect(onA.sets.isEmpty)
        #expect(onA.memberCount == 0)
        #expect(onB.sets.first { $0.name == "picket-ingress-map-v4" }?.members.map(\.block.address.description) == ["10.244.2.2"])
        #expect(onA.ipv6 == nil)
    }

    @Test("no rule accepts a new packet: FORWARD evaluates egress and ingress in one pass")
    func markAndReturn() {
        let snapshot = ClusterSnapshot(
            pods: [makePod("x", "a", ip: "10.244.1.2"), makePod("x", "b", ip: "10.244.1.3")],
            policies: [makePolicy("x", "p") { spec in
                spec.policyTypes = ["Ingress", "Egress"]
                spec.ingress = [.init(peers: [.init(podSelector: LabelSelector())])]
                spec.egress = [.init(peers: [.init(podSelector: LabelSelector())])]
            }])
        let table = compile(snapshot, node: "node-a").ipv4
        for chain in table.chains {
            for rule in chain.rules {
                #expect(rule.last != "ACCEPT", "\(chain.name): \(rule)")
            }
        }
        // The tagging chain judges egress, then ingress, by jumps into the dispatch trees.
        let forward = table.chains.first { $0.name == Names.markForwardChain }!
        #expect(forward.rules.suffix(2).map { $0.last! } == [Names.egressChain, Names.ingressChain])
        // Dispatch chains goto the group chain, so its RETURN resumes the tagging chain.
        let egress = table.chains.first { $0.name == Names.egressChain }!
        #expect(egress.rules.contains { $0.contains("-g") })
    }

    @Test("a rule whose peers are all of the other family allows nothing in this family")
    func familySplit() {
        let snapshot = ClusterSnapshot(
            pods: [makePod("x", "a", ip: "10.244.1.2") { $0.ips.append(IPAddress("fd00::2")!) }],
            policies: [makePolicy("x", "p") { spec in
                spec.ingress = [.init(peers: [.init(ipBlock: .init(cidr: "192.0.2.0/24"))])]
            }])
        let ruleset = compile(snapshot, node: "node-a")
        let v4 = ruleset.ipv4.chains.first { $0.name.hasPrefix("PICKET-POI-") }!
        let v6 = ruleset.ipv6!.chains.first { $0.name.hasPrefix("PICKET-POI-") }!
        #expect(v4.rules.count == 1)
        #expect(v6.rules.isEmpty)
        #expect(ruleset.sets.filter { $0.family == .v6 }.allSatisfy { !$0.name.hasPrefix("picket-net-") })
    }

    @Test("0.0.0.0/0 with except becomes two halves with nomatch holes; plain blocks are native matches, ::/0 none")
    func allAddresses() {
        let snapshot = ClusterSnapshot(
            pods: [makePod("x", "a", ip: "10.244.1.2") { $0.ips.append(IPAddress("fd00::2")!) }],
            policies: [makePolicy("x", "p") { spec in
                spec.egress = [.init(peers: [
                    .init(ipBlock: .init(cidr: "0.0.0.0/0", except: ["10.0.0.0/8"])), .init(ipBlock: .init(cidr: "::/0")),
                    .init(ipBlock: .init(cidr: "192.0.2.0/24")),
                ])]
            }])
        let ruleset = compile(snapshot, node: "node-a")
        let sets = ruleset.sets.filter { $0.name.hasPrefix("picket-net-") }
        #expect(sets.map { $0.members.map(\.description) } == [["0.0.0.0/1", "10.0.0.0/8 nomatch", "128.0.0.0/1"]])
        let v4 = ruleset.ipv4.chains.first { $0.name.hasPrefix("PICKET-POE-") }!.rules
        #expect(v4.count == 2)
        #expect(v4[0].contains("--match-set") && v4[1].starts(with: ["-d", "192.0.2.0/24"]))
        let v6 = ruleset.ipv6!.chains.first { $0.name.hasPrefix("PICKET-POE-") }!.rules
        #expect(v6.count == 1 && v6[0].starts(with: ["-m", "comment"]), "::/0 admits every IPv6 destination: \(v6)")
    }

    @Test("pods selected by the same policies share one group; others get their own")
    func grouping() {
        let pods = (1...5).map { makePod("x", "p\($0)", ip: "10.244.1.\($0)", labels: ["app": $0 <= 3 ? "web" : "db"]) }
        let snapshot = ClusterSnapshot(pods: pods, policies: [
            makePolicy("x", "all"),
            makePolicy("x", "db") { $0.podSelector = LabelSelector(matchLabels: ["app": "db"]) },
        ])
        let groups = PolicyCompiler.groups(of: pods, .ingress, in: snapshot)
        #expect(groups.map { $0.pods.map(\.key.name) }.sorted { $0.count < $1.count } == [["p4", "p5"], ["p1", "p2", "p3"]])
        #expect(groups.map(\.policies.count).sorted() == [1, 2])
    }

    @Test("finished, hostNetwork and address-less pods are neither protected nor peers")
    func endpoints() {
        let snapshot = ClusterSnapshot(
            pods: [
                makePod("x", "host", ip: "172.18.0.2") { $0.hostNetwork = true },
                makePod("x", "done", ip: "10.244.1.9") { $0.phase = "Succeeded" },
                makePod("x", "failed", ip: "10.244.1.8") { $0.phase = "Failed" },
                makePod("x", "pending", ip: "10.244.1.7") { $0.ips = []; $0.phase = "Pending" },
            ],
            policies: [makePolicy("x", "p") { $0.ingress = [.init(peers: [.init(podSelector: LabelSelector())])] }])
        let ruleset = compile(snapshot, node: "node-a")
        #expect(ruleset.memberCount == 0)
    }
}

@Suite struct SetIdentityTests {
    func peerSets(_ selector: [String: String], extraPod: Bool) -> [String: [String]] {
        var pods = [makePod("x", "a", ip: "10.244.1.2"), makePod("x", "b", node: "node-b", ip: "10.244.2.2", labels: ["app": "web"])]
        if extraPod { pods.append(makePod("x", "c", node: "node-b", ip: "10.244.2.3", labels: ["app": "web", "tier": "front"])) }
        let snapshot = ClusterSnapshot(pods: pods, policies: [makePolicy("x", "p") { spec in
            spec.ingress = [.init(peers: [.init(podSelector: LabelSelector(matchLabels: selector))])]
        }])
        let sets = compile(snapshot, node: "node-a").sets.filter { $0.name.hasPrefix("picket-pod-") }
        return Dictionary(uniqueKeysWithValues: sets.map { ($0.name, $0.members.map(\.description)) })
    }

    @Test("pod churn changes members only; a changed peer definition gets a new set")
    func identity() {
        let before = peerSets(["app": "web"], extraPod: false)
        let churned = peerSets(["app": "web"], extraPod: true)
        let redefined = peerSets(["tier": "front"], extraPod: true)
        #expect(Array(before.keys) == Array(churned.keys))
        #expect(before.values.first == ["10.244.2.2"])
        #expect(churned.values.first == ["10.244.2.2", "10.244.2.3"])
        #expect(Set(redefined.keys).isDisjoint(with: Set(churned.keys)))
    }

    @Test("rules of different policies that name the same peers share one set")
    func sharing() {
        let peer = NetworkPolicy.Peer(podSelector: LabelSelector(matchLabels: ["app": "web"]))
        let snapshot = ClusterSnapshot(
            pods: [makePod("x", "a", ip: "10.244.1.2"), makePod("x", "web", node: "node-b", ip: "10.244.2.2", labels: ["app": "web"])],
            policies: [
                makePolicy("x", "p1") { $0.ingress = [.init(peers: [peer])] },
                makePolicy("x", "p2") { $0.ingress = [.init(peers: [peer], ports: [.init(port: .number(80))])] },
                makePolicy("y", "p3") { $0.ingress = [.init(peers: [peer])] },  // its own namespace: other pods
            ])
        let sets = compile(snapshot, node: "node-a").sets.filter { $0.name.hasPrefix("picket-pod-") }
        #expect(sets.count == 1)
        #expect(sets.first?.members.map(\.description) == ["10.244.2.2"])
    }
}

@Suite struct CommentTests {
    @Test("comments are cut to the 255 bytes the kernel keeps")
    func longNames() {
        let name = String(repeating: "p", count: 253)
        let snapshot = ClusterSnapshot(
            pods: [makePod("x", "a", ip: "10.244.1.2")],
            policies: [makePolicy("x", name) { $0.ingress = [.init(peers: [.init(ipBlock: .init(cidr: "10.0.0.0/8"))])] },
                       makePolicy("x", name + "q") { $0.ingress = [.init(ports: [.init(port: .number(80))])] }])
        for chain in compile(snapshot, node: "node-a").ipv4.chains {
            for rule in chain.rules {
                guard let i = rule.firstIndex(of: "--comment") else { continue }
                #expect(rule[i + 1].utf8.count <= 255, "\(chain.name)")
            }
        }
        let group = compile(snapshot, node: "node-a").ipv4.chains.first { $0.name.hasPrefix("PICKET-GRI-") }!
        #expect(group.rules.last?.contains("no ingress rule of these 2 policies admits") == true)
    }
}

@Suite struct DualStackNamedPortTests {
    @Test("an egress named port toward an IPv4 block admits no IPv6 address of the pods in it")
    func familyOfBlock() {
        let target = makePod("x", "b", node: "node-b", ip: "10.244.2.21") { pod in
            pod.ips.append(IPAddress("fd00:10:244:2::21")!)
            pod.ports = [ContainerPort(name: "http", number: 80)]
        }
        let source = makePod("x", "a", ip: "10.244.1.2") { $0.ips.append(IPAddress("fd00:10:244:1::2")!) }
        let snapshot = ClusterSnapshot(pods: [source, target], policies: [makePolicy("x", "p") { spec in
            spec.podSelector = LabelSelector(matchLabels: [:])
            spec.egress = [.init(peers: [.init(ipBlock: .init(cidr: "10.244.2.21/32"))], ports: [.init(port: .name("http"))])]
        }])
        let sets = compile(snapshot, node: "node-a").sets.filter { $0.name.hasPrefix("picket-npt-") }
        #expect(sets.first { $0.family == .v4 }?.members.map(\.description) == ["10.244.2.21,tcp:80"])
        #expect(sets.first { $0.family == .v6 }?.members.isEmpty == true)
    }

    @Test("an established packet meets one bare rule: the mangle hook, whose one conntrack-label match passes a judged flow")
    func establishedPath() throws {
        let snapshot = ClusterSnapshot(
            pods: [makePod("x", "a", ip: "10.244.1.2", labels: ["app": "a"])],
            policies: [makePolicy("x", "deny") { $0.podSelector = LabelSelector(matchLabels: ["app": "a"]) }])
        let ruleset = compile(snapshot, node: "node-a")
        let marks = ruleset.marks
        let label = String(marks.seenLabel)
        let setSeen = ["-m", "connlabel", "--label", label, "--set"]
        for builtin in ["FORWARD", "INPUT"] {
            let hooks = ruleset.ipv4.hooks.filter { $0.table == .mangle && $0.builtin == builtin }
            #expect(hooks.count == 1)
            let target = builtin == "FORWARD" ? Names.markForwardChain : Names.markInputChain
            #expect(hooks.first?.stampedRule == ["-m", "connlabel", "!", "--label", label, "-j", target])
        }
        // Everything is in mangle: no hook, no chain in filter.
        #expect(ruleset.ipv4.hooks.allSatisfy { $0.table == .mangle } && ruleset.ipv4.chains.allSatisfy { $0.table == .mangle })
        let chain = try #require(ruleset.ipv4.chains.first { $0.name == Names.markForwardChain })
        // What jumps in is a flow not judged yet, a flagged one, or a packet without an entry: an
        // established flow goes to the re-check chain by goto at the first rule; a new one gets
        // the label and meets no other conntrack test on its way to judging.
        #expect(chain.rules.first == ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-g", Names.markForwardRecheckChain])
        // The label is set in the rule that clears Picket's mark bits before the lookups.
        #expect(chain.rules.dropFirst().first == setSeen + ["-j", "MARK", "--set-xmark", "0x0/0x" + String(marks.mask, radix: 16)])
        #expect(!chain.rules.dropFirst(2).contains { $0.contains("conntrack") || $0.contains("connmark") || $0.contains("connlabel") })
        #expect(chain.rules.last?.suffix(2) == ["-j", Names.ingressChain])
        // Only ingress is isolated on this node: the tagging chains look up and test ingress only.
        #expect(!chain.rules.contains { $0.contains(Names.egressChain) || $0.contains(Names.dispatchSet(.egress, .v4)) })
        let input = try #require(ruleset.ipv4.chains.first { $0.name == Names.markInputChain })
        #expect(input.rules.count == 2 && input.rules.last == setSeen, "nothing to judge from pods to the node: \(input.rules)")
        let recheck = try #require(ruleset.ipv4.chains.first { $0.name == Names.markForwardRecheckChain })
        let flag = "0x0/0x" + String(marks.recheck, radix: 16)
        // Unflagged: judged when new, labelled now; flagged: judged at the next original-direction
        // packet, labelled only once it came back from judging (a reply leaves without the label).
        #expect(recheck.rules.first == ["-m", "connmark", "--mark", flag] + setSeen + ["-j", "RETURN"])
        #expect(recheck.rules.dropFirst().first == ["-m", "conntrack", "--ctdir", "REPLY", "-j", "RETURN"])
        #expect(recheck.rules.last == setSeen + ["-j", "CONNMARK", "--set-xmark", flag])
        // Nothing on a new connection's way to its policy chain carries a comment (each would be
        // an xtables match to evaluate): the tagging chains, the trees, the jumps
        // into policy chains and the admitted tests are bare. Policy rules and DROPs keep their
        // identity comment, with the policy's name or the reason.
        for chain in ruleset.ipv4.chains {
            for (rule, written) in zip(chain.rules, chain.stampedRules) {
                let terminal = rule.last == "DROP"
                let policyRule: Bool = { if case .policy = chain.kind { rule.last != "RETURN" } else { false } }()
                #expect(written.contains("--comment") == (terminal || policyRule), "\(chain.name): \(written)")
                #expect(RuleIdentity.isBare(rule) == !written.contains("--comment"), "\(chain.name): \(written)")
            }
        }
        // The re-check bit inside the mask; the label a valid one.
        #expect(marks.mask & marks.recheck == marks.recheck && (0...127).contains(marks.seenLabel))

        // A bare rule's identity is its canonical text: another printing of the same rule agrees
        // (iptables-save quotes the label), another rule does not.
        let hook = try #require(ruleset.ipv4.hooks.first { $0.table == .mangle && $0.builtin == "FORWARD" })
        let identity = hook.ruleHash
        let forward = Names.markForwardChain
        #expect(RuleIdentity.identity(ofSaved: "-m connlabel ! --label \"\(label)\" -j \(forward)") == identity)
        #expect(RuleIdentity.identity(ofSaved: "-m  connlabel  !  --label  \(label)  -j  \(forward)") == identity)
        #expect(RuleIdentity.identity(ofSaved: "-m connlabel ! --label 0x\(String(marks.seenLabel, radix: 16)) -j \(forward)") == identity)
        #expect(RuleIdentity.identity(ofSaved: "-m connlabel --label \"\(label)\" -j \(forward)") != identity)
        #expect(RuleIdentity.identity(ofSaved: "-m connlabel ! --label \"\(marks.seenLabel - 1)\" -j \(forward)") != identity)
        #expect(RuleIdentity.identity(ofSaved: "-j \(forward)") != identity)
        #expect(RuleIdentity.identity(ofSaved: "-m connlabel ! --label \"\(label)\" -j \(Names.markInputChain)") != identity)
        let set = try #require(recheck.ruleHashes.last)
        #expect(RuleIdentity.identity(ofSaved: "-m connlabel --label \"\(label)\" --set -j CONNMARK --set-xmark 0x0/0x\(String(marks.recheck, radix: 16))") == set)

        // A stamped rule is known by its comment, never by its text.
        let group = try #require(ruleset.ipv4.chains.first { if case .group = $0.kind { true } else { false } })
        let drop = try #require(group.rules.indices.last)
        #expect(RuleIdentity.identity(ofSaved: LineWriter.line(group.rules[drop])[...]) != group.ruleHashes[drop])
        #expect(RuleIdentity.identity(ofSaved: LineWriter.line(group.stampedRules[drop])[...]) == group.ruleHashes[drop])
        // What a bare rule may hold, and what it may not.
        #expect(RuleIdentity.isBare(["-j", "SET", "--map-set", "picket-ingress-map-v4", "dst", "--map-mark"]))
        #expect(RuleIdentity.isBare(["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-g", "PICKET-X"]))
        #expect(!RuleIdentity.isBare(["-m", "set", "--match-set", "picket-x", "src", "-j", "RETURN"]))
        #expect(!RuleIdentity.isBare(["-p", "tcp", "-j", "DROP"]))
        #expect(!RuleIdentity.isBare(["-m", "comment", "--comment", "x", "-j", "DROP"]))
        #expect(!RuleIdentity.isBare([]))
    }
}
