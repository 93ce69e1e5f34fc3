#if canImport(Glibc)
import Glibc
#endif

/// The nf_tables ruleset generation of the calling thread's network namespace: a counter the
/// kernel moves on every committed nf_tables transaction, by anyone (iptables-nft, nft, kube-proxy).
/// Unchanged since Picket's last write means no table of the namespace was touched since, so a
/// periodic verify can skip reading the tables back. One netlink request (NFT_MSG_GETGEN) and its
/// answer: microseconds, against tens or hundreds of milliseconds for iptables-save.
enum RulesetGeneration {
    private static let subsystem: UInt16 = 10  // NFNL_SUBSYS_NFTABLES
    private static let getGeneration: UInt16 = 16  // NFT_MSG_GETGEN
    private static let newGeneration: UInt16 = 15  // NFT_MSG_NEWGEN (the answer)
    private static let generationID: UInt16 = 1  // NFTA_GEN_ID

    /// The current generation, or a description of why it cannot be read.
    static func current() -> Result<UInt32, GenerationError> {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 12)  // NETLINK_NETFILTER
        guard fd >= 0 else { return .failure(GenerationError("netlink socket: \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // nlmsghdr (16 bytes, host order) + nfgenmsg (4 bytes: family AF_UNSPEC, version 0, res_id 0).
        var request = [UInt8](repeating: 0, count: 20)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value) { request.replaceSubrange(offset..<offset + MemoryLayout<T>.size, with: $0) }
        }
        let sequence = UInt32(truncatingIfNeeded: Int(getpid()) &* 31 &+ Int(time(nil)))
        put(UInt32(20), at: 0)
        put(subsystem << 8 | getGeneration, at: 4)
        put(UInt16(1), at: 6)  // NLM_F_REQUEST
        put(sequence, at: 8)
        // sockaddr_nl of the kernel: family AF_NETLINK, pid 0, no groups (12 bytes).
        var kernel = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: sa_family_t(AF_NETLINK)) { kernel.replaceSubrange(0..<MemoryLayout<sa_family_t>.size, with: $0) }
        let sent = request.withUnsafeBytes { bytes in
            kernel.withUnsafeBytes { address in
                sendto(fd, bytes.baseAddress, bytes.count, 0, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
            }
        }
        guard sent == request.count else { return .failure(GenerationError("netlink send: \(String(cString: strerror(errno)))")) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        // Answers to other requests cannot arrive on a fresh socket; read until ours (bounded).
        for _ in 0..<4 {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return .failure(GenerationError("netlink receive: \(String(cString: strerror(errno)))")) }
            var offset = 0
            while offset + 16 <= count {
                let length = Int(read32(buffer, offset))
                let type = read16(buffer, offset + 4)
                guard length >= 16, offset + length <= count else { break }
                if read32(buffer, offset + 8) == sequence {
                    if type == 2 {  // NLMSG_ERROR: a negative errno
                        let code = Int32(bitPattern: read32(buffer, offset + 16))
                        return .failure(GenerationError("NFT_MSG_GETGEN: \(String(cString: strerror(-code)))"))
                    }
                    if type == subsystem << 8 | newGeneration {
                        // Attributes after nfgenmsg: {len u16, type u16, value}, 4-byte aligned.
                        var attribute = offset + 20
                        while attribute + 4 <= offset + length {
                            let attributeLength = Int(read16(buffer, attribute))
                            guard attributeLength >= 4 else { break }
                            if read16(buffer, attribute + 2) & 0x3FFF == generationID, attributeLength >= 8 {
                                return .success(rawBigEndian(buffer, attribute + 4))  // NLA_U32, network order
                            }
                            attribute += (attributeLength + 3) & ~3
                        }
                        return .failure(GenerationError("NFT_MSG_GETGEN: no generation in the answer"))
                    }
                }
                offset += (length + 3) & ~3
            }
        }
        return .failure(GenerationError("NFT_MSG_GETGEN: no answer"))
    }

    /// A host-order u32 of a netlink header.
    private static func read32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
    }

    private static func rawBigEndian(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    /// A host-order u16 of a netlink header.
    private static func read16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
    }
}

/// Why the ruleset generation could not be read.
struct GenerationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
