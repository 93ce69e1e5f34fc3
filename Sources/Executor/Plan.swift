import KubeModel
import PolicyCompiler

/// What it takes to turn the node's current state into the desired one: the steps of an apply
/// (see NodeState.swift), each as the text its tool reads, plus the report and the local pod
/// addresses whose established flows must be re-checked. Pure: computed from two states.
public struct Plan: Sendable {
    /// Step 1: `ipset restore` lines creating (and filling) new sets, resizing others, changing
    /// peer set members, pods leaving the dispatch sets.
    public var prepare: [String] = []
    /// Names of the sets step 1 creates (destroyed again if step 2 fails).
    public var created: [String] = []
    /// Step 2: `iptables-restore --noflush` input per family, only for families that change.
    public var tables: [(family: IPAddress.Family, text: String)] = []
    /// Step 3: pods joining the dispatch sets or re-tagged.
    public var finish: [String] = []
    /// Step 4: `iptables-restore --noflush` input per family: the final dispatch trees and the
    /// deletion of stale chains, when step 2 had to keep numbers pods still carried.
    public var settle: [(family: IPAddress.Family, text: String)] = []
    /// Last: destroys of sets no rule references any more.
    public var destroy: [String] = []
    /// Addresses whose flows may have lost access: their conntrack entries are flagged for re-check.
    public var revoke: Set<IPAddress> = []
    /// What changes, for people.
    public var report = ApplyReport()

    /// Whether applying changes nothing.
    public var isEmpty: Bool { prepare.isEmpty && tables.isEmpty && finish.isEmpty && settle.isEmpty && destroy.isEmpty }

    /// Throws, naming the first offending line and its neighbours, when any text of the plan has
    /// a line `restoreGuard` refuses (a line outside Picket's chains, hooks and sets).
    public func check(_ restoreGuard: RestoreGuard) throws(ApplyError) {
        for (step, lines) in [("ipset restore (new sets)", prepare), ("ipset restore (members)", finish), ("ipset restore (stale sets)", destroy)] {
            guard !lines.isEmpty else { continue }
            let text = lines.joined(separator: "\n") + "\n"
            if let first = restoreGuard.violations(inSetRestore: text).first {
                throw ApplyError.refused(step, first, text)
            }
        }
        for (family, text) in tables + settle {
            if let first = restoreGuard.violations(inTableRestore: text).first {
                throw ApplyError.refused(family == .v4 ? "iptables-restore" : "ip6tables-restore", first, text)
            }
        }
    }

    /// Plans the change from `current` to `desired`. `transition` holds, per family, the
    /// dispatch tree chains step 2 writes instead of the desired ones (`Ruleset.transition`).
    public init(from current: NodeState, to desired: NodeState, transition: [IPAddress.Family: [Chain]] = [:]) {
        planSets(current, desired)
        for family in IPAddress.Family.allCases {
            var step2: [String] = []
            var step4: [String] = []
            for table in TableName.allCases {
                let key = NodeState.TableKey(family, table)
                let interim = Dictionary(
                    uniqueKeysWithValues: (transition[family] ?? []).filter { $0.table == table }.map { ($0.name, NodeState.ChainState($0)) })
                let (now, later) = planTable(key, current.tables[key] ?? .init(), desired.tables[key] ?? .init(), interim: interim)
                step2 += now
                step4 += later
            }
            if !step2.isEmpty { tables.append((family, step2.joined(separator: "\n") + "\n")) }
            if !step4.isEmpty { settle.append((family, step4.joined(separator: "\n") + "\n")) }
        }
        revoke = Plan.revocations(current, desired)
    }

    private mutating func planSets(_ current: NodeState, _ desired: NodeState) {
        var peerChanges: [String] = []
        var retag: [String] = []
        var leaveDispatch: [String] = []
        for name in desired.sets.keys.sorted() {
            let want = desired.sets[name]!
            guard let have = current.sets[name] else {
                prepare.append(want.createLine(name))
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
                prepare.append(want.createLine(temporary))
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
            if want.isDispatch {
                // Keyed by address: a pod changing group is one `add -exist` (the kernel replaces the
                // tag in place), after step 2 wrote a tree that knows the new number; a pod leaving
                // isolation leaves before step 2 may drop its old number from the tree.
                let keep = Set(added.map(Plan.memberAddress))
                for member in removed.sorted() where !keep.contains(Plan.memberAddress(member)) {
                    leaveDispatch.append("del \(name) \(Plan.memberAddress(member))")
                }
                retag += added.sorted().map { "add -exist \(name) \($0)" }
                let moved = Set(removed.map(Plan.memberAddress)).intersection(keep).count
                report.setsUpdated.append(.init(name: name, added: added.count - moved, removed: removed.count - moved, changed: moved))
                continue
            }
            // Peer and named-port sets: pod churn, valid under old and new rules.
            peerChanges += added.sorted().map { "add \(name) \($0)" } + removed.sorted().map { "del \(name) \($0)" }
            report.setsUpdated.append(.init(name: name, added: added.count, removed: removed.count))
        }
        prepare += peerChanges + leaveDispatch
        finish += retag
        for name in current.sets.keys.sorted() where desired.sets[name] == nil {
            destroy.append("destroy \(name)")
            report.setsDestroyed.append(name)
        }
    }

    /// The address a set member's text starts with (its key in a dispatch set).
    static func memberAddress(_ member: String) -> String {
        member.split(separator: " ", maxSplits: 1).first.map(String.init) ?? member
    }

    /// The scratch set a resize fills before swapping: `picket-tmp-` and the name's last 19
    /// characters (its hash and family), within ipset's 31.
    static func temporaryName(for name: String) -> String {
        Names.setPrefix + "tmp-" + String(name.suffix(19))
    }

    /// The lines of one table for step 2 and for step 4. Step 2 writes every changed chain (a
    /// dispatch tree chain in its `interim` form where it has one) and repairs hooks; stale
    /// chains are flushed and deleted in step 2, or in step 4 when an interim tree may still lead
    /// to them, in which case step 4 also writes the final trees.
    private mutating func planTable(
        _ key: NodeState.TableKey, _ have: NodeState.TableState, _ want: NodeState.TableState, interim: [String: NodeState.ChainState]
    ) -> (step2: [String], step4: [String]) {
        var step2Chains = want.chains
        for (name, rules) in interim { step2Chains[name] = rules }
        let write = step2Chains.keys.sorted().filter { have.chains[$0] != step2Chains[$0] }
        let stale = have.chains.keys.sorted().filter { want.chains[$0] == nil }
        let settleWrite = interim.keys.sorted().filter { want.chains[$0] != nil && want.chains[$0] != interim[$0] }
        let deferStale = !interim.isEmpty
        let builtins = Set(have.hooks.keys).union(want.hooks.keys).sorted()
        // Hooks are right when each built-in chain starts with exactly the desired hooks and has
        // no other jump into Picket's chains.
        let hooksRight = builtins.allSatisfy { builtin in
            (have.hooks[builtin] ?? []) == (want.hooks[builtin] ?? [])
        }
        var step2: [String] = []
        let staleNow = deferStale ? [] : stale
        if !write.isEmpty || !staleNow.isEmpty || !hooksRight {
            step2.append("*\(key.table.rawValue)")
            step2 += (write + staleNow).map { ":\($0) - [0:0]" }
            if !hooksRight {
                for builtin in builtins {
                    // Delete from the bottom so earlier positions stay valid within the transaction.
                    for hook in (have.hooks[builtin] ?? []).reversed() { step2.append("-D \(builtin) \(hook.position)") }
                    for hook in want.hooks[builtin] ?? [] { step2.append("-I \(builtin) \(hook.position) \(hook.text)") }
                }
                if want.hooks.values.allSatisfy(\.isEmpty) {
                    report.hooksRemoved.append(key.label)
                } else {
                    report.hooksRepaired.append(key.label)
                }
            }
            for chain in write {
                step2 += step2Chains[chain]!.texts.map { "-A \(chain) \($0)" }
            }
            step2 += staleNow.map { "-X \($0)" }
            step2.append("COMMIT")
        }
        var step4: [String] = []
        // Stale chains, and tree nodes only the interim tree had.
        let staleLater = deferStale ? Array(Set(stale).union(interim.keys.filter { want.chains[$0] == nil })).sorted() : []
        if !settleWrite.isEmpty || !staleLater.isEmpty {
            step4.append("*\(key.table.rawValue)")
            step4 += (settleWrite + staleLater).map { ":\($0) - [0:0]" }
            for chain in settleWrite {
                step4 += want.chains[chain]!.texts.map { "-A \(chain) \($0)" }
            }
            step4 += staleLater.map { "-X \($0)" }
            step4.append("COMMIT")
        }
        report.chainsWritten += Array(Set(write).union(settleWrite)).sorted().map { "\(key.family == .v4 ? "ipv4" : "ipv6") \($0)" }
        report.chainsDeleted += stale.map { "\(key.family == .v4 ? "ipv4" : "ipv6") \($0)" }
        return (step2, step4)
    }

    /// Addresses whose established flows may have lost their admission, so that their conntrack
    /// entries are flagged and their next packet in the original direction meets the new rules:
    ///   - a local pod that became isolated, or moved to another group;
    ///   - every pod of a group whose chain, or a policy chain it calls, changed;
    ///   - every isolated pod, when the base chains changed;
    ///   - an address removed from a peer or named-port set (the remote end that lost access).
    /// Over-approximating is safe: a flow that is still allowed is admitted again and its flag
    /// cleared. Growing sets and pods that stop being isolated revoke nothing.
    static func revocations(_ current: NodeState, _ desired: NodeState) -> Set<IPAddress> {
        var revoke: Set<IPAddress> = []
        func add(_ member: String) {
            // `10.0.0.1`, `10.0.0.1,tcp:80`, `10.0.0.1 comment ...`; blocks (`a/b`) only ever
            // change with their name.
            let address = memberAddress(member).split(separator: ",", maxSplits: 1).first.map(String.init) ?? member
            if let ip = IPAddress(address) { revoke.insert(ip) }
        }
        for family in IPAddress.Family.allCases {
            // Group and policy chains live in mangle with the rest (an upgrade from a layout that
            // judged in filter finds none there, so every isolated pod's flows are re-checked once).
            let mangle = NodeState.TableKey(family, .mangle)
            guard let want = desired.tables[mangle] else { continue }
            let have = current.tables[mangle] ?? .init()
            // The chains every tagged packet passes: the base chains and the tagging chains.
            let baseChanged = TableName.allCases.map { NodeState.TableKey(family, $0) }.contains { key in
                (desired.tables[key]?.chains ?? [:]).contains { name, chain in
                    switch chain.kind {
                    case .mark?: return current.tables[key]?.chains[name] != chain
                    default: return false
                    }
                }
            }
            for direction in Direction.allCases {
                let name = Names.dispatchSet(direction, family)
                var before: [String: String] = [:]
                for text in current.sets[name]?.members ?? [] {
                    if let member = DispatchMember(text) { before[member.address] = member.chain }
                }
                var changedGroups: [String: Bool] = [:]
                for text in desired.sets[name]?.members ?? [] {
                    guard let member = DispatchMember(text) else { continue }
                    let changed = changedGroups[member.chain] ?? groupChanged(member.chain, have, want)
                    changedGroups[member.chain] = changed
                    if baseChanged || changed || before[member.address] != member.chain { add(member.address) }
                }
            }
        }
        for (name, after) in desired.sets where !after.isDispatch {
            guard let before = current.sets[name], before.members != after.members else { continue }
            for member in before.members where !after.members.contains(member) { add(member) }
        }
        return revoke
    }

    /// Whether a group chain or a policy chain it calls has other rules than before.
    static func groupChanged(_ group: String, _ have: NodeState.TableState, _ want: NodeState.TableState) -> Bool {
        guard have.chains[group] == want.chains[group] else { return true }
        return (want.chains[group]?.calls ?? []).contains { have.chains[$0] != want.chains[$0] }
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
        /// Members kept with another value (a pod re-tagged with another group's number).
        public var changed: Int = 0
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
    /// Tables whose hooks were (re)inserted, as `ipv4 mangle`.
    public var hooksRepaired: [String] = []
    /// Tables whose hooks were removed (cleanup, or IPv6 no longer needed), as `ipv4 mangle`.
    public var hooksRemoved: [String] = []
    /// Conntrack entries marked so that their flows meet the new rules at their next packet.
    public var conntrackMarked = 0
    /// Set when the rules were committed but marking conntrack entries failed: the new rules are
    /// in force for new flows, while established flows that lost access go on until they end
    /// (or until the next apply marks them).
    public var conntrackFailure: ApplyError?
    /// How long flagging conntrack entries took, when any address needed it.
    public var conntrackDuration: Duration?
    /// How the kernel was checked before planning.
    public var check: Check = .none
    /// When the executor's owner should call it next with `Verification.scheduled`.
    public var nextVerify: ContinuousClock.Instant?

    /// How an apply checked the kernel.
    public enum Check: Hashable, Sendable {
        /// Not at all: planned against memory.
        case none
        /// By fingerprint, which showed nothing changed since memory last matched the kernel.
        case fingerprint
        /// Read back in full.
        case readBack
    }

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
        lines += setsUpdated.map { "set updated: \($0.name) (+\($0.added) -\($0.removed)" + ($0.changed > 0 ? " ~\($0.changed))" : ")") }
        lines += setsDestroyed.map { "set destroyed: \($0)" }
        lines += chainsWritten.map { "chain written: \($0)" }
        lines += chainsDeleted.map { "chain deleted: \($0)" }
        lines += hooksRepaired.map { "hooks inserted: \($0) FORWARD, INPUT" }
        lines += hooksRemoved.map { "hooks removed: \($0) FORWARD, INPUT" }
        if conntrackMarked > 0 { lines.append("conntrack entries flagged for re-check: \(conntrackMarked)") }
        return lines.joined(separator: "\n")
    }
}
