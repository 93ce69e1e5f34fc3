// Executor: the only module that changes the kernel.
//
// Design note (after Felix's `Table`): the executor holds the desired state as a `NodeState`
// (Picket's chains, hooks and sets, as text exactly as iptables-save and ipset save print
// them), reads the node's actual state the same way, and plans the difference. A plan is
// executed in three steps that never open a protected pod nor drop an allowed flow:
//
//   1. ipset: create new sets, filled (nothing references them yet); resize sets by swap;
//      member changes of peer sets; pods join the group sets of their new group and leave the
//      isolated-pods sets they no longer belong to.
//   2. iptables-restore --noflush, one transaction per family: rewrite changed chains, repair
//      hooks, flush and delete stale chains. Atomic: on failure the old rules stay.
//   3. ipset: pods join the isolated-pods sets and leave the group sets of their old group,
//      then sets no rule references any more are destroyed.
//
// So a pod is never isolated without a group whose chain exists: it joins its new group before
// step 2 removes the old group's dispatch, and becomes isolated only after step 2 created its
// group's. A set's name includes its definition, so new rules never meet members computed for
// old ones, and peer member changes are pod churn, valid under old and new rules alike. After
// step 3, the conntrack entries of flows whose access may have shrunk are marked, so that each
// such flow is judged again at its next packet (PICKET-RECHECK).

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
        /// Members as `ipset save` prints them.
        public var members: Set<String>

        /// Creates a set state.
        public init(type: String, family: String, maxElements: Int, members: Set<String>) {
            self.type = type
            self.family = family
            self.maxElements = maxElements
            self.members = members
        }

        /// Whether `other` can become this set by member changes alone (else: swap).
        func sameHeader(_ other: SetState) -> Bool {
            type == other.type && family == other.family && maxElements == other.maxElements
        }
    }

    /// One family's filter table, reduced to what Picket owns.
    public struct TableState: Hashable, Sendable {
        /// Picket's chains (`PICKET-*`) and their rules (text after `-A NAME `), in order.
        public var chains: [String: [String]]
        /// Per built-in chain, its rules that jump into Picket's chains, with their 1-based
        /// positions; for the desired state, the hooks in order at positions 1, 2, ...
        public var hooks: [String: [HookRule]]

        /// Creates a table state.
        public init(chains: [String: [String]] = [:], hooks: [String: [HookRule]] = [:]) {
            self.chains = chains
            self.hooks = hooks
        }
    }

    /// A rule in a built-in chain that jumps into one of Picket's chains.
    public struct HookRule: Hashable, Sendable {
        /// Its 1-based position in the built-in chain.
        public var position: Int
        /// Its text after `-A BUILTIN `.
        public var text: String
    }

    /// Sets by name.
    public var sets: [String: SetState]
    /// Tables by family; a family without Picket's chains is absent.
    public var tables: [IPAddress.Family: TableState]

    /// Creates a state.
    public init(sets: [String: SetState] = [:], tables: [IPAddress.Family: TableState] = [:]) {
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
                sets[set.name] = SetState(
                    type: set.kind.rawValue, family: set.family == .v4 ? "inet" : "inet6", maxElements: set.maxElements,
                    members: Set(set.memberTexts))
            }
        }
        var tables: [IPAddress.Family: TableState] = [:]
        for table in ruleset.tables {
            var oldChains: [String: Chain] = [:]
            for chain in previous?.ruleset.tables.first(where: { $0.family == table.family })?.chains ?? [] {
                oldChains[chain.name] = chain
            }
            let oldState = previous?.state.tables[table.family]
            var state = TableState()
            for chain in table.chains {
                if let old = oldChains[chain.name], old == chain, let texts = oldState?.chains[chain.name] {
                    state.chains[chain.name] = texts
                } else {
                    state.chains[chain.name] = chain.ruleTexts
                }
            }
            for hook in table.hooks {
                let position = (state.hooks[hook.builtin]?.count ?? 0) + 1
                state.hooks[hook.builtin, default: []].append(HookRule(position: position, text: hook.ruleText))
            }
            tables[table.family] = state
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
    /// Picket's part of `iptables-save -t filter` (or ip6tables-save) output.
    public static func parseTable(_ text: String) -> NodeState.TableState {
        var state = NodeState.TableState()
        var builtinCounts: [String: Int] = [:]
        var builtins: Set<String> = []
        var inFilter = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("*") {
                inFilter = line == "*filter"
                continue
            }
            guard inFilter else { continue }
            if line.hasPrefix(":") {
                // `:NAME POLICY [packets:bytes]`; built-in chains have a policy other than `-`.
                let words = line.dropFirst().split(separator: " ")
                guard let name = words.first.map(String.init) else { continue }
                if name.hasPrefix(Names.chainPrefix) {
                    state.chains[name] = state.chains[name] ?? []
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
                state.chains[chain, default: []].append(rule)
            } else if builtins.contains(chain) {
                let position = builtinCounts[chain, default: 0] + 1
                builtinCounts[chain] = position
                if jumpsIntoPicket(rule) {
                    state.hooks[chain, default: []].append(NodeState.HookRule(position: position, text: rule))
                }
            }
        }
        return state
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
                sets[words[1]] = NodeState.SetState(type: type, family: family, maxElements: maxElements, members: [])
            case "add":
                sets[words[1]]?.members.insert(words[2])
            default:
                continue
            }
        }
        return sets
    }
}
