import ArgumentParser

/// `picket`: a Kubernetes NetworkPolicy controller enforcing policies with iptables and ipset.
@main
struct Picket: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "picket",
        abstract: "Kubernetes NetworkPolicy enforcement with iptables and ipset.",
        discussion: """
            Picket compiles the NetworkPolicies, Pods and Namespaces of a cluster into the ipsets and \
            iptables rules one node must hold, and applies them. `dry-run` prints what a node would \
            enforce, from manifests, without touching the kernel.
            """,
        version: "0.1.0",
        subcommands: [DaemonCommand.self, DryRun.self, Diff.self, Explain.self, Apply.self, Cleanup.self]
    )
}
