import KubeModel
import PolicyCompiler
import Testing

/// A cluster of `groups` namespaces on node-a, each with `podsPerNamespace` pods and its own
/// default-deny-ingress policy plus an allow rule: one ingress group per namespace.
func manyGroups(_ groups: Int, podsPerNamespace: Int = 1, extra: Int = 0) -> ClusterSnapshot {
    var pods: [Pod] = []
    var policies: [Policy] = []
    for n in 0..<(groups + extra) {
        let namespace = "ns-\(n)"
        for p in 0..<podsPerNamespace {
            let index = n * podsPerNamespace + p
            pods.append(makePod(namespace, "pod-\(p)", ip: "10.\(100 + index / 65_536).\(index / 256 % 256).\(index % 256)"))
        }
        policies.append(makePolicy(namespace, "allow-same-namespace") { spec in
            spec.ingress = [.init(peers: [.init(podSelector: LabelSelector())])]
        })
    }
    return ClusterSnapshot(pods: pods, policies: policies)
}

/// Each dispatch-set member's (group chain, number), by address, for one direction and family.
func tags(_ ruleset: Ruleset, _ direction: Direction, _ family: IPAddress.Family = .v4) -> [IPAddress: (chain: String, number: Int)] {
    var result: [IPAddress: (String, Int)] = [:]
    guard let set = ruleset.sets.first(where: { $0.name == Names.dispatchSet(direction, family) }) else { return result }
    for member in set.members {
        guard let tag = member.tag else { continue }
        result[member.block.address] = (set.comments[Int(tag.comment)], MarkLayout.extract(tag.mark, from: ruleset.marks.field(direction)))
    }
    return result
}

/// The deepest chain nesting from the built-in chains (level 0) through Picket's jumps and gotos.
func chainDepth(_ ruleset: Ruleset) -> Int {
    var deepest = 0
    for table in ruleset.tables {
        var targets: [String: Set<String>] = [:]
        for chain in table.chains {
            for rule in chain.rules {
                if let i = rule.firstIndex(where: { $0 == "-j" || $0 == "-g" }), i + 1 < rule.count, rule[i + 1].hasPrefix("PICKET-") {
                    targets[chain.name, default: []].insert(rule[i + 1])
                }
            }
        }
        var memo: [String: Int] = [:]
        func levels(_ chain: String) -> Int {
            if let known = memo[chain] { return known }
            let below = (targets[chain] ?? []).map(levels).max() ?? 0
            memo[chain] = below + 1
            return below + 1
        }
        for hook in table.hooks { deepest = max(deepest, levels(hook.target)) }
    }
    return deepest
}

@Suite struct DispatchTests {
    @Test("mark layout: halves of the mask, deposit and extract are inverse, bad masks refused")
    func markLayout() throws {
        let layout = MarkLayout()
        #expect(layout.egress == 0x00ff_0000 && layout.ingress == 0xff00_0000 && layout.recheck == 0x0001_0000)
        #expect(layout.capacity(.ingress) == 254)
        let odd = try MarkLayout(mask: 0xffff_3ff0)  // 26 bits around kube-proxy's 0x4000/0x8000
        #expect(odd.egress.nonzeroBitCount == 13 && odd.ingress.nonzeroBitCount == 13)
        #expect((odd.egress | odd.ingress) == 0xffff_3ff0 && odd.egress & odd.ingress == 0)
        for number in [0, 1, 2, 77, 4_095, 8_191] {
            let value = MarkLayout.deposit(number, into: odd.ingress)
            #expect(value & ~odd.ingress == 0)
            #expect(MarkLayout.extract(value, from: odd.ingress) == number)
        }
        #expect(throws: MarkLayout.InvalidMask.self) { try MarkLayout(mask: 0x7) }
        // The seen label: any of the kernel's 128 conntrack label bits, nothing past them.
        #expect(layout.seenLabel == 127)
        #expect(try MarkLayout(mask: 0xffff_0000, seenLabel: 0).seenLabel == 0)
        #expect(throws: MarkLayout.InvalidMask.self) { try MarkLayout(mask: 0xffff_0000, seenLabel: 128) }
        #expect(throws: MarkLayout.InvalidMask.self) { try MarkLayout(mask: 0xffff_0000, seenLabel: -1) }
        // The compiled hooks and tagging chains use the bit given.
        let ruleset = compile(manyGroups(2), node: "node-a", options: CompileOptions(marks: try MarkLayout(mask: 0xffff_0000, seenLabel: 3)))
        let words = ruleset.ipv4.hooks.flatMap(\.rule) + ruleset.ipv4.chains.flatMap { $0.rules.flatMap { $0 } }
        let labels = Set(zip(words, words.dropFirst()).filter { $0.0 == "--label" }.map(\.1))
        #expect(labels == ["3"])
    }

    @Test("every isolated pod's number leads down the tree to its own group chain", arguments: [1, 2, 3, 17, 100, 254])
    func treeReachesEveryGroup(groups: Int) {
        let ruleset = compile(manyGroups(groups), node: "node-a")
        let members = tags(ruleset, .ingress)
        let walker = DispatchWalker(ruleset)
        #expect(members.count == groups)
        #expect(Set(members.values.map(\.chain)).count == groups, "one group per namespace")
        var deepest = 0
        for (_, tag) in members {
            let walk = walker.walk(.ingress, .v4, number: tag.number)
            #expect(walk.chain == tag.chain)
            deepest = max(deepest, walk.rules)
        }
        // One compare per bit the tree branches on (8 at most), then the whole number: never a list.
        #expect(deepest <= 8 + 1, "\(deepest) rules for \(groups) groups")
        #expect(chainDepth(ruleset) <= 15, "nf_tables refuses a chain graph deeper than 16 levels")
        // A number no pod carries ends in DROP, never in some group.
        let used = Set(members.values.map(\.number))
        for number in 1...ruleset.marks.capacity(.ingress) where !used.contains(number) {
            #expect(walker.walk(.ingress, .v4, number: number).chain == nil)
        }
    }

    @Test("4,096 groups with a 26-bit mask: every pod reaches its group in at most 14 rules, one a bit, within nf_tables' chain depth")
    func fourThousandGroups() throws {
        let options = CompileOptions(marks: try MarkLayout(mask: 0xffff_3ff0))
        let ruleset = compile(manyGroups(4_096), node: "node-a", options: options)
        #expect(ruleset.warnings.isEmpty)
        var deepest = 0
        let walker = DispatchWalker(ruleset)
        let members = tags(ruleset, .ingress)
        for (_, tag) in members {
            let walk = walker.walk(.ingress, .v4, number: tag.number)
            #expect(walk.chain == tag.chain)
            deepest = max(deepest, walk.rules)
        }
        #expect(deepest <= 13 + 1, "\(deepest)")
        // Numbers have at most 11 bits set, so the chain graph stays within 16 levels however the
        // tree branches.
        #expect(members.values.allSatisfy { $0.number.nonzeroBitCount <= MarkLayout.groupNumberOnes })
        #expect(members.values.contains { $0.number.nonzeroBitCount == MarkLayout.groupNumberOnes })
        #expect(chainDepth(ruleset) <= 15, "nf_tables refuses a chain graph deeper than 16 levels: \(chainDepth(ruleset))")
        // Every tree chain: compares of the mark, each a goto, then DROP; a number no pod carries
        // (the overflow number too) ends in DROP, never in some group.
        let trees = ruleset.ipv4.chains.filter { if case .dispatchTree = $0.kind { true } else { false } }
        #expect(trees.allSatisfy { $0.rules.last?.last == "DROP" })
        #expect(trees.allSatisfy { $0.rules.dropLast().allSatisfy { $0.starts(with: ["-m", "mark", "--mark"]) && $0.dropLast().last == "-g" } })
        let used = Set(members.values.map(\.number))
        for number in 1...ruleset.marks.overflow(.ingress) where !used.contains(number) {
            #expect(walker.walk(.ingress, .v4, number: number).chain == nil)
        }
    }

    @Test("group numbers of a wide field: at most 11 bits set; one a previous layout gave with more is compared at the root until its pods are re-tagged")
    func groupNumberBits() throws {
        let marks = try MarkLayout(mask: 0xffff_3ff0)
        #expect(marks.capacity(.ingress) == 8_190 - 13)  // without the 13 numbers of 12 of 13 bits set
        #expect(marks.highest(.ingress) == 8_190 && marks.overflow(.ingress) == 8_191)
        #expect(MarkLayout().capacity(.ingress) == 254)  // 8 bits: every number
        #expect(try MarkLayout(mask: 0xffff_ffff).capacity(.ingress) == 65_534 - 1_820 - 560 - 120 - 16)
        #expect(!marks.isGroupNumber(0b1_1111_1111_1110, .ingress) && marks.isGroupNumber(0b1_1111_1111_1100, .ingress))
        let options = CompileOptions(marks: marks)
        let before = compile(manyGroups(40), node: "node-a", options: options)
        // The node holds one group under a number of 12 bits set (a previous layout's).
        var current = before.dispatchNumbers
        let moved = current[.ingress]!.sorted { $0.key < $1.key }.first!
        current[.ingress]![moved.key] = nil
        current[.ingress]![0b1_1111_1111_1110] = moved.value
        let after = before.renumbered(keeping: current)
        let new = tags(after, .ingress)
        #expect(new.values.allSatisfy { marks.isGroupNumber($0.number, .ingress) })
        #expect(new.values.contains { $0.chain == moved.value })
        let interim = after.transition(from: current)[.v4] ?? []
        let root = interim.first { $0.name == Names.treeRoot(.ingress) }
        #expect(root?.rules.first?.last == moved.value, "the old number first at the root: \(root?.rules.first ?? [])")
        var table = after.ipv4
        for chain in interim {
            if let i = table.chains.firstIndex(where: { $0.name == chain.name }) { table.chains[i] = chain } else { table.chains.append(chain) }
        }
        let interimRuleset = Ruleset(sets: after.sets, ipv4: table, ipv6: nil, marks: after.marks, dispatch: after.dispatch)
        #expect(interimRuleset.dispatchWalk(.ingress, .v4, number: 0b1_1111_1111_1110).chain == moved.value)
        for (_, tag) in new { #expect(interimRuleset.dispatchWalk(.ingress, .v4, number: tag.number).chain == tag.chain) }
    }

    @Test("more groups than the mask numbers: a warning, and the extra groups' pods fail closed")
    func overflowFailsClosed() {
        let ruleset = compile(manyGroups(300), node: "node-a")
        #expect(ruleset.warnings.count == 1 && ruleset.warnings[0].contains("fail closed"), "\(ruleset.warnings)")
        let members = tags(ruleset, .ingress)
        let overflow = members.values.filter { $0.number == ruleset.marks.overflow(.ingress) }
        #expect(overflow.count == 300 - 254)
        for tag in overflow { #expect(ruleset.dispatchWalk(.ingress, .v4, number: tag.number).chain == nil) }
    }

    @Test("renumbered against the node: groups keep their numbers, a new group takes a free one, and only the tree nodes on its path change")
    func stableNumbers() {
        let before = compile(manyGroups(60), node: "node-a")
        let fresh = compile(manyGroups(60, extra: 1), node: "node-a")
        let after = fresh.renumbered(keeping: before.dispatchNumbers)
        let old = tags(before, .ingress)
        let new = tags(after, .ingress)
        for (address, tag) in old {
            #expect(new[address]?.number == tag.number, "\(address) kept its number")
        }
        let added = Set(new.values.map(\.number)).subtracting(old.values.map(\.number))
        #expect(added.count == 1)
        // Tree chains: at most the root's path changes, plus one new node.
        let oldTree = Dictionary(uniqueKeysWithValues: before.ipv4.chains.filter { Names.isDispatchTree($0.name) }.map { ($0.name, $0) })
        let newTree = after.ipv4.chains.filter { Names.isDispatchTree($0.name) }
        let changed = newTree.filter { oldTree[$0.name] != $0 }
        #expect(changed.count <= 2, "\(changed.map(\.name))")
        for (_, tag) in new { #expect(after.dispatchWalk(.ingress, .v4, number: tag.number).chain == tag.chain) }
    }

    @Test("the interim tree of a change leads both the old and the new numbers to their groups")
    func transitionKeepsOldNumbers() {
        // Every pod of ns-0 moves to a new group (a second policy selects it).
        let base = manyGroups(20)
        let before = compile(base, node: "node-a")
        var policies = base.policies
        policies.append(makePolicy("ns-0", "second") { $0.ingress = [.init(ports: [.init(port: .number(80))])] })
        let after = compile(ClusterSnapshot(pods: base.pods, policies: policies), node: "node-a")
            .renumbered(keeping: before.dispatchNumbers)
        let interim = after.transition(from: before.dispatchNumbers)
        let chains = interim[.v4] ?? []
        #expect(!chains.isEmpty)
        var table = after.ipv4
        for chain in chains {
            if let i = table.chains.firstIndex(where: { $0.name == chain.name }) { table.chains[i] = chain } else { table.chains.append(chain) }
        }
        let interimRuleset = Ruleset(sets: after.sets, ipv4: table, ipv6: nil, marks: after.marks, dispatch: after.dispatch)
        for (_, tag) in tags(before, .ingress) {
            #expect(interimRuleset.dispatchWalk(.ingress, .v4, number: tag.number).chain == tag.chain)
        }
        for (_, tag) in tags(after, .ingress) {
            #expect(interimRuleset.dispatchWalk(.ingress, .v4, number: tag.number).chain == tag.chain)
        }
    }

    @Test("no Picket rule changes a mark bit outside the mask")
    func marksStayInMask() throws {
        let options = CompileOptions(marks: try MarkLayout(mask: 0x00ff_0f00))
        let snapshot = manyGroups(5)
        let ruleset = compile(snapshot, node: "node-a", options: options)
        for chain in ruleset.ipv4.chains {
            for rule in chain.rules {
                guard let i = rule.firstIndex(of: "--set-xmark") else { continue }
                let mask = UInt32(rule[i + 1].split(separator: "/")[1].dropFirst(2), radix: 16)!
                #expect(mask & ~0x00ff_0f00 == 0, "\(chain.name): \(rule)")
            }
        }
        for set in ruleset.sets {
            for member in set.members { if let tag = member.tag { #expect(tag.mask & ~0x00ff_0f00 == 0) } }
        }
    }
}
