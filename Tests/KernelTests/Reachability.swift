// The reachability matrix: every flow a case cares about (pod to pod on the same node and across
// nodes, node to its local pods, outside hosts to pods, pods to outside hosts), on every
// (protocol, port) of the case, probed with real packets and compared with hand-written
// expectations.

import Foundation
import KubeModel

/// One end of a flow.
enum Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// A pod (its own network namespace).
    case pod(Pod)
    /// A node's own network stack: as a source, its packets leave with its bridge address
    /// (towards its pods) or its underlay address (towards other nodes); as a destination, the
    /// address probed is one of those two.
    case node(String)
    /// The outside host, using one of its external addresses.
    case outside(IPAddress)

    /// The pod, if this is one.
    var pod: Pod? { if case .pod(let pod) = self { pod } else { nil } }

    /// The pod's namespace, if this is a pod.
    var namespace: String? { pod?.key.namespace }

    /// The pod's labels, if this is a pod.
    var labels: [String: String] { pod?.labels ?? [:] }

    /// The node a pod or node endpoint is on.
    var nodeName: String? {
        switch self {
        case .pod(let pod): pod.nodeName
        case .node(let name): name
        case .outside: nil
        }
    }

    /// Whether this is the outside host at `address`.
    func isOutside(_ address: IPAddress) -> Bool { self == .outside(address) }

    /// Whether this is the outside host at any address.
    var isOutside: Bool { if case .outside = self { true } else { false } }

    /// Whether this is a node.
    var isNode: Bool { if case .node = self { true } else { false } }

    var description: String {
        switch self {
        case .pod(let pod): pod.key.description
        case .node(let name): name
        case .outside(let address): "outside \(address)"
        }
    }
}

/// A transport port a flow goes to.
struct ProbePort: Hashable, Sendable, CustomStringConvertible {
    /// TCP or UDP (SCTP cannot be probed in this kernel, see FIELD-NOTES).
    var proto: TransportProtocol
    /// The port number.
    var number: Int

    /// `number`/TCP.
    static func tcp(_ number: Int) -> ProbePort { ProbePort(proto: .tcp, number: number) }
    /// `number`/UDP.
    static func udp(_ number: Int) -> ProbePort { ProbePort(proto: .udp, number: number) }

    var description: String { "\(proto.lowercased)/\(number)" }
}

/// How a flow's source and destination sit in the topology.
enum Placement: String, Hashable, Sendable, CaseIterable {
    /// Pod to pod on one node: bridged, FORWARD once on that node.
    case sameNode = "same node"
    /// Pod to pod on two nodes: routed, FORWARD on both.
    case crossNode = "cross node"
    case nodeToLocalPod = "node to local pod"
    case nodeToRemotePod = "node to remote pod"
    case outsideToPod = "outside to pod"
    case podToOutside = "pod to outside"
    /// A pod to its own node's bridge address: INPUT on that node.
    case podToLocalNode = "pod to its node"
    /// A pod to another node's underlay address: FORWARD on its node, INPUT on the other.
    case podToRemoteNode = "pod to other node"
}

/// One probe of the matrix: a connection (TCP) or a request/response (UDP) from a source to a
/// destination address and port.
struct Flow: Hashable, Sendable, CustomStringConvertible {
    /// Where the probe runs (for the outside host: the external address it binds to).
    var source: Endpoint
    /// Whose server must answer.
    var destination: Endpoint
    /// The destination address probed (a pod's address of one family, or an external address).
    var address: IPAddress
    /// The protocol and port.
    var port: ProbePort

    /// The address family of the flow.
    var family: IPAddress.Family { address.family }

    /// Same node, cross node, node to pod, outside.
    var placement: Placement {
        switch (source, destination) {
        case (.pod(let s), .pod(let d)): s.nodeName == d.nodeName ? .sameNode : .crossNode
        case (.node(let n), .pod(let d)): n == d.nodeName ? .nodeToLocalPod : .nodeToRemotePod
        case (.pod(let s), .node(let n)): s.nodeName == n ? .podToLocalNode : .podToRemoteNode
        case (.outside, _): .outsideToPod
        default: .podToOutside
        }
    }

    /// What the destination's server answers with.
    var expectedAnswer: String {
        switch destination {
        case .pod(let pod): pod.key.description
        case .node(let name): name
        case .outside: OutsideLayout.serverName
        }
    }

    var description: String {
        let dst = destination.isOutside ? "\(destination)" : "\(destination) (\(address))"
        return "\(source) -> \(dst) \(port) [\(placement.rawValue)]"
    }
}

/// What a probe saw.
enum Observation: Hashable, Sendable, CustomStringConvertible {
    /// The destination's server answered.
    case allowed
    /// No answer: `detail` says how it failed (timeout, refused, ...).
    case denied(String)
    /// Someone else answered: the harness's topology is wrong, not the policy.
    case misrouted(String)

    var isAllowed: Bool { self == .allowed }

    var description: String {
        switch self {
        case .allowed: "allowed"
        case .denied(let detail): "denied (\(detail))"
        case .misrouted(let answer): "answered by \(answer)"
        }
    }
}

/// A flow whose observation differs from its expectation.
struct Mismatch: Sendable, CustomStringConvertible {
    /// The flow.
    var flow: Flow
    /// What the case's expectation says.
    var expectedAllowed: Bool
    /// What the probes saw.
    var observed: Observation
    /// Why the expectation is what it is, when an oracle gave it (the evaluator's reasons).
    var reasons: String? = nil

    var description: String {
        var text = "\(flow): expected \(expectedAllowed ? "allowed" : "denied"), observed \(observed)"
        if let reasons {
            text += "\n      evaluator: " + reasons.replacingOccurrences(of: "\n", with: "\n      ")
        }
        return text
    }
}

/// Which flows a matrix contains.
struct FlowSelection: Sendable {
    /// Every ordered pair of distinct pods, same node and cross node.
    var podToPod = true
    var nodeToLocalPod = true
    var nodeToRemotePod = false
    /// Every pod to its own node and to the other node.
    var podToNode = false
    var outsideToPod = true
    var podToOutside = true

    /// Everything but node to remote pod: the matrix of the seed cases.
    static let all = FlowSelection()
    /// Every flow the topology has: node to remote pod and pod to node included.
    static let everything = FlowSelection(nodeToRemotePod: true, podToNode: true)
    /// Each node to every pod, local and remote.
    static let nodesOnly = FlowSelection(podToPod: false, nodeToRemotePod: true, outsideToPod: false, podToOutside: false)
}

extension NetnsCluster {
    /// The flows of `selection` over `ports`, in a stable order, for every family of the cluster.
    func flows(_ selection: FlowSelection, ports: [ProbePort]) -> [Flow] {
        let outside = OutsideLayout.addresses(dualStack: dualStack)
        var flows: [Flow] = []
        for family in dualStack ? [IPAddress.Family.v4, .v6] : [.v4] {
            func add(_ source: Endpoint, _ destination: Endpoint, _ address: IPAddress) {
                for port in ports { flows.append(Flow(source: source, destination: destination, address: address, port: port)) }
            }
            for dst in pods {
                for address in dst.ips where address.family == family {
                    if selection.podToPod {
                        for src in pods where src.key != dst.key && src.ips.contains(where: { $0.family == family }) {
                            add(.pod(src), .pod(dst), address)
                        }
                    }
                    for node in nodes {
                        let local = node.name == dst.nodeName
                        if (local && selection.nodeToLocalPod) || (!local && selection.nodeToRemotePod) {
                            add(.node(node.name), .pod(dst), address)
                        }
                    }
                    if selection.outsideToPod {
                        for external in outside where external.family == family { add(.outside(external), .pod(dst), address) }
                    }
                }
            }
            if selection.podToNode {
                for src in pods where src.ips.contains(where: { $0.family == family }) {
                    for node in nodes {
                        let local = node.name == src.nodeName
                        let text = family == .v4 ? (local ? node.gateway4 : node.underlay4) : (local ? node.gateway6 : node.underlay6)
                        add(.pod(src), .node(node.name), IPAddress(text)!)
                    }
                }
            }
            if selection.podToOutside {
                for src in pods where src.ips.contains(where: { $0.family == family }) {
                    for external in outside where external.family == family { add(.pod(src), .outside(external), external) }
                }
            }
        }
        return flows
    }

    /// The namespace a flow's probe runs in.
    func namespace(of endpoint: Endpoint) -> String {
        switch endpoint {
        case .pod(let pod): podNamespace[pod.key]!
        case .node(let name): nodeNamespace[name]!
        case .outside: outsideNamespace
        }
    }

    /// Probes every flow once: one batch per source namespace, at most `width` batches at once.
    func observe(_ flows: [Flow], timeout: Double = 1.0, width: Int = 16) throws -> [Flow: Observation] {
        var bySource: [String: [Flow]] = [:]
        for flow in flows { bySource[namespace(of: flow.source), default: []].append(flow) }
        let batches = bySource.keys.sorted().map { ($0, bySource[$0]!) }
        let outcomes = boundedParallelMap(batches, width: width) { (namespace, flows) -> Result<[ProbeResult], any Error> in
            let requests = flows.map { flow -> ProbeRequest in
                var src: String? = nil
                if case .outside(let address) = flow.source { src = address.description }
                return ProbeRequest(dst: flow.address.description, proto: flow.port.proto.lowercased, port: flow.port.number, src: src)
            }
            return Result { try self.probe(from: namespace, requests, timeout: timeout) }
        }
        var observations: [Flow: Observation] = [:]
        for ((_, flows), outcome) in zip(batches, outcomes) {
            let results = try outcome.get()
            for (flow, result) in zip(flows, results) {
                if !result.ok {
                    observations[flow] = .denied(result.detail ?? "no detail")
                } else if result.answer == flow.expectedAnswer {
                    observations[flow] = .allowed
                } else {
                    observations[flow] = .misrouted(result.answer ?? "")
                }
            }
        }
        return observations
    }

    /// Probes `flows` (each waiting at most `timeout` seconds for its answer) and compares with
    /// `expectAllowed`. Flows expected allowed but seen denied are probed once more with a
    /// generous timeout (a slow answer must not read as enforcement); a flow seen allowed
    /// against expectation is never retried: an answer cannot be a timing artefact.
    func matrix(_ flows: [Flow], timeout: Double = 1.0, expectAllowed: (Flow) -> Bool) throws -> MatrixResult {
        let started = Date()
        var observations = try observe(flows, timeout: timeout)
        let suspicious = flows.filter { expectAllowed($0) && !observations[$0]!.isAllowed }
        var retried = 0
        if !suspicious.isEmpty {
            retried = suspicious.count
            if ProcessInfo.processInfo.environment["PICKET_KERNEL_VERBOSE"] == "1" {
                print("  re-probing \(suspicious.count):\n" + suspicious.map { "    \($0): \(observations[$0]!)" }.joined(separator: "\n"))
            }
            for (flow, observation) in try observe(suspicious, timeout: max(2.0, timeout)) where observation.isAllowed {
                observations[flow] = observation
            }
        }
        let mismatches = flows.compactMap { flow -> Mismatch? in
            let expected = expectAllowed(flow)
            let observed = observations[flow]!
            if case .misrouted = observed { return Mismatch(flow: flow, expectedAllowed: expected, observed: observed) }
            return observed.isAllowed == expected ? nil : Mismatch(flow: flow, expectedAllowed: expected, observed: observed)
        }
        return MatrixResult(
            flows: flows, observations: observations, expectAllowed: flows.map(expectAllowed), mismatches: mismatches,
            retried: retried, seconds: Date().timeIntervalSince(started))
    }
}

/// A probed matrix.
struct MatrixResult: Sendable {
    /// The flows, in probing order.
    var flows: [Flow]
    /// What each flow saw (after the re-probe, if any).
    var observations: [Flow: Observation]
    /// The expectation of each flow, by index.
    var expectAllowed: [Bool]
    /// Flows whose observation differs from the expectation.
    var mismatches: [Mismatch]
    /// How many flows were probed a second time.
    var retried: Int
    /// Wall time of the probing.
    var seconds: Double

    /// Counts per placement: flows, expected allowed, mismatches.
    var summary: String {
        var lines: [String] = []
        for placement in Placement.allCases {
            let indexes = flows.indices.filter { flows[$0].placement == placement }
            guard !indexes.isEmpty else { continue }
            let allowed = indexes.filter { expectAllowed[$0] }.count
            let bad = mismatches.filter { $0.flow.placement == placement }.count
            lines.append("    \(placement.rawValue): \(indexes.count) probes, \(allowed) expected allowed, \(bad) mismatches")
        }
        let head = "\(flows.count) probes in \(String(format: "%.1f", seconds)) s (\(retried) re-probed), \(mismatches.count) mismatches"
        return ([head] + lines).joined(separator: "\n")
    }
}
