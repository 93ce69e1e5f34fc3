import KubeModel

/// One rule of one policy: the reason a flow was admitted.
public struct RuleReference: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The policy, namespace/name.
    public var policy: ObjectKey
    /// Whether it is an ingress or an egress rule.
    public var direction: Direction
    /// The rule's index in the spec's `ingress` or `egress` list.
    public var index: Int

    /// Creates a reference.
    public init(policy: ObjectKey, direction: Direction, index: Int) {
        self.policy = policy
        self.direction = direction
        self.index = index
    }

    /// `ns/name ingress[0]`.
    public var description: String { "\(policy) \(direction.field)[\(index)]" }

    public static func < (lhs: RuleReference, rhs: RuleReference) -> Bool {
        (lhs.policy, lhs.direction, lhs.index) < (rhs.policy, rhs.direction, rhs.index)
    }
}

/// The decision on a flow, with its reasons for each direction.
public struct Verdict: Hashable, Sendable, CustomStringConvertible {
    /// What one direction decided: the source's egress, or the destination's ingress.
    public struct Check: Hashable, Sendable {
        /// `.egress` for the source's side, `.ingress` for the destination's.
        public var direction: Direction
        /// The endpoint pod whose policies apply; nil when that end is not an endpoint pod (an
        /// address, a node, a hostNetwork or finished pod), which nothing isolates.
        public var pod: ObjectKey?
        /// The policies isolating `pod` in `direction`, sorted; empty when it is not isolated.
        public var isolatedBy: [ObjectKey]
        /// Every rule of those policies that admits the flow, sorted (policy, then rule index).
        public var admittedBy: [RuleReference]

        /// Creates a check.
        public init(direction: Direction, pod: ObjectKey?, isolatedBy: [ObjectKey], admittedBy: [RuleReference]) {
            self.direction = direction
            self.pod = pod
            self.isolatedBy = isolatedBy
            self.admittedBy = admittedBy
        }

        /// Whether some policy isolates the pod in this direction.
        public var isIsolated: Bool { !isolatedBy.isEmpty }

        /// Whether this direction lets the flow through: not isolated, or some rule admits it.
        public var allows: Bool { isolatedBy.isEmpty || !admittedBy.isEmpty }
    }

    /// An exception that allows a flow whatever the policies say.
    public enum Exemption: Hashable, Sendable {
        /// "Traffic to and from the node where a Pod is running is always allowed": the source
        /// is this node (or a hostNetwork pod on it) and the destination pod runs there.
        case ownNode(String)
        /// "A pod cannot block access to itself": source and destination are the same pod.
        case samePod
    }

    /// The flow decided.
    public var flow: Flow
    /// The family the flow was evaluated in.
    public var family: IPAddress.Family
    /// The source's address in that family.
    public var sourceAddress: IPAddress
    /// The destination's address in that family.
    public var destinationAddress: IPAddress
    /// The source's egress.
    public var egress: Check
    /// The destination's ingress.
    public var ingress: Check
    /// Why the flow is allowed regardless of the checks, if it is.
    public var exemption: Exemption?

    /// Creates a verdict.
    public init(
        flow: Flow, family: IPAddress.Family, sourceAddress: IPAddress, destinationAddress: IPAddress,
        egress: Check, ingress: Check, exemption: Exemption?
    ) {
        self.flow = flow
        self.family = family
        self.sourceAddress = sourceAddress
        self.destinationAddress = destinationAddress
        self.egress = egress
        self.ingress = ingress
        self.exemption = exemption
    }

    /// Whether the flow is allowed: exempt, or both the source's egress and the destination's
    /// ingress let it through.
    public var allowed: Bool { exemption != nil || (egress.allows && ingress.allows) }

    /// The reasons, for `picket explain`. The first line is the decision and its cause, e.g.
    ///
    ///     denied: x/a is isolated for ingress by x/deny-all; no ingress rule admits y/b on TCP/80
    ///       flow: y/b (10.0.0.2) -> x/a (10.0.0.1) TCP/80, IPv4
    ///       egress: y/b is not isolated for egress
    ///       ingress: x/a is isolated for ingress by x/deny-all; no ingress rule admits y/b on TCP/80
    public var description: String {
        let egressLine = explain(egress)
        let ingressLine = explain(ingress)
        var head: String
        switch exemption {
        case .ownNode(let node)?:
            head = "allowed: node \(node) always reaches its own pod \(flow.destination)"
        case .samePod?:
            head = "allowed: a pod always reaches itself"
        case nil:
            if allowed {
                head = "allowed: \(flow.source) -> \(flow.destination) on \(flow.traffic)"
            } else {
                head = "denied: " + [egress, ingress].filter { !$0.allows }.map(explain).joined(separator: "; and ")
            }
        }
        head += "\n  flow: \(flow.source) (\(sourceAddress)) -> \(flow.destination) (\(destinationAddress)) \(flow.traffic), IPv\(family.rawValue)"
        return head + "\n  egress: \(egressLine)\n  ingress: \(ingressLine)"
    }

    private func explain(_ check: Check) -> String {
        let direction = check.direction.field
        let subject = check.direction == .egress ? flow.source : flow.destination
        let other = check.direction == .egress ? flow.destination : flow.source
        guard let pod = check.pod else {
            if case .pod(let key) = subject {
                return "\(key) is not a policy endpoint (hostNetwork or finished), nothing isolates it"
            }
            return "\(subject) is not a pod, nothing isolates it"
        }
        if !check.isIsolated { return "\(pod) is not isolated for \(direction)" }
        let isolated = "\(pod) is isolated for \(direction) by \(check.isolatedBy.map(\.description).joined(separator: ", "))"
        if check.admittedBy.isEmpty {
            return "\(isolated); no \(direction) rule admits \(other) on \(flow.traffic)"
        }
        return "\(isolated); admitted by \(check.admittedBy.map(\.description).joined(separator: ", "))"
    }
}
