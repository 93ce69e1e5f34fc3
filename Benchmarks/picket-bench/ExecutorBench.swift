import Executor
import Foundation
import IPSetKit
import KubeModel
import PolicyCompiler

// The executor's figures: a cold apply of a whole ruleset, the no-op re-apply (from memory and
// with a read-back of the kernel), a one-pod change and a one-policy change, each timed from the
// changed snapshot: compile, then apply (plan against the last applied state, write the
// difference), in a scratch namespace.

/// Executor timings of one size.
struct ExecutorFigures {
    var size: String
    var rules: Int
    var members: Int
    var cold: Duration
    var noopMemory: Duration
    var noopVerify: Duration
    var onePodCompile: Duration
    var onePod: Duration
    var onePodWrites: String
    var onePolicyCompile: Duration
    var onePolicy: Duration
    var onePolicyWrites: String
}

enum ExecutorBench {
    /// Runs the executor measurements for one generated cluster inside namespace `name`.
    static func run(_ cluster: SyntheticCluster, size: String, namespace name: String, rounds: Int) throws -> ExecutorFigures {
        let clock = ContinuousClock()
        let node = SyntheticCluster.benchNode
        let base = ClusterSnapshot(namespaces: cluster.namespaces, pods: cluster.pods, policies: cluster.policies)
        let ruleset = compile(base, node: node)

        // The one-pod change: a remote pod that some local policy names as a peer moves to a
        // fresh address (and back, alternately).
        let peerSets = ruleset.sets.filter { $0.name.hasPrefix("picket-pod-") }
        let peerAddresses = Set(peerSets.flatMap { $0.members.map(\.block.address) })
        guard let movingIndex = cluster.pods.firstIndex(where: { pod in
            pod.nodeName != node && pod.isPolicyEndpoint && pod.ips.contains { peerAddresses.contains($0) }
        }) else { throw BenchFailure(message: "no remote peer pod to move") }
        var moved = cluster.pods
        moved[movingIndex].ips = [IPAddress("10.255.255.254")!]

        // The one-policy change: a policy that isolates local pods gains a port on its first
        // ingress rule (and loses it again).
        let local = localPods(base, node: node)
        guard let policyIndex = cluster.policies.firstIndex(where: { policy in
            !policy.ingress.isEmpty && !policy.ingress[0].ports.isEmpty && policy.isolates.contains(.ingress)
                && local.contains { $0.key.namespace == policy.key.namespace && policy.podSelector.matches($0.labels) }
        }) else { throw BenchFailure(message: "no local policy to change") }
        var widened = cluster.policies
        widened[policyIndex].ingress[0].ports.append(Policy.Port(proto: .tcp, range: .range(65000, 65000)))

        return try inNetworkNamespace(name) { () throws -> ExecutorFigures in
            let kernel = CountingKernel(SystemKernel())
            let executor = Executor(kernel: kernel)
            let cold = try clock.measure { try executor.apply(ruleset) }
            let coldWrites = kernel.writes
            var noopMemory: [Duration] = []
            var noopVerify: [Duration] = []
            for _ in 0..<rounds {
                noopMemory.append(try clock.measure { try executor.apply(ruleset) })
                noopVerify.append(try clock.measure { try executor.apply(ruleset, verify: true) })
            }
            guard kernel.writes == coldWrites else {
                let plan = Plan(from: try executor.readKernel(), to: NodeState(ruleset))
                throw BenchFailure(message: "a no-op apply wrote to the kernel: \(plan.report)")
            }

            func changes(_ variants: [ClusterSnapshot]) throws -> (compile: Duration, apply: Duration, writes: String) {
                var compiles: [Duration] = []
                var applies: [Duration] = []
                var writes = ""
                for round in 0..<rounds * 2 {
                    let snapshot = variants[round % 2]
                    kernel.reset()
                    var changed: Ruleset? = nil
                    compiles.append(clock.measure { changed = compile(snapshot, node: node) })
                    applies.append(try clock.measure { try executor.apply(changed!) })
                    writes = kernel.summary
                }
                return (median(compiles), median(applies), writes)
            }
            let onePod = try changes([
                ClusterSnapshot(namespaces: cluster.namespaces, pods: moved, policies: cluster.policies), base,
            ])
            let onePolicy = try changes([
                ClusterSnapshot(namespaces: cluster.namespaces, pods: cluster.pods, policies: widened), base,
            ])
            return ExecutorFigures(
                size: size, rules: ruleset.ruleCount, members: ruleset.memberCount, cold: cold,
                noopMemory: median(noopMemory), noopVerify: median(noopVerify),
                onePodCompile: onePod.compile, onePod: onePod.apply, onePodWrites: onePod.writes,
                onePolicyCompile: onePolicy.compile, onePolicy: onePolicy.apply, onePolicyWrites: onePolicy.writes)
        }
    }
}

/// A failed executor measurement.
struct BenchFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// The real kernel, counting what is written (to show what each change touched).
final class CountingKernel: KernelAccess {
    private let base: SystemKernel
    private(set) var writes = 0
    private var setLines = 0
    private var tableTexts = 0
    private var chainsDeclared = 0
    private var conntrack: Duration = .zero
    private var revoked = 0

    init(_ base: SystemKernel) { self.base = base }

    func reset() {
        setLines = 0
        tableTexts = 0
        chainsDeclared = 0
        conntrack = .zero
        revoked = 0
    }

    /// e.g. `2 ipset lines, no iptables-restore, conntrack 1 address 4.6 ms`.
    var summary: String {
        var text = "\(setLines) ipset lines, " + (tableTexts == 0 ? "no iptables-restore" : "\(tableTexts) iptables-restore of \(chainsDeclared) chains")
        if revoked > 0 { text += ", conntrack re-check of \(revoked) addresses \(Format.ms(conntrack))" }
        return text
    }

    func saveSets() throws(ApplyError) -> String { try base.saveSets() }
    func saveTable(_ family: IPAddress.Family) throws(ApplyError) -> String { try base.saveTable(family) }

    func restoreSets(_ lines: [String]) throws(ApplyError) {
        if !lines.isEmpty { writes += 1 }
        setLines += lines.count
        try base.restoreSets(lines)
    }

    func restoreTable(_ family: IPAddress.Family, _ text: String) throws(ApplyError) {
        writes += 1
        tableTexts += 1
        chainsDeclared += text.split(separator: "\n").filter { $0.hasPrefix(":") }.count
        try base.restoreTable(family, text)
    }

    func recheckConntrack(_ addresses: Set<IPAddress>, mark: UInt32, clearingLabel label: Int) throws(ApplyError) -> Int {
        let start = ContinuousClock.now
        defer {
            conntrack += ContinuousClock.now - start
            revoked += addresses.count
        }
        return try base.recheckConntrack(addresses, mark: mark, clearingLabel: label)
    }
}
