// PolicyEvaluator: a second, independent reading of NetworkPolicy v1. Given a snapshot and a
// flow (who connects to whom, protocol, port, family) it says whether the flow is allowed and
// why. Kernel tests compare its verdicts with what the compiled rules actually do to packets,
// so it shares the model (KubeModel: `Policy`, `Selector`, `CIDR`) with the compiler and never
// its rule generation.
//
// The semantics, straight from the API:
//
//   - A pod is isolated for ingress (egress) when a policy of its namespace selects it and
//     names Ingress (Egress) in its policyTypes. Only endpoint pods (an IP of their own, not
//     hostNetwork, not finished) are selected or matched by pod selectors.
//   - A flow is allowed when the source's egress and the destination's ingress both let it
//     through; a direction lets it through when the pod is not isolated in it, or when some rule
//     of some policy isolating it admits the other end (peers) on the flow's port (ports).
//   - Two exceptions from the API docs: a node always reaches its own pods, and a pod always
//     reaches itself (such packets never leave the pod's network namespace).
//
// `Evaluator` does the per-snapshot work once (who selects which pod, which pods each peer
// names) so that a verdict is a few dictionary lookups and set probes.

import KubeModel

/// Decides flows for one snapshot. Build once, then ask for as many verdicts as needed.
public struct Evaluator: Sendable {
    /// The snapshot the verdicts are about.
    public let snapshot: ClusterSnapshot

    /// A rule with its pod peers resolved to endpoint indexes.
    private struct Rule: Sendable {
        var reference: RuleReference
        /// nil: every peer.
        var peers: [Peer]?
        var ports: [Policy.Port]
    }

    private enum Peer: Sendable {
        /// Indexes into `snapshot.endpoints`.
        case pods(Set<Int>)
        case block(cidr: CIDR, except: [CIDR])
    }

    /// Every pod by key: index into `snapshot.pods`.
    private let podIndex: [ObjectKey: Int]
    /// Endpoint pods by key: index into `snapshot.endpoints`.
    private let endpointIndex: [ObjectKey: Int]
    /// Endpoint pods by address (the first by key when addresses collide).
    private let endpointByAddress: [IPAddress: Int]
    /// Node names by address.
    private let nodeByAddress: [IPAddress: String]
    /// Per endpoint, per direction (0 ingress, 1 egress): the policies isolating it, sorted.
    private let isolating: [[[ObjectKey]]]
    /// Per endpoint, per direction: the rules of those policies, in policy then rule order.
    private let rules: [[[Rule]]]

    /// Prepares verdicts for `snapshot`. `nodeAddresses` (node name -> its addresses) only
    /// serves `endpoint(for:)`, to recognise node addresses in captured packets.
    public init(snapshot: ClusterSnapshot, nodeAddresses: [String: [IPAddress]] = [:]) {
        self.snapshot = snapshot
        var podIndex: [ObjectKey: Int] = [:]
        for (i, pod) in snapshot.pods.enumerated() { podIndex[pod.key] = i }
        var endpointIndex: [ObjectKey: Int] = [:]
        var endpointByAddress: [IPAddress: Int] = [:]
        for (i, pod) in snapshot.endpoints.enumerated() {
            endpointIndex[pod.key] = i
            for ip in pod.ips where endpointByAddress[ip] == nil { endpointByAddress[ip] = i }
        }
        var nodeByAddress: [IPAddress: String] = [:]
        for name in nodeAddresses.keys.sorted() {
            for ip in nodeAddresses[name] ?? [] where nodeByAddress[ip] == nil { nodeByAddress[ip] = name }
        }

        // Namespace selectors are matched once per distinct selector.
        var namespacesBySelector: [Selector: [String]] = [:]
        func peer(_ peer: Policy.Peer, policyNamespace: String) -> Peer {
            switch peer {
            case .block(let cidr, let except):
                return .block(cidr: cidr, except: except)
            case .pods(let namespaces, let pods):
                // "If namespaceSelector is also set, then the NetworkPolicyPeer as a whole selects
                // the pods matching podSelector in the Namespaces selected by NamespaceSelector.
                // Otherwise it selects the pods matching podSelector in the policy's own
                // namespace."
                let names: [String]
                if let namespaces {
                    if let cached = namespacesBySelector[namespaces] {
                        names = cached
                    } else {
                        names = snapshot.namespaces(matching: namespaces)
                        namespacesBySelector[namespaces] = names
                    }
                } else {
                    names = [policyNamespace]
                }
                var members = Set<Int>()
                for name in names {
                    for i in snapshot.endpointsByNamespace[name] ?? [] where snapshot.peerEligible[i] && pods.matches(snapshot.endpoints[i].labels) {
                        members.insert(i)
                    }
                }
                return .pods(members)
            }
        }

        // Rules of every policy, resolved once.
        var policyRules: [[[Rule]]] = []
        for policy in snapshot.policies {
            var byDirection: [[Rule]] = []
            for direction in Direction.allCases {
                byDirection.append(policy.rules(direction).map { rule in
                    Rule(
                        reference: RuleReference(policy: policy.key, direction: direction, index: rule.index),
                        peers: rule.peers?.map { peer($0, policyNamespace: policy.key.namespace) },
                        ports: rule.ports)
                })
            }
            policyRules.append(byDirection)
        }

        // "A pod is isolated for ingress if there is any NetworkPolicy that both selects the pod
        // and has "Ingress" in its policyTypes" (and likewise for egress).
        var isolating: [[[ObjectKey]]] = []
        var rules: [[[Rule]]] = []
        for pod in snapshot.endpoints {
            var keys: [[ObjectKey]] = [[], []]
            var podRules: [[Rule]] = [[], []]
            for p in snapshot.policiesByNamespace[pod.key.namespace] ?? [] {
                let policy = snapshot.policies[p]
                guard policy.podSelector.matches(pod.labels) else { continue }
                for (d, direction) in Direction.allCases.enumerated() where policy.isolates.contains(direction) {
                    keys[d].append(policy.key)
                    podRules[d] += policyRules[p][d]
                }
            }
            isolating.append(keys)
            rules.append(podRules)
        }

        self.podIndex = podIndex
        self.endpointIndex = endpointIndex
        self.endpointByAddress = endpointByAddress
        self.nodeByAddress = nodeByAddress
        self.isolating = isolating
        self.rules = rules
    }

    /// The policies isolating `pod` for ingress and for egress, sorted. Empty for a pod that is
    /// not an endpoint, or not in the snapshot.
    public func isolation(of pod: ObjectKey) -> (ingress: [ObjectKey], egress: [ObjectKey]) {
        guard let i = endpointIndex[pod] else { return ([], []) }
        return (isolating[i][0], isolating[i][1])
    }

    /// The endpoint pod having `address`, if any.
    public func pod(withAddress address: IPAddress) -> Pod? {
        endpointByAddress[address].map { snapshot.endpoints[$0] }
    }

    /// What a packet's address stands for: the endpoint pod having it, else the node having it
    /// (from `nodeAddresses`), else the bare address.
    public func endpoint(for address: IPAddress) -> Endpoint {
        if let i = endpointByAddress[address] { return .pod(snapshot.endpoints[i].key) }
        if let node = nodeByAddress[address] { return .node(node, address: address) }
        return .address(address)
    }

    /// One end of a flow, resolved against the snapshot.
    private struct End {
        /// Index into `snapshot.endpoints`, for an endpoint pod.
        var endpoint: Int?
        /// The end's address in the flow's family.
        var address: IPAddress
        /// The node whose network namespace the end lives in (a node, or a hostNetwork pod).
        var hostNode: String?
    }

    /// Decides `flow`; throws when the flow names an unknown pod or its ends share no family.
    public func verdict(_ flow: Flow) throws(EvaluationError) -> Verdict {
        let family = try self.family(of: flow)
        let source = try resolve(flow.source, family: family)
        let destination = try resolve(flow.destination, family: family)

        let egress = check(.egress, subject: source, other: destination, named: destination, traffic: flow.traffic)
        let ingress = check(.ingress, subject: destination, other: source, named: destination, traffic: flow.traffic)

        var exemption: Verdict.Exemption? = nil
        if let s = source.endpoint, s == destination.endpoint {
            exemption = .samePod
        } else if let node = source.hostNode, let d = destination.endpoint, snapshot.endpoints[d].nodeName == node {
            exemption = .ownNode(node)
        }
        return Verdict(
            flow: flow, family: family, sourceAddress: source.address, destinationAddress: destination.address,
            egress: egress, ingress: ingress, exemption: exemption)
    }

    /// The flow's family: given, else an address end's, else the source pod's first address's.
    private func family(of flow: Flow) throws(EvaluationError) -> IPAddress.Family {
        if let family = flow.family { return family }
        for end in [flow.source, flow.destination] {
            switch end {
            case .address(let ip), .node(_, let ip): return ip.family
            case .pod: continue
            }
        }
        for end in [flow.source, flow.destination] {
            if case .pod(let key) = end, let i = podIndex[key], let first = snapshot.pods[i].ips.first {
                return first.family
            }
        }
        if case .pod(let key) = flow.source, podIndex[key] == nil { throw unknown(key) }
        if case .pod(let key) = flow.destination, podIndex[key] == nil { throw unknown(key) }
        throw EvaluationError(code: .noAddress, message: "\(flow): neither pod has an address")
    }

    private func unknown(_ key: ObjectKey) -> EvaluationError {
        EvaluationError(code: .unknownPod, message: "pod \(key) is not in the snapshot")
    }

    private func resolve(_ end: Endpoint, family: IPAddress.Family) throws(EvaluationError) -> End {
        switch end {
        case .pod(let key):
            guard let i = podIndex[key] else { throw unknown(key) }
            let pod = snapshot.pods[i]
            guard let address = pod.ips.first(where: { $0.family == family }) else {
                throw EvaluationError(
                    code: .noAddress,
                    message: "pod \(key) has no IPv\(family.rawValue) address (it has \(pod.ips.map(\.description)))")
            }
            return End(endpoint: endpointIndex[key], address: address, hostNode: pod.hostNetwork ? pod.nodeName : nil)
        case .node(let name, let address):
            guard address.family == family else { throw mismatch(end, family) }
            return End(endpoint: nil, address: address, hostNode: name)
        case .address(let address):
            guard address.family == family else { throw mismatch(end, family) }
            return End(endpoint: nil, address: address, hostNode: nil)
        }
    }

    private func mismatch(_ end: Endpoint, _ family: IPAddress.Family) -> EvaluationError {
        EvaluationError(code: .familyMismatch, message: "\(end) is not an IPv\(family.rawValue) address like the rest of the flow")
    }

    /// One direction: `subject`'s policies for `direction`, applied to `other`. Named ports
    /// resolve on `named`, the flow's destination.
    private func check(_ direction: Direction, subject: End, other: End, named: End, traffic: Flow.Traffic) -> Verdict.Check {
        guard let i = subject.endpoint else {
            return Verdict.Check(direction: direction, pod: nil, isolatedBy: [], admittedBy: [])
        }
        let d = direction == .ingress ? 0 : 1
        var admitted: [RuleReference] = []
        for rule in rules[i][d] where admits(rule.peers, other) && admits(rule.ports, traffic, on: named) {
            admitted.append(rule.reference)
        }
        return Verdict.Check(
            direction: direction, pod: snapshot.endpoints[i].key, isolatedBy: isolating[i][d], admittedBy: admitted)
    }

    /// "If this field is empty or missing, this rule matches all sources (destinations). If this
    /// field is present and contains at least one item, this rule allows traffic only if the
    /// traffic matches at least one item in the from (to) list."
    private func admits(_ peers: [Peer]?, _ other: End) -> Bool {
        guard let peers else { return true }
        for peer in peers {
            switch peer {
            case .pods(let members):
                if let i = other.endpoint, members.contains(i) { return true }
            case .block(let cidr, let except):
                // "IPBlock describes a particular CIDR ... that is allowed to the pods matched by
                // a NetworkPolicySpec's podSelector. The except entry describes CIDRs that should
                // not be included within this rule." Pod addresses count like any other.
                if cidr.contains(other.address) && !except.contains(where: { $0.contains(other.address) }) {
                    return true
                }
            }
        }
        return false
    }

    /// "If this field is empty or missing, this rule matches all ports (traffic not restricted
    /// by port). If this field is present and contains at least one item, then this rule allows
    /// traffic only if the traffic matches at least one port in the list."
    private func admits(_ ports: [Policy.Port], _ traffic: Flow.Traffic, on destination: End) -> Bool {
        if ports.isEmpty { return true }
        guard case .port(let proto, let number) = traffic else { return false }
        for port in ports where port.proto == proto {
            switch port.range {
            case .all:
                return true
            case .range(let first, let last):
                if first <= number && number <= last { return true }
            case .named(let name):
                // A named port means the container port of that name and protocol on the
                // destination pod; an end that is not an endpoint pod has no named ports.
                guard let d = destination.endpoint else { continue }
                let pod = snapshot.endpoints[d]
                if pod.ports.contains(where: { $0.name == name && $0.proto == proto && $0.number == number }) {
                    return true
                }
            }
        }
        return false
    }
}

extension Evaluator: CustomStringConvertible {
    /// A short summary (`Evaluator(5 endpoint pods, 2 policies)`), so that test failures stay readable.
    public var description: String {
        "Evaluator(\(snapshot.endpoints.count) endpoint pods, \(snapshot.policies.count) policies)"
    }
}

/// Decides one flow. Builds an `Evaluator` each call: use one directly for many flows.
public func verdict(_ flow: Flow, in snapshot: ClusterSnapshot) throws(EvaluationError) -> Verdict {
    try Evaluator(snapshot: snapshot).verdict(flow)
}

/// The policies isolating `pod` for ingress and for egress, sorted.
public func isolation(of pod: ObjectKey, in snapshot: ClusterSnapshot) -> (ingress: [ObjectKey], egress: [ObjectKey]) {
    Evaluator(snapshot: snapshot).isolation(of: pod)
}
