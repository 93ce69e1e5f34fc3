import ArgumentParser
import Foundation
import KubeModel
import PolicyCompiler

/// `picket dry-run`: the rules one node would enforce, from manifests, without touching the kernel.
struct DryRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dry-run",
        abstract: "Print the ipsets and iptables rules a node would enforce.",
        discussion: """
            Reads Namespaces, Pods and NetworkPolicies from manifests (--from) or from a live \
            cluster's API server (--kubeconfig, --context: one paginated list of each) and compiles what the node \
            NODE must enforce for its pods (spec.nodeName == NODE). The output is complete: applied \
            with `ipset restore` and then `iptables-restore --noflush` (and `ip6tables-restore \
            --noflush` when any pod has an IPv6 address) in a network namespace without Picket's \
            chains and sets, it installs enforcement including the jumps from FORWARD and INPUT.

            With --output DIR it writes DIR/ipset.restore, DIR/iptables.restore and, for dual-stack \
            clusters, DIR/ip6tables.restore; without it, it prints them under section headers.

            Exit status: 0 when every input was valid; 2 when a file did not parse, an object did not \
            decode, an object or --node had a field the API server would reject (names, labels, \
            selectors, ports, addresses). Each problem is one line on stderr naming the \
            file (or the API server), the object and the field; a cluster that cannot be read (the \
            server, the reason) is exit 2 too. The rules are still produced: an invalid policy keeps \
            isolating the pods it selects while its invalid rules allow nothing.
            """)

    @Option(help: ArgumentHelp("The node to compile for (matched against the pods' spec.nodeName).", valueName: "node"))
    var node: String

    @OptionGroup var inputs: InputOptions

    @OptionGroup var marks: MarkOptions

    @OptionGroup var podCIDRs: PodCIDROptions

    @Option(help: ArgumentHelp("Write the restore files into this directory (created if missing) instead of printing them.", valueName: "dir"))
    var output: String?

    func validate() throws {
        if node.isEmpty { throw ValidationError("--node must not be empty") }
    }

    func run() throws {
        try checkNodeName(node)
        let objects = try inputs.load()
        let invalid = report(objects.issues)
        let ruleset = compile(objects.snapshot, node: node, options: podCIDRs.applied(to: marks.compileOptions()))
        report(warnings: ruleset)
        let files = restoreFiles(ruleset, node: node)
        if let output {
            do {
                try write(files, to: output)
            } catch {
                printError("picket: error: \(output): cannot write: \(error.localizedDescription)")
                throw ExitCode(1)
            }
        } else {
            var text = ""
            for (name, content) in files {
                text += "# ==== \(name) ====\n" + content
            }
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        if invalid { throw ExitCode(2) }
    }
}
