import KubeModel

/// Names of Picket's chains and sets: one common prefix, fixed names for the base layout, and
/// for everything derived from a policy `PREFIX-KIND-<16 base32 chars of SHA-256 of its identity>`
/// (sets add `-v4`/`-v6`: the two families never share a set).
/// Identity fields are joined with a NUL separator, so ("a", "bc") and ("ab", "c") differ.
/// Nothing time-dependent enters a name: the same policy always gets the same chains and sets,
/// and a change to one policy renames nothing of another's.
public enum Names {
    /// iptables' limit on chain names.
    public static let maxChainLength = 28
    /// ipset's limit on set names.
    public static let maxSetLength = 31

    /// Every chain Picket owns starts with this.
    public static let chainPrefix = "PICKET-"
    /// Every set Picket owns starts with this.
    public static let setPrefix = "picket-"

    /// The root of the tree that dispatches a packet from a local egress-isolated pod to its group chain.
    public static let egressChain = "PICKET-EGRESS"
    /// The root of the tree that dispatches a packet to a local ingress-isolated pod to its group chain.
    public static let ingressChain = "PICKET-INGRESS"
    /// The root of `direction`'s dispatch tree, where the tagging chains judge a packet that
    /// carries a number of that direction.
    public static func treeRoot(_ direction: Direction) -> String {
        direction == .ingress ? ingressChain : egressChain
    }
    /// The chain of a group: local pods selected by exactly the same policies in a direction.
    public static func groupChain(_ direction: Direction, policies: [ObjectKey]) -> String {
        chainPrefix + (direction == .ingress ? "GRI-" : "GRE-") + hash(groupIdentity(direction, policies))
    }

    /// The chain holding one policy's rules of one direction.
    public static func policyChain(_ policy: ObjectKey, _ direction: Direction) -> String {
        chainPrefix + (direction == .ingress ? "POI-" : "POE-") + hash(["policy", policy.namespace, policy.name, direction.field])
    }

    /// The kinds of set a policy rule owns.
    public enum RuleSetKind: String, Sendable {
        /// Pod peers (hash:ip): sources of an ingress rule, destinations of an egress rule.
        case peers = "pod"
        /// One ipBlock peer (hash:net, `nomatch` for except).
        case block = "net"
        /// Named ports resolved to (pod address, protocol:port) pairs (hash:ip,port).
        case namedPorts = "npt"
    }

    /// A set of peers or named-port pairs, named by its definition alone: a canonical text of
    /// what decides its members (absolute selectors, a block, port names and whose ports).
    /// Rules of any policy that mean the same peers share one set; a rule that changes meaning
    /// gets another set, so new rules never run against members computed for old ones, and pod
    /// churn keeps every name and only changes members.
    public static func definedSet(_ kind: RuleSetKind, definition: String, _ family: IPAddress.Family) -> String {
        setPrefix + kind.rawValue + "-" + hash(["set", kind.rawValue, definition]).lowercased() + "-v\(family.rawValue)"
    }

    private static func groupIdentity(_ direction: Direction, _ policies: [ObjectKey]) -> [String] {
        ["group", direction.field] + policies.flatMap { [$0.namespace, $0.name] }
    }

    private static let base32Bytes: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// 16 base32 characters (80 bits) of SHA-256 over the NUL-joined fields.
    static func hash(_ fields: [String]) -> String {
        var bytes: [UInt8] = []
        for (i, field) in fields.enumerated() {
            if i > 0 { bytes.append(0) }
            bytes.append(contentsOf: field.utf8)
        }
        let digest = SHA256.digest(bytes)
        var out: [UInt8] = []
        out.reserveCapacity(16)
        var buffer: UInt32 = 0
        var bits = 0
        var i = 0
        while out.count < 16 {
            buffer = buffer << 8 | UInt32(digest[i])
            i += 1
            bits += 8
            while bits >= 5 && out.count < 16 {
                out.append(base32Bytes[Int(buffer >> UInt32(bits - 5) & 31)])
                bits -= 5
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
