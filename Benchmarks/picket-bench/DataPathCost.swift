import Foundation
import KubeModel
import PolicyCompiler

// `picket-bench cost`: what one new TCP connection between two local pods costs on the data path
// of a compiled ruleset, counted from the rules: the rules it walks and the set lookups among
// them, in mangle FORWARD (tagging) and filter FORWARD (dispatch and policy evaluation), the
// way the kernel evaluates them (a rule's address match first, then its matches in order, each
// stopping the rule when it fails). An established packet's cost is counted the same way.

/// The cost of one packet.
struct PacketCost: CustomStringConvertible {
    /// Rules evaluated, hooks included.
    var rules = 0
    /// `-m set` / `-j SET` lookups among them.
    var lookups = 0
    /// Rules of the dispatch trees among them.
    var treeRules = 0
    /// Whether the packet was admitted (not dropped by Picket).
    var admitted = true

    var description: String {
        "\(lookups) set lookups, \(rules) rules (\(treeRules) in dispatch trees)\(admitted ? "" : ", DROPPED")"
    }
}

/// Walks a ruleset's chains for one packet.
struct PacketWalker {
    let ruleset: Ruleset
    let chains: [String: [[String]]]
    let sets: [String: IPSet]
    let source: IPAddress
    let destination: IPAddress
    let port: Int

    init(_ ruleset: Ruleset, source: IPAddress, destination: IPAddress, port: Int) {
        self.ruleset = ruleset
        var chains: [String: [[String]]] = [:]
        for chain in ruleset.ipv4.chains { chains[chain.name] = chain.rules }
        self.chains = chains
        self.sets = Dictionary(uniqueKeysWithValues: ruleset.sets.map { ($0.name, $0) })
        self.source = source
        self.destination = destination
        self.port = port
    }

    /// A new connection's first packet (SYN): mangle FORWARD, then filter FORWARD.
    func newConnection() -> PacketCost {
        walk(established: false)
    }

    /// An established packet of a flow not flagged for re-check.
    func established() -> PacketCost {
        walk(established: true)
    }

    /// The built-in FORWARD chains' hooks in mangle, then filter, each entered when its
    /// matches hold.
    private func walk(established: Bool) -> PacketCost {
        var cost = PacketCost()
        var mark: UInt32 = 0
        for table in [TableName.mangle, .filter] {
            for hook in ruleset.ipv4.hooks where hook.table == table && hook.builtin == "FORWARD" {
                cost.rules += 1
                guard hookMatches(hook.matches, mark: mark) else { continue }
                if table == .mangle {
                    tag(hook.target, established: established, &mark, &cost)
                } else {
                    _ = run(hook.target, &mark, &cost)
                }
            }
        }
        return cost
    }

    /// Whether a hook's packet-mark matches hold (a hook without matches: always).
    private func hookMatches(_ matches: [String], mark: UInt32) -> Bool {
        if let i = matches.firstIndex(of: "--mark") {
            let parts = matches[i + 1].split(separator: "/").map { UInt32($0.dropFirst(2), radix: 16) ?? 0 }
            let equal = (mark & parts[1]) == parts[0]
            return matches[i - 1] == "!" ? !equal : equal
        }
        return true
    }

    /// A mangle tagging chain for a packet of a flow not flagged for re-check: an established
    /// one (its conntrack entry carries the seen bit) returns at the conntrack-mark rule; a new
    /// connection's first packet gets its pods' group numbers.
    private func tag(_ chain: String, established: Bool, _ mark: inout UInt32, _ cost: inout PacketCost) {
        for rule in chains[chain] ?? [] {
            cost.rules += 1
            if rule.contains("connmark") && rule.last == "RETURN" {
                if established { return }
                continue
            }
            if rule.contains("--ctstate") || rule.contains("--icmpv6-type") { continue }  // not a reply, not ND
            if let s = rule.firstIndex(of: "--map-set") {
                cost.lookups += 1
                let set = sets[rule[s + 1]]
                let address = rule[s + 2] == "src" ? source : destination
                if let tag = set?.members.first(where: { $0.block.address == address })?.tag {
                    mark = (mark & ~tag.mask) | tag.mark
                }
                continue
            }
            if rule.contains("MARK") && rule.contains("--set-xmark") && !rule.contains("CONNMARK") {
                mark &= ~(ruleset.marks.ingress | ruleset.marks.egress)
            }
        }
    }

    /// Runs `chain`; returns "drop", "return" or nil (fell off the end).
    private func run(_ chain: String, _ mark: inout UInt32, _ cost: inout PacketCost, depth: Int = 0) -> String? {
        guard depth < 64, let rules = chains[chain] else { return nil }
        for rule in rules {
            cost.rules += 1
            if Names.isDispatchTree(chain) { cost.treeRules += 1 }
            guard matches(rule, mark, &cost) else { continue }
            let target = rule.firstIndex(where: { $0 == "-j" || $0 == "-g" }).map { (rule[$0], rule[$0 + 1]) }
            guard let (kind, name) = target else { continue }
            switch name {
            case "DROP":
                cost.admitted = false
                return "drop"
            case "RETURN":
                return "return"
            case "MARK":
                if let x = rule.firstIndex(of: "--set-xmark") {
                    let parts = rule[x + 1].split(separator: "/").map { UInt32($0.dropFirst(2), radix: 16) ?? 0 }
                    mark = (mark & ~parts[1]) ^ parts[0]
                }
            case "CONNMARK", "ACCEPT":
                continue
            default:
                let outcome = run(name, &mark, &cost, depth: depth + 1)
                if outcome == "drop" { return "drop" }
                if kind == "-g" { return outcome == "return" ? "return" : nil }
            }
        }
        return nil
    }

    /// Whether `rule`'s matches hold, counting the set lookups it makes before one fails.
    private func matches(_ rule: [String], _ mark: UInt32, _ cost: inout PacketCost) -> Bool {
        var i = 0
        while i < rule.count {
            let word = rule[i]
            switch word {
            case "-s", "-d":
                guard let block = CIDR(rule[i + 1]), block.contains(word == "-s" ? source : destination) else { return false }
                i += 2
            case "-p":
                if rule[i + 1] != "tcp" { return false }
                i += 2
            case "--dport":
                let parts = rule[i + 1].split(separator: ":").compactMap { Int($0) }
                if port < parts[0] || port > (parts.last ?? parts[0]) { return false }
                i += 2
            case "--dports":
                let ok = rule[i + 1].split(separator: ",").contains { range in
                    let parts = range.split(separator: ":").compactMap { Int($0) }
                    return port >= parts[0] && port <= (parts.last ?? parts[0])
                }
                if !ok { return false }
                i += 2
            case "--mark":
                let parts = rule[i + 1].split(separator: "/").map { UInt32($0.dropFirst(2), radix: 16) ?? 0 }
                if ((mark & parts[1]) == parts[0]) == (rule[i - 1] == "!") { return false }
                i += 2
            case "--match-set":
                cost.lookups += 1
                guard let set = sets[rule[i + 1]], member(set, rule[i + 2]) else { return false }
                i += 3
            case "--ctstate", "--mark-connmark":
                return false
            default:
                i += 1
            }
        }
        return true
    }

    private func member(_ set: IPSet, _ flags: String) -> Bool {
        let address = flags.hasPrefix("src") ? source : destination
        switch set.kind {
        case .hashIP:
            return set.members.contains { $0.block.address == address }
        case .hashNet:
            let hits = set.members.filter { $0.block.contains(address) }
            guard let best = hits.max(by: { $0.block.prefix < $1.block.prefix }) else { return false }
            return !best.nomatch
        case .hashIPPort:
            return set.members.contains { $0.block.address == address && $0.port?.0 == .tcp && $0.port?.1 == port }
        }
    }
}

/// `picket-bench cost --from PATH... --node NODE --source NS/NAME --destination NS/NAME [--port N] [--mark-mask HEX]`.
enum CostCommand {
    static let usage = """
        usage: picket-bench cost --from PATH... --node NODE --source NS/NAME --destination NS/NAME
                                 [--port 80] [--mark-mask 0xffff0000]

        Compiles the manifests for NODE and counts, from the rules, what a new TCP connection from
        SOURCE to DESTINATION (both pods) costs in mangle and filter FORWARD: rules walked and set
        lookups, dispatch-tree rules among them; and what an established packet costs. Also the
        deepest dispatch walk over every isolated local pod, for comparison.
        """

    static func run(_ arguments: [String]) -> Int32 {
        var paths: [String] = []
        var node: String?
        var sourceKey: String?
        var destinationKey: String?
        var port = 80
        var mask = MarkLayout.defaultMask
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard let value = rest.popFirst() else {
                printErr("picket-bench cost: \(argument) needs a value\n\n\(usage)")
                return 64
            }
            switch argument {
            case "--from": paths.append(value)
            case "--node": node = value
            case "--source": sourceKey = value
            case "--destination": destinationKey = value
            case "--port": port = Int(value) ?? -1
            case "--mark-mask": mask = UInt32(value.hasPrefix("0x") ? String(value.dropFirst(2)) : value, radix: 16) ?? 0
            default:
                printErr("picket-bench cost: unknown argument \(argument)\n\n\(usage)")
                return 64
            }
        }
        guard let node, let sourceKey, let destinationKey, !paths.isEmpty, (1...65535).contains(port) else {
            printErr(usage)
            return 64
        }
        let marks: MarkLayout
        do { marks = try MarkLayout(mask: mask) } catch {
            printErr("picket-bench cost: \(error)")
            return 64
        }
        let manifests = ManifestLoader.load(paths)
        let snapshot = manifests.snapshot
        func pod(_ key: String) -> Pod? { snapshot.pods.first { "\($0.key)" == key } }
        guard let source = pod(sourceKey)?.ips.first, let destination = pod(destinationKey)?.ips.first else {
            printErr("picket-bench cost: \(sourceKey) or \(destinationKey) is not a pod with an address")
            return 2
        }
        let ruleset = compile(snapshot, node: node, options: CompileOptions(marks: marks))
        for warning in ruleset.warnings { printErr("picket-bench cost: warning: \(warning)") }
        let walker = PacketWalker(ruleset, source: source, destination: destination, port: port)
        let groups = ruleset.dispatch.map { "\($0.groups.count) \($0.direction.field)" }.joined(separator: ", ")
        let trees = DispatchWalker(ruleset)
        var deepest = 0
        for d in ruleset.dispatch {
            for group in d.groups { deepest = max(deepest, trees.walk(d.direction, .v4, number: group.number).rules) }
        }
        print("groups on \(node): \(groups); mark mask \(marks)")
        print("new connection \(sourceKey) -> \(destinationKey) TCP/\(port): \(walker.newConnection())")
        print("deepest dispatch-tree walk of any group on the node: \(deepest) rules")
        print("established packet: \(walker.established())")
        return 0
    }
}
