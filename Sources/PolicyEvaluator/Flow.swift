import KubeModel

/// One end of a flow: a pod of the snapshot, a node, or any other address.
public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// A pod, by key. Its address is its pod IP of the flow's family. Only endpoint pods
    /// (`Pod.isPolicyEndpoint`) are ever isolated or matched by pod selectors; any other pod
    /// counts as the bare address it has, and a hostNetwork pod as a source also as its node
    /// (it lives in the node's network namespace).
    case pod(ObjectKey)
    /// A node, by name, with its address in the flow's family. "Traffic to and from the node
    /// where a Pod is running is always allowed": a node reaches its own pods whatever their
    /// policies say. Towards pods of other nodes it is just its address.
    case node(String, address: IPAddress)
    /// Any other address: outside the cluster, a Service VIP after DNAT, a node that the caller
    /// does not want to treat as one. Never isolated; matched by ipBlock peers only.
    case address(IPAddress)

    /// `ns/name`, `node <name> (<address>)` or the address.
    public var description: String {
        switch self {
        case .pod(let key): "\(key)"
        case .node(let name, let address): "node \(name) (\(address))"
        case .address(let address): "\(address)"
        }
    }
}

/// A connection attempt: who opens it, to whom, with which protocol and port, in which family.
public struct Flow: Hashable, Sendable, CustomStringConvertible {
    /// What the flow carries, as far as NetworkPolicy ports can tell.
    public enum Traffic: Hashable, Sendable, CustomStringConvertible {
        /// TCP, UDP or SCTP to a destination port.
        case port(TransportProtocol, Int)
        /// ICMP (or any protocol a NetworkPolicy port cannot name). Only a rule without `ports`
        /// admits it: "If this field is empty or missing, this rule matches all ports", and a
        /// port entry always names TCP, UDP or SCTP.
        case icmp

        /// `TCP/80`, or `ICMP`.
        public var description: String {
            switch self {
            case .port(let proto, let number): "\(proto.rawValue)/\(number)"
            case .icmp: "ICMP"
            }
        }
    }

    /// Who opens the connection (checked against its egress).
    public var source: Endpoint
    /// Who is connected to (checked against its ingress).
    public var destination: Endpoint
    /// Protocol and destination port.
    public var traffic: Traffic
    /// The address family; pods use their address of this family. When nil: the family of an
    /// `.address` or `.node` end if there is one, else of the source pod's first address.
    public var family: IPAddress.Family?

    /// Creates a flow.
    public init(source: Endpoint, destination: Endpoint, traffic: Traffic, family: IPAddress.Family? = nil) {
        self.source = source
        self.destination = destination
        self.traffic = traffic
        self.family = family
    }

    /// Creates a TCP, UDP or SCTP flow to `port`.
    public init(from source: Endpoint, to destination: Endpoint, proto: TransportProtocol, port: Int, family: IPAddress.Family? = nil) {
        self.init(source: source, destination: destination, traffic: .port(proto, port), family: family)
    }

    /// Creates an ICMP flow (a ping).
    public static func icmp(from source: Endpoint, to destination: Endpoint, family: IPAddress.Family? = nil) -> Flow {
        Flow(source: source, destination: destination, traffic: .icmp, family: family)
    }

    /// The transport protocol; nil for ICMP.
    public var proto: TransportProtocol? {
        if case .port(let proto, _) = traffic { return proto }
        return nil
    }

    /// The destination port; nil for ICMP.
    public var port: Int? {
        if case .port(_, let number) = traffic { return number }
        return nil
    }

    /// `source -> destination TCP/80`, with ` IPv6` when the family is given as v6.
    public var description: String {
        let suffix = family.map { " IPv\($0.rawValue)" } ?? ""
        return "\(source) -> \(destination) \(traffic)\(suffix)"
    }
}

/// Why a flow cannot be evaluated: it names something the snapshot does not have, or ends whose
/// addresses cannot meet in one family.
public struct EvaluationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of error; extensible without breaking exhaustive switches.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unknownPod
            case noAddress
            case familyMismatch
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A `.pod` end names no pod of the snapshot.
        public static let unknownPod = Code(.unknownPod)
        /// A pod end has no address of the flow's family (single-stack, or no IP at all).
        public static let noAddress = Code(.noAddress)
        /// An `.address` or `.node` end is of another family than the flow.
        public static let familyMismatch = Code(.familyMismatch)

        public var description: String { base.rawValue }
    }

    /// The kind of error.
    public var code: Code
    /// What is wrong and what to fix.
    public var message: String

    /// Creates an error.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
