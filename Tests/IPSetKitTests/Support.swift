import Foundation
import Glibc
import IPSetKit
import Synchronization
import Testing

/// Numbers the scratch namespaces of this process.
private let namespaceCounter = Atomic<Int>(0)

/// Prints a line nobody can miss in the test log.
func loudSkip(_ test: String, _ reason: String) {
    print("""
        !!!!!!!! SKIPPED IPSetKitTests.\(test): \(reason). \
        Run `sudo swift test --filter IPSetKitTests` on a kernel with ip_set. !!!!!!!!
        """)
}

/// Whether the kernel tests can run; the first time it is asked and they cannot, prints a line
/// nobody can miss. The tests are then reported as skipped (never as passed) through `rootOnly`.
let runningAsRoot: Bool = {
    if geteuid() == 0 { return true }
    loudSkip("kernel tests", "need root (network namespaces, ipset)")
    return false
}()

/// The trait of every test (or suite) that needs a real kernel.
let rootOnly = ConditionTrait.enabled(if: runningAsRoot, "needs root (network namespaces, ipset)")

/// A fresh namespace name unique to this process: `pkt-ipset-<pid>-<n>`.
func scratchNamespaceName() -> String {
    let number = namespaceCounter.wrappingAdd(1, ordering: .relaxed).newValue
    return "pkt-ipset-\(getpid())-\(number)"
}

/// An `IPSetSession` whose calls each run on a fresh thread inside a scratch namespace.
///
/// The test body itself stays on the test's task: Swift Testing attributes `#expect` failures
/// through task-local state, which a namespace thread does not have.
struct ScratchSession {
    /// The session, opened inside the namespace.
    let session: IPSetSession
    /// `/run/netns/NAME`.
    let path: String

    /// `session.restore(text)` on a thread inside the namespace.
    func restore(_ text: String) throws {
        try onThread(inNetworkNamespaceAt: path) { try session.restore(text) }
    }

    /// `session.save(prefix:)` on a thread inside the namespace.
    func save(prefix: String? = nil) throws -> String {
        try onThread(inNetworkNamespaceAt: path) { try session.save(prefix: prefix) }
    }
}

/// Creates a scratch network namespace (`ip netns add pkt-ipset-<pid>-<n>`, never the host's),
/// opens a session on a thread inside it, runs `body`, and deletes the namespace afterwards,
/// also when `body` throws. Prints a loud skip line and returns when libipset cannot talk to the
/// kernel. Callers carry `rootOnly`.
func withScratchSession(
    _ test: String = #function, _ body: (_ session: ScratchSession, _ namespace: String) throws -> Void
) throws {
    let namespace = scratchNamespaceName()
    try run("ip", ["netns", "add", namespace])
    defer {
        do { try run("ip", ["netns", "delete", namespace]) } catch { Issue.record(error) }
    }
    let path = "/run/netns/\(namespace)"
    let session: IPSetSession
    do {
        session = try onThread(inNetworkNamespaceAt: path) { try IPSetSession() }
    } catch let error as IPSetError {
        loudSkip(test, "libipset cannot open netlink: \(error)")
        return
    }
    try body(ScratchSession(session: session, path: path), namespace)
}

/// Output of `ip netns exec NAMESPACE ipset ARGUMENTS`; throws when it fails.
func ipsetCLI(_ namespace: String, _ arguments: String...) throws -> String {
    try run("ip", ["netns", "exec", namespace, "ipset"] + arguments)
}

/// `ip netns list` names.
func networkNamespaces() throws -> Set<String> {
    let listing = try run("ip", ["netns", "list"])
    return Set(listing.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
}

/// A failed command of the tests.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
}

/// Runs `command ARGUMENTS` (found in PATH or the sbin directories) with `input` on standard
/// input; returns standard output, throws with standard error when the exit status is not 0.
@discardableResult
func run(_ command: String, _ arguments: [String], input: String? = nil) throws -> String {
    let process = Process()
    let candidates = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map { $0 + "/" + command }
    process.executableURL = URL(fileURLWithPath: candidates.first { access($0, X_OK) == 0 } ?? command)
    process.arguments = arguments
    let output = Pipe(), errors = Pipe(), standardInput = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = input == nil ? FileHandle.nullDevice : standardInput
    try process.run()
    // Feed input from another thread so a large input cannot deadlock against the output pipe.
    let writer = input.map { text in
        Thread {
            let handle = standardInput.fileHandleForWriting
            do {
                try handle.write(contentsOf: Data(text.utf8))
                try handle.close()
            } catch {
                print("writing to \(command)'s standard input: \(error)")
            }
        }
    }
    writer?.start()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailure(description: """
            \(command) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \
            \(String(decoding: errorData, as: UTF8.self))
            """)
    }
    return String(decoding: outputData, as: UTF8.self)
}

/// One set as `ipset save` prints it, normalised for comparison: the `initval` option (random
/// per set) dropped, members sorted.
struct SavedSet: Equatable, CustomStringConvertible {
    /// Set name.
    var name: String
    /// The words after the name on the `create` line, without `initval X`.
    var header: String
    /// The words after the name on the `add` lines, sorted.
    var members: [String]

    var description: String { "\(name) \(header) \(members)" }
}

/// Parses `ipset save` text into sets sorted by name.
func savedSets(_ text: String) -> [SavedSet] {
    var sets: [String: SavedSet] = [:]
    for line in text.split(separator: "\n") {
        let words = line.split(separator: " ").map(String.init)
        guard words.count >= 2 else {
            Issue.record("unexpected save line: \(line)")
            continue
        }
        let rest = Array(words.dropFirst(2))
        switch words[0] {
        case "create":
            var header: [String] = []
            var index = 0
            while index < rest.count {
                if rest[index] == "initval" { index += 2; continue }
                header.append(rest[index])
                index += 1
            }
            sets[words[1]] = SavedSet(name: words[1], header: header.joined(separator: " "), members: [])
        case "add":
            sets[words[1], default: SavedSet(name: words[1], header: "?", members: [])]
                .members.append(rest.joined(separator: " "))
        default:
            Issue.record("unexpected save line: \(line)")
        }
    }
    return sets.values
        .map { SavedSet(name: $0.name, header: $0.header, members: $0.members.sorted()) }
        .sorted { $0.name < $1.name }
}

/// Members of set `name` in `ipset save` text, sorted.
func members(of name: String, in text: String) -> [String] {
    savedSets(text).first { $0.name == name }?.members ?? []
}
