// PolicyCompiler: cluster snapshot + node name -> Ruleset. Pure: no I/O, no clock, no
// randomness, no unsorted iteration of a dictionary or set, so the same cluster always yields
// the same bytes.
//
// The layout (one per family, all in the mangle table; see README "Rule layout"):
//
//   mangle FORWARD -> PICKET-MARK-FORWARD (the first rule of the chain, bare: it jumps unless
//     the flow's conntrack entry carries the seen label, so an established packet of a judged
//     flow passes with one match and no jump; a packet without an entry always jumps); a new
//     connection's packet gets the seen label, clears Picket's mark bits (one rule), is tagged
//     with its source pod's egress group number and its destination pod's ingress group number
//     (one dispatch-set lookup per direction), and is judged: an egress number -> PICKET-EGRESS,
//     then an ingress number -> PICKET-INGRESS (a direction no number can be in is not tested;
//     an established flow flagged for re-check goes to PICKET-MARK-FORWARD-RECHECK instead,
//     which tags and judges its next packet in the original direction the same way)
//   mangle INPUT -> PICKET-MARK-INPUT alike, egress only
//   PICKET-EGRESS / PICKET-INGRESS: a crit-bit tree of `-m mark` chains down to the group
//   chain (one group = local pods selected by exactly the same policies). A group chain calls
//   each of its policies' chains; a policy rule admits the packet by clearing its direction's
//   number; the group chain RETURNs once it is clear (back to the tagging chain, which then
//   evaluates the other direction) and DROPs when no policy admitted it.
//
// So a packet is never ACCEPTed on the first match: on the same node, bridged traffic crosses
// FORWARD once and meets the source's egress and the destination's ingress in that one pass.
// The per-packet cost does not follow the cluster: two set lookups for a new connection whatever
// the number of pods, policies and groups (cluster pods are set members), native compares that
// grow with the logarithm of the node's groups (a binary tree of mark compares, at most 14 rules
// with 13 bits), and one rule for an established one (the hook and its one conntrack-label
// match), with no hook in filter at all.

import KubeModel

/// Options of a compilation that are not part of the cluster.
public struct CompileOptions: Hashable, Sendable {
    /// The packet-mark bits Picket may use, and their roles. They must not collide with other
    /// users of the mark (kube-proxy uses 0x4000/0x8000).
    public var marks: MarkLayout
    /// This node's pod CIDRs (its Node's spec.podCIDRs), when forwarded traffic to and from an
    /// address in them that is no known pod of the node must be dropped: a new pod's interface is
    /// up before any controller has seen its address, and without this it would be unprotected
    /// until then. Empty: no such blocking (dry-run, or `--block-unknown-pod-ips=false`).
    public var podCIDRs: [CIDR]

    /// The default options: mark mask 0xffff0000, no pod CIDRs.
    public init(marks: MarkLayout = MarkLayout(), podCIDRs: [CIDR] = []) {
        self.marks = marks
        self.podCIDRs = podCIDRs
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
            || options.podCIDRs.contains { $0.family == .v6 }
        self.families = anyV6 ? [.v4, .v6] : [.v4]
        self.ineligible = Set(zip(snapshot.endpoints, snapshot.peerEligible).filter { !$1 }.map(\.0.key))
    }

    var marks: MarkLayout { options.marks }

    /// `0xV/0xM`.
    static func hex(_ value: UInt32, _ mask: UInt32) -> String {
        "0x" + String(value, radix: 16) + "/0x" + String(mask, radix: 16)
    }

    /// `-j MARK --set-xmark 0x0/FIELD`: a policy rule admits the packet in `direction`.
    func admit(_ direction: Direction) -> [String] {
        ["-j", "MARK", "--set-xmark", Self.hex(0, marks.field(direction))]
    }

    /// `-m mark --mark 0x0/FIELD`: the packet was admitted in `direction` (or never needed to be).
    func admitted(_ direction: Direction) -> [String] {
        ["-m", "mark", "--mark", Self.hex(0, marks.field(direction))]
    }

    func build() -> Ruleset {
        let groupsByDirection = Direction.allCases.map { groups(of: local, $0, in: snapshot) }
        var dispatch: [Dispatch] = []
        var warnings: [String] = []
        for (direction, groups) in zip(Direction.allCases, groupsByDirection) {
            let numbers = assignNumbers(groups.map(\.chain), keeping: [:], marks: marks, direction: direction)
            let overflowing = groups.filter { numbers[$0.chain] == marks.overflow(direction) }
            if !overflowing.isEmpty {
                warnings.append(
                    "node \(node) has \(groups.count) \(direction.field) groups; mark mask \(marks) numbers \(marks.capacity(direction)): "
                        + "the pods of \(overflowing.count) groups fail closed (\(direction.field) denied); widen --mark-mask")
            }
            dispatch.append(Dispatch(direction: direction, groups: groups.map { group in
                Dispatch.Group(
                    chain: group.chain, number: numbers[group.chain]!, addresses: group.pods.flatMap(\.ips),
                    policies: group.policies.map(\.key))
            }))
        }
        var tables: [FamilyRules] = []
        for family in families {
            var chains: [Chain] = []
            for (d, groups) in zip(dispatch, groupsByDirection) {
                let direction = d.direction
                if !groups.isEmpty { addSet(dispatchSet(d, family, marks: marks)) }
                chains += dispatchTree(direction, leaves: d.chainsByNumber, marks: marks)
                var policiesWithRules: [ObjectKey: Policy] = [:]
                for group in groups {
                    chains.append(groupChain(group))
                    for policy in group.policies where !policy.rules(direction).isEmpty {
                        policiesWithRules[policy.key] = policy
                    }
                }
                for key in policiesWithRules.keys.sorted() {
                    chains.append(policyChain(policiesWithRules[key]!, direction, family))
                }
            }
            let blocksUnknown = addUnknownPodsSet(family)
            let base = baseChains(
                family, mapping: zip(Direction.allCases, groupsByDirection).filter { !$0.1.isEmpty }.map(\.0), blockingUnknown: blocksUnknown)
            tables.append(FamilyRules(family: family, chains: orderedChains(base.chains + chains), hooks: base.hooks))
        }
        return Ruleset(
            sets: sets.list.sorted { $0.name < $1.name }, ipv4: tables[0], ipv6: tables.count > 1 ? tables[1] : nil,
            marks: marks, dispatch: dispatch, warnings: warnings)
    }

    /// Emits a set once; a second rule defining the same set (same name) shares it, and its
    /// members are computed only the first time.
    func addSet(
        _ name: String, _ kind: IPSet.Kind, _ family: IPAddress.Family, role: IPSet.Role, purpose: String, members: () -> [IPSet.Member]
    ) {
        guard sets.names.insert(name).inserted else { return }
        sets.list.append(IPSet(name: name, kind: kind, family: family, members: members(), purpose: purpose, role: role))
    }

    /// Emits the unknown-pods set of `family` (`Names.unknownPodsSet`) when the node has pod
    /// CIDRs of that family; whether it did. Its members are the CIDRs, each known local pod's
    /// address inside them a `nomatch` hole: one hash:net lookup per direction answers "an
    /// address of this node's pods that Picket does not know".
    func addUnknownPodsSet(_ family: IPAddress.Family) -> Bool {
        let cidrs = Set(options.podCIDRs.filter { $0.family == family })
        guard !cidrs.isEmpty else { return false }
        var members = cidrs.map { IPSet.Member($0) }
        var holes = Set<IPAddress>()
        for pod in local where !pod.hostNetwork {
            for address in pod.ips where address.family == family && cidrs.contains(where: { $0.contains(address) }) {
                holes.insert(address)
            }
        }
        members += holes.map { IPSet.Member(CIDR(address: $0, prefix: family.bitWidth), nomatch: true) }
        addSet(IPSet(
            name: Names.unknownPodsSet(family), kind: .hashNet, family: family, members: members.sorted(),
            purpose: "this node's pod CIDRs but its known pods: forwarded traffic of these addresses is dropped", role: .unknownPods))
        return true
    }

    /// Emits a set of local pods (never shared).
    func addSet(_ set: IPSet) {
        sets.names.insert(set.name)
        sets.list.append(set)
    }

    /// The base chains and the hooks into them (the static table of hooks), all in mangle: the
    /// chains that tag a packet with its pods' group numbers (one dispatch-set lookup for each
    /// direction in `mapping`) and then judge it there, by a jump into each direction's dispatch
    /// tree that the packet carries a number of. Judging in mangle, where the tagging must be
    /// (`--map-set` is refused elsewhere), spares every packet a hook in filter.
    ///
    /// A new connection's packet meets only what a new connection needs; the tests that only
    /// established flows need (the re-check flag, the direction of a reply) sit in a chain of
    /// their own, reached by a goto, whose returns leave the tagging chain.
    ///
    /// With `blockingUnknown`, the tagging also gives an address of the unknown-pods set the
    /// fail-closed number of its direction, so that the dispatch tree drops the packet.
    func baseChains(_ family: IPAddress.Family, mapping: [Direction], blockingUnknown: Bool = false) -> (chains: [Chain], hooks: [Hook]) {
        let fields = marks.ingress | marks.egress
        let recheck = marks.recheck
        let label = String(marks.seenLabel)
        // The hooks jump here unless the flow's conntrack entry carries the seen label: a flow
        // judged and not flagged for re-check (the executor clears the label when it flags one).
        // An established packet meets one rule of Picket's, with one match, no jump and no
        // comment. The match is true for a packet without a conntrack entry too (untracked,
        // invalid), so such a packet is tagged and judged each time.
        let unseen = ["-m", "connlabel", "!", "--label", label]
        // Sets the seen label (a match that sets the bit and holds; an entry still unconfirmed
        // when the packet is dropped is discarded by the kernel, label and all).
        let setSeen = ["-m", "connlabel", "--label", label, "--set"]
        // An established flow that gets here is flagged for re-check, or from before the seen
        // label; it goes to its own chain and, whatever happens there, leaves the tagging chain
        // from it. A new connection's packet is not established: one test, then the label.
        func established(_ recheckChain: String) -> [[String]] {
            [["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-g", recheckChain]]
        }
        // An established flow without the re-check bit (a flow from before Picket, or before the
        // seen label) was judged when it was new, and is not judged again: it gets the label.
        let skipUnflagged: [[String]] = [["-m", "connmark", "--mark", Self.hex(0, recheck)] + setSeen + ["-j", "RETURN"]]
        // A flow whose conntrack entry carries the re-check bit was admitted under rules that have
        // since taken access away from one of its ends: its next packet in the original direction
        // is tagged and judged like a new connection. Replies pass until then (without the label,
        // so the flow keeps coming here).
        let skipReplies: [[String]] = [["-m", "conntrack", "--ctdir", "REPLY", "-j", "RETURN"]]
        // IPv6 neighbour discovery is not tracked by conntrack and is what ARP is to IPv4 (which
        // iptables never sees): without it an isolated pod cannot even resolve its peers, so
        // router and neighbour solicitations and advertisements are never tagged.
        let discovery: [[String]] = family == .v6
            ? ["133", "134", "135", "136"].map { ["-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", $0, "-j", "RETURN"] }
            : []
        // Clears Picket's bits of the mark before the lookups, so no bit another component set
        // can pass for a number.
        let clear = ["-j", "MARK", "--set-xmark", Self.hex(0, fields)]
        func map(_ direction: Direction) -> [String] {
            ["-j", "SET", "--map-set", Names.dispatchSet(direction, family), direction == .ingress ? "dst" : "src", "--map-mark"]
        }
        // Not a known pod of this node yet: the direction's fail-closed number, which no tree leaf
        // holds, so the judging sends the packet down the tree to DROP.
        let unknown: [[String]] = blockingUnknown
            ? [Direction.egress, .ingress].map { direction in
                let field = marks.field(direction)
                // The comment after the set test: a match of its own, evaluated only on a hit.
                return ["-m", "set", "--match-set", Names.unknownPodsSet(family), direction == .ingress ? "dst" : "src"]
                    + comment("not a known pod of this node yet: fail closed")
                    + ["-j", "MARK", "--set-xmark", Self.hex(MarkLayout.deposit(marks.overflow(direction), into: field), field)]
            }
            : []
        // Judged when tagged: egress first, then ingress, each a jump into its direction's
        // dispatch tree when the packet carries a number of it (a packet no policy governs leaves
        // untouched). A direction that can carry no number here (no pod isolated in it, no unknown
        // pod failing closed) is not tested.
        func judge(_ directions: [Direction]) -> [[String]] {
            directions.map { ["-m", "mark", "!", "--mark", Self.hex(0, marks.field($0)), "-j", Names.treeRoot($0)] }
        }
        let judgedForward = [Direction.egress, .ingress].filter { mapping.contains($0) || blockingUnknown }
        let judgedInput = mapping.contains(.egress) ? [Direction.egress] : []
        // A re-checked flow that came back from judging was admitted in every direction that
        // applied, or is governed by no policy any more: either way it stops being re-checked,
        // and its packets pass the hooks again.
        let stopRechecking = [setSeen + ["-j", "CONNMARK", "--set-xmark", Self.hex(0, recheck)]]
        // The lookups (after the clear) and the judging of each chain.
        let forwardTags = [Direction.egress, .ingress].filter(mapping.contains).map(map) + unknown + judge(judgedForward)
        let inputTags = (mapping.contains(.egress) ? [map(.egress)] : []) + judge(judgedInput)
        // A new connection's packet gets the seen label in the rule that clears the mark (one
        // rule fewer on its path); with nothing to judge (no tags: nothing looked up, nothing
        // judged), the mark is not read and not cleared.
        func newConnection(_ tags: [[String]]) -> [[String]] {
            tags.isEmpty ? [setSeen] : discovery + [setSeen + clear] + tags
        }
        func rejudge(_ tags: [[String]]) -> [[String]] {
            (tags.isEmpty ? [] : [clear] + tags) + stopRechecking
        }
        let markForward = Chain(
            name: Names.markForwardChain, kind: .mark,
            rules: established(Names.markForwardRecheckChain) + newConnection(forwardTags),
            calls: [Names.markForwardRecheckChain] + judgedForward.map(Names.treeRoot))
        let markInput = Chain(
            name: Names.markInputChain, kind: .mark,
            rules: established(Names.markInputRecheckChain) + newConnection(inputTags),
            calls: [Names.markInputRecheckChain] + judgedInput.map(Names.treeRoot))
        let recheckForward = Chain(
            name: Names.markForwardRecheckChain, kind: .mark,
            rules: skipUnflagged + skipReplies + rejudge(forwardTags), calls: judgedForward.map(Names.treeRoot))
        let recheckInput = Chain(
            name: Names.markInputRecheckChain, kind: .mark,
            rules: skipUnflagged + skipReplies + rejudge(inputTags), calls: judgedInput.map(Names.treeRoot))
        // A packet of a flow not judged yet, or flagged for re-check, or without a conntrack entry,
        // jumps into its tagging chain; an established one of a flow judged passes the hook: one
        // rule, one xtables match (conntrack label), and nothing in filter.
        let hooks = [
            Hook(table: .mangle, builtin: "FORWARD", target: Names.markForwardChain, comment: nil, matches: unseen),
            Hook(table: .mangle, builtin: "INPUT", target: Names.markInputChain, comment: nil, matches: unseen),
        ]
        return ([markForward, markInput, recheckForward, recheckInput], hooks)
    }

    /// A group chain: each policy with rules in turn, RETURN as soon as one admits, else DROP.
    func groupChain(_ group: PodGroup) -> Chain {
        var chain = Chain(name: group.chain, kind: .group(group.direction))
        for policy in group.policies where !policy.rules(group.direction).isEmpty {
            // Bare (no comment naming the policy): every new connection of the group takes it; the
            // policy chain's rules carry the policy's name.
            chain.rules.append(["-j", Names.policyChain(policy.key, group.direction)])
            chain.calls.append(Names.policyChain(policy.key, group.direction))
            chain.rules.append(admitted(group.direction) + ["-j", "RETURN"])
        }
        // Name the policies while they fit in a comment; count them past that.
        let names = "no \(group.direction.field) rule of " + group.policies.map(\.key.description).joined(separator: ",") + " admits"
        let text = names.utf8.count <= 255 ? names : "no \(group.direction.field) rule of these \(group.policies.count) policies admits"
        chain.rules.append(comment(text) + ["-j", "DROP"])
        return chain
    }

    /// One policy's rules of one direction for one family, and the sets they use.
    func policyChain(_ policy: Policy, _ direction: Direction, _ family: IPAddress.Family) -> Chain {
        var chain = Chain(name: Names.policyChain(policy.key, direction), kind: .policy(direction))
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
                    addSet(name, .hashIP, family, role: .peers, purpose: definition) {
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
                    addSet(name, .hashNet, family, role: .block, purpose: definition) { blockMembers(cidr, except) }
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
                addSet(name, .hashIPPort, family, role: .namedPorts, purpose: definition) {
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
                chain.rules.append(line + comment(label) + admit(direction))
            }
            if !lines.isEmpty && position < rules.count - 1 {
                chain.rules.append(admitted(direction) + ["-j", "RETURN"])
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
