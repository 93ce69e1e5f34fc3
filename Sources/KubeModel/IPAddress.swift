/// An IPv4 or IPv6 address, compared numerically (all IPv4 before all IPv6).
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The address family.
    public enum Family: Int, Hashable, Comparable, Sendable, CaseIterable {
        case v4 = 4
        case v6 = 6

        /// Bits in an address of this family.
        public var bitWidth: Int { self == .v4 ? 32 : 128 }

        public static func < (lhs: Family, rhs: Family) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// The family.
    public var family: Family
    /// The address as an unsigned integer, right-aligned (IPv4 uses the low 32 bits).
    public var value: UInt128

    /// Creates an address from its numeric value.
    public init(family: Family, value: UInt128) {
        self.family = family
        self.value = family == .v4 ? value & 0xFFFF_FFFF : value
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` and an embedded IPv4 tail).
    public init?(_ text: some StringProtocol) {
        // utf8.contains, not StringProtocol.contains: Foundation's substring search costs more
        // than the whole parse (pod addresses are parsed once per pod of a cluster).
        if text.utf8.contains(UInt8(ascii: ":")) {
            guard let value = IPAddress.parseV6(Substring(text)) else { return nil }
            self.init(family: .v6, value: value)
        } else {
            guard let value = IPAddress.parseV4(Substring(text)) else { return nil }
            self.init(family: .v4, value: UInt128(value))
        }
    }

    /// Four decimal octets without leading zeros (ambiguous: octal in some parsers; Kubernetes
    /// rejects them too), scanned as bytes.
    private static func parseV4(_ text: Substring) -> UInt32? {
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        var leadingZero = false
        for byte in text.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | octet
                dots += 1
                octet = 0
                digits = 0
                leadingZero = false
                continue
            }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"), digits < 3, !leadingZero else { return nil }
            if digits == 0 { leadingZero = byte == UInt8(ascii: "0") }
            octet = octet * 10 + UInt32(byte - UInt8(ascii: "0"))
            digits += 1
            guard octet <= 255 else { return nil }
        }
        guard dots == 3, digits > 0 else { return nil }
        return value << 8 | octet
    }

    private static func parseV6(_ text: Substring) -> UInt128? {
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawGap = false
        let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { return nil }
        sawGap = halves.count == 2
        func groups(_ s: String, allowV4Tail: Bool) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let pieces = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, piece) in pieces.enumerated() {
                if i == pieces.count - 1, allowV4Tail, piece.contains(".") {
                    guard let v4 = parseV4(piece) else { return nil }
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                } else {
                    guard (1...4).contains(piece.count), piece.allSatisfy(\.isHexDigit),
                          let g = UInt16(piece, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        if sawGap {
            guard let h = groups(halves[0], allowV4Tail: false), let t = groups(halves[1], allowV4Tail: true),
                  h.count + t.count <= 7 else { return nil }
            head = h
            tail = t
        } else {
            guard let h = groups(halves[0], allowV4Tail: true), h.count == 8 else { return nil }
            head = h
        }
        let all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        return all.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
    }

    /// Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as `::`).
    public var description: String {
        switch family {
        case .v4:
            let v = UInt32(truncatingIfNeeded: value)
            // Dotted quad written byte by byte: this runs once per set member when rendering.
            var bytes: [UInt8] = []
            bytes.reserveCapacity(15)
            for shift in [24, 16, 8, 0] as [UInt32] {
                let octet = UInt8(truncatingIfNeeded: v >> shift)
                if !bytes.isEmpty { bytes.append(0x2E) }
                if octet >= 100 { bytes.append(0x30 + octet / 100) }
                if octet >= 10 { bytes.append(0x30 + octet / 10 % 10) }
                bytes.append(0x30 + octet % 10)
            }
            return String(decoding: bytes, as: UTF8.self)
        case .v6:
            let groups = (0..<8).map { UInt16(truncatingIfNeeded: value >> UInt128(16 * (7 - $0))) }
            // Longest run of two or more zero groups, first one on ties.
            var best = (start: -1, length: 0)
            var i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8 && groups[j] == 0 { j += 1 }
                    if j - i > best.length && j - i >= 2 { best = (i, j - i) }
                    i = j
                } else {
                    i += 1
                }
            }
            func hex(_ range: Range<Int>) -> String {
                groups[range].map { String($0, radix: 16) }.joined(separator: ":")
            }
            if best.start < 0 { return hex(0..<8) }
            return hex(0..<best.start) + "::" + hex((best.start + best.length)..<8)
        }
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        (lhs.family, lhs.value) < (rhs.family, rhs.value)
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

/// An address block `address/prefix`, normalised so that host bits are zero.
public struct CIDR: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The first address of the block.
    public var address: IPAddress
    /// The prefix length.
    public var prefix: Int

    /// The address family.
    public var family: IPAddress.Family { address.family }

    /// Creates a block; host bits of `address` are cleared.
    public init(address: IPAddress, prefix: Int) {
        precondition(prefix >= 0 && prefix <= address.family.bitWidth, "prefix out of range")
        self.address = IPAddress(family: address.family, value: address.value & CIDR.mask(prefix, address.family))
        self.prefix = prefix
    }

    /// Parses `a.b.c.d/n` or `x::y/n`. Like the API server, a bare address is not a CIDR.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPAddress(parts[0]),
              !parts[1].isEmpty, parts[1].allSatisfy({ $0.isNumber }), let prefix = Int(parts[1]),
              prefix <= address.family.bitWidth
        else { return nil }
        self.init(address: address, prefix: prefix)
    }

    private static func mask(_ prefix: Int, _ family: IPAddress.Family) -> UInt128 {
        let width = family.bitWidth
        if prefix == 0 { return 0 }
        let ones: UInt128 = width == 128 ? ~0 : 0xFFFF_FFFF
        return ones & ~((UInt128(1) << UInt128(width - prefix)) - 1)
    }

    /// Whether `ip` lies in this block.
    public func contains(_ ip: IPAddress) -> Bool {
        ip.family == family && ip.value & CIDR.mask(prefix, family) == address.value
    }

    /// Whether `other` lies entirely in this block.
    public func contains(_ other: CIDR) -> Bool {
        other.family == family && other.prefix >= prefix && contains(other.address)
    }

    /// `address/prefix` in canonical form.
    public var description: String { "\(address)/\(prefix)" }

    public static func < (lhs: CIDR, rhs: CIDR) -> Bool {
        (lhs.address, lhs.prefix) < (rhs.address, rhs.prefix)
    }
}
