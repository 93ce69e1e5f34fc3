import Foundation

// Apply timing: how long the real `ipset restore` and `iptables-restore --noflush` take to load
// the compiled output into a fresh network namespace. Each measurement gets its own namespace
// (`picket-bench-<pid>-<n>`), deleted on every path out, so the kernel state of the host and of
// other measurements is never touched.

/// Why an apply measurement failed, with the command and what it printed.
struct RestoreError: Error, CustomStringConvertible {
    /// The command line that failed.
    var command: String
    /// What went wrong: exit status and output, or a timeout.
    var reason: String

    var description: String { "\(command): \(reason)" }
}

/// Load times of one ruleset in a scratch namespace.
struct ApplyTiming {
    /// `ipset restore -file ipset.restore`.
    var ipset: Duration
    /// `iptables-restore --noflush iptables.restore`, after the sets exist.
    var iptables: Duration

    /// Both restores.
    var total: Duration { ipset + iptables }
}

/// Runs restore files in scratch network namespaces.
struct Applier {
    /// Absolute paths of the tools.
    let ip: String
    let ipset: String
    let iptablesRestore: String

    /// Each tool run is killed after this long (a hung restore must not hang the benchmark).
    static let timeout: Duration = .seconds(120)

    /// An applier, or why apply timing cannot run here (not root, or a tool is missing).
    static func make() -> Result<Applier, RestoreError> {
        if geteuid() != 0 {
            return .failure(RestoreError(command: "ip netns add", reason: "not running as root (euid \(geteuid()))"))
        }
        var paths: [String] = []
        for tool in ["ip", "ipset", "iptables-restore"] {
            guard let path = locate(tool) else {
                return .failure(RestoreError(command: tool, reason: "not found in PATH, /usr/sbin or /sbin"))
            }
            paths.append(path)
        }
        return .success(Applier(ip: paths[0], ipset: paths[1], iptablesRestore: paths[2]))
    }

    /// The first executable `tool` in PATH, /usr/sbin, /sbin.
    private static func locate(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        for directory in directories where !directory.isEmpty {
            let candidate = directory + "/" + tool
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Loads `ipsetFile` then `iptablesFile` into a new namespace `name`, timing each, and deletes
    /// the namespace whatever happens.
    func measure(ipsetFile: URL, iptablesFile: URL, namespace name: String) throws(RestoreError) -> ApplyTiming {
        try run(ip, ["netns", "add", name])
        defer {
            do {
                try run(ip, ["netns", "delete", name])
            } catch {
                FileHandle.standardError.write(Data("picket-bench: warning: could not delete network namespace \(name): \(error)\n".utf8))
            }
        }
        // A fresh namespace: bring loopback up as a real node namespace would have it.
        try run(ip, ["-n", name, "link", "set", "lo", "up"])
        let ipsetTime = try run(ip, ["netns", "exec", name, ipset, "restore", "-file", ipsetFile.path])
        let iptablesTime = try run(ip, ["netns", "exec", name, iptablesRestore, "--noflush", iptablesFile.path])
        return ApplyTiming(ipset: ipsetTime, iptables: iptablesTime)
    }

    /// The cost of starting a tool in a namespace at all (`ip netns exec NAME true`), so readers
    /// can tell process start-up from restore work.
    func spawnOverhead(namespace name: String, runs: Int) throws(RestoreError) -> Duration {
        try run(ip, ["netns", "add", name])
        defer {
            do {
                try run(ip, ["netns", "delete", name])
            } catch {
                FileHandle.standardError.write(Data("picket-bench: warning: could not delete network namespace \(name): \(error)\n".utf8))
            }
        }
        let truePath = FileManager.default.isExecutableFile(atPath: "/bin/true") ? "/bin/true" : "/usr/bin/true"
        var samples: [Duration] = []
        for _ in 0..<max(1, runs) {
            samples.append(try run(ip, ["netns", "exec", name, truePath]))
        }
        return median(samples)
    }

    /// Runs one command to completion (at most `timeout`) and returns its wall time, measured with
    /// `ContinuousClock` from just before launch to its exit. Non-zero exit is an error carrying
    /// the command's output.
    @discardableResult
    private func run(_ executable: String, _ arguments: [String]) throws(RestoreError) -> Duration {
        let command = ([executable] + arguments).joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try process.run()
        } catch {
            throw RestoreError(command: command, reason: "cannot start: \(error)")
        }
        // Drain output while waiting, so a chatty tool cannot block on a full pipe.
        let reader = OutputReader(handle: output.fileHandleForReading)
        let deadline = DispatchTime.now() + .nanoseconds(Int(Applier.timeout.components.seconds) * 1_000_000_000)
        if exited.wait(timeout: deadline) == .timedOut {
            process.terminate()
            if exited.wait(timeout: .now() + .seconds(5)) == .timedOut {
                FileHandle.standardError.write(Data("picket-bench: warning: \(command) did not stop after SIGTERM\n".utf8))
            }
            throw RestoreError(command: command, reason: "timed out after \(Applier.timeout)")
        }
        let elapsed = clock.now - start
        let text = reader.finish()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            // One line, so the report stays a table and a list: the tool's first lines, joined.
            let lines = text.split(separator: "\n").prefix(5).joined(separator: " | ")
            throw RestoreError(command: command, reason: "exit status \(process.terminationStatus): \(lines)")
        }
        return elapsed
    }
}

/// Reads a pipe to its end on a background thread.
private final class OutputReader: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var data = Data()

    init(handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    /// Everything the command wrote (call after it exited).
    func finish() -> String {
        guard done.wait(timeout: .now() + .seconds(5)) == .success else { return "(output still open after exit)" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// On SIGINT or SIGTERM, deletes the network namespaces whose names start with this run's prefix
/// (`picket-bench-<pid>-`; only when `ip` is given) and the work directory, then exits with
/// 128 + signal.
final class InterruptCleanup {
    private let sources: [any DispatchSourceSignal]

    init(ip: String?, namespacePrefix: String, directory: URL) {
        var sources: [any DispatchSourceSignal] = []
        for signo in [SIGINT, SIGTERM] {
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler {
                InterruptCleanup.clean(ip: ip, namespacePrefix: namespacePrefix, directory: directory)
                exit(128 + signo)
            }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    /// Stops listening and restores the default handlers.
    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }

    private static func clean(ip: String?, namespacePrefix: String, directory: URL) {
        var names: [String] = []
        if ip != nil, FileManager.default.fileExists(atPath: "/run/netns") {
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: "/run/netns").filter { $0.hasPrefix(namespacePrefix) }
            } catch {
                FileHandle.standardError.write(Data("picket-bench: cannot list /run/netns: \(error)\n".utf8))
            }
        }
        for name in names.sorted() {
            guard let ip else { break }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ip)
            process.arguments = ["netns", "delete", name]
            do {
                try process.run()
                process.waitUntilExit()
            } catch {
                FileHandle.standardError.write(Data("picket-bench: could not delete network namespace \(name): \(error)\n".utf8))
            }
        }
        do {
            try FileManager.default.removeItem(at: directory)
        } catch {
            FileHandle.standardError.write(Data("picket-bench: could not remove \(directory.path): \(error)\n".utf8))
        }
        FileHandle.standardError.write(Data("picket-bench: interrupted; cleaned up \(names.count) namespace(s)\n".utf8))
    }
}
