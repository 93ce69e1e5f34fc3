import Foundation
import Synchronization

/// Numbers scratch networks made by this process, so concurrent tests get distinct names.
private let networkCounter = Atomic<Int>(0)

/// Runs a command (bounded by `timeout`) and returns its standard output; throws with its
/// standard error when it exits non-zero.
@discardableResult
func run(_ arguments: [String], seconds: Int = 20) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    process.arguments = ["--kill-after=5", String(seconds)] + arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ScaffoldError(description: """
            \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \
            \(String(decoding: err, as: UTF8.self))
            """)
    }
    return String(decoding: out, as: UTF8.self)
}

/// Sends the flows given as arguments (`proto,source,destination,port`): a UDP datagram each,
/// or a TCP connection that sends one byte and waits for the server to close.
private let clientScript = """
import socket, sys
def family(address): return socket.AF_INET6 if ":" in address else socket.AF_INET
for flow in sys.argv[1:]:
    proto, source, destination, port = flow.split(",")
    if proto == "udp":
        s = socket.socket(family(source), socket.SOCK_DGRAM)
        s.bind((source, 0)); s.sendto(b"x", (destination, int(port))); s.close()
    else:
        s = socket.socket(family(source), socket.SOCK_STREAM)
        s.settimeout(10); s.bind((source, 0)); s.connect((destination, int(port))); s.sendall(b"x")
        while s.recv(64): pass
        s.close()
"""

/// Listens on TCP port 8080 of the given addresses, prints "ready", accepts argv[1]
/// connections (reading one byte, then closing) and exits; gives up after 20 s.
private let serverScript = """
import select, socket, sys, time
listeners = []
for address in sys.argv[2:]:
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((address, 8080)); s.listen(16)
    listeners.append(s)
print("ready", flush=True)
wanted, accepted, deadline = int(sys.argv[1]), 0, time.monotonic() + 20
while accepted < wanted and time.monotonic() < deadline:
    readable, _, _ = select.select(listeners, [], [], 0.5)
    for s in readable:
        c, _ = s.accept(); c.settimeout(5); c.recv(1); c.close(); accepted += 1
"""

/// Two scratch network namespaces joined by a veth pair, with conntrack entries in `server`.
///
/// - `client` holds 10.99.0.1, 10.99.0.3, fd99::1 and fd99::3, and routes 10.99.1.0/24 via
///   the server.
/// - `server` holds 10.99.0.2, 10.99.0.4 and fd99::2, tracks connections (an iptables and an
///   ip6tables rule with `-m conntrack`), and DNATs 10.99.1.1 to 10.99.0.4, so that address
///   appears only in the reply tuple of its entry.
///
/// `remove()` deletes both namespaces (and with them the veth pair); call it in a `defer`.
final class ScratchNetwork {
    /// The namespace that sends.
    let client: String
    /// The namespace that receives and holds the conntrack entries under test.
    let server: String

    /// The flows `populate()` creates, as `proto,source,destination,port`.
    static let flows = [
        "udp,10.99.0.1,10.99.0.2,7001", "udp,10.99.0.1,10.99.0.2,7002", "udp,10.99.0.1,10.99.0.2,7003",
        "tcp,10.99.0.1,10.99.0.2,8080",
        "udp,10.99.0.3,10.99.0.2,7001", "udp,10.99.0.3,10.99.0.2,7002", "tcp,10.99.0.3,10.99.0.2,8080",
        "udp,10.99.0.3,10.99.1.1,7004",
        "udp,fd99::1,fd99::2,7001", "udp,fd99::1,fd99::2,7002", "udp,fd99::1,fd99::2,7003",
        "tcp,fd99::1,fd99::2,8080",
        "udp,fd99::3,fd99::2,7001", "udp,fd99::3,fd99::2,7002", "tcp,fd99::3,fd99::2,8080",
    ]

    /// How many entries of `flows` involve each address once they have all arrived.
    static let expectedCounts: [String: Int] = [
        "10.99.0.1": 4, "10.99.0.2": 7, "10.99.0.3": 4, "10.99.0.4": 1, "10.99.1.1": 1,
        "fd99::1": 4, "fd99::2": 7, "fd99::3": 3,
    ]

    /// Creates the namespaces and links; deletes whatever it made if a step fails.
    init() throws {
        let number = networkCounter.add(1, ordering: .relaxed).newValue
        let prefix = "pkt-ct-\(getpid())-\(number)"
        client = "\(prefix)-c"
        server = "\(prefix)-s"
        do {
            try run(["ip", "netns", "add", client])
            try run(["ip", "netns", "add", server])
            try run(["ip", "-n", client, "link", "add", "ct0", "type", "veth", "peer", "name", "ct1", "netns", server])
            for address in ["10.99.0.1/24", "10.99.0.3/24"] {
                try run(["ip", "-n", client, "addr", "add", address, "dev", "ct0"])
            }
            for address in ["fd99::1/64", "fd99::3/64"] {
                try run(["ip", "-n", client, "addr", "add", address, "dev", "ct0", "nodad"])
            }
            for address in ["10.99.0.2/24", "10.99.0.4/24"] {
                try run(["ip", "-n", server, "addr", "add", address, "dev", "ct1"])
            }
            try run(["ip", "-n", server, "addr", "add", "fd99::2/64", "dev", "ct1", "nodad"])
            try run(["ip", "-n", client, "link", "set", "ct0", "up"])
            try run(["ip", "-n", server, "link", "set", "ct1", "up"])
            try run(["ip", "-n", client, "route", "add", "10.99.1.0/24", "via", "10.99.0.2"])
            for tool in ["iptables", "ip6tables"] {
                try run(["ip", "netns", "exec", server, tool, "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT"])
            }
            try run(["ip", "netns", "exec", server, "iptables", "-t", "nat", "-A", "PREROUTING",
                     "-d", "10.99.1.1", "-j", "DNAT", "--to-destination", "10.99.0.4"])
            // Unreplied UDP entries expire after 30 s by default: keep them for the whole test.
            try run(["ip", "netns", "exec", server, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=600"])
        } catch {
            remove()
            throw error
        }
    }

    /// Deletes both namespaces; reports failures on stderr, since it runs in `defer`.
    func remove() {
        for name in [client, server] {
            do { try run(["ip", "netns", "del", name]) } catch {
                FileHandle.standardError.write(Data("ConntrackKitTests: cleanup: \(error)\n".utf8))
            }
        }
    }

    /// Sends `flows` from `client` to `server` and waits (at most 10 s) until `server` holds
    /// exactly `expectedCounts` entries per address: the first IPv6 datagrams wait for
    /// neighbour discovery and arrive late.
    func populate() throws {
        let tcpFlows = Self.flows.filter { $0.hasPrefix("tcp,") }.count
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        listener.arguments = ["netns", "exec", server, "/usr/bin/python3", "-c", serverScript, String(tcpFlows),
                              "10.99.0.2", "fd99::2"]
        let ready = Pipe()
        listener.standardOutput = ready
        try listener.run()
        defer {
            // The listener exits by itself after its connections or 20 s; give it 2 s after
            // the client is done (or failed), then end it by its PID.
            for _ in 0..<40 where listener.isRunning { usleep(50_000) }
            if listener.isRunning { kill(listener.processIdentifier, SIGKILL) }
            listener.waitUntilExit()
        }
        let line = ready.fileHandleForReading.readData(ofLength: 6)
        guard line == Data("ready\n".utf8) else {
            throw ScaffoldError(description: "TCP listener in \(server) did not start")
        }
        try run(["ip", "netns", "exec", client, "/usr/bin/python3", "-c", clientScript] + Self.flows)

        var counts: [String: Int] = [:]
        for _ in 0..<200 {
            let entries = try conntrackEntries()
            counts = Dictionary(uniqueKeysWithValues: Self.expectedCounts.keys.map { address in
                (address, entries.filter { $0.involves(address) }.count)
            })
            // Every TCP flow closed on both sides too (TIME_WAIT or CLOSE): a closing handshake
            // still under way would send a last ACK after a test deleted the entry, and that
            // packet would make a new one.
            if counts == Self.expectedCounts && entries.allSatisfy(\.settled) { return }
            usleep(50_000)
        }
        throw ScaffoldError(description: "conntrack entries in \(server): \(counts.sorted { $0.key < $1.key }), "
            + "expected \(Self.expectedCounts.sorted { $0.key < $1.key })")
    }

    /// The conntrack entries of both families in `server`, as listed by the conntrack tool
    /// (which lists only IPv4 unless given `-f`).
    func conntrackEntries() throws -> [ConntrackEntry] {
        try ["ipv4", "ipv6"].flatMap { family in
            try run(["ip", "netns", "exec", server, "conntrack", "-L", "-f", family])
                .split(separator: "\n")
                .map { ConntrackEntry(line: String($0)) }
        }
    }
}

/// One line of `conntrack -L`, reduced to what the tests compare.
struct ConntrackEntry: Hashable, CustomStringConvertible {
    /// Protocol and original tuple, e.g. `udp src=10.99.0.1 dst=10.99.0.2 sport=40000
    /// dport=7001`: identifies the entry, unlike the line, whose timeout ticks.
    let key: String
    /// Every address in the original and reply tuples.
    let addresses: Set<String>
    /// The entry's conntrack mark.
    let mark: UInt32
    /// Whether no more packets of the flow are to come: any UDP entry, a TCP one in TIME_WAIT
    /// or CLOSE.
    let settled: Bool

    /// Parses a line such as `udp 17 599 src=10.99.0.1 dst=10.99.0.2 sport=40000 dport=7001
    /// [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=7001 dport=40000 mark=0 use=1`.
    init(line: String) {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var tuple: [String] = []
        var addresses: Set<String> = []
        for word in words {
            for field in ["src=", "dst="] where word.hasPrefix(field) {
                addresses.insert(String(word.dropFirst(field.count)))
            }
            if tuple.count < 4, ["src=", "dst=", "sport=", "dport="].contains(where: { word.hasPrefix($0) }) {
                tuple.append(word)
            }
        }
        key = ([words.first ?? "?"] + tuple).joined(separator: " ")
        self.addresses = addresses
        let markWord = words.first { $0.hasPrefix("mark=") }?.dropFirst(5)
        mark = markWord.flatMap { UInt32($0) } ?? 0
        // `tcp 6 119 TIME_WAIT src=...`: the state is the fourth word.
        settled = words.first != "tcp" || (words.count > 3 && ["TIME_WAIT", "CLOSE"].contains(words[3]))
    }

    /// Whether `address` is a source or destination of either tuple.
    func involves(_ address: String) -> Bool { addresses.contains(address) }

    var description: String { key }
}
