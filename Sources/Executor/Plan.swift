import KubeModel
import PolicyCompiler

/// What it takes to turn the node's current state into the desired one: the three steps of an
/// apply (see NodeState.swift), each as the text its tool reads, plus the report and the local
/// pod addresses whose established flows must be re-checked. Pure: computed from two states.
public struct Plan: Sendable {
    /// Step 1: `ipset restore` lines creating (and filling) new sets, resizing others, changing
    /// peer set members, pods joining groups and leaving isolation.
    public var prepare: [String] = []
    /// Names of the sets step 1 creates (destroyed again if step 2 fails).
    public var created: [String] = []
    /// Step 2: `iptables-restore --noflush` input per family, only for families that change.
    public var tables: [(family: IPAddress.Family, text: String)] = []
    /// Step 3: pods joining isolation and leaving groups, then destroys of stale sets.
    public var finish: [String] = []
    /// Addresses whose flows may have lost access: their conntrack entries are marked for re-check.
    public var revoke: Set<IPAddress> = []
    /// What changes, for people.
    public var report = ApplyReport()

    /// Whether applying changes nothing.
    public var isEmpty: Bool { prepare.isEmpty && tables.isEmpty && finish.isEmpty }

    /// Throws, naming the first offending line and its neighbours, when any text of the plan has
    /// a line `restoreGuard` refuses (a line outside Picket's chains, hooks and sets).
    public func check(_ restoreGuard: RestoreGuard) throws(ApplyError) {
        for (step, lines) in [("ipset restore (new sets)", prepare), ("ipset restore (members and stale sets)", finish)] {
            guard !lines.isEmpty else { continue }
            let text = lines.joined(separator: "\n") + "\n"
            if let first = restoreGuard.violations(inSetRestore: text).first {
                throw ApplyError.refused(step, first, text)
            }
        }
        for (family, text) in tables {
            if let first = restoreGuard.violations(inTableRestore: text).first {
                throw ApplyError.refused(family == .v4 ? "iptables-restore" : "ip6tables-restore", first, text)
            }
        }
    }

    /// Plans the change from `current` to `desired`.
    public init(from current: NodeState, to desired: NodeState) {
        planSets(current, desired)
        for family in IPAddress.Family.allCases {
            planTable(family, current.tables[family] ?? .init(), desired.tables[family] ?? .init())
        }
        revoke = Plan.revocations(current, desired)
    }

    private mutating func planSets(_ current: NodeState, _ desired: NodeState) {
        var peerChanges: [String] = []
        var joinGroups: [String] = []
        var leaveGroups: [String] = []
        var joinIsolation: [String] = []
        var leaveIsolation: [String] = []
        for name in desired.sets.keys.sorted() {
            let want = desired.sets[name]!
            guard let have = current.sets[name] else {
                prepare.append(createLine(name, want))
                prepare += want.members.sorted().map { "add \(name) \($0)" }
                created.append(name)
                report.setsCreated.append(.init(name: name, added: want.members.count, removed: 0))
                continue
            }
            if want == have { continue }  // shared storage when reused: no member walk
            if !want.sameHeader(have) {
                // Same type and family (both are part of the name); only the size differs: fill a
                // temporary set and swap, so the set is never partial.
                let temporary = Plan.temporaryName(for: name)
                if current.sets[temporary] != nil { prepare.append("destroy \(temporary)") }  // left by a crash
                prepare.append(createLine(temporary, want))
                created.append(temporary)  // destroyed again if the swap (or anything after) fails
                prepare += want.members.sorted().map { "add \(temporary) \($0)" }
                prepare.append("swap \(name) \(temporary)")
                prepare.append("destroy \(temporary)")
                report.setsUpdated.append(.init(
                    name: name, added: want.members.subtracting(have.members).count, removed: have.members.subtracting(want.members).count))
                continue
            }
            let added = want.members.subtracting(have.members)
            let removed = have.members.subtracting(want.members)
            guard !added.isEmpty || !removed.isEmpty else { continue }
            let addLines = added.sorted().map { "add \(name) \($0)" }
            let deleteLines = removed.sorted().map { "del \(name) \($0)" }
            if Plan.isIsolatedSet(name) {
                // Isolation ends before step 2 may remove the group; it begins after step 2
                // created it.
                leaveIsolation += deleteLines
                joinIsolation += addLines
            } else if Plan.isGroupSet(name) {
                // A pod joins its new group before step 2 may remove the old one's dispatch, and
                // leaves the old group after.
                joinGroups += addLines
                leaveGroups += deleteLines
            } else {
                // Peer and named-port sets: pod churn, valid under old and new rules.
                peerChanges += addLines + deleteLines
            }
            report.setsUpdated.append(.init(name: name, added: added.count, removed: removed.count))
        }
        prepare += peerChanges + joinGroups + leaveIsolation
        finish += joinIsolation + leaveGroups
        for name in current.sets.keys.sorted() where desired.sets[name] == nil {
            finish.append("destroy \(name)")
            report.setsDestroyed.append(name)
        }
    }

    private func createLine(_ name: String, _ set: NodeState.SetState) -> String {
        "create \(name) \(set.type) family \(set.family) hashsize 1024 maxelem \(set.maxElements)"
    }

    /// The scratch set a resize fills before swapping: `picket-tmp-` and the name's last 19
    /// characters (its hash and family), within ipset's 31.
    static func temporaryName(for name: String) -> String {
        Names.setPrefix + "tmp-" + String(name.suffix(19))
    }

    /// Whether `name` is a group's member set (`picket-gri-…`, `picket-gre-…`).
    static func isGroupSet(_ name: String) -> Bool {
        name.hasPrefix(Names.setPrefix + "gri-") || name.hasPrefix(Names.setPrefix + "gre-")
    }

    static func isIsolatedSet(_ name: String) -> Bool {
        Direction.allCases.contains { direction in
            IPAddress.Family.allCases.contains { Names.isolatedSet(direction, $0) == name }
        }
    }

    private mutating func planTable(_ family: IPAddress.Family, _ have: NodeState.TableState, _ want: NodeState.TableState) {
        let write = want.chains.keys.sorted().filter { have.chains[$0] != want.chains[$0] }
        let stale = have.chains.keys.sorted().filter { want.chains[$0] == nil }
        let builtins = Set(have.hooks.keys).union(want.hooks.keys).sorted()
        // Hooks are right when each built-in chain starts with exactly the desired hooks and has
        // no other jump into Picket's chains.
        let hooksRight = builtins.allSatisfy { builtin in
            (have.hooks[builtin] ?? []) == (want.hooks[builtin] ?? [])
        }
        guard !write.isEmpty || !stale.isEmpty || !hooksRight else { return }

        var lines = ["*filter"]
        lines += (write + stale).map { ":\($0) - [0:0]" }
        if !hooksRight {
            for builtin in builtins {
                // Delete from the bottom so earlier positions stay valid within the transaction.
                for hook in (have.hooks[builtin] ?? []).reversed() { lines.append("-D \(builtin) \(hook.position)") }
                for hook in want.hooks[builtin] ?? [] { lines.append("-I \(builtin) \(hook.position) \(hook.text)") }
            }
            if want.hooks.values.allSatisfy(\.isEmpty) {
                report.hooksRemoved.append(family)
            } else {
                report.hooksRepaired.append(family)
            }
        }
        for chain in write {
            lines += want.chains[chain]!.map { "-A \(chain) \($0)" }
        }
        lines += stale.map { "-X \($0)" }
        lines.append("COMMIT")
        tables.append((family, lines.joined(separator: "\n") + "\n"))
        report.chainsWritten += write.map { "\(family == .v4 ? "ipv4" : "ipv6") \($0)" }
        report.chainsDeleted += stale.map { "\(family == .v4 ? "ipv4" : "ipv6") \($0)" }
    }

    /// Addresses whose established flows may have lost their admission, so that their conntrack
    /// entries are marked and their next packet in the original direction meets the new rules:
    ///   - a local pod that became isolated, or moved to another group;
    ///   - every pod of a group whose chain, or a policy chain it calls, changed;
    ///   - an address removed from a peer or named-port set (the remote end that lost access).
    /// Over-approximating is safe: a flow that is still allowed is admitted again and its mark
    /// cleared. Growing sets and pods that stop being isolated revoke nothing.
    static func revocations(_ current: NodeState, _ desired: NodeState) -> Set<IPAddress> {
        var revoke: Set<IPAddress> = []
        func add(_ member: String) {
            // `10.0.0.1`, `10.0.0.1,tcp:80`; blocks (`a/b`) only ever change with their name.
            let address = member.split(separator: ",", maxSplits: 1).first.map(String.init) ?? member
            if let ip = IPAddress(address) { revoke.insert(ip) }
        }
        for family in IPAddress.Family.allCases {
            guard let want = desired.tables[family] else { continue }
            let have = current.tables[family] ?? .init()
            let baseChanged = [Names.forwardChain, Names.inputChain].contains { have.chains[$0] != want.chains[$0] }
            for direction in Direction.allCases {
                let isolatedSet = Names.isolatedSet(direction, family)
                let dispatch = direction == .ingress ? Names.ingressChain : Names.egressChain
                let isolatedBefore = current.sets[isolatedSet]?.members ?? []
                let groupBefore = groupOfMember(have.chains[dispatch] ?? [], current)
                for (group, members) in membersByGroup(want.chains[dispatch] ?? [], desired) {
                    let changed = baseChanged || groupChanged(group, have, want)
                    for member in members where changed || !isolatedBefore.contains(member) || groupBefore[member] != group {
                        add(member)
                    }
                }
            }
        }
        for (name, after) in desired.sets where !isIsolatedSet(name) && !isGroupSet(name) {
            guard let before = current.sets[name], before.members != after.members else { continue }
            for member in before.members where !after.members.contains(member) { add(member) }
        }
        return revoke
    }

    /// (group set, group chain) pairs of a dispatch chain, in order.
    static func groupSets(_ rules: [String]) -> [(set: String, chain: String)] {
        rules.compactMap { rule in
            let words = rule.split(separator: " ")
            guard let m = words.firstIndex(of: "--match-set"), let g = words.firstIndex(of: "-g"),
                  m + 1 < words.count, g + 1 < words.count else { return nil }
            return (String(words[m + 1]), String(words[g + 1]))
        }
    }

    /// Each local pod address (set member text) with the group chain the dispatch sends it to:
    /// the first group whose set holds it.
    static func groupOfMember(_ dispatch: [String], _ state: NodeState) -> [String: String] {
        var result: [String: String] = [:]
        for (set, chain) in groupSets(dispatch) {
            for member in state.sets[set]?.members ?? [] where result[member] == nil { result[member] = chain }
        }
        return result
    }

    /// The members each group chain of a dispatch chain receives.
    static func membersByGroup(_ dispatch: [String], _ state: NodeState) -> [(chain: String, members: [String])] {
        var seen: Set<String> = []
        return groupSets(dispatch).map { set, chain in
            let members: [String] = (state.sets[set]?.members ?? []).filter { seen.insert($0).inserted }
            return (chain, members)
        }
    }

    /// Whether a group chain or a policy chain it calls has other rules than before.
    static func groupChanged(_ group: String, _ have: NodeState.TableState, _ want: NodeState.TableState) -> Bool {
        guard have.chains[group] == want.chains[group] else { return true }
        for rule in want.chains[group] ?? [] {
            let words = rule.split(separator: " ")
            guard let j = words.firstIndex(of: "-j"), j + 1 < words.count, words[j + 1].hasPrefix(Names.chainPrefix) else { continue }
            let chain = String(words[j + 1])
            if have.chains[chain] != want.chains[chain] { return true }
        }
        return false
    }
}

/// What an apply changed (or, for a plan, will change).
public struct ApplyReport: Hashable, Sendable, CustomStringConvertible {
    /// A set's member changes.
    public struct SetChange: Hashable, Sendable {
        /// The set.
        public var name: String
        /// Members added.
        public var added: Int
        /// Members removed.
        public var removed: Int
    }

    /// Sets created, with their members.
    public var setsCreated: [SetChange] = []
    /// Existing sets whose members changed.
    public var setsUpdated: [SetChange] = []
    /// Sets destroyed.
    public var setsDestroyed: [String] = []
    /// Chains (re)written, as `ipv4 NAME`.
    public var chainsWritten: [String] = []
    /// Chains deleted, as `ipv4 NAME`.
    public var chainsDeleted: [String] = []
    /// Families whose hooks were (re)inserted.
    public var hooksRepaired: [IPAddress.Family] = []
    /// Families whose hooks were removed (cleanup, or IPv6 no longer needed).
    public var hooksRemoved: [IPAddress.Family] = []
    /// Conntrack entries marked so that their flows meet the new rules at their next packet.
    public var conntrackMarked = 0

    /// Creates an empty report.
    public init() {}

    /// Whether nothing changed.
    public var isEmpty: Bool {
        setsCreated.isEmpty && setsUpdated.isEmpty && setsDestroyed.isEmpty && chainsWritten.isEmpty && chainsDeleted.isEmpty
            && hooksRepaired.isEmpty && hooksRemoved.isEmpty
    }

    /// One line per change, or `no change`.
    public var description: String {
        if isEmpty { return "no change" }
        var lines: [String] = []
        lines += setsCreated.map { "set created: \($0.name) (\($0.added) members)" }
        lines += setsUpdated.map { "set updated: \($0.name) (+\($0.added) -\($0.removed))" }
        lines += setsDestroyed.map { "set destroyed: \($0)" }
        lines += chainsWritten.map { "chain written: \($0)" }
        lines += chainsDeleted.map { "chain deleted: \($0)" }
        lines += hooksRepaired.map { "hooks inserted: \($0 == .v4 ? "ipv4" : "ipv6") FORWARD, INPUT" }
        lines += hooksRemoved.map { "hooks removed: \($0 == .v4 ? "ipv4" : "ipv6") FORWARD, INPUT" }
        if conntrackMarked > 0 { lines.append("conntrack entries marked for re-check: \(conntrackMarked)") }
        return lines.joined(separator: "\n")
    }
}
