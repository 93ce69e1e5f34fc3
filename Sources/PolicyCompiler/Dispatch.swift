// Dispatch: from "this packet's pod is isolated" to "its group's chain" at a cost that does not
// depend on the number of groups, pods or policies.
//
// Each isolated local pod gets its group's number written into the packet mark, by one ipset
// lookup per direction in mangle (a `hash:ip` set with `skbinfo`: member = pod address, its
// `skbmark` = the group number deposited into that direction's mark bits). Then a binary tree of
// native `-m mark` compares leads to the group chain: one rule per bit where the tree branches on
// the packet's path (at most the field's bits, 13 with a 26-bit mask), plus the whole number
// compared at the end, whatever the number of groups. Number 0 means "not isolated" (no member,
// nothing written).
//
// Numbers are stable: a fresh compile derives each group's number from a hash of its chain name
// (probing past taken numbers), and the executor renumbers a compiled ruleset against what the
// node holds (`Ruleset.renumbered(keeping:)`), so groups keep their numbers across syncs, new
// groups never take a number that pods still carry, and a change rewrites only the tree nodes
// on its path. During an apply, the tree keeps leaves for the numbers pods still carry until
// their members are re-tagged (`transition`), so no packet meets a tree that does not know its
// number.

import KubeModel

/// The packet-mark bits Picket owns and what each is for. Picket never changes a bit outside
/// `mask` (packet mark or conntrack mark).
///
/// The mask's set bits, from the least significant, are split in two halves: the lower half
/// numbers a packet's source pod's egress group, the upper half its destination pod's ingress
/// group (an odd bit goes to ingress). Policy rules admit a packet by clearing their
/// direction's field. In the conntrack mark, the mask's lowest bit flags flows to re-check.
///
/// One conntrack label bit (`seenLabel`, not a mark bit) says that a flow was judged and is not
/// flagged: the hooks pass such a flow's packets with one match (`-m connlabel ! --label`,
/// which is also true for a packet without a conntrack entry, so untracked and invalid packets
/// are judged each time), and the executor clears it when it flags a flow for re-check.
public struct MarkLayout: Hashable, Sendable, CustomStringConvertible {
    /// The default mask: the upper 16 bits, the part of the mark network-policy engines use,
    /// clear of kube-proxy's 0x4000/0x8000 and of the low bits service proxies and meshes use.
    public static let defaultMask: UInt32 = 0xffff_0000
    /// The default seen label: the highest of the kernel's 128 conntrack label bits, where
    /// users that number labels from 0 are least likely to reach.
    public static let defaultSeenLabel = 127
    /// The kernel's conntrack label bits.
    public static let labelBits = 0...127

    /// Every bit Picket may change.
    public let mask: UInt32
    /// The bits numbering egress groups.
    public let egress: UInt32
    /// The bits numbering ingress groups.
    public let ingress: UInt32
    /// The conntrack-mark bit of flows to re-check.
    public let recheck: UInt32
    /// The conntrack label bit of flows judged and not flagged for re-check (0...127).
    public let seenLabel: Int

    /// Why a mask cannot be used.
    public struct InvalidMask: Error, CustomStringConvertible {
        /// What is wrong.
        public var description: String
    }

    /// The layout of `mask`; at least 4 bits (one group per direction and the fail-closed number).
    public init(mask: UInt32, seenLabel: Int = MarkLayout.defaultSeenLabel) throws(InvalidMask) {
        let bits = (0..<32).map { UInt32(1) << UInt32($0) }.filter { mask & $0 != 0 }
        guard bits.count >= 4 else {
            throw InvalidMask(description: "mark mask 0x\(String(mask, radix: 16)) has \(bits.count) bits; Picket needs at least 4 (2 per direction)")
        }
        guard MarkLayout.labelBits.contains(seenLabel) else {
            throw InvalidMask(description: "conntrack label bit \(seenLabel) is not one of the kernel's \(MarkLayout.labelBits)")
        }
        self.seenLabel = seenLabel
        let half = bits.count / 2
        self.mask = mask
        self.egress = bits[..<half].reduce(0, |)
        self.ingress = bits[half...].reduce(0, |)
        self.recheck = bits[0]
    }

    /// The default layout.
    public init() {
        // The default mask is valid by construction.
        do { try self.init(mask: MarkLayout.defaultMask) } catch { preconditionFailure("\(error)") }
    }

    /// The field of a direction.
    public func field(_ direction: Direction) -> UInt32 { direction == .ingress ? ingress : egress }

    /// The most set bits a group number has. nf_tables bounds the chain graph's depth
    /// (`dispatchTreeGotoLimit`), and a packet in the dispatch tree takes a goto only at a set
    /// bit of its number where at least two numbers have it and every bit above as the
    /// packet's does; one of those has a further bit set, so k gotos need a number of k + 1 bits.
    public static let groupNumberOnes = dispatchTreeGotoLimit + 1

    /// The highest group number of a direction: 2^bits - 2 (all bits set is `overflow`).
    public func highest(_ direction: Direction) -> Int { (1 << field(direction).nonzeroBitCount) - 2 }

    /// Whether `number` can be a group's number in `direction`: 1 ... `highest`, with at most
    /// `groupNumberOnes` bits set (every number of a field of up to 12 bits).
    public func isGroupNumber(_ number: Int, _ direction: Direction) -> Bool {
        number >= 1 && number <= highest(direction) && number.nonzeroBitCount <= MarkLayout.groupNumberOnes
    }

    /// How many groups a direction can number (2^bits - 2 for a field of up to 12 bits; 8,177
    /// of 13 bits).
    public func capacity(_ direction: Direction) -> Int {
        let bits = field(direction).nonzeroBitCount
        var count = 0
        var choose = 1  // C(bits, k)
        for k in 1..<bits {
            choose = choose * (bits - k + 1) / k
            if k <= MarkLayout.groupNumberOnes { count += choose }
        }
        return count
    }

    /// The number that sends a pod to DROP: its group found no number (all bits of the field).
    public func overflow(_ direction: Direction) -> Int { (1 << field(direction).nonzeroBitCount) - 1 }

    /// `number` spread over the bits of `field`, least significant first.
    public static func deposit(_ number: Int, into field: UInt32) -> UInt32 {
        var value: UInt32 = 0
        var rest = UInt32(number)
        var bits = field
        while bits != 0 && rest != 0 {
            let low = bits & (~bits &+ 1)
            if rest & 1 != 0 { value |= low }
            rest >>= 1
            bits &= bits - 1
        }
        return value
    }

    /// The inverse of `deposit`.
    public static func extract(_ value: UInt32, from field: UInt32) -> Int {
        var number = 0
        var position = 0
        var bits = field
        while bits != 0 {
            let low = bits & (~bits &+ 1)
            if value & low != 0 { number |= 1 << position }
            position += 1
            bits &= bits - 1
        }
        return number
    }

    public var description: String { "0x" + String(mask, radix: 16) }
}

/// How one direction's isolated local pods reach their group chains.
public struct Dispatch: Hashable, Sendable {
    /// One group: local pods selected by exactly the same policies in this direction.
    public struct Group: Hashable, Sendable {
        /// The group's chain.
        public var chain: String
        /// Its number in the mark field (overflow: the fail-closed number).
        public var number: Int
        /// Its pods' addresses, both families.
        public var addresses: [IPAddress]
        /// Its policies, for the dispatch set's purpose line.
        public var policies: [ObjectKey]
    }

    /// The direction.
    public var direction: Direction
    /// The groups, sorted by chain name.
    public var groups: [Group]

    /// The numbers in use, with their chains.
    public var chainsByNumber: [Int: String] {
        var result: [Int: String] = [:]
        for group in groups { result[group.number] = group.chain }
        return result
    }
}

extension Names {
    /// The dispatch set of a direction: isolated local pods, tagged with their group's number.
    public static func dispatchSet(_ direction: Direction, _ family: IPAddress.Family) -> String {
        "\(setPrefix)\(direction.field)-map-v\(family.rawValue)"
    }

    /// The node's pod CIDRs with a `nomatch` hole for each known local pod: addresses a new pod
    /// may have before Picket has seen it (`CompileOptions.podCIDRs`).
    public static func unknownPodsSet(_ family: IPAddress.Family) -> String {
        "\(setPrefix)unknown-pods-v\(family.rawValue)"
    }

    /// mangle FORWARD's chain: tags a new connection with its pods' group numbers.
    public static let markForwardChain = "PICKET-MARK-FORWARD"
    /// mangle INPUT's chain: tags a new connection from a local pod to the node.
    public static let markInputChain = "PICKET-MARK-INPUT"
    /// Where PICKET-MARK-FORWARD sends an established flow that is not simply seen: one flagged
    /// for re-check is tagged and judged again, others return.
    public static let markForwardRecheckChain = "PICKET-MARK-FORWARD-RECHECK"
    /// PICKET-MARK-INPUT's counterpart of `markForwardRecheckChain`.
    public static let markInputRecheckChain = "PICKET-MARK-INPUT-RECHECK"

    /// A dispatch tree chain below the root: the numbers whose bits from `bit` up equal `prefix`
    /// (`bit` set), reached from the chain that branches on `bit`. Named by that position alone,
    /// so it keeps its name while groups come and go.
    static func treeNode(_ direction: Direction, bit: Int, prefix: Int) -> String {
        chainPrefix + (direction == .ingress ? "DTI-" : "DTE-") + "\(bit)-" + String(prefix, radix: 16).uppercased()
    }

    /// Whether `name` is a dispatch tree chain of either direction (root included).
    public static func isDispatchTree(_ name: String) -> Bool {
        name == ingressChain || name == egressChain || name.hasPrefix(chainPrefix + "DTI-") || name.hasPrefix(chainPrefix + "DTE-")
    }
}

/// Numbers for `chains` (sorted, distinct) in `direction`. A chain in `keeping` keeps its number
/// (if it can still be a group number); the others take the number a hash of their name prefers,
/// or the next free one, avoiding every number in `keeping` (pods may still carry those) while
/// any other is free. Chains beyond the capacity get the overflow number. Deterministic.
func assignNumbers(_ chains: [String], keeping: [Int: String], marks: MarkLayout, direction: Direction) -> [String: Int] {
    let capacity = marks.capacity(direction)
    let highest = marks.highest(direction)
    var result: [String: Int] = [:]
    var taken = Set<Int>()
    for (number, chain) in keeping.sorted(by: { $0.key < $1.key }) where result[chain] == nil && marks.isGroupNumber(number, direction) {
        if chains.binarySearchContains(chain) {
            result[chain] = number
            taken.insert(number)
        }
    }
    let avoided = Set(keeping.keys).union(taken)
    // Each chain's preferred number, hashed once.
    var fresh = chains.filter { result[$0] == nil }.map { (chain: $0, preferred: preferredNumber($0, highest)) }
    fresh.sort { ($0.preferred, $0.chain) < ($1.preferred, $1.chain) }
    for (chain, start) in fresh {
        guard taken.count < capacity else {
            result[chain] = marks.overflow(direction)
            continue
        }
        var chosen: Int? = nil
        // First choice: free and carried by no pod; past that, free.
        for avoid in [true, false] where chosen == nil {
            for step in 0..<highest {
                let number = (start - 1 + step) % highest + 1
                if marks.isGroupNumber(number, direction) && !taken.contains(number) && !(avoid && avoided.contains(number)) {
                    chosen = number
                    break
                }
            }
        }
        result[chain] = chosen!
        taken.insert(chosen!)
    }
    return result
}

/// 1 ... highest, from a hash of the chain name.
func preferredNumber(_ chain: String, _ highest: Int) -> Int {
    let digest = SHA256.digest(Array(chain.utf8))
    var value: UInt64 = 0
    for byte in digest.prefix(8) { value = value << 8 | UInt64(byte) }
    return Int(value % UInt64(highest)) + 1
}

extension Array where Element == String {
    fileprivate func binarySearchContains(_ value: String) -> Bool {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            if self[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low < count && self[low] == value
    }
}

/// The most gotos a packet takes inside a dispatch tree. nf_tables refuses a chain graph deeper
/// than 16 levels below a built-in chain ("Too many links"; jumps and gotos alike count): FORWARD
/// (0) -> PICKET-MARK-FORWARD (1) -> its re-check chain (2) -> the tree's root (3) -> 10 tree
/// chains (13) -> the group (14) -> the policy chain (15). Group numbers have at most one bit
/// more set than this (`MarkLayout.groupNumberOnes`), which keeps every path within it.
public let dispatchTreeGotoLimit = 10

/// The chains of a dispatch tree over `leaves` (number -> group chain): the root (the
/// direction's dispatch chain) first. A binary crit-bit tree whose left branches fall through:
/// a tree chain holds the numbers whose bits from its crit bit up are its prefix, and tests, from
/// the highest bit where they differ down, one bit per rule (`-m mark --mark B/B -g` the chain of
/// the numbers with that bit set); a number without it goes on to the next rule. So a packet
/// walks one native compare per bit where the tree branches on its path, and a goto only where
/// its number has the bit set. The numbers that reach a chain's end are one, compared whole
/// (`-g` its group chain), then DROP: a number the tree does not hold (the overflow number too)
/// never reaches a group chain. A single number on a set bit's side is compared whole in place
/// of a chain of its own. Numbers that cannot be group numbers (a pod may still carry one a
/// previous layout gave) are compared whole at the root, first.
func dispatchTree(_ direction: Direction, leaves: [Int: String], marks: MarkLayout) -> [Chain] {
    let field = marks.field(direction)
    let numbers = leaves.keys.filter { marks.isGroupNumber($0, direction) }.sorted()
    let foreign = leaves.keys.filter { !marks.isGroupNumber($0, direction) && $0 != marks.overflow(direction) && $0 != 0 }.sorted()
    let root = Names.treeRoot(direction)
    let failClosed = comment("isolated pod outside every group: fail closed") + ["-j", "DROP"]
    var chains: [Chain] = []
    func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
    func leafRule(_ number: Int) -> [String] {
        ["-m", "mark", "--mark", hex(MarkLayout.deposit(number, into: field)) + "/" + hex(field), "-g", leaves[number]!]
    }
    // The crit bit of numbers[range] (sorted, at least two): the highest bit where they differ.
    func critBit(_ range: Range<Int>) -> Int {
        Int.bitWidth - 1 - (numbers[range.lowerBound] ^ numbers[range.upperBound - 1]).leadingZeroBitCount
    }
    // A tree chain over numbers[range], named `name`, with `head` rules first. A child chain is
    // named by its crit bit and the bits from it up, so it keeps its name while numbers come and
    // go elsewhere in the tree.
    func node(_ name: String, _ range: Range<Int>, head: [[String]] = []) {
        var rules = head
        var calls = head.compactMap(\.last)
        var children: [(String, Range<Int>)] = []
        var rest = range
        while rest.count > 1 {
            let bit = critBit(rest)
            // Sorted: the numbers with the crit bit set are the upper part.
            let split = numbers[rest].firstIndex { $0 >> bit & 1 == 1 }!
            let upper = split..<rest.upperBound
            if upper.count == 1 {
                rules.append(leafRule(numbers[split]))
                calls.append(leaves[numbers[split]]!)
            } else {
                let child = Names.treeNode(direction, bit: bit, prefix: numbers[split] >> bit)
                let value = hex(MarkLayout.deposit(1 << bit, into: field))
                rules.append(["-m", "mark", "--mark", value + "/" + value, "-g", child])
                calls.append(child)
                children.append((child, upper))
            }
            rest = rest.lowerBound..<split
        }
        if let last = rest.first {
            rules.append(leafRule(numbers[last]))
            calls.append(leaves[numbers[last]]!)
        }
        rules.append(failClosed)
        chains.append(Chain(name: name, kind: .dispatchTree(direction), rules: rules, calls: calls))
        for (child, part) in children { node(child, part) }
    }
    node(root, 0..<numbers.count, head: foreign.map(leafRule))
    return chains
}

extension Ruleset {
    /// Per direction, the group numbers this ruleset's pods carry, with their group chains.
    public var dispatchNumbers: [Direction: [Int: String]] {
        var result: [Direction: [Int: String]] = [:]
        for d in dispatch { result[d.direction] = d.chainsByNumber }
        return result
    }

    /// The same enforcement with group numbers chosen against `current` (per direction: the
    /// numbers the node's pods carry now, with their group chains): groups keep their numbers,
    /// new ones avoid numbers still carried. Only dispatch set members and tree chains change.
    public func renumbered(keeping current: [Direction: [Int: String]]) -> Ruleset {
        var result = self
        result.dispatch = dispatch.map { old in
            var new = old
            let numbers = assignNumbers(old.groups.map(\.chain), keeping: current[old.direction] ?? [:], marks: marks, direction: old.direction)
            for i in new.groups.indices { new.groups[i].number = numbers[new.groups[i].chain]! }
            return new
        }
        guard result.dispatch != dispatch else { return self }
        result.sets = sets.map { set in
            guard let d = result.dispatch.first(where: { Names.dispatchSet($0.direction, set.family) == set.name }) else { return set }
            return dispatchSet(d, set.family, marks: marks)
        }
        for family in [IPAddress.Family.v4, .v6] {
            guard var table = family == .v4 ? result.ipv4 : result.ipv6 else { continue }
            table.chains = table.chains.filter { !Names.isDispatchTree($0.name) }
            for d in result.dispatch {
                table.chains += dispatchTree(d.direction, leaves: d.chainsByNumber, marks: marks)
            }
            table.chains = orderedChains(table.chains)
            if family == .v4 { result.ipv4 = table } else { result.ipv6 = table }
        }
        return result
    }

    /// The dispatch trees an apply writes before it re-tags pods: leaves for the numbers pods
    /// carry now (`current`) besides the ruleset's own, where they do not collide. Per family,
    /// only the tree chains that differ from the ruleset's; empty when none does.
    public func transition(from current: [Direction: [Int: String]]) -> [IPAddress.Family: [Chain]] {
        var result: [IPAddress.Family: [Chain]] = [:]
        for table in tables {
            var changed: [Chain] = []
            let final = Dictionary(uniqueKeysWithValues: table.chains.filter { Names.isDispatchTree($0.name) }.map { ($0.name, $0) })
            for d in dispatch {
                var leaves = d.chainsByNumber
                var extra = false
                for (number, chain) in current[d.direction] ?? [:] where leaves[number] == nil {
                    leaves[number] = chain
                    extra = true
                }
                guard extra else { continue }
                for chain in dispatchTree(d.direction, leaves: leaves, marks: marks) where final[chain.name] != chain {
                    changed.append(chain)
                }
            }
            if !changed.isEmpty { result[table.family] = changed }
        }
        return result
    }
}

/// A direction's dispatch set for one family.
func dispatchSet(_ dispatch: Dispatch, _ family: IPAddress.Family, marks: MarkLayout) -> IPSet {
    let field = marks.field(dispatch.direction)
    var members: [IPSet.Member] = []
    for (index, group) in dispatch.groups.enumerated() {
        let tag = IPSet.Tag(mark: MarkLayout.deposit(group.number, into: field), mask: field, comment: Int32(index))
        for address in group.addresses where address.family == family { members.append(IPSet.Member(address, tag: tag)) }
    }
    return IPSet(
        name: Names.dispatchSet(dispatch.direction, family), kind: .hashIP, family: family, members: members,
        purpose: "local pods isolated for \(dispatch.direction.field), tagged with their group's number", role: .dispatch(dispatch.direction),
        comments: dispatch.groups.map(\.chain))
}

/// Chains in table order (`TableName.allCases`): per table the base chains in their fixed
/// order, then the others sorted by name.
func orderedChains(_ chains: [Chain]) -> [Chain] {
    // Each chain's key is computed once (a node with thousands of groups has thousands of chains,
    // and the compiler runs on every sync), then the chains are sorted by it.
    let keyed = chains.map { chain in
        (table: tableRank[chain.table]!, base: baseChainRank[chain.name] ?? baseChainRank.count, chain: chain)
    }
    return keyed.sorted { ($0.table, $0.base, $0.chain.name) < ($1.table, $1.base, $1.chain.name) }.map(\.chain)
}

/// The fixed order of the base chains within their table.
private let baseChainRank: [String: Int] = Dictionary(uniqueKeysWithValues: [
    Names.markForwardChain, Names.markInputChain, Names.markForwardRecheckChain, Names.markInputRecheckChain,
    Names.ingressChain, Names.egressChain,
].enumerated().map { ($1, $0) })

/// Tables in transaction order (`TableName.allCases`).
private let tableRank: [TableName: Int] = Dictionary(uniqueKeysWithValues: TableName.allCases.enumerated().map { ($1, $0) })

/// Follows a new connection's packet down a ruleset's dispatch trees, reading the rules as the
/// kernel evaluates them (`-m mark [!] --mark V/M`, `-g`, `-j DROP`): where it ends and how
/// many rules it walks. For counting a packet's cost and checking trees.
public struct DispatchWalker {
    private let marks: MarkLayout
    private let chains: [IPAddress.Family: [String: [[String]]]]

    /// A walker over `ruleset`'s trees.
    public init(_ ruleset: Ruleset) {
        marks = ruleset.marks
        var chains: [IPAddress.Family: [String: [[String]]]] = [:]
        for table in ruleset.tables {
            chains[table.family] = Dictionary(uniqueKeysWithValues: table.chains.filter { Names.isDispatchTree($0.name) }.map { ($0.name, $0.rules) })
        }
        self.chains = chains
    }

    /// Where a packet carrying group `number` in `direction`'s mark field ends in that
    /// direction's tree of `family` (nil: DROP), and the rules it walks there.
    public func walk(_ direction: Direction, _ family: IPAddress.Family, number: Int) -> (chain: String?, rules: Int) {
        guard let chains = chains[family] else { return (nil, 0) }
        let mark = MarkLayout.deposit(number, into: marks.field(direction))
        var chain = Names.treeRoot(direction)
        var walked = 0
        // A tree is at most 32 levels deep: bound the walk.
        for _ in 0..<64 {
            guard let rules = chains[chain] else { return (chain, walked) }
            var next: String? = nil
            for rule in rules {
                walked += 1
                if let m = rule.firstIndex(of: "--mark"), m + 1 < rule.count {
                    let parts = rule[m + 1].split(separator: "/").map { UInt32($0.dropFirst(2), radix: 16) ?? 0 }
                    let matches = (mark & parts[1]) == parts[0]
                    if matches == (rule[m - 1] == "!") { continue }
                }
                if let g = rule.firstIndex(of: "-g"), g + 1 < rule.count {
                    next = rule[g + 1]
                    break
                }
                return (nil, walked)  // -j DROP
            }
            guard let target = next else { return (nil, walked) }
            chain = target
        }
        return (nil, walked)
    }
}

extension Ruleset {
    /// `DispatchWalker(self).walk(...)`, for one packet.
    public func dispatchWalk(_ direction: Direction, _ family: IPAddress.Family, number: Int) -> (chain: String?, rules: Int) {
        DispatchWalker(self).walk(direction, family, number: number)
    }
}
