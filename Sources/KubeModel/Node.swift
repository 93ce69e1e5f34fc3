/// A v1 Node, reduced to what enforcement on a node needs: which pod addresses are local to it
/// (`podCIDRs`) and the node's own addresses (traffic from the node to its pods, hostNetwork pods).
/// Only API responses carry Nodes (`APIDecoder`); manifest files skip them with a note.
public struct Node: Hashable, Sendable {
    /// The types of `status.addresses` entries Picket keeps (others, such as `Hostname`, are not IPs).
    public enum AddressType: String, Hashable, Sendable, CaseIterable {
        case internalIP = "InternalIP"
        case externalIP = "ExternalIP"
    }

    /// metadata.name.
    public var name: String
    /// metadata.labels.
    public var labels: [String: String]
    /// spec.podCIDRs (or spec.podCIDR when podCIDRs is absent or empty), parsed, in spec order,
    /// without repeats.
    public var podCIDRs: [CIDR]
    /// status.addresses[].address of type InternalIP or ExternalIP, parsed, in status order,
    /// without repeats.
    public var addresses: [IPAddress]
    /// The InternalIP ones of `addresses` (the rest are ExternalIP), in status order.
    public var internalIPs: [IPAddress]
    /// Fields its decoder found invalid and could not represent here (a pod CIDR or an address
    /// that does not parse): left out of the value, reported by `Validation.errors(of:)`.
    public var invalidFields: [FieldError] = []

    /// Creates a node; `internalIPs` defaults to every address.
    public init(
        name: String, labels: [String: String] = [:], podCIDRs: [CIDR] = [], addresses: [IPAddress] = [],
        internalIPs: [IPAddress]? = nil
    ) {
        self.name = name
        self.labels = labels
        self.podCIDRs = podCIDRs
        self.addresses = addresses
        self.internalIPs = internalIPs ?? addresses
    }
}

extension Node {
    /// A status.addresses entry as written: neither type nor address checked.
    struct WrittenAddress {
        var type: String
        var address: String
        /// Where it is written (`status.addresses[1]`).
        var field: String
    }

    /// Builds a node from its written fields: pod CIDRs and addresses that do not parse are left
    /// out of the value and recorded in `invalidFields`; addresses of other types are ignored.
    static func assemble(
        meta: ObjectMeta, podCIDRs: [String]?, podCIDR: String?, addresses written: [WrittenAddress]
    ) -> Node {
        var invalidFields: [FieldError] = []
        var rawCIDRs = podCIDRs ?? []
        var cidrField = "spec.podCIDRs"
        if rawCIDRs.isEmpty, let single = podCIDR, !single.isEmpty {
            rawCIDRs = [single]
            cidrField = "spec.podCIDR"
        }
        var cidrs: [CIDR] = []
        for (i, raw) in rawCIDRs.enumerated() {
            guard let cidr = CIDR(raw) else {
                let field = cidrField == "spec.podCIDR" ? cidrField : "\(cidrField)[\(i)]"
                invalidFields.append(Validation.invalid(field, raw, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
                continue
            }
            if !cidrs.contains(cidr) { cidrs.append(cidr) }
        }
        var addresses: [IPAddress] = []
        var internalIPs: [IPAddress] = []
        for entry in written {
            guard let type = AddressType(rawValue: entry.type) else { continue }
            guard let ip = IPAddress(entry.address) else {
                invalidFields.append(Validation.invalid(
                    "\(entry.field).address", entry.address, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
                continue
            }
            if !addresses.contains(ip) { addresses.append(ip) }
            if type == .internalIP && !internalIPs.contains(ip) { internalIPs.append(ip) }
        }
        var node = Node(name: meta.name, labels: meta.labels, podCIDRs: cidrs, addresses: addresses, internalIPs: internalIPs)
        node.invalidFields = invalidFields
        return node
    }
}
