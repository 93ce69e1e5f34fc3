// The evaluator as the oracle: expectations for a probed matrix come from
// `PolicyEvaluator.Evaluator.verdict`, an implementation of the NetworkPolicy API independent of
// the rule compiler, over the snapshot decoded from the very manifests `picket apply` read. A
// mismatch is printed with the pair, the port, what was expected and observed, and the
// evaluator's reasons, followed by the live rules and counters of the nodes involved.
//
// This module has its own `Flow` and `Endpoint` (probes); the evaluator's are always written
// `PolicyEvaluator.Flow` and `PolicyEvaluator.Endpoint` here.

import Foundation
import KubeModel
import PolicyEvaluator
import Testing

extension NetnsCluster {
    /// The address a node's own traffic leaves with towards a pod: its bridge address towards
    /// its own pods (same link), its underlay address towards other nodes' pods (the route).
    func sourceAddress(ofNode name: String, towards destination: Endpoint, family: IPAddress.Family) -> IPAddress {
        let node = nodes.first { $0.name == name }!
        let local = destination.nodeName == name
        let text = family == .v4 ? (local ? node.gateway4 : node.underlay4) : (local ? node.gateway6 : node.underlay6)
        return IPAddress(text)!
    }

    /// The evaluator's view of a probe: pods by key, a node as `.node(name, address:)` with the
    /// address its packets carry (as a source) or the address probed (as a destination), outside
    /// hosts as `.address`.
    func evaluatorFlow(_ flow: Flow) -> PolicyEvaluator.Flow {
        func end(_ endpoint: Endpoint, isSource: Bool) -> PolicyEvaluator.Endpoint {
            switch endpoint {
            case .pod(let pod): .pod(pod.key)
            case .node(let name) where isSource: .node(name, address: sourceAddress(ofNode: name, towards: flow.destination, family: flow.family))
            case .node(let name): .node(name, address: flow.address)
            case .outside(let address): .address(address)
            }
        }
        return PolicyEvaluator.Flow(
            from: end(flow.source, isSource: true), to: end(flow.destination, isSource: false),
            proto: flow.port.proto, port: flow.port.number, family: flow.family)
    }

    /// Probes `flows` and compares each with the evaluator's verdict on it.
    func matrix(_ flows: [Flow], timeout: Double, oracle: Evaluator) throws -> MatrixResult {
        var verdicts: [Flow: Verdict] = [:]
        for flow in flows {
            do {
                verdicts[flow] = try oracle.verdict(evaluatorFlow(flow))
            } catch {
                throw HarnessError("the evaluator cannot decide \(flow) (as \(evaluatorFlow(flow))): \(error)")
            }
        }
        var result = try matrix(flows, timeout: timeout) { verdicts[$0]!.allowed }
        for i in result.mismatches.indices {
            result.mismatches[i].reasons = verdicts[result.mismatches[i].flow]!.description
        }
        return result
    }
}

/// Running a sequence of states on one cluster, each checked kernel vs evaluator, with totals.
final class OracleRun {
    /// The cluster every state is applied to.
    let cluster: NetnsCluster
    /// The flows probed in every state.
    let flows: [Flow]
    /// Label for output lines.
    let name: String
    private let started = Date()
    /// How long a probe waits for its answer. An admitted connection answers within
    /// milliseconds here; a probe that times out although expected allowed is probed again
    /// with a 2 s timeout before it counts as denied.
    static let timeout = 0.5

    /// Probes made so far (re-probes not counted).
    private(set) var probes = 0
    /// Distinct (source, destination) pairs probed, across states.
    private var pairs = Set<String>()
    /// Mismatches so far.
    private(set) var mismatches = 0
    /// States applied and checked.
    private(set) var states = 0
    /// Nodes whose executor did not converge (second apply changed something), per state.
    private(set) var unconverged = 0

    /// A run over `cluster`, probing `selection` on `ports`.
    init(_ name: String, cluster: NetnsCluster, selection: FlowSelection, ports: [ProbePort]) {
        self.name = name
        self.cluster = cluster
        flows = cluster.flows(selection, ports: ports)
    }

    /// Probes once before any rule is applied: everything must get through, or the harness's
    /// cluster is broken and nothing else would mean anything.
    func baseline() throws {
        let result = try cluster.matrix(flows, timeout: OracleRun.timeout) { _ in true }
        guard result.mismatches.isEmpty else {
            let lines = result.mismatches.prefix(30).map { "  \($0)" }.joined(separator: "\n")
            throw HarnessError("""
                \(name): baseline without any policy: \(result.mismatches.count) of \(flows.count) probes failed; \
                the harness's cluster is broken, no policy was tested:
                \(lines)
                """)
        }
        print("KernelTests \(name): cluster \(cluster.prefix)* baseline \(flows.count) probes all allowed in \(seconds(result.seconds)) (\(result.retried) re-probed)")
    }

    /// Applies `manifests` through the executor, probes the matrix and compares it with the
    /// evaluator; records an issue per problem. Returns the number of mismatches.
    @discardableResult
    func check(_ title: String, _ manifests: ClusterManifests, replay: String? = nil) throws -> Int {
        let outcome = try cluster.apply(manifests)
        let evaluator = Evaluator(snapshot: outcome.snapshot)
        let result = try cluster.matrix(flows, timeout: OracleRun.timeout, oracle: evaluator)
        let unexplained = result.mismatches
        states += 1
        probes += result.flows.count
        for flow in result.flows { pairs.insert("\(flow.source)>\(flow.destination)") }
        mismatches += unexplained.count
        let allowed = result.expectAllowed.filter { $0 }.count
        print("""
            KernelTests \(name): \(title)
              applied in \(seconds(outcome.seconds)); \(result.flows.count) probes (\(allowed) expected allowed) in \
            \(seconds(result.seconds)), \(result.retried) re-probed, \(unexplained.count) mismatches
            """)

        if OracleRun.verbose { print(describe(manifests)) }

        for rules in outcome.notConverged {
            unconverged += 1
            Issue.record(Comment(rawValue: "\(name): \(title)\nthe executor did not converge on \(rules.node): a second "
                + "`picket apply` of the same manifests printed\n\(rules.again)\n(the first printed)\n\(rules.report)"))
        }
        if !unexplained.isEmpty {
            Issue.record(Comment(rawValue: report(title, manifests, unexplained, of: result, outcome, replay: replay)))
        }
        return unexplained.count
    }

    /// Proves that the comparison can fail: applies `applied`, then compares the kernel with
    /// the evaluator of `evaluated` (the same pods and namespaces, other policies). Returns the
    /// flows that mismatched and the flows whose verdicts differ between the two snapshots: they
    /// must be equal, and not empty, for the oracle to see what it is there to see.
    func selfCheck(applied: ClusterManifests, evaluated: ClusterManifests) throws -> (mismatched: Set<Flow>, predicted: Set<Flow>) {
        let outcome = try cluster.apply(applied)
        var policies: [Policy] = []
        for (i, text) in evaluated.policies.enumerated() {
            let set = ManifestDecoder.decode(text, source: "self-check policy \(i + 1)")
            guard !set.hasErrors else { throw HarnessError("self-check policy \(i + 1) is invalid: \(set.issues)") }
            policies += set.policies
        }
        let real = Evaluator(snapshot: outcome.snapshot)
        let other = Evaluator(snapshot: ClusterSnapshot(namespaces: evaluated.namespaces, pods: evaluated.pods, policies: policies))
        let result = try cluster.matrix(flows, timeout: OracleRun.timeout, oracle: other)
        var predicted = Set<Flow>()
        for flow in flows {
            let asked = cluster.evaluatorFlow(flow)
            if try real.verdict(asked).allowed != other.verdict(asked).allowed { predicted.insert(flow) }
        }
        let mismatched = Set(result.mismatches.map(\.flow))
        print("KernelTests \(name): self-check: \(mismatched.count) mismatches seen, \(predicted.count) predicted")
        return (mismatched, predicted)
    }

    /// The case, its manifests, the given mismatches (at most 40) and the live rules of the
    /// nodes involved.
    private func report(
        _ title: String, _ manifests: ClusterManifests, _ mismatches: [Mismatch], of result: MatrixResult,
        _ outcome: ApplyOutcome, replay: String?
    ) -> String {
        var text = "\(name): \(title)\n"
        if let replay { text += "replay: \(replay)\n" }
        text += "\(mismatches.count) of \(result.flows.count) probes disagree with the evaluator:\n"
        text += mismatches.prefix(40).map { "  \($0)\n" }.joined()
        if mismatches.count > 40 { text += "  ... \(mismatches.count - 40) more\n" }
        text += describe(manifests)
        let nodes = Set(mismatches.flatMap { [$0.flow.source.nodeName, $0.flow.destination.nodeName].compactMap { $0 } })
        for applied in outcome.nodes where nodes.contains(applied.node) {
            text += "--- picket apply on \(applied.node) printed ---\n\(applied.report)"
            text += "--- live on \(applied.node) (packet counters show the rule that dropped) ---\n\(cluster.kernelState(node: applied.node))"
        }
        return text
    }

    /// Pods (node, addresses, labels, named ports), namespaces (labels) and policies.
    private func describe(_ manifests: ClusterManifests) -> String {
        func labels(_ labels: [String: String]) -> String {
            labels.keys.sorted().map { "\($0)=\(labels[$0]!)" }.joined(separator: ",")
        }
        var text = "--- pods ---\n"
        for pod in manifests.pods {
            let named = pod.ports.filter { $0.proto != .sctp }.map { "\($0.name ?? "")=\($0.number)/\($0.proto.lowercased)" }
            text += "  \(pod.key) on \(pod.nodeName ?? "-") \(pod.ips.map(\.description).joined(separator: ",")) "
                + "labels \(labels(pod.labels)) ports \(named.joined(separator: ","))"
                + (pod.phase == "Running" ? "" : " phase \(pod.phase ?? "(none)")") + "\n"
        }
        text += "--- namespaces ---\n"
        text += manifests.namespaces.map { "  \($0.name) \(labels($0.labels))\n" }.joined()
        return text + "--- policies ---\n" + manifests.policyText + "\n"
    }

    /// Whether PICKET_KERNEL_VERBOSE=1 asks for every state's manifests in the output.
    static let verbose = ProcessInfo.processInfo.environment["PICKET_KERNEL_VERBOSE"] == "1"

    /// The closing line of a test: states, probes, pairs, mismatches, run time.
    func summary() -> String {
        "KernelTests \(name): \(states) states applied, \(probes) probes over \(pairs.count) distinct pairs, "
            + "\(mismatches) mismatches, \(unconverged) unconverged applies, "
            + "\(seconds(Date().timeIntervalSince(started)))"
    }

    private func seconds(_ value: Double) -> String { String(format: "%.1f s", value) }
}

