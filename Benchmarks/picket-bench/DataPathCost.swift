import Foundation
import KubeModel
import PolicyCompiler

// `picket-bench cost`: what one new TCP connection between two local pods costs on the data path
// of a compiled ruleset, counted from the rules: the rules it walks and the set lookups among
// them, from mangle FORWARD's hooks through tagging, dispatch and policy evaluation, the way the
// kernel evaluates them (a rule's address match first, then its matches in order, each
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

    /// A new connection's first packet (SYN): its conntrack entry is new, its mark 0.
    func newConnection() -> PacketCost {
        var packet = Packet(established: false, connmark: 0)
        return walk(&packet)
    }

    /// An established packet of a flow not flagged for re-check: its conntrack entry carries
    /// the seen label (set by its first packet).
    func established() -> PacketCost {
        var packet = Packet(established: true, connmark: 0, labels: [ruleset.marks.seenLabel])
        return walk(&packet)
    }

    /// What the walk knows of the packet: its conntrack state, mark and label bits, and its
    /// packet mark.
    struct Packet {
        var established: Bool
        var connmark: UInt32
        var labels: Set<Int> = []
        var mark: UInt32 = 0
    }

    /// The built-in FORWARD chains' hooks, in table order, each entered when its matches hold.
    private func walk(_ packet: inout Packet) -> PacketCost {
        var cost = PacketCost()
        for table in TableName.allCases {
            for hook in ruleset.ipv4.hooks where hook.table == table && hook.builtin == "FORWARD" {
                cost.rules += 1
                guard matches(hook.matches, &packet, &cost) else { continue }
                if run(hook.target, &packet, &cost) == "drop" { return cost }
            }
        }
        return cost
    }

    /// `0xV/0xM` as numbers.
    private func valueMask(_ word: String) -> (UInt32, UInt32) {
        let parts = word.split(separator: "/").map { UInt32($0.dropFirst(2), radix: 16) ?? 0 }
        return (parts[0], parts.count > 1 ? parts[1] : 0xffff_ffff)
    }

    /// Runs `chain`; returns "drop", "return" or nil (fell off the end).
    private func run(_ chain: String, _ packet: inout Packet, _ cost: inout PacketCost, depth: Int = 0) -> String? {
        guard depth < 64, let rules = chains[chain] else { return nil }
        for rule in rules {
            cost.rules += 1
            if Names.isDispatchTree(chain) { cost.treeRules += 1 }
            guard matches(rule, &packet, &cost) else { continue }
            let target = rule.firstIndex(where: { $0 == "-j" || $0 == "-g" }).map { (rule[$0], rule[$0 + 1]) }
            guard let (kind, name) = target else { continue }
            switch name {
            case "DROP":
                cost.admitted = false
                return "drop"
            case "RETURN":
                return "return"
            case "MARK", "CONNMARK":
                if let x = rule.firstIndex(of: "--set-xmark") {
                    let (value, mask) = valueMask(rule[x + 1])
                    if name == "MARK" {
                        packet.mark = (packet.mark & ~mask) ^ value
                    } else {
                        packet.connmark = (packet.connmark & ~mask) ^ value
                    }
                }
            case "SET":
                guard let s = rule.firstIndex(of: "--map-set") else { continue }
                cost.lookups += 1
                let address = rule[s + 2] == "src" ? source : destination
                if let tag = sets[rule[s + 1]]?.members.first(where: { $0.block.address == address })?.tag {
                    packet.mark = (packet.mark & ~tag.mask) | tag.mark
                }
            case "ACCEPT":
                continue
            default:
                let outcome = run(name, &packet, &cost, depth: depth + 1)
                if outcome == "drop" { return "drop" }
                if kind == "-g" { return outcome == "return" ? "return" : nil }
            }
        }
        return nil
    }

    /// Whether `rule`'s matches hold, counting the set lookups it makes before one fails.
    private func matches(_ rule: [String], _ packet: inout Packet, _ cost: inout PacketCost) -> Bool {
        var i = 0
        var module = ""
        while i < rule.count {
            let word = rule[i]
            switch word {
            case "-m":
                module = rule[i + 1]
                i += 2
            case "-j", "-g":
                return true
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
                let (value, mask) = valueMask(rule[i + 1])
                let mark = module == "connmark" ? packet.connmark : packet.mark
                if ((mark & mask) == value) == (rule[i - 1] == "!") { return false }
                i += 2
            case "--label":
                // connlabel: a bit of the entry's labels; with --set, sets it and holds.
                let bit = Int(rule[i + 1].filter { $0 != "\"" }) ?? -1
                if i + 2 < rule.count && rule[i + 2] == "--set" {
                    packet.labels.insert(bit)
                    i += 3
                    continue
                }
                if packet.labels.contains(bit) == (rule[i - 1] == "!") { return false }
                i += 2
            case "--ctstate":
                // A new connection's first packet is NEW; an established one ESTABLISHED.
                let states = rule[i + 1].split(separator: ",")
                if states.contains(packet.established ? "ESTABLISHED" : "NEW") == (rule[i - 1] == "!") { return false }
                i += 2
            case "--ctdir":
                // Both packets walked go in the original direction.
                if (rule[i + 1] == "ORIGINAL") == (rule[i - 1] == "!") { return false }
                i += 2
            case "--match-set":
                cost.lookups += 1
                guard let set = sets[rule[i + 1]], member(set, rule[i + 2]) else { return false }
                i += 3
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

/// What `cost` and `place` are asked about: a cluster, a node, a mark layout and one TCP
/// connection between two of its pods.
struct ConnectionQuery {
    let snapshot: ClusterSnapshot
    let node: String
    let marks: MarkLayout
    let sourceKey: String
    let destinationKey: String
    let source: IPAddress
    let destination: IPAddress
    let port: Int
    /// The command's own options, by name without the dashes.
    let extra: [String: String]

    /// Reads `--from PATH... --node NODE --source NS/NAME --destination NS/NAME [--port N]
    /// [--mark-mask HEX]` plus the options in `extra`; on an error prints it (with `usage`) and
    /// returns the exit code.
    static func parse(_ arguments: [String], command: String, usage: String, extra names: Set<String> = []) -> Result<ConnectionQuery, ExitCode> {
        var paths: [String] = []
        var values: [String: String] = [:]
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard let value = rest.popFirst() else {
                printErr("picket-bench \(command): \(argument) needs a value\n\n\(usage)")
                return .failure(ExitCode(64))
            }
            let name = String(argument.dropFirst(2))
            switch argument {
            case "--from": paths.append(value)
            case "--node", "--source", "--destination", "--port", "--mark-mask": values[name] = value
            default:
                guard argument.hasPrefix("--"), names.contains(name) else {
                    printErr("picket-bench \(command): unknown argument \(argument)\n\n\(usage)")
                    return .failure(ExitCode(64))
                }
                values[name] = value
            }
        }
        let port = Int(values["port"] ?? "80") ?? -1
        guard let node = values["node"], let sourceKey = values["source"], let destinationKey = values["destination"],
              !paths.isEmpty, (1...65535).contains(port)
        else {
            printErr(usage)
            return .failure(ExitCode(64))
        }
        let maskText = values["mark-mask"].map { $0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0 }
        let marks: MarkLayout
        do { marks = try MarkLayout(mask: maskText.map { UInt32($0, radix: 16) ?? 0 } ?? MarkLayout.defaultMask) } catch {
            printErr("picket-bench \(command): \(error)")
            return .failure(ExitCode(64))
        }
        let snapshot = ManifestLoader.load(paths).snapshot
        func pod(_ key: String) -> Pod? { snapshot.pods.first { "\($0.key)" == key } }
        guard let source = pod(sourceKey)?.ips.first, let destination = pod(destinationKey)?.ips.first else {
            printErr("picket-bench \(command): \(sourceKey) or \(destinationKey) is not a pod with an address")
            return .failure(ExitCode(2))
        }
        return .success(ConnectionQuery(
            snapshot: snapshot, node: node, marks: marks, sourceKey: sourceKey, destinationKey: destinationKey,
            source: source, destination: destination, port: port, extra: values.filter { names.contains($0.key) }))
    }

    /// The ruleset of `snapshot` (by default the query's) for the node.
    func compiled(_ snapshot: ClusterSnapshot? = nil) -> Ruleset {
        compile(snapshot ?? self.snapshot, node: node, options: CompileOptions(marks: marks))
    }

    /// The connection's walk through `ruleset`.
    func walker(_ ruleset: Ruleset) -> PacketWalker {
        PacketWalker(ruleset, source: source, destination: destination, port: port)
    }

    /// The longest dispatch-tree walk of any group of `ruleset`.
    static func deepestWalk(_ ruleset: Ruleset) -> Int {
        let trees = DispatchWalker(ruleset)
        var deepest = 0
        for d in ruleset.dispatch {
            for group in d.groups { deepest = max(deepest, trees.walk(d.direction, .v4, number: group.number).rules) }
        }
        return deepest
    }
}

/// A process exit status.
struct ExitCode: Error {
    let value: Int32
    init(_ value: Int32) { self.value = value }
}

/// `picket-bench cost --from PATH... --node NODE --source NS/NAME --destination NS/NAME [--port N] [--mark-mask HEX]`.
enum CostCommand {
    static let usage = """
        usage: picket-bench cost --from PATH... --node NODE --source NS/NAME --destination NS/NAME
                                 [--port 80] [--mark-mask 0xffff0000]

        Compiles the manifests for NODE and counts, from the rules, what a new TCP connection from
        SOURCE to DESTINATION (both pods) costs from mangle FORWARD on: rules walked and set
        lookups, dispatch-tree rules among them; and what an established packet costs. Also the
        deepest dispatch walk over every isolated local pod, for comparison.
        """

    static func run(_ arguments: [String]) -> Int32 {
        let query: ConnectionQuery
        switch ConnectionQuery.parse(arguments, command: "cost", usage: usage) {
        case .success(let parsed): query = parsed
        case .failure(let code): return code.value
        }
        let ruleset = query.compiled()
        for warning in ruleset.warnings { printErr("picket-bench cost: warning: \(warning)") }
        let walker = query.walker(ruleset)
        let groups = ruleset.dispatch.map { "\($0.groups.count) \($0.direction.field)" }.joined(separator: ", ")
        print("groups on \(query.node): \(groups); mark mask \(query.marks)")
        print("new connection \(query.sourceKey) -> \(query.destinationKey) TCP/\(query.port): \(walker.newConnection())")
        print("deepest dispatch-tree walk of any group on the node: \(ConnectionQuery.deepestWalk(ruleset)) rules")
        print("established packet: \(walker.established())")
        return 0
    }
}

/// `picket-bench place ...`: the name for one policy that puts the measured connection's group
/// at the deepest place of its dispatch tree.
///
/// A group's number, and so its place in the tree, follows from a hash of its policies' keys:
/// the benchmark cannot choose a place, but it can choose a name. This tries NAME, NAME-1, ...,
/// NAME-(N-1) for the policy POLICY (renamed in the snapshot, nothing else changed), compiles
/// each, and prints the name whose new connection SOURCE -> DESTINATION walks the most
/// dispatch-tree rules (the first such name on a tie), next to the deepest walk of any group.
enum PlaceCommand {
    static let usage = """
        usage: picket-bench place --from PATH... --node NODE --source NS/NAME --destination NS/NAME
                                  --policy NS/NAME [--candidates 48] [--port 80] [--mark-mask 0xffff0000]

        Prints, on its last line, the name for POLICY (out of NAME, NAME-1, ...) under which a new
        TCP connection from SOURCE to DESTINATION walks the most dispatch-tree rules.
        """

    static func run(_ arguments: [String]) -> Int32 {
        let query: ConnectionQuery
        switch ConnectionQuery.parse(arguments, command: "place", usage: usage, extra: ["policy", "candidates"]) {
        case .success(let parsed): query = parsed
        case .failure(let code): return code.value
        }
        let candidates = Int(query.extra["candidates"] ?? "48") ?? 0
        guard let policyKey = query.extra["policy"], (1...1000).contains(candidates) else {
            printErr(usage)
            return 64
        }
        let snapshot = query.snapshot
        guard let index = snapshot.policies.firstIndex(where: { "\($0.key)" == policyKey }) else {
            printErr("picket-bench place: no policy \(policyKey) in the manifests")
            return 2
        }
        let base = snapshot.policies[index].key
        let namespaces = snapshot.namespaces.values.sorted { $0.name < $1.name }
        var best: (name: String, tree: Int, deepest: Int)?
        for k in 0..<candidates {
            let name = k == 0 ? base.name : "\(base.name)-\(k)"
            var policies = snapshot.policies
            policies[index].key = ObjectKey(namespace: base.namespace, name: name)
            let ruleset = query.compiled(ClusterSnapshot(namespaces: namespaces, pods: snapshot.pods, policies: policies))
            let cost = query.walker(ruleset).newConnection()
            guard cost.admitted else {
                printErr("picket-bench place: under \(name) the connection is dropped; the manifests must admit it")
                return 2
            }
            if best == nil || cost.treeRules > best!.tree { best = (name, cost.treeRules, ConnectionQuery.deepestWalk(ruleset)) }
        }
        guard let best else { return 2 }
        print("deepest place found over \(candidates) names of \(policyKey): \(best.tree) dispatch-tree rules (deepest of any group: \(best.deepest))")
        print(best.name)
        return 0
    }
}
