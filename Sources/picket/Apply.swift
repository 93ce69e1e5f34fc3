import ArgumentParser
import Executor
import Foundation
import KubeModel
import PolicyCompiler

/// `picket apply`: compile for a node and make the current network namespace enforce it.
struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile the rules of a node and apply them to this network namespace.",
        discussion: """
            Reads the manifests, compiles what NODE enforces, reads Picket's chains (filter and \
            mangle) and sets back from the kernel (iptables-save, libipset), numbers the policy \
            groups as the node's pods already carry them, and applies only the difference: new \
            sets are created filled, changed chains are rewritten in one iptables-restore \
            --noflush transaction per family and table, pods are tagged with their group's \
            number in place (one ipset line a pod), stale chains and sets are removed, and the \
            jumps from FORWARD and INPUT are kept first and single. Every line is checked to \
            touch only Picket's chains, hooks and sets before anything is written. Foreign \
            rules and sets are never touched. When access is taken away, the conntrack entries \
            of the addresses concerned are flagged, so established flows meet the new rules at \
            their next packet.

            Prints what changed (sets created, updated with member counts, destroyed; chains \
            written and deleted) or `no change`. Needs root (CAP_NET_ADMIN).

            Exit status: 0 applied; 1 the kernel refused (the previous rules stay in force; the \
            error names the step and the failing line), or the rules were committed but marking \
            conntrack entries failed (said as such); 2 an input was invalid (the valid part is \
            still applied, invalid policies fail closed, as with dry-run).
            """)

    @Option(help: ArgumentHelp("The node to compile for (matched against the pods' spec.nodeName).", valueName: "node"))
    var node: String

    @OptionGroup var manifests: ManifestOptions

    @OptionGroup var marks: MarkOptions

    @OptionGroup var podCIDRs: PodCIDROptions

    @Option(help: ArgumentHelp(
        "After a successful apply, record the applied restore files in this directory (for operators; the kernel stays the state compared against).",
        valueName: "dir"))
    var stateDir: String?

    func validate() throws {
        if node.isEmpty { throw ValidationError("--node must not be empty") }
        if manifests.paths.isEmpty { throw ValidationError("give at least one --from PATH") }
    }

    func run() throws {
        try checkNodeName(node)
        let inputs = manifests.load()
        let invalid = report(inputs.issues)
        let ruleset = compile(inputs.snapshot, node: node, options: podCIDRs.applied(to: marks.compileOptions()))
        report(warnings: ruleset)
        let executor = Executor(kernel: SystemKernel())
        do {
            let changes = try executor.apply(ruleset, verify: true)
            print(changes.description)
            if let failure = changes.conntrackFailure {
                printError("picket: error: the rules are committed and in force, but marking the conntrack entries of flows that lost access failed (they go on until they end): \(failure)")
                throw ExitCode(1)
            }
        } catch let error as ApplyError {
            printError("picket: error: apply failed, the previous rules stay in force: \(error)")
            throw ExitCode(1)
        }
        if let stateDir {
            do {
                try write(restoreFiles(ruleset, node: node), to: stateDir)
            } catch {
                printError("picket: error: \(stateDir): cannot record the applied rules: \(error.localizedDescription)")
                throw ExitCode(1)
            }
        }
        if invalid { throw ExitCode(2) }
    }
}

/// `picket cleanup`: remove everything Picket created from this network namespace.
struct Cleanup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove every chain, jump and set Picket created, and nothing else.",
        discussion: """
            Deletes the jumps from the built-in chains into PICKET-* chains, the PICKET-* chains \
            (filter and mangle, IPv4 and IPv6) and the picket-* ipsets, in that order, in one \
            transaction per family and table. \
            Idempotent: a second run prints `no change`. Exit status 1 when the kernel refuses.
            """)

    func run() throws {
        do {
            print(try Executor(kernel: SystemKernel()).cleanup().description)
        } catch {
            printError("picket: error: cleanup failed: \(error)")
            throw ExitCode(1)
        }
    }
}
