// ConntrackKit: deleting conntrack entries in-process through libnetfilter_conntrack.
//
// Design note. An established flow keeps passing Picket's rules after they change, because
// iptables only sees the first packet of a flow as NEW; every later packet matches its
// conntrack entry. So when a sync takes access away from a local pod, Picket deletes the
// conntrack entries that involve that pod's addresses, and the next packet of each of those
// flows is evaluated afresh against the new rules.
//
// One call dumps the conntrack table per address family on one netlink handle and destroys the
// matching entries on a second one (a handle cannot take requests while it is dumping). The
// dump callback is C (CConntrack) because C callbacks cannot capture Swift state; this file
// only chooses the addresses, lays them out for C, and turns failures into `ConntrackError`.
//
// Netlink sockets belong to the network namespace of the thread that opens them, so a call
// acts in the namespace of the calling thread. A call blocks in netlink I/O: make it from a
// dedicated thread, not from the Swift concurrency pool (two threads on a two-core node).
// Every call opens and closes its own handles, so calls on different threads are independent.

import CConntrack
import Glibc
import KubeModel

/// Deletion and marking of conntrack entries in the network namespace of the calling thread.
public enum Conntrack {
    /// Deletes every conntrack entry (both families) whose original or reply source or
    /// destination is one of `addresses`; returns how many were deleted. Entries that vanish
    /// meanwhile (ENOENT) are not errors.
    ///
    /// Matching both directions covers NAT: behind a Service, a pod's address may appear only
    /// in the reply tuple. An empty set deletes nothing and opens no socket. The families are
    /// handled IPv4 first, then IPv6; a failure stops the call, and entries deleted before it
    /// stay deleted (`ConntrackError.deletedBeforeFailure` counts them).
    ///
    /// Needs CAP_NET_ADMIN in the network namespace of the calling thread, and blocks in
    /// netlink I/O for the length of one dump of the table.
    public static func deleteEntries(involving addresses: Set<IPAddress>) throws(ConntrackError) -> Int {
        try forEachFamily(addresses) { family, buffer, count, result in
            picket_ct_delete(family, buffer, count, &result)
        }
    }

    /// Sets the conntrack mark bits `mark` (under `mask`) on every entry whose original or reply
    /// source or destination is one of `addresses`; returns how many entries changed (entries
    /// that already carry the bits are left alone). Same scope, cost and failure behaviour as
    /// `deleteEntries`, but the flows keep their entries, and with them their direction: rules
    /// that match the mark can re-check each flow at its next packet.
    ///
    /// With `clearingLabel` (a conntrack label bit, 0...127), the same update also clears that
    /// label bit on an entry that has it, so that rules testing the label see the flow again.
    public static func markEntries(
        involving addresses: Set<IPAddress>, mark: UInt32, mask: UInt32, clearingLabel label: Int? = nil
    ) throws(ConntrackError) -> Int {
        precondition(label.map { (0...127).contains($0) && mask != 0 } ?? true, "a label bit is 0...127, cleared along a mark")
        let clear = Int32(label ?? -1)
        return try forEachFamily(addresses) { family, buffer, count, result in
            picket_ct_mark(family, buffer, count, mark, mask, clear, &result)
        }
    }

    /// Runs one C call per family that has addresses, IPv4 first; sums the changed entries and
    /// turns a failure into a `ConntrackError`.
    private static func forEachFamily(
        _ addresses: Set<IPAddress>,
        _ call: (Int32, UnsafePointer<UInt8>?, Int, inout picket_ct_result) -> Int32
    ) throws(ConntrackError) -> Int {
        var changed = 0
        for family in IPAddress.Family.allCases {
            let members = addresses.filter { $0.family == family }
            if members.isEmpty { continue }
            var result = picket_ct_result()
            let bytes = addressBytes(members.sorted(), family: family)
            let status = bytes.withUnsafeBufferPointer { buffer in
                call(family.socketFamily, buffer.baseAddress, members.count, &result)
            }
            changed += Int(result.deleted)
            if status != 0 {
                throw ConntrackError(
                    operation: ConntrackError.Operation(result.step),
                    family: family,
                    errorNumber: result.error,
                    deletedBeforeFailure: changed
                )
            }
        }
        return changed
    }

    /// The addresses back to back in network byte order: 4 bytes each for IPv4, 16 for IPv6.
    /// Numeric order of the input is memcmp order of the output, which the C side
    /// binary-searches.
    static func addressBytes(_ sorted: [IPAddress], family: IPAddress.Family) -> [UInt8] {
        let width = family.bitWidth / 8
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.count * width)
        for address in sorted {
            for index in stride(from: width - 1, through: 0, by: -1) {
                bytes.append(UInt8(truncatingIfNeeded: address.value >> (index * 8)))
            }
        }
        return bytes
    }
}

extension IPAddress.Family {
    /// The socket address family: AF_INET or AF_INET6.
    var socketFamily: Int32 {
        switch self {
        case .v4: AF_INET
        case .v6: AF_INET6
        }
    }
}
