// Executor: the only module that changes the kernel.
//
// Design note (after Felix's `Table`): the executor holds the desired state as a `NodeState`
// (Picket's chains, hooks and sets), reads the node's actual state, and plans the difference.
// Rules are compared by identity, not by text: each carries `picket:` and a hash of its compiled
// words in its comment (`RuleIdentity`), so two iptables builds that print a rule differently
// agree, while any rule Picket did not write, or wrote elsewhere, differs. The few bare rules
// every packet meets (no comment, which would cost each packet a match) are identified by their
// canonical text. Sets are compared by
// header and members as ipset prints them; the compiler's typed roles (chain kinds and calls,
// set roles) tell the planner what each is, with no parsing of names or rule text. A plan is
// executed in up to four steps that never open a protected pod nor drop an allowed flow:
//
//   1. ipset: create new sets, filled (nothing references them yet); resize sets by swap;
//      member changes of peer sets; pods that are no longer isolated leave the dispatch sets.
//   2. iptables-restore --noflush, one transaction per family and table (mangle, then
//      filter, where only chains and hooks of an earlier layout are removed): rewrite changed
//      chains, repair hooks, flush and delete stale chains. The
//      dispatch trees written here still hold the group numbers pods carry now (`transition`).
//      Atomic: on failure the old rules stay.
//   3. ipset: pods are tagged with their new group number (`add -exist`, one line a pod) or
//      join the dispatch sets, then sets no rule references any more are destroyed.
//   4. only when step 2 kept numbers for step 3: iptables-restore again, the final trees, and
//      the stale chains deleted.
//
// So a pod is never tagged with a number its direction's tree does not lead to its group: the
// tree knows the new numbers before pods carry them, and the old ones until no pod does. A
// set's name includes its definition, so new rules never meet members computed for old ones,
// and peer member changes are pod churn, valid under old and new rules alike. After the rules
// are in force, the conntrack entries of flows whose access may have shrunk are flagged, so
// that each such flow is tagged and judged again at its next packet.

import KubeModel
import PolicyCompiler

/// Picket's part of a node's packet filter, as text: what the executor compares and writes.
public struct NodeState: Hashable, Sendable {
    /// One ipset.
    public struct SetState: Hashable, Sendable {
        /// `hash:ip`, `hash:net`, `hash:ip,port`.
        public var type: String
        /// `inet` or `inet6`.
        public var family: String
        /// maxelem.
        public var maxElements: Int
        /// Extensions (`comment`, `skbinfo`), in `ipset save` order.
        public var extensions: [String]
        /// Members as `ipset save` prints them.
        public var members: Set<String>
        /// What the rules use it for (from the compiler; nil for a set read from the kernel).
        /// Not part of equality: a set read back equals the desired one when the kernel holds it.
        public var role: IPSet.Role?

        /// Creates a set state.
        public init(
            type: String, family: String, maxElements: Int, extensions: [String] = [], members: Set<String>, role: IPSet.Role? = nil
        ) {
            self.type = type
            self.family = family
            self.maxElements = maxElements
            self.extensions = extensions
            self.members = members
            self.role = role
        }

        /// The state of a compiled set.
        init(_ set: IPSet) {
            self.init(
                type: set.kind.rawValue, family: set.familyName, maxElements: set.maxElements, extensions: set.extensions,
                members: Set(set.memberTexts), role: set.role)
        }

        public static func == (lhs: SetState, rhs: SetState) -> Bool {
            lhs.sameHeader(rhs) && lhs.members == rhs.members
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(type)
            hasher.combine(family)
            hasher.combine(members)
        }

        /// The `create` line of this set under `name`.
        func createLine(_ name: String) -> String {
            IPSet.createWords(name: name, type: type, family: family, maxElements: maxElements, extensions: extensions)
                .joined(separator: " ")
        }

        /// Whether it is a dispatch set (its members are re-tagged in place).
        var isDispatch: Bool {
            if case .dispatch = role { return true }
            return false
        }

        /// Whether `other` can become this set by member changes alone (else: swap).
        func sameHeader(_ other: SetState) -> Bool {
            type == other.type && family == other.family && maxElements == other.maxElements && extensions == other.extensions
        }
    }

    /// Which table of which family.
    public struct TableKey: Hashable, Comparable, Sendable {
        /// The family.
        public var family: IPAddress.Family
        /// The table.
        public var table: TableName

        /// Creates a key.
        public init(_ family: IPAddress.Family, _ table: TableName) {
            self.family = family
            self.table = table
        }

        public static func < (lhs: TableKey, rhs: TableKey) -> Bool {
            (lhs.family.rawValue, lhs.table) < (rhs.family.rawValue, rhs.table)
        }

        /// `ipv4 mangle`.
        var label: String { "\(family == .v4 ? "ipv4" : "ipv6") \(table.rawValue)" }
    }

    /// One of Picket's chains: its rules' identities, which are what is compared, and their text.
    public struct ChainState: Hashable, Sendable {
        /// Each rule's identity (`RuleIdentity`), in order; for a rule read from the kernel without
        /// Picket's comment, its identity as a bare rule, which only a compiled bare rule of the
        /// same words shares.
        public var hashes: [String]
        /// The rules as written after `-A NAME ` (desired), or as the kernel's tools print them
        /// (read back). Not compared.
        public var texts: [String]
        /// What the chain is in the layout (from the compiler; nil when read from the kernel).
        public var kind: Chain.Kind?
        /// Picket's chains it calls (from the compiler).
        public var calls: [String]

        /// Creates a chain state.
        public init(hashes: [String], texts: [String], kind: Chain.Kind? = nil, calls: [String] = []) {
            self.hashes = hashes
            self.texts = texts
            self.kind = kind
            self.calls = calls
        }

        /// The state of a compiled chain.
        public init(_ chain: Chain) {
            self.init(hashes: chain.ruleHashes, texts: chain.ruleTexts, kind: chain.kind, calls: chain.calls)
        }

        /// The state of rules as the kernel's tools print them.
        init(saved rules: [String]) {
            self.init(hashes: rules.map { RuleIdentity.identity(ofSaved: $0[...]) }, texts: rules)
        }

        public static func == (lhs: ChainState, rhs: ChainState) -> Bool { lhs.hashes == rhs.hashes }

        public func hash(into hasher: inout Hasher) { hasher.combine(hashes) }
    }

    /// One table of one family, reduced to what Picket owns.
    public struct TableState: Hashable, Sendable {
        /// Picket's chains (`PICKET-*`).
        public var chains: [String: ChainState]
        /// Per built-in chain, its rules that jump into Picket's chains, with their 1-based
        /// positions; for the desired state, the hooks in order at positions 1, 2, ...
        public var hooks: [String: [HookRule]]

        /// Creates a table state.
        public init(chains: [String: ChainState] = [:], hooks: [String: [HookRule]] = [:]) {
            self.chains = chains
            self.hooks = hooks
        }
    }

    /// A rule in a built-in chain that jumps into one of Picket's chains.
    public struct HookRule: Hashable, Sendable {
        /// Its 1-based position in the built-in chain.
        public var position: Int
        /// Its identity (as for chain rules).
        public var hash: String
        /// Its text after `-A BUILTIN `. Not compared.
        public var text: String

        /// Creates a hook rule.
        public init(position: Int, hash: String, text: String) {
            self.position = position
            self.hash = hash
            self.text = text
        }

        /// A hook rule as the kernel's tools print it.
        init(position: Int, saved text: String) {
            self.init(position: position, hash: RuleIdentity.identity(ofSaved: text[...]), text: text)
        }

        public static func == (lhs: HookRule, rhs: HookRule) -> Bool { lhs.position == rhs.position && lhs.hash == rhs.hash }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(position)
            hasher.combine(hash)
        }
    }

    /// Sets by name.
    public var sets: [String: SetState]
    /// Tables by family and table; a table without Picket's chains and hooks is absent.
    public var tables: [TableKey: TableState]

    /// Creates a state.
    public init(sets: [String: SetState] = [:], tables: [TableKey: TableState] = [:]) {
        self.sets = sets
        self.tables = tables
    }

    /// The state a compiled ruleset describes.
    public init(_ ruleset: Ruleset) {
        self.init(ruleset, reusingFrom: nil)
    }

    /// The state of `ruleset`, reusing the parts of `previous` (the state of `previousRuleset`)
    /// whose sets and chains are unchanged, so that a small change costs little to describe:
    /// only changed sets and chains are rendered to text.
    public init(_ ruleset: Ruleset, reusing previous: NodeState, of previousRuleset: Ruleset) {
        self.init(ruleset, reusingFrom: (previous, previousRuleset))
    }

    private init(_ ruleset: Ruleset, reusingFrom previous: (state: NodeState, ruleset: Ruleset)?) {
        var oldSets: [String: IPSet] = [:]
        for set in previous?.ruleset.sets ?? [] { oldSets[set.name] = set }
        var sets: [String: SetState] = [:]
        for set in ruleset.sets {
            if let old = oldSets[set.name], old == set, let state = previous?.state.sets[set.name] {
                sets[set.name] = state
            } else {
                sets[set.name] = SetState(set)
            }
        }
        var tables: [TableKey: TableState] = [:]
        for table in ruleset.tables {
            var oldChains: [String: Chain] = [:]
            for chain in previous?.ruleset.tables.first(where: { $0.family == table.family })?.chains ?? [] {
                oldChains[chain.name] = chain
            }
            for name in TableName.allCases {
                let key = TableKey(table.family, name)
                let oldState = previous?.state.tables[key]
                var state = TableState()
                for chain in table.chains where chain.table == name {
                    if let old = oldChains[chain.name], old == chain, let known = oldState?.chains[chain.name] {
                        state.chains[chain.name] = known
                    } else {
                        state.chains[chain.name] = ChainState(chain)
                    }
                }
                for hook in table.hooks where hook.table == name {
                    let position = (state.hooks[hook.builtin]?.count ?? 0) + 1
                    state.hooks[hook.builtin, default: []].append(HookRule(position: position, hash: hook.ruleHash, text: hook.ruleText))
                }
                if !state.chains.isEmpty || !state.hooks.isEmpty { tables[key] = state }
            }
        }
        self.init(sets: sets, tables: tables)
    }

    /// Whether nothing of Picket's is present.
    public var isEmpty: Bool {
        sets.isEmpty && tables.values.allSatisfy { $0.chains.isEmpty && $0.hooks.values.allSatisfy(\.isEmpty) }
    }
}

/// Parsers for what the kernel tools print.
public enum KernelText {
    /// Picket's part of `iptables-save` (or ip6tables-save) output, per table it writes.
    public static func parseTables(_ text: String) -> [TableName: NodeState.TableState] {
        var chains: [TableName: [String: [String]]] = [:]
        var hooks: [TableName: [String: [NodeState.HookRule]]] = [:]
        var builtinCounts: [String: Int] = [:]
        var builtins: Set<String> = []
        var current: TableName? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("*") {
                current = TableName(rawValue: String(line.dropFirst()))
                builtinCounts = [:]
                builtins = []
                continue
            }
            guard let table = current else { continue }
            if line.hasPrefix(":") {
                // `:NAME POLICY [packets:bytes]`; built-in chains have a policy other than `-`.
                let words = line.dropFirst().split(separator: " ")
                guard let name = words.first.map(String.init) else { continue }
                if name.hasPrefix(Names.chainPrefix) {
                    chains[table, default: [:]][name] = chains[table]?[name] ?? []
                } else if words.count > 1 && words[1] != "-" {
                    builtins.insert(name)
                }
                continue
            }
            guard line.hasPrefix("-A ") else { continue }
            let rest = line.dropFirst(3)
            guard let space = rest.firstIndex(of: " ") else { continue }
            let chain = String(rest[..<space])
            let rule = String(rest[rest.index(after: space)...])
            if chain.hasPrefix(Names.chainPrefix) {
                chains[table, default: [:]][chain, default: []].append(rule)
            } else if builtins.contains(chain) {
                let position = builtinCounts[chain, default: 0] + 1
                builtinCounts[chain] = position
                if jumpsIntoPicket(rule) {
                    hooks[table, default: [:]][chain, default: []].append(NodeState.HookRule(position: position, saved: rule))
                }
            }
        }
        var states: [TableName: NodeState.TableState] = [:]
        for table in Set(chains.keys).union(hooks.keys) {
            states[table] = NodeState.TableState(
                chains: (chains[table] ?? [:]).mapValues { NodeState.ChainState(saved: $0) }, hooks: hooks[table] ?? [:])
        }
        return states
    }

    /// Whether a rule's target (`-j` or `-g`) is one of Picket's chains.
    static func jumpsIntoPicket(_ rule: String) -> Bool {
        let words = rule.split(separator: " ")
        for (i, word) in words.enumerated() where (word == "-j" || word == "-g") && i + 1 < words.count {
            if words[i + 1].hasPrefix(Names.chainPrefix) { return true }
        }
        return false
    }

    /// Picket's sets from `ipset save` output.
    public static func parseSets(_ text: String) -> [String: NodeState.SetState] {
        var sets: [String: NodeState.SetState] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let words = line.split(separator: " ", maxSplits: 2).map(String.init)
            guard words.count >= 3, words[1].hasPrefix(Names.setPrefix) else { continue }
            switch words[0] {
            case "create":
                let options = words[2].split(separator: " ").map(String.init)
                guard let type = options.first else { continue }
                var family = "inet"
                var maxElements = 65536
                for (i, option) in options.enumerated() where i + 1 < options.count {
                    if option == "family" { family = options[i + 1] }
                    if option == "maxelem", let value = Int(options[i + 1]) { maxElements = value }
                }
                let extensions = options.filter { $0 == "comment" || $0 == "skbinfo" }
                sets[words[1]] = NodeState.SetState(
                    type: type, family: family, maxElements: maxElements, extensions: extensions, members: [])
            case "add":
                sets[words[1]]?.members.insert(words[2])
            default:
                continue
            }
        }
        return sets
    }
}

/// A dispatch set member read as what it means: the pod's address, its group chain, its mark.
struct DispatchMember: Hashable {
    /// The address (the member's key).
    var address: String
    /// The group chain its comment names.
    var chain: String
    /// Its skbmark value.
    var mark: UInt32

    /// Parses `10.0.0.1 comment "PICKET-GRI-..." skbmark 0x10000/0xff0000`; nil for other text.
    init?(_ text: String) {
        let words = text.split(separator: " ")
        guard let address = words.first, let c = words.firstIndex(of: "comment"), let m = words.firstIndex(of: "skbmark"),
              c + 1 < words.count, m + 1 < words.count else { return nil }
        let value = words[m + 1].split(separator: "/").first.map { $0.hasPrefix("0x") ? $0.dropFirst(2) : $0 }
        guard let value, let mark = UInt32(value, radix: 16) else { return nil }
        self.address = String(address)
        self.chain = words[c + 1].trimmingCharacters(in: "\"")
        self.mark = mark
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in quote: Character) -> String {
        var s = self
        while s.first == quote { s = s.dropFirst() }
        while s.last == quote { s = s.dropLast() }
        return String(s)
    }
}

extension NodeState {
    /// Per direction, the group numbers pods carry in the dispatch sets, with the group chain
    /// each stands for (from the members' comments), read with `marks`' fields.
    /// With `staying`, only pods that are also in `staying`'s dispatch sets count, or all of a
    /// set `staying` does not have: pods that leave a set that stays do so before the rules
    /// change, so their numbers need no interim leaf, while a set that goes keeps its members
    /// (and the mangle rule that reads it, until the same transaction) to the end.
    public func carriedNumbers(_ marks: MarkLayout, staying: NodeState? = nil) -> [Direction: [Int: String]] {
        var result: [Direction: [Int: String]] = [:]
        for direction in Direction.allCases {
            for family in IPAddress.Family.allCases {
                let name = Names.dispatchSet(direction, family)
                let kept = staying.flatMap { $0.sets[name] }.map { Set($0.members.map(Plan.memberAddress)) }
                for text in sets[name]?.members ?? [] {
                    guard let member = DispatchMember(text), kept?.contains(member.address) ?? true else { continue }
                    let number = MarkLayout.extract(member.mark, from: marks.field(direction))
                    if number != 0 { result[direction, default: [:]][number] = member.chain }
                }
            }
        }
        return result
    }
}
