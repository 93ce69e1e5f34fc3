// KubeModel: the Kubernetes objects Picket reads, as plain values.
//
// Design note: only the fields that decide NetworkPolicy enforcement are decoded; everything
// else in a manifest is ignored. Decoding is lenient about what Kubernetes itself would default
// (missing labels, missing protocol) and strict about what would change a verdict (an address
// that does not parse). Validation of NetworkPolicy fields lives in `Policy.swift`, so that the
// compiler and any other reader of policies share one definition of "valid".

/// The identity of a namespaced object: `namespace/name`.
public struct ObjectKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The object's namespace.
    public var namespace: String
    /// The object's name.
    public var name: String

    /// Creates a key from a namespace and a name.
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    public var description: String { "\(namespace)/\(name)" }

    public static func < (lhs: ObjectKey, rhs: ObjectKey) -> Bool {
        (lhs.namespace, lhs.name) < (rhs.namespace, rhs.name)
    }
}

/// The part of `metadata` Picket reads.
public struct ObjectMeta: Decodable, Hashable, Sendable {
    /// metadata.name.
    public var name: String
    /// metadata.namespace; absent for cluster-scoped objects.
    public var namespace: String?
    /// metadata.labels.
    public var labels: [String: String]

    /// Creates metadata.
    public init(name: String, namespace: String? = nil, labels: [String: String] = [:]) {
        self.name = name
        self.namespace = namespace
        self.labels = labels
    }

    private enum CodingKeys: String, CodingKey { case name, namespace, labels }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        namespace = try c.decodeIfPresent(String.self, forKey: .namespace)
        labels = try c.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
    }
}

/// A v1 Namespace. Its labels always include `kubernetes.io/metadata.name`, as the API server sets it.
public struct Namespace: Hashable, Sendable {
    /// The label the API server puts on every namespace, holding its name.
    public static let nameLabel = "kubernetes.io/metadata.name"

    /// The namespace's name.
    public var name: String
    /// Its labels, with `kubernetes.io/metadata.name` filled in.
    public var labels: [String: String]

    /// Creates a namespace; the automatic name label is added (and corrected) here.
    public init(name: String, labels: [String: String] = [:]) {
        self.name = name
        var labels = labels
        labels[Namespace.nameLabel] = name
        self.labels = labels
    }
}

extension Namespace: Decodable {
    private enum CodingKeys: String, CodingKey { case metadata }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let meta = try c.decode(ObjectMeta.self, forKey: .metadata)
        self.init(name: meta.name, labels: meta.labels)
    }
}

/// A transport protocol a NetworkPolicy port or a container port names.
public enum TransportProtocol: String, Hashable, Comparable, Sendable, CaseIterable {
    case tcp = "TCP"
    case udp = "UDP"
    case sctp = "SCTP"

    /// The lower-case name iptables and ipset use.
    public var lowercased: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .sctp: "sctp"
        }
    }

    public static func < (lhs: TransportProtocol, rhs: TransportProtocol) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

/// One entry of a container's `ports`.
public struct ContainerPort: Hashable, Sendable {
    /// The port's name, if it has one (named ports are resolved against this).
    public var name: String?
    /// containerPort.
    public var number: Int
    /// protocol, TCP when absent.
    public var proto: TransportProtocol

    /// Creates a container port.
    public init(name: String?, number: Int, proto: TransportProtocol = .tcp) {
        self.name = name
        self.number = number
        self.proto = proto
    }
}

/// A v1 Pod, reduced to what enforcement needs.
public struct Pod: Hashable, Sendable {
    /// namespace/name.
    public var key: ObjectKey
    /// metadata.labels.
    public var labels: [String: String]
    /// spec.nodeName; nil while unscheduled.
    public var nodeName: String?
    /// spec.hostNetwork.
    public var hostNetwork: Bool
    /// All containers' ports, in spec order.
    public var ports: [ContainerPort]
    /// status.podIPs (or status.podIP when podIPs is absent), parsed.
    public var ips: [IPAddress]
    /// status.phase ("Pending", "Running", "Succeeded", "Failed", "Unknown"); nil when absent.
    public var phase: String?

    /// Creates a pod.
    public init(
        namespace: String, name: String, labels: [String: String] = [:], nodeName: String? = nil,
        hostNetwork: Bool = false, ports: [ContainerPort] = [], ips: [IPAddress] = [], phase: String? = "Running"
    ) {
        self.key = ObjectKey(namespace: namespace, name: name)
        self.labels = labels
        self.nodeName = nodeName
        self.hostNetwork = hostNetwork
        self.ports = ports
        self.ips = ips
        self.phase = phase
    }

    /// Whether NetworkPolicy applies to this pod at all: it has an address of its own and is not
    /// finished. hostNetwork pods share the node's address and are neither selected nor peers.
    public var isPolicyEndpoint: Bool {
        !hostNetwork && !ips.isEmpty && phase != "Succeeded" && phase != "Failed"
    }

    /// The container port numbers behind a named port for a protocol, sorted, without repeats.
    public func resolve(portName: String, proto: TransportProtocol) -> [Int] {
        var numbers: [Int] = []
        for port in ports where port.name == portName && port.proto == proto && !numbers.contains(port.number) {
            numbers.append(port.number)
        }
        return numbers.sorted()
    }
}

extension Pod: Decodable {
    private enum CodingKeys: String, CodingKey { case metadata, spec, status }
    private struct Spec: Decodable {
        var nodeName: String?
        var hostNetwork: Bool?
        var containers: [Container]?
        var initContainers: [Container]?
    }
    private struct Container: Decodable {
        var ports: [Port]?
    }
    private struct Port: Decodable {
        var name: String?
        var containerPort: Int
        var `protocol`: String?
    }
    private struct Status: Decodable {
        var phase: String?
        var podIP: String?
        var podIPs: [PodIP]?
    }
    private struct PodIP: Decodable { var ip: String }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let meta = try c.decode(ObjectMeta.self, forKey: .metadata)
        let spec = try c.decodeIfPresent(Spec.self, forKey: .spec)
        let status = try c.decodeIfPresent(Status.self, forKey: .status)
        // Restartable init containers ("sidecars") can declare ports too.
        let ports = ((spec?.containers ?? []) + (spec?.initContainers ?? [])).flatMap { container in
            (container.ports ?? []).map { WrittenPort(name: $0.name, number: $0.containerPort, protocol: $0.protocol) }
        }
        let written = Pod.assemble(
            meta: meta, nodeName: spec?.nodeName, hostNetwork: spec?.hostNetwork, ports: ports,
            podIPs: status?.podIPs?.map(\.ip), podIP: status?.podIP, phase: status?.phase)
        switch written {
        case .success(let pod):
            self = pod
        case .failure(let error):
            let key: CodingKeys = error.field == "spec" ? .spec : .status
            throw DecodingError.dataCorrupted(.init(codingPath: [key], debugDescription: error.reason))
        }
    }
}

extension Pod {
    /// A container port as written: protocol not yet checked.
    struct WrittenPort {
        var name: String?
        var number: Int
        var `protocol`: String?
    }

    /// Builds a pod from its written fields, with the checks every decoder shares: protocols
    /// must be TCP, UDP or SCTP, addresses must parse. The error's field is `spec` or `status`.
    static func assemble(
        meta: ObjectMeta, nodeName: String?, hostNetwork: Bool?, ports written: [WrittenPort],
        podIPs: [String]?, podIP: String?, phase: String?
    ) -> Result<Pod, FieldError> {
        var ports: [ContainerPort] = []
        ports.reserveCapacity(written.count)
        for port in written {
            let proto: TransportProtocol
            if let raw = port.protocol {
                guard let parsed = TransportProtocol(rawValue: raw) else {
                    return .failure(FieldError(field: "spec", reason: "container port protocol \"\(raw)\" is not TCP, UDP or SCTP"))
                }
                proto = parsed
            } else {
                proto = .tcp
            }
            ports.append(ContainerPort(name: port.name, number: port.number, proto: proto))
        }
        var rawIPs = podIPs ?? []
        if rawIPs.isEmpty, let single = podIP, !single.isEmpty { rawIPs = [single] }
        var ips: [IPAddress] = []
        for raw in rawIPs {
            guard let ip = IPAddress(raw) else {
                return .failure(FieldError(field: "status", reason: "status.podIPs: \"\(raw)\" is not an IP address"))
            }
            if !ips.contains(ip) { ips.append(ip) }
        }
        return .success(Pod(
            namespace: meta.namespace ?? "default", name: meta.name, labels: meta.labels,
            nodeName: nodeName, hostNetwork: hostNetwork ?? false, ports: ports, ips: ips, phase: phase))
    }
}
