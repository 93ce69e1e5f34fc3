import Glibc
import KubeModel
import Testing

@testable import ConntrackKit

/// Whether the kernel tests can run; the first time it is asked and they cannot, prints a line
/// nobody can miss. The tests are then reported as skipped (never as passed) through `rootOnly`.
private let runningAsRoot: Bool = {
    if geteuid() == 0 { return true }
    print("""
        !!!!!!!! SKIPPED ConntrackKitTests kernel tests: needs root (network namespaces, conntrack). \
        Run `sudo swift test --filter ConntrackKitTests`. !!!!!!!!
        """)
    return false
}()

/// The trait of the suites that need a real kernel.
private let rootOnly = ConditionTrait.enabled(if: runningAsRoot, "needs root (network namespaces, conntrack)")

/// Parses address literals the tests spell correctly.
private func addresses(_ texts: String...) -> Set<IPAddress> {
    Set(texts.map { IPAddress($0)! })
}

/// In a fresh scratch network with `ScratchNetwork.flows` tracked: deletes the entries of
/// `deleted` from a thread inside the server namespace and checks that exactly the entries
/// involving those addresses are gone, that the count returned is their number
/// (`expected`), and that a second call deletes nothing.
private func checkDeletion(of deleted: Set<IPAddress>, expected: Int) throws {
    let network = try ScratchNetwork()
    defer { network.remove() }
    try network.populate()

    let before = try network.conntrackEntries()
    let texts = deleted.map(\.description)
    let doomed = Set(before.filter { entry in texts.contains(where: entry.involves) })
    #expect(doomed.count == expected, "entries involving \(texts.sorted()) before deletion: \(doomed)")

    let count = try onThread(inNetworkNamespace: network.server) { try Conntrack.deleteEntries(involving: deleted) }
    #expect(count == expected)

    let after = try network.conntrackEntries()
    #expect(Set(after.map(\.key)) == Set(before.map(\.key)).subtracting(doomed.map(\.key)))

    let again = try onThread(inNetworkNamespace: network.server) { try Conntrack.deleteEntries(involving: deleted) }
    #expect(again == 0)
    #expect(Set(try network.conntrackEntries().map(\.key)) == Set(after.map(\.key)))
}

/// Deletion of conntrack entries in real (scratch) network namespaces.
@Suite("Conntrack.deleteEntries", rootOnly)
struct ConntrackTests {
    @Test("Deletes the entries of an IPv4 address, leaves other addresses' entries")
    func deletesIPv4Address() throws {
        try checkDeletion(of: addresses("10.99.0.1"), expected: 4)
    }

    @Test("Deletes the entries of an IPv6 address, leaves other addresses' and IPv4 entries")
    func deletesIPv6Address() throws {
        try checkDeletion(of: addresses("fd99::1"), expected: 4)
    }

    @Test("Matches an address that appears only in the reply tuple (DNAT)")
    func matchesReplyTuple() throws {
        try checkDeletion(of: addresses("10.99.0.4"), expected: 1)
    }

    @Test("Deletes both families in one call")
    func deletesBothFamilies() throws {
        try checkDeletion(of: addresses("10.99.0.3", "fd99::3"), expected: 7)
    }

    @Test("An empty set deletes nothing")
    func emptySetDeletesNothing() throws {
        try checkDeletion(of: [], expected: 0)
    }

    @Test("Addresses without entries delete nothing")
    func unknownAddressesDeleteNothing() throws {
        try checkDeletion(of: addresses("10.99.0.77", "fd99::77", "::ffff:10.99.0.1"), expected: 0)
    }

    @Test("A refused request throws the step and errno, and deletes nothing")
    func failureWithoutNetAdmin() throws {
        let network = try ScratchNetwork()
        defer { network.remove() }
        try network.populate()
        let before = Set(try network.conntrackEntries().map(\.key))

        let outcome = try onThread(inNetworkNamespace: network.server) { () throws -> Result<Int, ConntrackError> in
            try dropNetworkAdministration()
            return Result { () throws(ConntrackError) -> Int in
                try Conntrack.deleteEntries(involving: addresses("10.99.0.1", "fd99::1"))
            }
        }
        guard case .failure(let error) = outcome else {
            Issue.record("expected a ConntrackError without CAP_NET_ADMIN, got \(outcome)")
            return
        }
        #expect(error.operation == .dump)
        #expect(error.family == .v4)
        #expect(error.errorNumber == EPERM)
        #expect(error.deletedBeforeFailure == 0)
        #expect(error.description.contains("Operation not permitted"))
        #expect(Set(try network.conntrackEntries().map(\.key)) == before)
    }
}

/// The parts that need no kernel.
@Suite("ConntrackKit without a kernel")
struct ConntrackUnitTests {
    @Test("Addresses are laid out in network byte order, numeric order preserved")
    func addressBytes() {
        let v4 = [IPAddress("10.0.0.2")!, IPAddress("10.99.0.1")!]
        #expect(Conntrack.addressBytes(v4, family: .v4) == [10, 0, 0, 2, 10, 99, 0, 1])
        let v6 = Conntrack.addressBytes([IPAddress("fd99::1")!], family: .v6)
        #expect(v6 == [0xfd, 0x99] + Array(repeating: 0, count: 13) + [1])
    }

    @Test("Errors name the step, the family, the errno text and what to fix")
    func errorDescription() {
        let error = ConntrackError(operation: .open, family: .v6, errorNumber: EPERM, deletedBeforeFailure: 3)
        #expect(error.description == "conntrack: deleting IPv6 entries: nfct_open failed: Operation not permitted "
            + "(errno 1); 3 entries deleted before the failure; run with CAP_NET_ADMIN in the node's network namespace")
    }
}

/// Marking instead of deleting: the entries stay, with the bit set, and only theirs.
@Suite("Conntrack.markEntries", rootOnly)
struct MarkTests {
    @Test("Sets the bit on the entries of the addresses (both families), leaves the others unmarked and every entry in place")
    func marksEntries() throws {
        let network = try ScratchNetwork()
        defer { network.remove() }
        try network.populate()
        let chosen = addresses("10.99.0.1", "fd99::1")
        let bit: UInt32 = 0x0080_0000
        let before = try network.conntrackEntries()
        let involved = Set(before.filter { entry in chosen.contains { entry.involves($0.description) } }.map(\.key))
        #expect(!involved.isEmpty)

        let count = try onThread(inNetworkNamespace: network.server) { try Conntrack.markEntries(involving: chosen, mark: bit, mask: bit) }
        #expect(count == involved.count)
        let after = try network.conntrackEntries()
        #expect(Set(after.map(\.key)) == Set(before.map(\.key)), "no entry is deleted")
        for entry in after {
            #expect((entry.mark & bit != 0) == involved.contains(entry.key), "\(entry) mark \(entry.mark)")
        }
        // Already marked: nothing changes. Clearing the bit (mark 0 under the mask) unmarks.
        #expect(try onThread(inNetworkNamespace: network.server) { try Conntrack.markEntries(involving: chosen, mark: bit, mask: bit) } == 0)
        let cleared = try onThread(inNetworkNamespace: network.server) { try Conntrack.markEntries(involving: chosen, mark: 0, mask: bit) }
        #expect(cleared == involved.count)
        #expect(try network.conntrackEntries().allSatisfy { $0.mark & bit == 0 })
    }

    @Test("With a label bit, the same update also clears that label on the entries of the addresses, and only that bit")
    func clearsLabel() throws {
        let network = try ScratchNetwork()
        defer { network.remove() }
        // Every entry the server tracks gets labels 5 and 9 from its first packet on.
        for tool in ["iptables", "ip6tables"] {
            for label in ["5", "9"] {
                _ = try run(["ip", "netns", "exec", network.server, tool, "-I", "INPUT", "1", "-m", "connlabel", "--label", label, "--set"])
            }
        }
        try network.populate()
        let chosen = addresses("10.99.0.1", "fd99::1")
        let bit: UInt32 = 0x0080_0000
        let involved = Set(try network.conntrackEntries().filter { entry in chosen.contains { entry.involves($0.description) } }.map(\.key))
        #expect(!involved.isEmpty)
        func mark(_ label: Int?) throws -> Int {
            try onThread(inNetworkNamespace: network.server) { try Conntrack.markEntries(involving: chosen, mark: bit, mask: bit, clearingLabel: label) }
        }
        // The mark set and label 5 cleared, in one update per entry.
        #expect(try mark(5) == involved.count)
        // Both done: the entries as the kernel dumps them now carry neither the missing mark nor
        // label 5, so a second call changes nothing; label 9 was kept, so clearing it changes
        // every involved entry once, and label 7, never set, none.
        #expect(try mark(5) == 0)
        #expect(try mark(7) == 0)
        #expect(try mark(9) == involved.count)
        #expect(try mark(9) == 0)
        // Entries of other addresses keep their labels: clearing 5 on all of them changes exactly those.
        let everyone = addresses("10.99.0.1", "10.99.0.3", "fd99::1", "fd99::3")
        let all = Set(try network.conntrackEntries().filter { entry in everyone.contains { entry.involves($0.description) } }.map(\.key))
        let others = all.subtracting(involved)
        #expect(!others.isEmpty)
        let changed = try onThread(inNetworkNamespace: network.server) {
            try Conntrack.markEntries(involving: everyone, mark: bit, mask: bit, clearingLabel: 5)
        }
        #expect(changed == others.count)
    }
}
