// KubeModel: the Kubernetes objects Picket reads, as plain values.
//
// Design note: only the fields that decide NetworkPolicy enforcement are decoded; everything
// else in a manifest is ignored. Decoding is lenient about what Kubernetes itself would default
// (missing labels, missing protocol) and reports what the API server would refuse (an address
// that does not parse, an invalid name or label). Validation of object fields lives in
// `Validation.swift`, of NetworkPolicy specs in `Policy.swift`, so that every decoding path, the
// compiler and any other reader share one definition of "valid".

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
    /// Where the port is written in its pod (`spec.containers[0].ports[1]`), when decoded.
    public var field: String?

    /// Creates a container port.
    public init(name: String?, number: Int, proto: TransportProtocol = .tcp, field: String? = nil) {
        self.name = name
        self.number = number
        self.proto = proto
        self.field = field
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
    /// Fields its decoder found invalid and could not represent here (a port with an unknown
    /// protocol, an address that does not parse): left out of the value, reported by
    /// `Validation.errors(of:)`, and they make the pod invalid.
    public var invalidFields: [FieldError] = []

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
        var ports: [WrittenPort] = []
        for (list, containers) in [("containers", spec?.containers ?? []), ("initContainers", spec?.initContainers ?? [])] {
            for (c, container) in containers.enumerated() {
                for (p, port) in (container.ports ?? []).enumerated() {
                    ports.append(WrittenPort(
                        name: port.name, number: port.containerPort, protocol: port.protocol, field: "spec.\(list)[\(c)].ports[\(p)]"))
                }
            }
        }
        self = Pod.assemble(
            meta: meta, nodeName: spec?.nodeName, hostNetwork: spec?.hostNetwork, ports: ports,
            podIPs: status?.podIPs?.map(\.ip), podIP: status?.podIP, phase: status?.phase)
    }
}

extension Pod {
    /// A container port as written: protocol not yet checked.
    struct WrittenPort {
        var name: String?
        var number: Int
        var `protocol`: String?
        /// Where it is written (`spec.containers[0].ports[1]`).
        var field: String
    }

    /// Builds a pod from its written fields, with the checks every decoder (YAML, JSON) shares:
    /// a port with an unknown protocol and an address that does not parse are left out of the
    /// value and recorded in `invalidFields` (reported by `Validation.errors(of:)`).
    static func assemble(
        meta: ObjectMeta, nodeName: String?, hostNetwork: Bool?, ports written: [WrittenPort],
        podIPs: [String]?, podIP: String?, phase: String?
    ) -> Pod {
        var ports: [ContainerPort] = []
        ports.reserveCapacity(written.count)
        var invalidFields: [FieldError] = []
        for port in written {
            var proto = TransportProtocol.tcp
            if let raw = port.protocol {
                guard let parsed = TransportProtocol(rawValue: raw) else {
                    // The port is left out: it can never be resolved as a named port.
                    invalidFields.append(FieldError(
                        field: "\(port.field).protocol",
                        reason: "Unsupported value: \(Validation.quoted(raw)): supported values: \"SCTP\", \"TCP\", \"UDP\""))
                    continue
                }
                proto = parsed
            }
            ports.append(ContainerPort(name: port.name, number: port.number, proto: proto, field: port.field))
        }
        var rawIPs = podIPs ?? []
        var ipField = "status.podIPs"
        if rawIPs.isEmpty, let single = podIP, !single.isEmpty {
            rawIPs = [single]
            ipField = "status.podIP"
        }
        var ips: [IPAddress] = []
        for (i, raw) in rawIPs.enumerated() {
            guard let ip = IPAddress(raw) else {
                // The address is left out: the pod keeps its valid addresses (isolated on them).
                let field = ipField == "status.podIP" ? ipField : "\(ipField)[\(i)].ip"
                invalidFields.append(Validation.invalid(field, raw, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
                continue
            }
            if !ips.contains(ip) { ips.append(ip) }
        }
        var pod = Pod(
            namespace: meta.namespace ?? "default", name: meta.name, labels: meta.labels,
            nodeName: nodeName, hostNetwork: hostNetwork ?? false, ports: ports, ips: ips, phase: phase)
        pod.invalidFields = invalidFields
        return pod
    }
}
