/// A networking.k8s.io/v1 NetworkPolicy exactly as written: nothing validated or defaulted yet.
/// `Policy(validating:)` turns it into the form enforcement uses.
public struct NetworkPolicy: Decodable, Hashable, Sendable {
    /// An `int-or-string` port: a number, or the name of a container port.
    public enum PortValue: Hashable, Sendable, Decodable {
        case number(Int)
        case name(String)

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let number = try? c.decode(Int.self) {
                self = .number(number)
            } else {
                self = .name(try c.decode(String.self))
            }
        }
    }

    /// spec.ingress[].ports[] / spec.egress[].ports[].
    public struct Port: Decodable, Hashable, Sendable {
        /// protocol; TCP when absent.
        public var `protocol`: String?
        /// port; all ports when absent.
        public var port: PortValue?
        /// endPort: the last port of a range starting at `port`.
        public var endPort: Int?

        /// Creates a port entry.
        public init(protocol proto: String? = nil, port: PortValue? = nil, endPort: Int? = nil) {
            self.protocol = proto
            self.port = port
            self.endPort = endPort
        }
    }

    /// spec.ingress[].from[].ipBlock / spec.egress[].to[].ipBlock.
    public struct IPBlock: Decodable, Hashable, Sendable {
        /// The block.
        public var cidr: String
        /// Blocks inside `cidr` that are excluded.
        public var except: [String]?

        /// Creates an ipBlock.
        public init(cidr: String, except: [String]? = nil) {
            self.cidr = cidr
            self.except = except
        }
    }

    /// One entry of `from` or `to`.
    public struct Peer: Decodable, Hashable, Sendable {
        /// podSelector.
        public var podSelector: LabelSelector?
        /// namespaceSelector.
        public var namespaceSelector: LabelSelector?
        /// ipBlock.
        public var ipBlock: IPBlock?

        /// Creates a peer.
        public init(podSelector: LabelSelector? = nil, namespaceSelector: LabelSelector? = nil, ipBlock: IPBlock? = nil) {
            self.podSelector = podSelector
            self.namespaceSelector = namespaceSelector
            self.ipBlock = ipBlock
        }
    }

    /// An ingress or egress rule: `from`/`to` peers and ports.
    public struct Rule: Hashable, Sendable {
        /// `from` (ingress) or `to` (egress); nil when absent.
        public var peers: [Peer]?
        /// ports; nil when absent.
        public var ports: [Port]?

        /// Creates a rule.
        public init(peers: [Peer]? = nil, ports: [Port]? = nil) {
            self.peers = peers
            self.ports = ports
        }
    }

    /// spec.
    public struct Spec: Hashable, Sendable {
        /// podSelector; required by the API, absent is read as `{}`.
        public var podSelector: LabelSelector
        /// policyTypes as written.
        public var policyTypes: [String]?
        /// ingress; nil when the key is absent.
        public var ingress: [Rule]?
        /// egress; nil when the key is absent.
        public var egress: [Rule]?

        /// Creates a spec.
        public init(podSelector: LabelSelector = LabelSelector(), policyTypes: [String]? = nil, ingress: [Rule]? = nil, egress: [Rule]? = nil) {
            self.podSelector = podSelector
            self.policyTypes = policyTypes
            self.ingress = ingress
            self.egress = egress
        }
    }

    /// namespace/name.
    public var key: ObjectKey
    /// metadata.labels (validated, never used for enforcement).
    public var labels: [String: String]
    /// spec.
    public var spec: Spec

    /// Creates a policy.
    public init(namespace: String, name: String, labels: [String: String] = [:], spec: Spec) {
        self.key = ObjectKey(namespace: namespace, name: name)
        self.labels = labels
        self.spec = spec
    }

    private enum CodingKeys: String, CodingKey { case metadata, spec }
    private enum SpecKeys: String, CodingKey { case podSelector, policyTypes, ingress, egress }
    private struct IngressRule: Decodable { var from: [Peer]?; var ports: [Port]? }
    private struct EgressRule: Decodable { var to: [Peer]?; var ports: [Port]? }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let meta = try c.decode(ObjectMeta.self, forKey: .metadata)
        key = ObjectKey(namespace: meta.namespace ?? "default", name: meta.name)
        labels = meta.labels
        spec = Spec()
        guard c.contains(.spec) else { return }
        let s = try c.nestedContainer(keyedBy: SpecKeys.self, forKey: .spec)
        spec.podSelector = try s.decodeIfPresent(LabelSelector.self, forKey: .podSelector) ?? LabelSelector()
        spec.policyTypes = try s.decodeIfPresent([String].self, forKey: .policyTypes)
        spec.ingress = try s.decodeIfPresent([IngressRule].self, forKey: .ingress)?.map { Rule(peers: $0.from, ports: $0.ports) }
        spec.egress = try s.decodeIfPresent([EgressRule].self, forKey: .egress)?.map { Rule(peers: $0.to, ports: $0.ports) }
    }
}
