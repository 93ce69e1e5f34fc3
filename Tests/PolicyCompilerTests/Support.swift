import Foundation
import KubeModel
import PolicyCompiler
import Testing

/// The package's root directory, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// One golden case: Fixtures/<name>/ with input/, args and the expected restore files.
struct GoldenCase: CustomTestStringConvertible, Sendable {
    /// The folder name.
    var name: String
    /// The folder.
    var directory: URL
    /// The node from `args` (`--node NAME`).
    var node: String
    /// Every word of `args`, as `picket dry-run` takes them.
    var arguments: [String]
    /// The compile options `args` gives (`--pod-cidr CIDR`).
    var options: CompileOptions

    var testDescription: String { name }

    /// Every folder of Fixtures/ that has an `args` file, sorted by name.
    static func all() -> [GoldenCase] {
        let fixtures = packageRoot.appendingPathComponent("Fixtures")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []
        return names.sorted().compactMap { name in
            let directory = fixtures.appendingPathComponent(name)
            guard let args = try? String(contentsOf: directory.appendingPathComponent("args"), encoding: .utf8) else { return nil }
            let words = args.split(whereSeparator: \.isWhitespace).map(String.init)
            guard let i = words.firstIndex(of: "--node"), i + 1 < words.count else { return nil }
            var options = CompileOptions()
            for (j, word) in words.enumerated() where word == "--pod-cidr" && j + 1 < words.count {
                if let cidr = CIDR(words[j + 1]) { options.podCIDRs.append(cidr) }
            }
            return GoldenCase(name: name, directory: directory, node: words[i + 1], arguments: words, options: options)
        }
    }

    /// The case's manifests, decoded (issue sources relative to the case folder).
    func load() -> ManifestSet {
        var set = ManifestLoader.load([directory.appendingPathComponent("input").path])
        let prefix = directory.path + "/"
        for i in set.issues.indices where set.issues[i].source.hasPrefix(prefix) {
            set.issues[i].source.removeFirst(prefix.count)
        }
        return set
    }
}

/// What `picket dry-run` writes for a snapshot, by file name, plus `diagnostics.txt` (the
/// stderr lines) when there are issues. An invalid node name is refused before anything is
/// read, as the CLI does: then only `diagnostics.txt`.
func renderedFiles(_ set: ManifestSet, node: String, options: CompileOptions = CompileOptions()) -> [String: String] {
    let nodeErrors = Validation.nodeName(node, field: "--node")
    if !nodeErrors.isEmpty {
        return ["diagnostics.txt": nodeErrors.map { "error: \($0)\n" }.joined()]
    }
    let ruleset = compile(set.snapshot, node: node, options: options)
    var files = ["ipset.restore": ruleset.ipsetRestore(node: node)]
    files["iptables.restore"] = ruleset.iptablesRestore(family: .v4, node: node)
    files["ip6tables.restore"] = ruleset.iptablesRestore(family: .v6, node: node)
    if !set.issues.isEmpty {
        files["diagnostics.txt"] = set.issues.map { "\($0.severity.rawValue): \($0)\n" }.joined()
    }
    return files
}

/// The golden file names a case may hold.
let goldenNames = ["ipset.restore", "iptables.restore", "ip6tables.restore", "diagnostics.txt"]

/// A unified diff of two texts (via diff(1)), for failure messages.
func unifiedDiff(expected: String, actual: String, label: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("picket-diff-\(getpid())-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    do {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try expected.write(to: dir.appendingPathComponent("expected"), atomically: true, encoding: .utf8)
        try actual.write(to: dir.appendingPathComponent("actual"), atomically: true, encoding: .utf8)
        let result = try run("/usr/bin/diff", ["-u", "--label", "golden/\(label)", "--label", "compiled/\(label)",
                                               dir.appendingPathComponent("expected").path, dir.appendingPathComponent("actual").path])
        return result.stdout
    } catch {
        return "(no diff available: \(error))"
    }
}

/// The result of a finished process.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion with optional stdin text; output is captured.
func run(_ executable: String, _ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    // Read both pipes concurrently with the child so that neither can fill up and block it.
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data()
    nonisolated(unsafe) var errData = Data()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    process.waitUntilExit()
    group.wait()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// Why kernel tests cannot run here, or nil when they can (root, and the tools exist).
let kernelUnavailableReason: String? = {
    if getuid() != 0 { return "not running as root" }
    for tool in ["/usr/sbin/ip", "/usr/sbin/ipset", "/usr/sbin/iptables-restore", "/usr/sbin/ip6tables-restore"]
    where !FileManager.default.isExecutableFile(atPath: tool) {
        return "\(tool) is missing (install iproute2, ipset and iptables)"
    }
    return nil
}()

/// Whether the kernel checks can run; the first time it is asked and they cannot, says so loudly.
let kernelReady: Bool = {
    guard kernelUnavailableReason != nil else { return true }
    announceKernelSkip("golden outputs load into ipset/iptables")
    return false
}()

/// The trait of the tests that need a real kernel: skipped, and reported as such, without one.
let kernelOnly = ConditionTrait.enabled(if: kernelReady, "needs root, iproute2, ipset and iptables")

/// Says loudly that kernel checks were skipped.
func announceKernelSkip(_ what: String) {
    let line = "*** SKIPPED kernel check (\(what)): \(kernelUnavailableReason ?? "")  — run `make test` as root to prove rules in a real kernel ***\n"
    FileHandle.standardError.write(Data(line.utf8))
}

/// A network namespace created for one test and deleted when the value is closed.
final class ScratchNamespace {
    private static let counter = Counter()
    /// The namespace's name (`pkt-<pid>-<n>`).
    let name: String

    /// Creates a fresh namespace.
    init() throws {
        name = "pkt-\(getpid())-\(ScratchNamespace.counter.next())"
        let result = try run("/usr/sbin/ip", ["netns", "add", name])
        guard result.status == 0 else { throw ScratchError(message: "ip netns add \(name): \(result.stderr)") }
    }

    /// Runs a program inside the namespace.
    func exec(_ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
        try run("/usr/sbin/ip", ["netns", "exec", name] + arguments, stdin: stdin)
    }

    deinit {
        _ = try? run("/usr/sbin/ip", ["netns", "delete", name])
    }
}

/// A failure of test scaffolding.
struct ScratchError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A thread-safe counter.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}

/// A small deterministic generator (SplitMix64) for shuffles.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
