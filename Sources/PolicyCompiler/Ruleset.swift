import KubeModel

/// What one node must enforce: ipsets plus, per address family, the chains that use them (all
/// in the mangle table) and the jumps into them from the built-in chains. A plain value, compared and
/// diffed by the executor; rendering to restore text is a separate step (`Render.swift`).
public struct Ruleset: Hashable, Sendable {
    /// All sets of both families, sorted by name.
    public var sets: [IPSet]
    /// The IPv4 chains and hooks.
    public var ipv4: FamilyRules
    /// The IPv6 chains and hooks; nil when no pod in the cluster has an IPv6 address.
    public var ipv6: FamilyRules?
    /// The packet-mark bits Picket owns, and how they are split (see `MarkLayout`).
    public var marks: MarkLayout
    /// Which group chain each local isolated pod is dispatched to, per direction (ingress,
    /// egress): the numbers in the dispatch sets' members and in the dispatch trees.
    public var dispatch: [Dispatch]
    /// Things an operator must know that do not make an input invalid (e.g. more groups than
    /// the mark bits can number: their pods fail closed).
    public var warnings: [String]

    /// Creates a ruleset.
    public init(
        sets: [IPSet], ipv4: FamilyRules, ipv6: FamilyRules?, marks: MarkLayout = MarkLayout(),
        dispatch: [Dispatch] = [], warnings: [String] = []
    ) {
        self.sets = sets
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.marks = marks
        self.dispatch = dispatch
        self.warnings = warnings
    }

    /// The conntrack-mark bit the executor sets on the entries of flows whose access may have
    /// been taken away, so that their next packet is judged again.
    public var recheckMark: UInt32 { marks.recheck }

    /// The tables present, IPv4 first.
    public var tables: [FamilyRules] { [ipv4] + (ipv6.map { [$0] } ?? []) }

    /// Number of rules in all chains (jumps from built-in chains included).
    public var ruleCount: Int { tables.reduce(0) { $0 + $1.ruleCount } }

    /// Number of members in all sets.
    public var memberCount: Int { sets.reduce(0) { $0 + $1.members.count } }
}

/// An ipset Picket owns.
public struct IPSet: Hashable, Sendable {
    /// The ipset types Picket uses.
    public enum Kind: String, Hashable, Sendable {
        /// Single addresses.
        case hashIP = "hash:ip"
        /// Address blocks; a `nomatch` member carves a hole out of a larger one.
        case hashNet = "hash:net"
        /// (address, protocol:port) pairs, matched with `dst,dst`.
        case hashIPPort = "hash:ip,port"
    }

    /// A packet-mark value a member writes with `-j SET --map-set NAME --map-mark` (`skbinfo`
    /// sets), and which of the set's `comments` names what the value stands for (`comment`
    /// sets). Plain numbers, so that members stay trivial values: sets of tens of thousands of
    /// members are sorted on every compile.
    public struct Tag: Hashable, Sendable {
        /// The mark value, within `mask`.
        public var mark: UInt32
        /// The bits the value replaces.
        public var mask: UInt32
        /// The index of the member's comment in its set's `comments`.
        public var comment: Int32

        /// Creates a tag.
        public init(mark: UInt32, mask: UInt32, comment: Int32) {
            self.mark = mark
            self.mask = mask
            self.comment = comment
        }
    }

    /// One member.
    public struct Member: Hashable, Comparable, Sendable, CustomStringConvertible {
        /// The address (hash:ip, hash:ip,port) or block (hash:net).
        public var block: CIDR
        /// The protocol and port, for hash:ip,port.
        public var port: (TransportProtocol, Int)? {
            get { portProto.map { ($0, portNumber) } }
            set {
                portProto = newValue?.0
                portNumber = newValue?.1 ?? 0
            }
        }
        /// A hole in a larger block (hash:net only).
        public var nomatch: Bool
        /// The mark and comment of a dispatch set's member.
        public var tag: Tag?
        private var portProto: TransportProtocol?
        private var portNumber: Int

        /// An address member.
        public init(_ address: IPAddress) {
            self.block = CIDR(address: address, prefix: address.family.bitWidth)
            self.nomatch = false
            self.tag = nil
            self.portProto = nil
            self.portNumber = 0
        }

        /// An address member that writes `tag` into the packet mark.
        public init(_ address: IPAddress, tag: Tag) {
            self.init(address)
            self.tag = tag
        }

        /// A block member, possibly a nomatch hole.
        public init(_ block: CIDR, nomatch: Bool = false) {
            self.block = block
            self.nomatch = nomatch
            self.tag = nil
            self.portProto = nil
            self.portNumber = 0
        }

        /// An address-and-port member.
        public init(_ address: IPAddress, _ proto: TransportProtocol, _ port: Int) {
            self.init(address)
            self.portProto = proto
            self.portNumber = port
        }

        /// The member as `ipset add` takes it and `ipset save` prints it: `10.0.0.1`,
        /// `10.0.0.0/8 nomatch`, `10.0.0.1,tcp:80`; a tagged member's comment and mark follow
        /// (`IPSet.text(of:)`).
        public var description: String {
            var text = block.prefix == block.family.bitWidth ? "\(block.address)" : "\(block)"
            if let proto = portProto { text += ",\(proto.lowercased):\(portNumber)" }
            if nomatch { text += " nomatch" }
            return text
        }

        public static func < (lhs: Member, rhs: Member) -> Bool {
            if lhs.block != rhs.block { return lhs.block < rhs.block }
            if lhs.tag != rhs.tag { return (lhs.tag?.mark ?? 0, lhs.tag?.comment ?? 0) < (rhs.tag?.mark ?? 0, rhs.tag?.comment ?? 0) }
            return (lhs.portProto?.rawValue ?? "", lhs.portNumber, lhs.nomatch ? 1 : 0)
                < (rhs.portProto?.rawValue ?? "", rhs.portNumber, rhs.nomatch ? 1 : 0)
        }
    }

    /// The set's name (`picket-...`).
    public var name: String
    /// Its type.
    public var kind: Kind
    /// Its address family.
    public var family: IPAddress.Family
    /// Members, sorted, without repeats.
    public var members: [Member]
    /// What the set is for, e.g. `ns/policy ingress[0] peers`; rendered as a comment.
    public var purpose: String
    /// Whether members carry a `Tag` (a dispatch set: `comment skbinfo` extensions).
    public var tagged: Bool
    /// The comments tagged members point to.
    public var comments: [String]
    /// What the rules use the set for; the executor plans member changes by it.
    public var role: Role

    /// What a set is for.
    public enum Role: Hashable, Sendable {
        /// A direction's local isolated pods, each tagged with its group's number (`tagged`):
        /// a pod changing group is one member re-tagged in place.
        case dispatch(Direction)
        /// Pod peers of policy rules.
        case peers
        /// One ipBlock with its holes.
        case block
        /// Named ports resolved to (pod address, protocol:port) pairs.
        case namedPorts
        /// The node's pod CIDRs with a hole for each known local pod.
        case unknownPods
    }

    /// Creates a set; members are sorted and deduplicated. A dispatch set is tagged.
    public init(
        name: String, kind: Kind, family: IPAddress.Family, members: [Member], purpose: String, role: Role,
        comments: [String] = []
    ) {
        self.name = name
        self.kind = kind
        self.family = family
        self.role = role
        if case .dispatch = role { self.tagged = true } else { self.tagged = false }
        self.comments = comments
        var sorted = members.sorted()
        sorted.dedupeSorted()
        self.members = sorted
        self.purpose = purpose
    }

    /// The kernel's default maxelem, raised (to a power of two) for sets that outgrow it.
    public var maxElements: Int {
        var size = 65536
        while size < members.count * 2 { size *= 2 }
        return size
    }
}

/// The iptables tables Picket writes, in the order of their transactions.
public enum TableName: String, Hashable, Comparable, Sendable, CaseIterable {
    /// Where a packet is tagged with its pods' group numbers (`--map-set` is refused outside
    /// mangle) and judged: every chain and hook of Picket's is here.
    case mangle
    /// Where earlier layouts judged; Picket now only removes its chains and hooks from it. It
    /// comes after mangle, so that an upgrade enforces the new chains before the old go.
    case filter

    public static func < (lhs: TableName, rhs: TableName) -> Bool { lhs == .mangle && rhs == .filter }
}

/// One family's content owned by Picket, in the mangle table.
public struct FamilyRules: Hashable, Sendable {
    /// IPv4 (iptables) or IPv6 (ip6tables).
    public var family: IPAddress.Family
    /// Picket's chains of both tables: per table the base chains first, then the others sorted
    /// by name. Names are unique across the tables.
    public var chains: [Chain]
    /// Jumps from built-in chains into Picket's chains, inserted first in each built-in chain.
    public var hooks: [Hook]

    /// Creates a table.
    public init(family: IPAddress.Family, chains: [Chain], hooks: [Hook]) {
        self.family = family
        self.chains = chains
        self.hooks = hooks
    }

    /// Rules in all chains plus the hooks.
    public var ruleCount: Int { chains.reduce(hooks.count) { $0 + $1.rules.count } }
}

/// A chain and its rules, each rule the words after `-A CHAIN`.
public struct Chain: Hashable, Sendable {
    /// The chain's name.
    public var name: String
    /// The rules in order; each is an argument list such as `["-m", "set", ..., "-j", "DROP"]`.
    public var rules: [[String]]
    /// The table it lives in.
    public var table: TableName
    /// What the chain does in the layout.
    public var kind: Kind
    /// Picket's chains its rules jump or go to, in rule order: a change in one of them changes
    /// what this chain admits.
    public var calls: [String]

    /// The parts of the layout.
    public enum Kind: Hashable, Sendable {
        /// The mangle chains tagging a new connection with its pods' group numbers and judging it.
        case mark
        /// A node of a direction's dispatch tree (the root is the direction's dispatch chain).
        case dispatchTree(Direction)
        /// A group chain: the policies selecting the same local pods, in turn.
        case group(Direction)
        /// One policy's rules of one direction.
        case policy(Direction)
    }

    /// Creates a chain.
    public init(name: String, kind: Kind, rules: [[String]] = [], calls: [String] = [], table: TableName = .mangle) {
        self.name = name
        self.kind = kind
        self.rules = rules
        self.calls = calls
        self.table = table
    }
}

/// A jump from a built-in chain to one of Picket's chains.
public struct Hook: Hashable, Sendable {
    /// The table of the built-in chain.
    public var table: TableName = .mangle
    /// The built-in chain, e.g. `FORWARD`.
    public var builtin: String
    /// Picket's chain it jumps to.
    public var target: String
    /// Why the jump exists (rendered as an iptables comment); nil for a bare jump, which every
    /// packet takes: it carries no comment (`RuleIdentity.bare`), since a comment would be one
    /// more match for every packet to evaluate.
    public var comment: String?
    /// Matches the jump is taken on (empty: every packet). Picket's hooks are bare: their
    /// chains return established flows at their first rule.
    public var matches: [String]

    /// Creates a hook.
    public init(table: TableName = .mangle, builtin: String, target: String, comment: String?, matches: [String] = []) {
        self.table = table
        self.builtin = builtin
        self.target = target
        self.comment = comment
        self.matches = matches
    }

    /// The rule's words after `-I BUILTIN N`.
    public var rule: [String] { matches + (comment.map { ["-m", "comment", "--comment", $0] } ?? []) + ["-j", target] }
}

extension Array where Element: Equatable {
    /// Removes adjacent repeats (all repeats, when sorted).
    mutating func dedupeSorted() {
        guard count > 1 else { return }
        var write = 1
        for read in 1..<count where self[read] != self[write - 1] {
            self[write] = self[read]
            write += 1
        }
        removeLast(count - write)
    }
}
