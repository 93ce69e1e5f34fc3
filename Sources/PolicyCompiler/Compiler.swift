// PolicyCompiler: cluster snapshot + node name -> Ruleset. Pure: no I/O, no clock, no
// randomness, no unsorted iteration of a dictionary or set, so the same cluster always yields
// the same bytes.
//
// The layout (one per family; see README "Rule layout"):
//
//   FORWARD -> PICKET-FORWARD   (inserted first)
//     0. connmark bit set -> PICKET-RECHECK                    flows whose access was revoked
//     1. ctstate RELATED,ESTABLISHED -> ACCEPT                 replies and admitted flows
//     2. src in picket-egress-vN  -> PICKET-EGRESS             local pods isolated for egress
//     3. dst in picket-ingress-vN -> PICKET-INGRESS            local pods isolated for ingress
//   INPUT -> PICKET-INPUT: established -> RETURN; src in picket-egress-vN -> PICKET-EGRESS
//
//   PICKET-EGRESS / PICKET-INGRESS clear the mark bit, then `goto` the group chain whose member
//   set holds the pod (one group = local pods selected by exactly the same policies). A group
//   chain calls each of its policies' chains; a policy chain sets the mark bit when a rule
//   admits the packet; the group chain RETURNs on the mark (back to PICKET-FORWARD, which then
//   evaluates the other direction) and DROPs when no policy admitted it.
//
// So a packet is never ACCEPTed on the first match: on the same node, bridged traffic crosses
// FORWARD once and meets the source's egress and the destination's ingress in that one pass.
// The per-packet cost is a handful of set lookups, independent of the number of pods and
// policies in the cluster: cluster pods are set members, and rules exist only for policies that
// select pods of this node.

import KubeModel

/// Options of a compilation that are not part of the cluster.
public struct CompileOptions: Hashable, Sendable {
    /// The packet-mark bit Picket uses to carry "a rule admitted this packet" out of a policy
    /// chain. It must not collide with other users of the mark (kube-proxy uses 0x4000/0x8000).
    public var markBit: UInt32

    /// The default options: mark bit 0x800000.
    public init(markBit: UInt32 = 0x0080_0000) {
        precondition(markBit != 0 && markBit & (markBit - 1) == 0, "markBit must be a single bit")
        self.markBit = markBit
    }
}

/// Compiles what `node` must enforce for `snapshot`.
///
/// Each local pod (an endpoint with `spec.nodeName == node`) is isolated in a direction when a
/// policy of its namespace selects it and names that direction; it then admits exactly what the
/// union of those policies' rules allows.
public func compile(_ snapshot: ClusterSnapshot, node: String, options: CompileOptions = CompileOptions()) -> Ruleset {
    let builder = RulesetBuilder(snapshot: snapshot, node: node, options: options)
    return builder.build()
}

/// Endpoint pods scheduled on `node`, sorted by namespace/name.
public func localPods(_ snapshot: ClusterSnapshot, node: String) -> [Pod] {
    snapshot.endpoints.filter { $0.nodeName == node }
}

/// The policies that select `pod` and isolate it in `direction`, sorted by namespace/name.
public func policies(selecting pod: Pod, _ direction: Direction, in snapshot: ClusterSnapshot) -> [Policy] {
    snapshot.policies(inNamespace: pod.key.namespace).filter {
        $0.isolates.contains(direction) && $0.podSelector.matches(pod.labels)
    }
}

/// Local pods that share the same selecting policies in one direction.
struct PodGroup {
    var direction: Direction
    var policies: [Policy]
    var pods: [Pod]
    var chain: String
}

/// Groups local pods by the policies that isolate them in `direction`; pods no policy
/// isolates are left out. Sorted by chain name.
func groups(of pods: [Pod], _ direction: Direction, in snapshot: ClusterSnapshot) -> [PodGroup] {
    var byKeys: [[ObjectKey]: PodGroup] = [:]
    for pod in pods {
        let selecting = policies(selecting: pod, direction, in: snapshot)
        guard !selecting.isEmpty else { continue }
        let keys = selecting.map(\.key)
        if byKeys[keys] == nil {
            byKeys[keys] = PodGroup(direction: direction, policies: selecting, pods: [], chain: Names.groupChain(direction, policies: keys))
        }
        byKeys[keys]!.pods.append(pod)
    }
    return byKeys.values.sorted { $0.chain < $1.chain }
}

private struct RulesetBuilder {
    let snapshot: ClusterSnapshot
    let node: String
    let options: CompileOptions
    let local: [Pod]
    let families: [IPAddress.Family]
    /// The sets emitted so far (a reference, so that member closures may read the builder).
    let sets = SetCollector()
    /// Endpoints that may not be peers (invalid pods, pods of invalid namespaces).
    let ineligible: Set<ObjectKey>

    init(snapshot: ClusterSnapshot, node: String, options: CompileOptions) {
        self.snapshot = snapshot
        self.node = node
        self.options = options
        self.local = localPods(snapshot, node: node)
        let anyV6 = snapshot.endpoints.contains { pod in pod.ips.contains { $0.family == .v6 } }
        self.families = anyV6 ? [.v4, .v6] : [.v4]
        self.ineligible = Set(zip(snapshot.endpoints, snapshot.peerEligible).filter { !$1 }.map(\.0.key))
    }

    var mark: String { "0x" + String(options.markBit, radix: 16) + "/0x" + String(options.markBit, radix: 16) }
    var clearMark: String { "0x0/0x" + String(options.markBit, radix: 16) }

    func build() -> Ruleset {
        let groupsByDirection = Direction.allCases.map { groups(of: local, $0, in: snapshot) }
        var tables: [FilterTable] = []
        for family in families {
            var chains: [Chain] = []
            var derived: [Chain] = []
            for (direction, groups) in zip(Direction.allCases, groupsByDirection) {
                // The isolated set and each group's member set.
                let isolated = groups.flatMap(\.pods).flatMap { $0.ips(family) }
                addSet(IPSet(
                    name: Names.isolatedSet(direction, family), kind: .hashIP, family: family,
                    members: isolated.map(IPSet.Member.init), purpose: "local pods isolated for \(direction.field)"))
                var dispatch = Chain(name: direction == .ingress ? Names.ingressChain : Names.egressChain)
                dispatch.rules.append(["-j", "MARK", "--set-xmark", clearMark])
                var policiesWithRules: [ObjectKey: Policy] = [:]
                for group in groups {
                    let setName = Names.groupSet(direction, policies: group.policies.map(\.key), family)
                    addSet(IPSet(
                        name: setName, kind: .hashIP, family: family, members: group.pods.flatMap { $0.ips(family) }.map(IPSet.Member.init),
                        purpose: "local pods selected by " + group.policies.map(\.key.description).joined(separator: ",")))
                    dispatch.rules.append(["-m", "set", "--match-set", setName, direction == .ingress ? "dst" : "src", "-g", group.chain])
                    derived.append(groupChain(group))
                    for policy in group.policies where !policy.rules(direction).isEmpty {
                        policiesWithRules[policy.key] = policy
                    }
                }
                dispatch.rules.append(comment("isolated pod outside every group: fail closed") + ["-j", "DROP"])
                chains.append(dispatch)
                for key in policiesWithRules.keys.sorted() {
                    derived.append(policyChain(policiesWithRules[key]!, direction, family))
                }
            }
            let base = baseChains(family)
            tables.append(FilterTable(
                family: family, chains: base.chains + chains + derived.sorted { $0.name < $1.name }, hooks: base.hooks))
        }
        return Ruleset(
            sets: sets.list.sorted { $0.name < $1.name }, ipv4: tables[0], ipv6: tables.count > 1 ? tables[1] : nil,
            markBit: options.markBit)
    }

    /// Emits a set once; a second rule defining the same set (same name) shares it, and its
    /// members are computed only the first time.
    func addSet(_ name: String, _ kind: IPSet.Kind, _ family: IPAddress.Family, purpose: String, members: () -> [IPSet.Member]) {
        guard sets.names.insert(name).inserted else { return }
        sets.list.append(IPSet(name: name, kind: kind, family: family, members: members(), purpose: purpose))
    }

    /// Emits a set of local pods (never shared).
    func addSet(_ set: IPSet) {
        sets.names.insert(set.name)
        sets.list.append(set)
    }

    /// PICKET-FORWARD, PICKET-INPUT, PICKET-RECHECK and the hooks into them (the static table of hooks).
    func baseChains(_ family: IPAddress.Family) -> (chains: [Chain], hooks: [Hook]) {
        let egress = Names.isolatedSet(.egress, family)
        let ingress = Names.isolatedSet(.ingress, family)
        // IPv6 neighbour discovery is not tracked by conntrack and is what ARP is to IPv4 (which
        // iptables never sees): without it an isolated pod cannot even resolve its peers, so
        // router and neighbour solicitations and advertisements always pass.
        let discovery: [[String]] = family == .v6
            ? ["133", "134", "135", "136"].map { ["-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", $0] }
            : []
        // A flow whose conntrack entry carries the mark was admitted under rules that have
        // since taken access away from one of its ends: its next packet in the original
        // direction is judged like a new connection (dropped if no longer allowed, else the mark
        // is cleared), before the ESTABLISHED shortcut. Replies pass until then.
        let recheck = ["-m", "connmark", "--mark", mark, "-j", Names.recheckChain]
        let forward = Chain(name: Names.forwardChain, rules: [
            recheck,
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ] + discovery.map { $0 + ["-j", "ACCEPT"] } + [
            ["-m", "set", "--match-set", egress, "src", "-j", Names.egressChain],
            ["-m", "set", "--match-set", ingress, "dst", "-j", Names.ingressChain],
        ])
        let input = Chain(name: Names.inputChain, rules: [
            recheck,
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
        ] + discovery.map { $0 + ["-j", "RETURN"] } + [
            ["-m", "set", "--match-set", egress, "src", "-j", Names.egressChain],
        ])
        let recheckChain = Chain(name: Names.recheckChain, rules: [
            ["-m", "conntrack", "--ctdir", "REPLY", "-j", "RETURN"],
            ["-m", "set", "--match-set", egress, "src", "-j", Names.egressChain],
            ["-m", "set", "--match-set", ingress, "dst", "-j", Names.ingressChain],
            ["-j", "CONNMARK", "--set-xmark", clearMark],
        ])
        let hooks = [
            Hook(builtin: "FORWARD", target: Names.forwardChain, comment: "picket: NetworkPolicy for pod traffic"),
            Hook(builtin: "INPUT", target: Names.inputChain, comment: "picket: NetworkPolicy egress from pods to this node"),
        ]
        return ([forward, input, recheckChain], hooks)
    }

    /// A group chain: each policy with rules in turn, RETURN as soon as one admits, else DROP.
    func groupChain(_ group: PodGroup) -> Chain {
        var chain = Chain(name: group.chain)
        for policy in group.policies where !policy.rules(group.direction).isEmpty {
            chain.rules.append(comment("\(policy.key)") + ["-j", Names.policyChain(policy.key, group.direction)])
            chain.rules.append(["-m", "mark", "--mark", mark, "-j", "RETURN"])
        }
        // Name the policies while they fit in a comment; count them past that.
        let names = "no \(group.direction.field) rule of " + group.policies.map(\.key.description).joined(separator: ",") + " admits"
        let text = names.utf8.count <= 255 ? names : "no \(group.direction.field) rule of these \(group.policies.count) policies admits"
        chain.rules.append(comment(text) + ["-j", "DROP"])
        return chain
    }

    /// One policy's rules of one direction for one family, and the sets they use.
    func policyChain(_ policy: Policy, _ direction: Direction, _ family: IPAddress.Family) -> Chain {
        var chain = Chain(name: Names.policyChain(policy.key, direction))
        let remote = direction == .ingress ? "src" : "dst"
        let rules = policy.rules(direction)
        for (position, rule) in rules.enumerated() {
            let label = "\(policy.key) \(direction.field)[\(rule.index)]"
            // "If this field is empty or missing, this rule matches all ports."
            let numeric = rule.ports.isEmpty ? [[]] : numericPortMatches(rule.ports)
            let named = rule.ports.filter { if case .named = $0.range { true } else { false } }
            // Egress named ports are matched by (peer address, port) pairs alone, so peer sets are
            // needed only for numbered ports, or for ingress (where the pair is the local pod's).
            let needsPeers = !numeric.isEmpty || (direction == .ingress && !named.isEmpty)

            // "If this field is empty or missing, this rule matches all sources" (destinations).
            // Each peer match: an address part (`-s`/`-d`, which iptables-save prints first) and
            // a set part (after the ports).
            var peerMatches: [(address: [String], set: [String])] = []
            if let peers = rule.peers {
                let selectorPeers = peers.filter { if case .pods = $0 { true } else { false } }
                if needsPeers && !selectorPeers.isEmpty {
                    let definition = describe(selectorPeers, in: policy.key.namespace)
                    let name = Names.definedSet(.peers, definition: definition, family)
                    addSet(name, .hashIP, family, purpose: definition) {
                        var members: [IPSet.Member] = []
                        for i in podPeers(policy, selectorPeers) {
                            for ip in snapshot.endpoints[i].ips where ip.family == family { members.append(IPSet.Member(ip)) }
                        }
                        return members
                    }
                    peerMatches.append(([], ["-m", "set", "--match-set", name, remote]))
                }
                for peer in peers where needsPeers {
                    guard case .block(let cidr, let except) = peer, cidr.family == family else { continue }
                    if except.isEmpty {
                        // A plain block is a native address match, cheaper than a set lookup; a
                        // block of every address needs no match at all.
                        peerMatches.append((cidr.prefix == 0 ? [] : [remote == "src" ? "-s" : "-d", "\(cidr)"], []))
                        continue
                    }
                    let definition = describe([peer], in: policy.key.namespace)
                    let name = Names.definedSet(.block, definition: definition, family)
                    addSet(name, .hashNet, family, purpose: definition) { blockMembers(cidr, except) }
                    peerMatches.append(([], ["-m", "set", "--match-set", name, remote]))
                }
            } else {
                peerMatches = [([], [])]
            }

            var lines: [[String]] = []
            for ports in numeric {
                for peer in peerMatches { lines.append(peer.address + ports + peer.set) }
            }
            if !named.isEmpty && (direction == .egress || !peerMatches.isEmpty) {
                // "If the port is a named port, it is resolved against the destination pod":
                // the pod this rule protects (ingress) or each peer pod (egress).
                let definition = direction == .ingress
                    ? "ingress \(describe(named)) on pods(\(policy.key.namespace);\(policy.podSelector))"
                    : "egress \(describe(named)) to " + (rule.peers.map { describe($0, in: policy.key.namespace) } ?? "<all>")
                let name = Names.definedSet(.namedPorts, definition: definition, family)
                addSet(name, .hashIPPort, family, purpose: definition) {
                    var members: [IPSet.Member] = []
                    func add(_ pod: Pod) {
                        for port in named {
                            guard case .named(let portName) = port.range else { continue }
                            for number in pod.resolve(portName: portName, proto: port.proto) {
                                for ip in pod.ips where ip.family == family { members.append(IPSet.Member(ip, port.proto, number)) }
                            }
                        }
                    }
                    if direction == .ingress {
                        for pod in localSelected(policy) { add(pod) }
                    } else {
                        for i in egressDestinations(policy, rule, family) { add(snapshot.endpoints[i]) }
                    }
                    return members
                }
                let match = ["-m", "set", "--match-set", name, "dst,dst"]
                if direction == .ingress {
                    for peer in peerMatches { lines.append(peer.address + match + peer.set) }
                } else {
                    // The pair set holds only peer pods' pairs: one lookup decides.
                    lines.append(match)
                }
            }
            for line in lines {
                chain.rules.append(line + comment(label) + ["-j", "MARK", "--set-xmark", mark])
            }
            if !lines.isEmpty && position < rules.count - 1 {
                chain.rules.append(["-m", "mark", "--mark", mark, "-j", "RETURN"])
            }
        }
        return chain
    }

    /// A canonical text of peers, made absolute (a pod selector without a namespace selector
    /// names the policy's namespace): the identity of the sets derived from them.
    func describe(_ peers: [Policy.Peer], in namespace: String) -> String {
        peers.map { peer in
            switch peer {
            case .pods(let namespaces, let pods): "pods(\(namespaces.map { "namespaces " + $0.description } ?? namespace);\(pods))"
            case .block(let cidr, let except): "block(\(cidr);\(except.map(\.description).joined(separator: ",")))"
            }
        }.joined(separator: "|")
    }

    /// A canonical text of named port entries.
    func describe(_ ports: [Policy.Port]) -> String {
        ports.map { port in
            if case .named(let name) = port.range { "\(port.proto.rawValue)/\(name)" } else { "" }
        }.joined(separator: ",")
    }

    /// Indexes into `snapshot.endpoints` of the pods the selector peers of a rule name,
    /// ascending (so sorted by namespace/name), without repeats.
    func podPeers(_ policy: Policy, _ peers: [Policy.Peer]) -> [Int] {
        var result: [Int] = []
        var selectorPeers = 0
        for peer in peers {
            guard case .pods(let namespaces, let pods) = peer else { continue }
            result += snapshot.endpointIndexes(matching: pods, inNamespaces: namespaces, policyNamespace: policy.key.namespace)
            selectorPeers += 1
        }
        // One peer yields ascending, distinct indexes already; several need a merge.
        if selectorPeers > 1 {
            result.sort()
            result.dedupeSorted()
        }
        return result
    }

    /// Local endpoints `policy` selects whose named ports may be resolved (an invalid pod's
    /// ports admit nothing).
    func localSelected(_ policy: Policy) -> [Pod] {
        local.filter {
            $0.key.namespace == policy.key.namespace && policy.podSelector.matches($0.labels) && !ineligible.contains($0.key)
        }
    }

    /// Indexes into `snapshot.endpoints` of the endpoints an egress rule's peers cover in one
    /// family, ascending: every endpoint when the rule has no `to`, else those named by selectors
    /// plus those whose address of that family lies in an ipBlock.
    func egressDestinations(_ policy: Policy, _ rule: Policy.Rule, _ family: IPAddress.Family) -> [Int] {
        guard let peers = rule.peers else { return snapshot.endpoints.indices.filter { snapshot.peerEligible[$0] } }
        var result = podPeers(policy, peers)
        let blocks: [(CIDR, [CIDR])] = peers.compactMap { if case .block(let c, let e) = $0 { (c, e) } else { nil } }
        guard !blocks.isEmpty else { return result }
        var named = [Bool](repeating: false, count: snapshot.endpoints.count)
        for i in result { named[i] = true }
        // An ipBlock names addresses, not pods: a dual-stack pod is a destination in a family
        // only when its address of that family is in the block.
        for i in snapshot.endpoints.indices where !named[i] && snapshot.peerEligible[i] {
            let inBlock = snapshot.endpoints[i].ips.contains { ip in
                ip.family == family && blocks.contains { cidr, except in cidr.contains(ip) && !except.contains { $0.contains(ip) } }
            }
            if inBlock { result.append(i) }
        }
        result.sort()
        return result
    }

    /// hash:net members for an ipBlock. hash:net cannot hold a /0, so "all addresses" becomes
    /// its two halves; except entries become nomatch holes.
    func blockMembers(_ cidr: CIDR, _ except: [CIDR]) -> [IPSet.Member] {
        var members: [IPSet.Member]
        if cidr.prefix == 0 {
            let half = UInt128(1) << UInt128(cidr.family.bitWidth - 1)
            members = [
                IPSet.Member(CIDR(address: IPAddress(family: cidr.family, value: 0), prefix: 1)),
                IPSet.Member(CIDR(address: IPAddress(family: cidr.family, value: half), prefix: 1)),
            ]
        } else {
            members = [IPSet.Member(cidr)]
        }
        members += except.map { IPSet.Member($0, nomatch: true) }
        return members
    }

    /// `-p PROTO` matches for the numbered and protocol-only entries of a rule's ports, one per
    /// protocol and at most 15 multiport slots per match. Named entries are handled apart.
    func numericPortMatches(_ ports: [Policy.Port]) -> [[String]] {
        var matches: [[String]] = []
        for proto in TransportProtocol.allCases.sorted() {
            let entries = ports.filter { $0.proto == proto }
            if entries.contains(where: { $0.range == .all }) {
                matches.append(["-p", proto.lowercased])
                continue
            }
            var ranges: [(Int, Int)] = entries.compactMap {
                if case .range(let a, let b) = $0.range { (a, b) } else { nil }
            }
            guard !ranges.isEmpty else { continue }
            ranges.sort { $0 < $1 }
            var merged: [(Int, Int)] = []
            for r in ranges {
                if let last = merged.last, r.0 <= last.1 + 1 {
                    merged[merged.count - 1].1 = max(last.1, r.1)
                } else {
                    merged.append(r)
                }
            }
            func text(_ r: (Int, Int)) -> String { r.0 == r.1 ? String(r.0) : "\(r.0):\(r.1)" }
            if merged.count == 1 {
                matches.append(["-p", proto.lowercased, "-m", proto.lowercased, "--dport", text(merged[0])])
                continue
            }
            var chunk: [String] = []
            var slots = 0
            for r in merged {
                let cost = r.0 == r.1 ? 1 : 2
                if slots + cost > 15 {
                    matches.append(["-p", proto.lowercased, "-m", "multiport", "--dports", chunk.joined(separator: ",")])
                    chunk = []
                    slots = 0
                }
                chunk.append(text(r))
                slots += cost
            }
            matches.append(["-p", proto.lowercased, "-m", "multiport", "--dports", chunk.joined(separator: ",")])
        }
        return matches
    }
}

/// The sets a compilation has emitted, by name.
final class SetCollector {
    var list: [IPSet] = []
    var names: Set<String> = []
}

/// `-m comment --comment TEXT`: TEXT made safe (`RestoreText.safe`: printable ASCII, no double
/// quote or backslash, whatever the names in it hold) and cut to the 255 bytes the kernel keeps,
/// so that rules read back from the kernel equal the compiled ones.
func comment(_ text: String) -> [String] {
    ["-m", "comment", "--comment", RestoreText.comment(text)]
}

extension Pod {
    /// The pod's addresses of one family.
    func ips(_ family: IPAddress.Family) -> [IPAddress] { ips.filter { $0.family == family } }
}
