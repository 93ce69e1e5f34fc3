import Foundation
import Glibc
import IPSetKit
import Testing

/// The network namespace of the calling thread, as `net:[inode]`.
private func currentNetworkNamespace() throws -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    let length = readlink("/proc/thread-self/ns/net", &buffer, buffer.count - 1)
    guard length > 0 else { throw CommandFailure(description: "readlink: \(String(cString: strerror(errno)))") }
    return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A failure thrown on purpose.
private struct Planned: Error {}

/// `inNetworkNamespace` and `onThread(inNetworkNamespaceAt:)`.
@Suite("Network namespaces")
struct NetworkNamespaceTests {
    @Test("The body runs in the new namespace, the caller's thread stays where it was, the namespace is deleted", rootOnly)
    func runsInsideAndCleansUp() throws {
        let name = scratchNamespaceName()
        let outside = try currentNetworkNamespace()
        let (inside, listed, child) = try inNetworkNamespace(name) {
            (try currentNetworkNamespace(), try networkNamespaces(),
             // A process started from the body inherits the namespace.
             try run("readlink", ["/proc/self/ns/net"]).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(inside != outside)
        #expect(child == inside)
        #expect(listed.contains(name))
        #expect(try currentNetworkNamespace() == outside)
        #expect(!(try networkNamespaces()).contains(name))
    }

    @Test("The body's error is rethrown and the namespace is still deleted", rootOnly)
    func rethrowsAndCleansUp() throws {
        let name = scratchNamespaceName()
        #expect(throws: Planned.self) { try inNetworkNamespace(name) { throw Planned() } }
        #expect(!(try networkNamespaces()).contains(name))
    }

    @Test("An existing namespace name fails without running the body or deleting it", rootOnly)
    func existingNameFails() throws {
        let name = scratchNamespaceName()
        try run("ip", ["netns", "add", name])
        defer {
            do { try run("ip", ["netns", "delete", name]) } catch { Issue.record(error) }
        }
        var ran = false
        #expect(throws: NetworkNamespaceError.self) { try inNetworkNamespace(name) { ran = true } }
        #expect(!ran)
        #expect(try networkNamespaces().contains(name))
    }

    @Test("Sets made in a scratch namespace are invisible on the host", rootOnly)
    func hostUntouched() throws {
        let name = scratchNamespaceName()
        try run("ip", ["netns", "add", name])
        defer {
            do { try run("ip", ["netns", "delete", name]) } catch { Issue.record(error) }
        }
        let set = "t-host-check-\(getpid())"
        do {
            try onThread(inNetworkNamespaceAt: "/run/netns/\(name)") {
                let session = try IPSetSession()
                try session.restore("create \(set) hash:ip\n")
            }
        } catch let error as IPSetError {
            return loudSkip(#function, "libipset cannot open netlink: \(error)")
        }
        #expect(try ipsetCLI(name, "list", "-n").split(separator: "\n").contains(Substring(set)))
        #expect(!(try run("ipset", ["list", "-n"])).split(separator: "\n").contains(Substring(set)))
    }

    @Test("A missing namespace path fails with NetworkNamespaceError")
    func missingPath() {
        #expect(throws: NetworkNamespaceError.self) {
            try onThread(inNetworkNamespaceAt: "/run/netns/pkt-ipset-does-not-exist") { 1 }
        }
    }
}
