/// The direction of traffic a policy rule governs, seen from the selected pod.
public enum Direction: String, Hashable, Comparable, Sendable, CaseIterable {
    case ingress = "Ingress"
    case egress = "Egress"

    /// `ingress` / `egress`, as in the spec's field names.
    public var field: String { self == .ingress ? "ingress" : "egress" }

    public static func < (lhs: Direction, rhs: Direction) -> Bool { lhs == .ingress && rhs == .egress }
}

/// A NetworkPolicy after validation and defaulting: the meaning enforcement works from.
///
/// Invalid parts fail closed: the policy still isolates what it selects, in the directions it
/// names, while a rule with an invalid field allows nothing. If the podSelector itself is
/// invalid the policy selects every pod of its namespace; if policyTypes is invalid it isolates
/// both directions; if its metadata (name, namespace, labels) is invalid, none of its rules
/// allows anything (the API server would not have stored the object at all).
public struct Policy: Hashable, Sendable {
    /// Who a rule's peer is.
    public enum Peer: Hashable, Sendable {
        /// Pods chosen by label: in the policy's own namespace when `namespaces` is nil, else in
        /// every namespace `namespaces` matches.
        case pods(namespaces: Selector?, pods: Selector)
        /// Addresses in `cidr` but in none of `except`.
        case block(cidr: CIDR, except: [CIDR])
    }

    /// Which ports a rule's port entry admits.
    public enum PortRange: Hashable, Sendable {
        /// Every port of the protocol.
        case all
        /// `first...last`.
        case range(Int, Int)
        /// A container port name, resolved on each destination pod.
        case named(String)
    }

    /// One entry of a rule's `ports`.
    public struct Port: Hashable, Sendable {
        /// The protocol.
        public var proto: TransportProtocol
        /// The ports.
        public var range: PortRange

        /// Creates a port entry.
        public init(proto: TransportProtocol, range: PortRange) {
            self.proto = proto
            self.range = range
        }
    }

    /// A valid ingress or egress rule.
    public struct Rule: Hashable, Sendable {
        /// The rule's index in the spec's list (stable identity for names and reasons).
        public var index: Int
        /// The peers; nil means every source (ingress) or destination (egress).
        public var peers: [Peer]?
        /// The ports; empty means every port of every protocol.
        public var ports: [Port]

        /// Creates a rule.
        public init(index: Int, peers: [Peer]?, ports: [Port]) {
            self.index = index
            self.peers = peers
            self.ports = ports
        }
    }

    /// namespace/name.
    public var key: ObjectKey
    /// The pods of `key.namespace` the policy selects.
    public var podSelector: Selector
    /// Directions the policy isolates (policyTypes after defaulting).
    public var isolates: Set<Direction>
    /// Valid ingress rules, in spec order.
    public var ingress: [Rule]
    /// Valid egress rules, in spec order.
    public var egress: [Rule]
    /// What failed validation, with paths relative to the object (`spec...`).
    public var errors: [FieldError]

    /// The valid rules of one direction.
    public func rules(_ direction: Direction) -> [Rule] {
        direction == .ingress ? ingress : egress
    }

    /// Creates a policy from parts as they are, without validation (for tests and for readers that
    /// validated already). The compiler makes whatever it is given safe to render.
    public init(
        key: ObjectKey, podSelector: Selector, isolates: Set<Direction>, ingress: [Rule], egress: [Rule], errors: [FieldError] = []
    ) {
        self.key = key
        self.podSelector = podSelector
        self.isolates = isolates
        self.ingress = ingress
        self.egress = egress
        self.errors = errors
    }

    /// Validates and defaults a policy as the API server would, keeping what is valid.
    public init(validating policy: NetworkPolicy) {
        key = policy.key
        errors = Validation.metadataErrors(of: policy)
        let validMetadata = errors.isEmpty
        let spec = policy.spec
        switch spec.podSelector.compiled() {
        case .success(let selector):
            podSelector = selector
        case .failure(let error):
            errors.append(error.under("spec.podSelector"))
            podSelector = .everything
        }

        // "If this field is not specified, it will default based on the existence of ingress or
        // egress rules; policies that contain an egress section are assumed to affect egress,
        // and all policies (whether or not they contain an ingress section) are assumed to
        // affect ingress."
        if let types = spec.policyTypes, !types.isEmpty {
            var isolates: Set<Direction> = []
            for (i, type) in types.enumerated() {
                if let direction = Direction(rawValue: type) {
                    isolates.insert(direction)
                } else {
                    errors.append(FieldError(
                        field: "spec.policyTypes[\(i)]", reason: "\"\(type)\" is not Ingress or Egress; isolating both directions"))
                    isolates = Set(Direction.allCases)
                    break
                }
            }
            self.isolates = isolates
        } else {
            isolates = (spec.egress?.isEmpty ?? true) ? [.ingress] : [.ingress, .egress]
        }

        var ingress: [Rule] = []
        var egress: [Rule] = []
        for direction in Direction.allCases {
            let written = (direction == .ingress ? spec.ingress : spec.egress) ?? []
            for (index, rule) in written.enumerated() {
                let path = "spec.\(direction.field)[\(index)]"
                switch Policy.validate(rule, index: index, direction: direction) {
                case .success(let valid):
                    if direction == .ingress { ingress.append(valid) } else { egress.append(valid) }
                case .failure(let error):
                    errors.append(error.under(path))
                }
            }
        }
        self.ingress = validMetadata ? ingress : []
        self.egress = validMetadata ? egress : []
    }

    private static func validate(_ rule: NetworkPolicy.Rule, index: Int, direction: Direction) -> Result<Rule, FieldError> {
        let peerField = direction == .ingress ? "from" : "to"
        var peers: [Peer]? = nil
        // "If this field is empty or missing, this rule matches all sources/destinations."
        if let written = rule.peers, !written.isEmpty {
            var list: [Peer] = []
            for (i, peer) in written.enumerated() {
                switch validate(peer) {
                case .success(let valid): list.append(valid)
                case .failure(let error): return .failure(error.under("\(peerField)[\(i)]"))
                }
            }
            peers = list
        }
        var ports: [Port] = []
        for (i, port) in (rule.ports ?? []).enumerated() {
            switch validate(port) {
            case .success(let valid): ports.append(valid)
            case .failure(let error): return .failure(error.under("ports[\(i)]"))
            }
        }
        return .success(Rule(index: index, peers: peers, ports: ports))
    }

    private static func validate(_ peer: NetworkPolicy.Peer) -> Result<Peer, FieldError> {
        if let block = peer.ipBlock {
            if peer.podSelector != nil || peer.namespaceSelector != nil {
                return .failure(FieldError(field: "ipBlock", reason: "may not be combined with podSelector or namespaceSelector"))
            }
            guard let cidr = CIDR(block.cidr) else {
                return .failure(FieldError(field: "ipBlock.cidr", reason: "\"\(block.cidr)\" is not a valid CIDR"))
            }
            var except: [CIDR] = []
            for (i, text) in (block.except ?? []).enumerated() {
                guard let excluded = CIDR(text) else {
                    return .failure(FieldError(field: "ipBlock.except[\(i)]", reason: "\"\(text)\" is not a valid CIDR"))
                }
                guard cidr.contains(excluded), excluded.prefix > cidr.prefix else {
                    return .failure(FieldError(
                        field: "ipBlock.except[\(i)]", reason: "\(text) must be strictly within the cidr \(block.cidr)"))
                }
                except.append(excluded)
            }
            return .success(.block(cidr: cidr, except: except.sorted()))
        }
        var namespaces: Selector? = nil
        var pods = Selector.everything
        if let written = peer.namespaceSelector {
            switch written.compiled() {
            case .success(let s): namespaces = s
            case .failure(let e): return .failure(e.under("namespaceSelector"))
            }
        }
        if let written = peer.podSelector {
            switch written.compiled() {
            case .success(let s): pods = s
            case .failure(let e): return .failure(e.under("podSelector"))
            }
        } else if namespaces == nil {
            return .failure(FieldError(field: "", reason: "a peer must set podSelector, namespaceSelector or ipBlock"))
        }
        return .success(.pods(namespaces: namespaces, pods: pods))
    }

    private static func validate(_ port: NetworkPolicy.Port) -> Result<Port, FieldError> {
        let proto: TransportProtocol
        if let raw = port.protocol {
            guard let parsed = TransportProtocol(rawValue: raw) else {
                return .failure(FieldError(field: "protocol", reason: "\"\(raw)\" is not TCP, UDP or SCTP"))
            }
            proto = parsed
        } else {
            proto = .tcp
        }
        switch port.port {
        case nil:
            if port.endPort != nil {
                return .failure(FieldError(field: "endPort", reason: "may not be set without port"))
            }
            return .success(Port(proto: proto, range: .all))
        case .number(let first)?:
            guard (1...65535).contains(first) else {
                return .failure(FieldError(field: "port", reason: "\(first) is not between 1 and 65535"))
            }
            guard let last = port.endPort else { return .success(Port(proto: proto, range: .range(first, first))) }
            guard (1...65535).contains(last) else {
                return .failure(FieldError(field: "endPort", reason: "\(last) is not between 1 and 65535"))
            }
            guard last >= first else {
                return .failure(FieldError(field: "endPort", reason: "\(last) is less than port \(first)"))
            }
            return .success(Port(proto: proto, range: .range(first, last)))
        case .name(let name)?:
            if port.endPort != nil {
                return .failure(FieldError(field: "endPort", reason: "may not be set when port is a named port (\"\(name)\")"))
            }
            if let message = Validation.portName(name).first {
                return .failure(Validation.invalid("port", name, message))
            }
            return .success(Port(proto: proto, range: .named(name)))
        }
    }
}
