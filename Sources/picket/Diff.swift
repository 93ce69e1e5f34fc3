import ArgumentParser
import Foundation
import KubeModel
import PolicyCompiler
import PolicyEvaluator

/// `picket diff`: what a change to manifests does to the rules of each node and to connectivity.
struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a policy change does: rule changes per node and connectivity changes.",
        discussion: """
            Compiles the cluster described by the --before manifests and by the --after manifests, \
            and prints (1) per node, a unified diff of the ipset.restore, iptables.restore and \
            ip6tables.restore files, quiet where nothing changed, and (2) the flows between pods \
            that became allowed or denied, grouped by destination pod and port. A pod present in \
            one state only is judged in both as it is where it exists (its labels, its namespace's \
            labels), so a new pod that a widened policy admits shows as "now allowed". Flows are probed on every container port and every port a policy names, on ICMP, \
            and on one port nothing names ("any other port").

            With --kubeconfig (and --context), the state before is the live cluster (one list of \
            Namespaces, Pods and NetworkPolicies) and the state after is that cluster with the \
            objects of --after laid over it: an object of the same kind, namespace and name is \
            replaced, others are added. This is the CI question "what does this change do to the \
            cluster".

            Without --node every node named by a pod's spec.nodeName in either state is covered.

            Exit status, like diff(1): 0 when nothing changes, 1 when something does, 2 when an \
            input is invalid (the problems are printed on stderr, one per line).
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(help: ArgumentHelp("Only this node's rules (default: every node with pods).", valueName: "node"))
    var node: String?

    @Option(name: .customLong("before"), help: ArgumentHelp("Manifests of the state before the change (file or directory). Repeatable; not with --kubeconfig.", valueName: "path"))
    var before: [String] = []

    @Option(name: .customLong("after"), help: ArgumentHelp(
        "Manifests of the state after the change (file or directory). Repeatable. With --kubeconfig: the objects laid over the live cluster.",
        valueName: "path"))
    var after: [String] = []

    @OptionGroup var cluster: ClusterOptions

    @Option(help: "Output format: text or json.")
    var format: Format = .text

    @OptionGroup var marks: MarkOptions

    func validate() throws {
        if cluster.isLive {
            if !before.isEmpty { throw ValidationError("with --kubeconfig the live cluster is the state before: give --after PATH only") }
            if after.isEmpty { throw ValidationError("give at least one --after PATH to lay over the live cluster") }
        } else if before.isEmpty || after.isEmpty {
            throw ValidationError("give at least one --before PATH and one --after PATH, or --kubeconfig FILE and --after PATH")
        }
    }

    func run() throws {
        if let node { try checkNodeName(node) }
        let old: ManifestSet
        let new: ManifestSet
        if cluster.isLive {
            old = try cluster.load()
            new = old.overlaid(with: ManifestLoader.load(after))
        } else {
            old = ManifestLoader.load(before)
            new = ManifestLoader.load(after)
        }
        if report(old.issues + new.issues) { throw ExitCode(2) }
        let oldSnapshot = old.snapshot
        let newSnapshot = new.snapshot
        let nodes = node.map { [$0] } ?? Set((oldSnapshot.pods + newSnapshot.pods).compactMap(\.nodeName)).sorted()

        var ruleChanges: [NodeRuleChange] = []
        for node in nodes {
            // The after state numbered as the node would number it when applying the change.
            let wasRules = compile(oldSnapshot, node: node, options: marks.compileOptions())
            let nowRules = compile(newSnapshot, node: node, options: marks.compileOptions()).renumbered(keeping: wasRules.dispatchNumbers)
            let was = files(wasRules, node: node)
            let now = files(nowRules, node: node)
            for name in ["ipset.restore", "iptables.restore", "ip6tables.restore"] {
                let diff = unifiedDiff(was[name] ?? "", now[name] ?? "", oldLabel: "before/\(node)/\(name)", newLabel: "after/\(node)/\(name)")
                if !diff.isEmpty { ruleChanges.append(NodeRuleChange(node: node, file: name, diff: diff)) }
            }
        }
        let flows = connectivityChanges(before: oldSnapshot, after: newSnapshot)

        switch format {
        case .text: print(text(ruleChanges, flows), terminator: "")
        case .json: print(try json(ruleChanges, flows))
        }
        if !ruleChanges.isEmpty || !flows.isEmpty { throw ExitCode(1) }
    }

    private func files(_ ruleset: Ruleset, node: String) -> [String: String] {
        var files = ["ipset.restore": ruleset.ipsetRestore(node: node)]
        files["iptables.restore"] = ruleset.iptablesRestore(family: .v4, node: node)
        files["ip6tables.restore"] = ruleset.iptablesRestore(family: .v6, node: node)
        return files
    }

    private func text(_ rules: [NodeRuleChange], _ flows: [ConnectivityChange]) -> String {
        var out = ""
        if rules.isEmpty {
            out += "rules: no change\n"
        } else {
            for change in rules { out += change.diff }
        }
        if flows.isEmpty {
            out += "connectivity: no change\n"
            return out
        }
        out += "connectivity:\n"
        // Grouped by destination and traffic: who gained and who lost access.
        var i = 0
        while i < flows.count {
            let head = flows[i]
            var group: [ConnectivityChange] = []
            while i < flows.count && sameTarget(flows[i], head) {
                group.append(flows[i])
                i += 1
            }
            out += "  \(head.destination) \(head.traffic) (IPv\(head.family.rawValue))\n"
            let allowed = group.filter(\.nowAllowed).map(\.source.description)
            let denied = group.filter { !$0.nowAllowed }.map(\.source.description)
            if !allowed.isEmpty { out += "    now allowed from: \(allowed.joined(separator: ", "))\n" }
            if !denied.isEmpty { out += "    now denied from:  \(denied.joined(separator: ", "))\n" }
        }
        return out
    }

    /// Whether two changes concern the same destination, traffic and family.
    private func sameTarget(_ a: ConnectivityChange, _ b: ConnectivityChange) -> Bool {
        a.destination == b.destination && a.traffic == b.traffic && a.family == b.family
    }

    private func json(_ rules: [NodeRuleChange], _ flows: [ConnectivityChange]) throws -> String {
        struct Output: Encodable {
            var rules: [NodeRuleChange]
            var connectivity: [Flow]
        }
        struct Flow: Encodable {
            var source: String
            var destination: String
            var traffic: String
            var family: String
            var before: String
            var after: String
        }
        let output = Output(rules: rules, connectivity: flows.map {
            Flow(source: $0.source.description, destination: $0.destination.description, traffic: $0.traffic.description,
                 family: "IPv\($0.family.rawValue)", before: $0.nowAllowed ? "denied" : "allowed", after: $0.nowAllowed ? "allowed" : "denied")
        })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(output), as: UTF8.self)
    }
}

/// A changed restore file of one node.
struct NodeRuleChange: Encodable {
    var node: String
    var file: String
    var diff: String
}
